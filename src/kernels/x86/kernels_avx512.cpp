// AVX-512 (F, BW, VL, DQ) + VNNI kernel set (Intel Ice Lake / Sapphire Rapids, AMD Zen 4 and
// later).
//
// CMake compiles this file alone with the AVX2 flags plus -mavx512f -mavx512bw -mavx512vl
// -mavx512dq -mavx512vnni; nothing in it may run before dispatch.cpp has checked the CPU, so every
// helper has internal linkage. On a non-x86 target the file is empty.
//
// The I2_S kernel feeds VPDPBUSD (unsigned bytes x signed activation bytes, four products summed
// into each int32 lane, no saturation) with 64 weight bytes that match 64 contiguous activations,
// decoded by masks that leave a known power-of-two factor per lane (see I2sDecode512). For a batch
// it works in register tiles of 4 rows x 4 tokens (tiling.h): 16 independent chains keep the unit
// issuing about one VPDPBUSD per cycle (Zen 4's peak: 64 multiply-adds per cycle), with about one
// load and one mask per three of them; it reaches ~200 GMAC/s per core, 85% of that peak. For one
// token (generation) it streams the matrix row by row, as DRAM bandwidth, not arithmetic, is the
// limit there. Tails of float rows use masked loads, so every K >= 1 runs
// fully vectorized.
#if defined(__x86_64__) || defined(__i386__)

#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/tiling.h"
#include "kernels/x86/simd_x86.h"
#include "util/common.h"

namespace bitnet {

namespace {

inline __mmask16 tail_mask16(int64_t n) { return (__mmask16)((1u << n) - 1u); }  // n < 16

// ---- activation quantization ----------------------------------------------------------------

// The absmax is taken over the bit patterns of |x| as unsigned integers: for finite values the
// same order (and the same result) as float max, and inf/NaN land above every finite pattern, so
// a row that is not all numbers is seen here as in the reference (see kernels.h).
void quantize_act_avx512(const float* x, int64_t k, int8_t* q, float* scale, int32_t* qsum) {
    BITNET_ASSERT(k >= 1);
    const int64_t kv = k / 16 * 16;
    const __mmask16 tail = tail_mask16(k - kv);
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    __m512i vmax = _mm512_setzero_si512();
    for (int64_t i = 0; i < kv; i += 16)
        vmax = _mm512_max_epu32(vmax, _mm512_and_si512(_mm512_loadu_si512(x + i), abs_mask));
    vmax = _mm512_max_epu32(vmax, _mm512_and_si512(_mm512_maskz_loadu_epi32(tail, x + kv), abs_mask));
    const uint32_t amax_bits = _mm512_reduce_max_epu32(vmax);
    if (amax_bits > kMaxFiniteBits) {
        std::memset(q, 0, (size_t)k);
        *scale = 0.0f;
        *qsum = 0;
        return;
    }
    const float amax = float_from_bits(amax_bits);
    // torch's `127 / t` is `t.reciprocal() * 127`: two roundings, as in kernels_ref.cpp.
    const float s = (1.0f / std::max(amax, 1e-5f)) * 127.0f;

    const __m512 vs = _mm512_set1_ps(s);
    const __m512 lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
    auto quant16 = [&](__m512 v) {
        const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r, lo), hi));
    };
    __m512i vsum = _mm512_setzero_si512();
    for (int64_t i = 0; i < kv; i += 16) {
        const __m512i c = quant16(_mm512_loadu_ps(x + i));
        vsum = _mm512_add_epi32(vsum, c);
        _mm_storeu_si128((__m128i*)(q + i), _mm512_cvtepi32_epi8(c));
    }
    if (tail) {
        const __m512i c = quant16(_mm512_maskz_loadu_ps(tail, x + kv));  // masked lanes give 0
        vsum = _mm512_add_epi32(vsum, c);
        _mm512_mask_cvtepi32_storeu_epi8(q + kv, tail, c);
    }
    *scale = s;
    *qsum = _mm512_reduce_add_epi32(vsum);
}

// ---- I2_S x int8 ----------------------------------------------------------------------------

// Codes of one 32-byte block (128 values) as two 64-byte VPDPBUSD operands that match 64
// contiguous activations each. The block is broadcast to both 256-bit halves; masking the low half
// with 0xC0 and the high half with 0x30 leaves values 0..31 | 32..63 as code*64 | code*16. Shifting
// every 16-bit lane left by 4 moves each byte's bits 3-0 to bits 7-4 (what crosses into the
// neighbouring byte lands in bits 3-0 and is masked off), so the same masks then leave values
// 64..95 | 96..127 with the same factors 64 | 16. Both operands carry one power of two per half,
// which one arithmetic shift per int32 lane removes exactly at the end.
struct I2sDecode512 {
    __m512i mask = _mm512_inserti64x4(_mm512_set1_epi8((char)0xC0), _mm256_set1_epi8(0x30), 1);
    __m512i lo(__m512i v) const { return _mm512_and_si512(v, mask); }
    __m512i hi(__m512i v) const { return _mm512_and_si512(_mm512_slli_epi16(v, 4), mask); }
};

// Sums the 16 int32 lanes of each of a, b, c, d into lanes 0..3 of the result, first removing the
// decode factors (int32 lanes 0-7 come from the code*64 half, lanes 8-15 from the code*16 half).
// Each lane is a sum of multiples of its factor, so the arithmetic shift is exact.
inline __m128i i2s_reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    // Per 128-bit lane: partial sums of a, b, c, d; 128-bit lanes 0-1 hold the code*64 half.
    __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    s = _mm512_srav_epi32(s, _mm512_inserti64x4(_mm512_set1_epi32(6), _mm256_set1_epi32(4), 1));
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// out[t*ldo + r] = Σ_k code(W[r, k]) * q[t*ldq + k] for NR rows x NT tokens: NR*NT independent
// VPDPBUSD chains, each decoded weight vector used NT times, each activation vector NR times.
template <int NR, int NT>
inline void i2s_tile_avx512(const uint8_t* w, int64_t K, const int8_t* q, int64_t ldq,
                            int32_t* out, int64_t ldo) {
    static_assert(NR >= 1 && NR <= 4 && NT >= 1);
    const I2sDecode512 dec;
    const int64_t rs = K / 4;
    __m512i acc[NR][NT];
    for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_si512();
    for (int64_t b = 0; b < K / I2S_BLOCK; ++b) {
        __m512i v[NR];
        for (int r = 0; r < NR; ++r)
            v[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(w + r * rs + b * 32)));
        for (int t = 0; t < NT; ++t) {
            const __m512i x = _mm512_loadu_si512(q + t * ldq + b * I2S_BLOCK);
            for (int r = 0; r < NR; ++r) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], dec.lo(v[r]), x);
        }
        for (int t = 0; t < NT; ++t) {
            const __m512i x = _mm512_loadu_si512(q + t * ldq + b * I2S_BLOCK + 64);
            for (int r = 0; r < NR; ++r) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], dec.hi(v[r]), x);
        }
    }
    for (int t = 0; t < NT; ++t) {
        __m512i rows[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                           _mm512_setzero_si512()};
        for (int r = 0; r < NR; ++r) rows[r] = acc[r][t];
        const __m128i s = i2s_reduce4(rows[0], rows[1], rows[2], rows[3]);
        if constexpr (NR == 4) _mm_storeu_si128((__m128i*)(out + t * ldo), s);
        else _mm_mask_storeu_epi32(out + t * ldo, (__mmask8)((1u << NR) - 1u), s);
    }
}

// GEMV: one row at a time, so the matrix is read as one sequential stream (the 4-row tiles of the
// GEMM, four interleaved streams, lose bandwidth here), with four independent VPDPBUSD chains (two
// blocks x two mask pairs) to cover its latency. One token is bound by memory and by the few
// instructions per weight byte, so this path decodes without the shift: the second operand takes
// masks 0x0C | 0x03 (values 64..95 | 96..127 as code*4 | code) and has its own factors. The
// stream is prefetched a page ahead (prefetch_stream).
int32_t i2s_dot_row_avx512(const uint8_t* w, int64_t K, const int8_t* q) {
    const __m512i mask_a = _mm512_inserti64x4(_mm512_set1_epi8((char)0xC0), _mm256_set1_epi8(0x30), 1);
    const __m512i mask_b = _mm512_inserti64x4(_mm512_set1_epi8(0x0C), _mm256_set1_epi8(0x03), 1);
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                      _mm512_setzero_si512()};
    const int64_t nb = K / I2S_BLOCK;
    auto block = [&](int64_t b, int a) {
        const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(w + b * 32)));
        acc[a] = _mm512_dpbusd_epi32(acc[a], _mm512_and_si512(v, mask_a), _mm512_loadu_si512(q + b * I2S_BLOCK));
        acc[a + 1] = _mm512_dpbusd_epi32(acc[a + 1], _mm512_and_si512(v, mask_b),
                                         _mm512_loadu_si512(q + b * I2S_BLOCK + 64));
    };
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        prefetch_stream(w + b * 32);
        block(b, 0);
        block(b + 1, 2);
    }
    if (b < nb) block(b, 0);
    // Each lane is a sum of multiples of its factor (64 | 16 for a, 4 | 1 for b): exact shifts.
    const __m512i sa = _mm512_srav_epi32(_mm512_add_epi32(acc[0], acc[2]),
                                         _mm512_inserti64x4(_mm512_set1_epi32(6), _mm256_set1_epi32(4), 1));
    const __m512i sb = _mm512_srav_epi32(_mm512_add_epi32(acc[1], acc[3]),
                                         _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(0), 1));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(sa, sb));
}

void i2s_gemm_avx512(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                     int32_t* out, int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(K % I2S_BLOCK == 0);
    // A lane gains at most 2 * 4 * (2*64) * 128 = 2^17 in magnitude per block: int32 holds K/128
    // blocks of that for K < 2^21.
    BITNET_ASSERT(K < (int64_t(1) << 21));
    if (N == 1) {
        for (int64_t m = m0; m < m1; ++m) out[m] = i2s_dot_row_avx512(W + m * (K / 4), K, Q);
        return;
    }
    tiled_gemm_2d<4, 4>(N, m0, m1, K / 4, [&](auto nr, auto nt, int64_t m, int64_t n) {
        i2s_tile_avx512<decltype(nr)::value, decltype(nt)::value>(W + m * (K / 4), K, Q + n * ldq, ldq,
                                                                  out + n * ldo + m, ldo);
    });
}

// ---- float weights x float activations ------------------------------------------------------

inline __m512 load16(const float* w) { return _mm512_loadu_ps(w); }
inline __m512 load16(const uint16_t* w) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)w)); }
inline __m512 load16(const float* w, __mmask16 m) { return _mm512_maskz_loadu_ps(m, w); }
inline __m512 load16(const uint16_t* w, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w)); }

// res[t] = Σ_k w[k] * x[t*ldx + k] for NT tokens, with NT*U independent FMA chains (FMA latency
// is 4 cycles on two ports: one chain per token would leave the units mostly idle).
template <int NT, typename WT>
inline void fdot_avx512(const WT* w, int64_t K, const float* x, int64_t ldx, float* res) {
    // The same chains for every NT: a token's sum must not depend on how many tokens share its
    // tile, or logits would depend on the batch (four chains per token fit four tokens in 16 of the 32 zmm registers).
    constexpr int U = 4;
    __m512 acc[NT][U];
    for (int t = 0; t < NT; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 * U <= K; k += 16 * U) {
        for (int u = 0; u < U; ++u) {
            const __m512 wv = load16(w + k + 16 * u);
            for (int t = 0; t < NT; ++t)
                acc[t][u] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * ldx + k + 16 * u), acc[t][u]);
        }
    }
    for (; k + 16 <= K; k += 16) {
        const __m512 wv = load16(w + k);
        for (int t = 0; t < NT; ++t) acc[t][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * ldx + k), acc[t][0]);
    }
    if (k < K) {
        const __mmask16 m = tail_mask16(K - k);
        const __m512 wv = load16(w + k, m);
        for (int t = 0; t < NT; ++t)
            acc[t][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + t * ldx + k), acc[t][0]);
    }
    for (int t = 0; t < NT; ++t) {
        for (int u = 1; u < U; ++u) acc[t][0] = _mm512_add_ps(acc[t][0], acc[t][u]);
        res[t] = _mm512_reduce_add_ps(acc[t][0]);
    }
}

template <typename WT>
void fgemm_avx512(const WT* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                  int64_t ldy, int64_t m0, int64_t m1) {
    tiled_gemm<float>(
        N, m0, m1, K * (int64_t)sizeof(float), [&](int64_t m) { return W + m * K; },
        [&](auto nt, const WT* row, int64_t n, float* res) {
            fdot_avx512<decltype(nt)::value>(row, K, X + n * ldx, ldx, res);
        },
        Y, ldy);
}

void f32_gemm_avx512(const float* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                     int64_t ldy, int64_t m0, int64_t m1) {
    fgemm_avx512(W, K, X, ldx, N, Y, ldy, m0, m1);
}

void f16_gemm_avx512(const uint16_t* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                     int64_t ldy, int64_t m0, int64_t m1) {
    fgemm_avx512(W, K, X, ldx, N, Y, ldy, m0, m1);
}

}  // namespace

// The AVX-512 VNNI set; only dispatch.cpp calls this, and only after checking the CPU and OS.
const KernelSet& kernels_avx512vnni() {
    static const KernelSet set = {"avx512vnni", quantize_act_avx512, i2s_gemm_avx512,
                                  f32_gemm_avx512, f16_gemm_avx512};
    return set;
}

}  // namespace bitnet

#endif  // x86
