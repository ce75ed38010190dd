// AVX-512 (F, BW, VL, DQ) + VNNI kernels of the llama.cpp block types (Intel Ice Lake / Sapphire
// Rapids, AMD Zen 4 and later); see quants.h for the contracts.
//
// CMake compiles this file alone with the AVX-512 flags; nothing in it may run before the CPU has
// been checked (quant_kernels_available offers it only where kernels_available offers avx512vnni),
// so everything but the accessor has internal linkage. On a non-x86 target the file is empty. It
// holds the block kernels; the gemm drivers around them are quants_tiling.h's, the same for every
// ISA.
//
// VPDPBUSD multiplies unsigned by signed bytes. Q8_0/Q4_0 weights are signed, so the weight's sign
// moves onto the activation (|w| * (±a), as llama.cpp does; activations are within ±127, so the
// negation never overflows). Q6_K's 6-bit codes are unsigned: VPMADDUBSW gives int16 pairs (at most
// 2 * 63 * 127, no saturation), VPDPWSSD multiplies them by the sub-block scales, and the -32
// offset is taken off once per block with the activation sums of each 16 values. The ternary codes
// 0/1/2 are unsigned already.
#if defined(__x86_64__) || defined(__i386__)

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/quants_tiling.h"
#include "kernels/x86/simd_x86.h"
#include "util/common.h"

namespace bitnet {

namespace {

// ---- Q8_0 / Q4_0 ------------------------------------------------------------------------------

// 64 signed weights of blocks b (low half) and b+1 (high half); with `two` false only block b,
// the high half zero.
inline __m512i q32_pair(const block_q8_0* x, bool two) {
    const __m256i lo = _mm256_loadu_si256((const __m256i*)x[0].qs);
    const __m256i hi = two ? _mm256_loadu_si256((const __m256i*)x[1].qs) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline __m512i q32_pair(const block_q4_0* x, bool two) {
    const __m128i a = _mm_loadu_si128((const __m128i*)x[0].qs);
    // 0x88: both nibbles 8, i.e. weight 0 for the missing block
    const __m128i b = two ? _mm_loadu_si128((const __m128i*)x[1].qs) : _mm_set1_epi8((char)0x88);
    // 128-bit lanes [a a b b]; lanes 0 and 2 keep the low nibbles (values 0..15), lanes 1 and 3
    // take the high ones (values 16..31).
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(a, a)), _mm256_set_m128i(b, b), 1);
    const __m256i sh = _mm256_set_m128i(_mm_set1_epi16(4), _mm_set1_epi16(0));
    const __m512i shift = _mm512_inserti64x4(_mm512_castsi256_si512(sh), sh, 1);
    const __m512i nib = _mm512_and_si512(_mm512_srlv_epi16(v, shift), _mm512_set1_epi8(0x0F));
    return _mm512_sub_epi8(nib, _mm512_set1_epi8(8));
}

template <typename BlockType>
struct Q32Avx512 {
    using Block = BlockType;

    template <int NT>
    static void dot(const Block* row, int64_t nb, const ActBlocks& A, int64_t n, float* res) {
        const int64_t K = nb * QK8_0;
        const __m512i half_idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        const __m512i zero = _mm512_setzero_si512();
        __m512 acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b += 2) {
            if (NT == 1) {  // two blocks a step: their bytes may reach into a second cache line
                prefetch_stream_block(row + b);
                prefetch_stream_block(row + b + 1);
            }
            const bool two = b + 1 < nb;
            const __m512i w = q32_pair(row + b, two);
            const __m512i aw = _mm512_abs_epi8(w);  // -128 becomes 128, right as an unsigned byte
            const __mmask64 neg = _mm512_movepi8_mask(w);
            const uint32_t dpair = row[b].d | (two ? (uint32_t)row[b + 1].d << 16 : 0u);
            const __m512 dw = _mm512_permutexvar_ps(half_idx, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dpair))));
            for (int t = 0; t < NT; ++t) {
                const int8_t* q = A.q.data() + (n + t) * K + b * QK8_0;
                const float* da = A.d.data() + (n + t) * nb + b;
                __m512i a = two ? _mm512_loadu_si512(q) : _mm512_maskz_loadu_epi8(0xFFFFFFFFull, q);
                a = _mm512_mask_sub_epi8(a, neg, zero, a);
                const __m512i dot = _mm512_dpbusd_epi32(zero, aw, a);
                const __m128 dav = two ? _mm_castpd_ps(_mm_load_sd((const double*)da)) : _mm_load_ss(da);
                const __m512 s = _mm512_mul_ps(dw, _mm512_permutexvar_ps(half_idx, _mm512_castps128_ps512(dav)));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[t]);
            }
        }
        for (int t = 0; t < NT; ++t) res[t] = _mm512_reduce_add_ps(acc[t]);
    }
};

// ---- Q6_K -------------------------------------------------------------------------------------

struct Q6KAvx512 {
    using Block = block_q6_K;

    template <int NT>
    static void dot(const block_q6_K* row, int64_t nb, const ActBlocks& A, int64_t n, float* res) {
        const int64_t K = nb * QK_K;
        const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
        // qh bits for values 64h + 0..31 | 32..63 are bit pairs 0-1 | 2-3 (low and high half of the
        // broadcast qh), for 64h + 64..95 | 96..127 bit pairs 4-5 | 6-7: shift each to bits 4-5.
        // 16-bit shifts leak bits across the byte boundary only outside the 0x30 mask.
        const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
        const __m512i shr = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
        // After VPMADDUBSW, int16 lane i of code vector c covers values 64c + 2i, 2i+1: sub-block
        // 4c + i/8.
        __m512i sidx[4];
        for (int c = 0; c < 4; ++c) {
            alignas(64) int16_t idx[32];
            for (int i = 0; i < 32; ++i) idx[i] = (int16_t)(4 * c + i / 8);
            sidx[c] = _mm512_load_si512(idx);
        }
        __m512 acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; ++b) {
            if (NT == 1) prefetch_stream_block(row + b);
            const block_q6_K& x = row[b];
            __m512i c[4];
            for (int h = 0; h < 2; ++h) {
                const __m512i L = _mm512_loadu_si512(x.ql + 64 * h);
                const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(x.qh + 32 * h)));
                c[2 * h] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(_mm512_sllv_epi16(H, shl), m30));
                c[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                               _mm512_and_si512(_mm512_srlv_epi16(H, shr), m30));
            }
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)x.scales));
            __m512i S[4];
            for (int k = 0; k < 4; ++k) S[k] = _mm512_permutexvar_epi16(sidx[k], _mm512_castsi256_si512(sc16));
            const __m256i sc32 = _mm256_slli_epi16(sc16, 5);  // 32 * scale fits int16 (|.| <= 4096)
            const float dw = half_to_float(x.d);
            for (int t = 0; t < NT; ++t) {
                const int8_t* q = A.q.data() + (n + t) * K + b * QK_K;
                __m512i s0 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(c[0], _mm512_loadu_si512(q)), S[0]);
                __m512i s1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(c[1], _mm512_loadu_si512(q + 64)), S[1]);
                s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(c[2], _mm512_loadu_si512(q + 128)), S[2]);
                s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(c[3], _mm512_loadu_si512(q + 192)), S[3]);
                const __m256i bs = _mm256_loadu_si256((const __m256i*)(A.bsum.data() + (n + t) * (K / 16) + b * 16));
                const __m512i off = _mm512_zextsi256_si512(_mm256_madd_epi16(sc32, bs));
                const __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), off);
                const float s = dw * A.d[(size_t)((n + t) * nb + b)];
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(s), acc[t]);
            }
        }
        for (int t = 0; t < NT; ++t) res[t] = _mm512_reduce_add_ps(acc[t]);
    }
};

// ---- TQ2_0 ------------------------------------------------------------------------------------

// As in the I2_S kernel, a 32-byte chunk (128 values) is broadcast to both halves of a register
// and masked, not shifted: 0x03 | 0x0C select values 0..31 | 32..63 (as code | code*4), 0x30 |
// 0xC0 values 64..95 | 96..127 (as code*16 | code*64); sum removes the factors. A lane gains at
// most 4 * (3 * 64) * 128 per VPDPBUSD and two of them per block: int32 holds K/256 blocks of that
// for K < kTqMaxK.
struct Tq2Avx512 {
    using Block = block_tq2_0;
    using Acc = __m512i[2];

    template <int NT>
    static void add(const block_tq2_0& x, const int8_t* q, int64_t ldq, __m512i (*acc)[2]) {
        const __m512i mask_a = _mm512_inserti64x4(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C), 1);
        const __m512i mask_b = _mm512_inserti64x4(_mm512_set1_epi8(0x30), _mm256_set1_epi8((char)0xC0), 1);
        for (int c = 0; c < 2; ++c) {
            const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(x.qs + 32 * c)));
            const __m512i ca = _mm512_and_si512(v, mask_a), cb = _mm512_and_si512(v, mask_b);
            for (int t = 0; t < NT; ++t) {
                const int8_t* qc = q + t * ldq + 128 * c;
                acc[t][0] = _mm512_dpbusd_epi32(acc[t][0], ca, _mm512_loadu_si512(qc));
                acc[t][1] = _mm512_dpbusd_epi32(acc[t][1], cb, _mm512_loadu_si512(qc + 64));
            }
        }
    }

    // Each lane is a sum of multiples of its factor, so the arithmetic shifts are exact.
    static int32_t sum(const __m512i (&acc)[2]) {
        const __m512i un_a = _mm512_inserti64x4(_mm512_set1_epi32(0), _mm256_set1_epi32(2), 1);
        const __m512i un_b = _mm512_inserti64x4(_mm512_set1_epi32(4), _mm256_set1_epi32(6), 1);
        return _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_srav_epi32(acc[0], un_a), _mm512_srav_epi32(acc[1], un_b)));
    }

    static float half(uint16_t h) { return half_to_float(h); }
};

// ---- TQ1_0 ------------------------------------------------------------------------------------

// The 52 bytes qs, qh become the digit-0 bytes; multiplying a byte by 3 (two byte additions,
// wrapping mod 256 as the format wants) moves the next digit to the top, and the top digit of a
// byte v is (3v) >> 8, i.e. (v >= 86) + (v >= 171). A lane gains at most 4 * 2 * 128 per VPDPBUSD
// and five of them per block.
struct Tq1Avx512 {
    using Block = block_tq1_0;
    using Acc = __m512i;

    template <int NT>
    static void add(const block_tq1_0& x, const int8_t* p, int64_t ldp, __m512i* acc) {
        const __m512i one = _mm512_set1_epi8(1), t86 = _mm512_set1_epi8((char)86), t171 = _mm512_set1_epi8((char)171);
        __m512i v = _mm512_maskz_loadu_epi8((1ull << 52) - 1, x.qs);  // qs[48] and qh[4] are adjacent
        for (int i = 0; i < 5; ++i) {
            if (i > 0) v = _mm512_add_epi8(_mm512_add_epi8(v, v), v);
            __m512i code = _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(v, t86), one);
            code = _mm512_mask_add_epi8(code, _mm512_cmpge_epu8_mask(v, t171), code, one);
            for (int t = 0; t < NT; ++t)
                acc[t] = _mm512_dpbusd_epi32(acc[t], code, _mm512_loadu_si512(p + t * ldp + 64 * i));
        }
    }

    static int32_t sum(const __m512i& acc) { return _mm512_reduce_add_epi32(acc); }
    static float half(uint16_t h) { return half_to_float(h); }
};

}  // namespace

// The AVX-512 VNNI set; offered only where kernels_available() offers avx512vnni.
const QuantKernelSet& quant_kernels_avx512vnni() {
    static const QuantKernelSet set =
        quant_kernel_set<Q32Avx512<block_q8_0>, Q32Avx512<block_q4_0>, Q6KAvx512, Tq1Avx512, Tq2Avx512>("avx512vnni");
    return set;
}

}  // namespace bitnet

#endif  // x86
