// AVX2 + FMA + F16C kernels of the llama.cpp block types (Intel Haswell, AMD Zen 1 and later); see
// quants.h for the contracts.
//
// CMake compiles this file alone with -mavx2 -mfma -mf16c; quant_kernels_available offers it only
// where kernels_available offers avx2, so everything but the accessor has internal linkage. On a
// non-x86 target the file is empty. It holds the block kernels; the gemm drivers around them are
// quants_tiling.h's, the same for every ISA.
//
// Products of unsigned by signed bytes go through VPMADDUBSW (int16 pairs) and VPMADDWD (int32).
// Q8_0/Q4_0 weights are signed, so VPSIGNB moves the weight's sign onto the activation and takes
// |w| (as llama.cpp does): a pair is at most 2 * 128 * 127 < 2^15, no saturation. Q6_K codes are
// below 64 and the ternary codes below 3, so their pairs stay far from saturation too.
#if defined(__x86_64__) || defined(__i386__)

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/quants_tiling.h"
#include "kernels/x86/simd_x86.h"
#include "util/common.h"

namespace bitnet {

namespace {

// unsigned ge: 0xFF in the bytes where v >= t
inline __m256i ge_epu8(__m256i v, __m256i t) { return _mm256_cmpeq_epi8(_mm256_max_epu8(v, t), v); }

// ---- Q8_0 / Q4_0 ------------------------------------------------------------------------------

inline __m256i q32_weights(const block_q8_0& x) { return _mm256_loadu_si256((const __m256i*)x.qs); }

inline __m256i q32_weights(const block_q4_0& x) {
    const __m128i v = _mm_loadu_si128((const __m128i*)x.qs);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
    return _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
}

template <typename BlockType>
struct Q32Avx2 {
    using Block = BlockType;

    template <int NT>
    static void dot(const Block* row, int64_t nb, const ActBlocks& A, int64_t n, float* res) {
        const int64_t K = nb * QK8_0;
        const __m256i ones = _mm256_set1_epi16(1);
        __m256 acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; ++b) {
            if (NT == 1) prefetch_stream_block(row + b);
            const __m256i w = q32_weights(row[b]);
            const __m256i aw = _mm256_sign_epi8(w, w);  // |w|; -128 stays 0x80 = 128 unsigned
            const float dw = half_to_float(row[b].d);
            for (int t = 0; t < NT; ++t) {
                const __m256i a = _mm256_loadu_si256((const __m256i*)(A.q.data() + (n + t) * K + b * QK8_0));
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(a, w)), ones);
                const __m256 s = _mm256_set1_ps(dw * A.d[(size_t)((n + t) * nb + b)]);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[t]);
            }
        }
        for (int t = 0; t < NT; ++t) res[t] = hsum_ps(acc[t]);
    }
};

// ---- Q6_K -------------------------------------------------------------------------------------

struct Q6KAvx2 {
    using Block = block_q6_K;

    template <int NT>
    static void dot(const block_q6_K* row, int64_t nb, const ActBlocks& A, int64_t n, float* res) {
        const int64_t K = nb * QK_K;
        const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
        __m256 acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; ++b) {
            if (NT == 1) prefetch_stream_block(row + b);
            const block_q6_K& x = row[b];
            // c[4h + j]: values 128h + 32j .. +32 (see block_q6_K); the 16-bit shifts move qh's bit
            // pair j to bits 4-5 and leak across bytes only outside the 0x30 mask.
            __m256i c[8];
            for (int h = 0; h < 2; ++h) {
                const __m256i L0 = _mm256_loadu_si256((const __m256i*)(x.ql + 64 * h));
                const __m256i L1 = _mm256_loadu_si256((const __m256i*)(x.ql + 64 * h + 32));
                const __m256i H = _mm256_loadu_si256((const __m256i*)(x.qh + 32 * h));
                c[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
                c[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
                c[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(H, m30));
                c[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
            }
            // int16 lane i of a VPMADDUBSW result covers values 2i, 2i+1: lanes 0..7 sub-block 2v,
            // lanes 8..15 sub-block 2v+1 of code vector v.
            __m256i S[8];
            for (int v = 0; v < 8; ++v)
                S[v] = _mm256_set_m128i(_mm_set1_epi16(x.scales[2 * v + 1]), _mm_set1_epi16(x.scales[2 * v]));
            const __m256i sc32 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)x.scales)), 5);
            const float dw = half_to_float(x.d);
            for (int t = 0; t < NT; ++t) {
                const int8_t* q = A.q.data() + (n + t) * K + b * QK_K;
                // a lane gains at most 2 * (2 * 63 * 127) * 128 per step: four steps fit int32 easily
                __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
                for (int v = 0; v < 8; v += 2) {
                    const __m256i p0 = _mm256_maddubs_epi16(c[v], _mm256_loadu_si256((const __m256i*)(q + 32 * v)));
                    const __m256i p1 = _mm256_maddubs_epi16(c[v + 1], _mm256_loadu_si256((const __m256i*)(q + 32 * v + 32)));
                    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, S[v]));
                    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, S[v + 1]));
                }
                const __m256i bs = _mm256_loadu_si256((const __m256i*)(A.bsum.data() + (n + t) * (K / 16) + b * 16));
                const __m256i isum = _mm256_sub_epi32(_mm256_add_epi32(s0, s1), _mm256_madd_epi16(sc32, bs));
                const __m256 s = _mm256_set1_ps(dw * A.d[(size_t)((n + t) * nb + b)]);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc[t]);
            }
        }
        for (int t = 0; t < NT; ++t) res[t] = hsum_ps(acc[t]);
    }
};

// ---- TQ2_0 / TQ1_0 ----------------------------------------------------------------------------

// Both accumulate int32 lanes, each gaining at most 2 * 5120 per block (the int16 sums below):
// K < kTqMaxK keeps them far from overflow.
struct TqAvx2 {
    using Acc = __m256i;
    static int32_t sum(const Acc& acc) { return hsum_epi32(acc); }
    static float half(uint16_t h) { return half_to_float(h); }
};

struct Tq2Avx2 : TqAvx2 {
    using Block = block_tq2_0;

    // Eight VPMADDUBSW results of at most 2 * 2 * 128 each are summed in int16 (<= 4096).
    template <int NT>
    static void add(const block_tq2_0& x, const int8_t* q, int64_t ldq, __m256i* acc) {
        const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
        __m256i p[NT];
        for (int t = 0; t < NT; ++t) p[t] = _mm256_setzero_si256();
        for (int c = 0; c < 2; ++c) {
            const __m256i v = _mm256_loadu_si256((const __m256i*)(x.qs + 32 * c));
            for (int l = 0; l < 4; ++l) {
                const __m256i code = _mm256_and_si256(_mm256_srli_epi16(v, 2 * l), m3);
                for (int t = 0; t < NT; ++t) {
                    const __m256i a = _mm256_loadu_si256((const __m256i*)(q + t * ldq + 128 * c + 32 * l));
                    p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(code, a));
                }
            }
        }
        for (int t = 0; t < NT; ++t) acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p[t], ones));
    }
};

struct Tq1Avx2 : TqAvx2 {
    using Block = block_tq1_0;

    // The 52 bytes qs, qh (zero after) are the digit-0 bytes; multiplying by 3 (byte additions
    // wrapping mod 256, as the format wants) brings up the next digit; the top digit of v is
    // (3v) >> 8, i.e. (v >= 86) + (v >= 171). Ten VPMADDUBSW results of at most 2 * 2 * 128 sum to
    // <= 5120 in int16.
    template <int NT>
    static void add(const block_tq1_0& x, const int8_t* p, int64_t ldp, __m256i* acc) {
        const __m256i t86 = _mm256_set1_epi8((char)86), t171 = _mm256_set1_epi8((char)171);
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i va = _mm256_loadu_si256((const __m256i*)x.qs);
        // qs[32..48) and qh[0..4): 5 dwords; the masked load reads nothing past the block
        __m256i vb = _mm256_maskload_epi32((const int*)(x.qs + 32), _mm256_set_epi32(0, 0, 0, -1, -1, -1, -1, -1));
        __m256i s[NT];
        for (int t = 0; t < NT; ++t) s[t] = _mm256_setzero_si256();
        for (int i = 0; i < 5; ++i) {
            if (i > 0) {
                va = _mm256_add_epi8(_mm256_add_epi8(va, va), va);
                vb = _mm256_add_epi8(_mm256_add_epi8(vb, vb), vb);
            }
            // 0 - (v >= 86 ? -1 : 0) - (v >= 171 ? -1 : 0)
            const __m256i ca = _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), ge_epu8(va, t86)), ge_epu8(va, t171));
            const __m256i cb = _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), ge_epu8(vb, t86)), ge_epu8(vb, t171));
            for (int t = 0; t < NT; ++t) {
                const int8_t* pt = p + t * ldp + 64 * i;
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(ca, _mm256_loadu_si256((const __m256i*)pt)));
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(cb, _mm256_loadu_si256((const __m256i*)(pt + 32))));
            }
        }
        for (int t = 0; t < NT; ++t) acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(s[t], ones));
    }
};

}  // namespace

// The AVX2 set; offered only where kernels_available() offers avx2.
const QuantKernelSet& quant_kernels_avx2() {
    static const QuantKernelSet set =
        quant_kernel_set<Q32Avx2<block_q8_0>, Q32Avx2<block_q4_0>, Q6KAvx2, Tq1Avx2, Tq2Avx2>("avx2");
    return set;
}

}  // namespace bitnet

#endif  // x86
