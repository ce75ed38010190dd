// AVX-512 (F, BW, VL, DQ) + VNNI kernel set (Intel Ice Lake / Sapphire Rapids, AMD Zen 4 and
// later).
//
// CMake compiles this file alone with the AVX2 flags plus -mavx512f -mavx512bw -mavx512vl
// -mavx512dq -mavx512vnni; nothing in it may run before dispatch.cpp has checked the CPU, so every
// helper has internal linkage. On a non-x86 target the file is empty.
//
// The I2_S kernel feeds VPDPBUSD (unsigned bytes x signed activation bytes, four products summed
// into each int32 lane, no saturation) with 64 weight bytes that match 64 contiguous activations:
// a 32-byte block is broadcast to both halves of a zmm register and masked, not shifted, with
// 0xC0 in the low half and 0x30 in the high half (values 0..31 | 32..63 of the block, as code*64
// | code*16), then with 0x0C | 0x03 (values 64..95 | 96..127, as code*4 | code). Every lane of an
// accumulator thus carries one known power-of-two factor, removed exactly by one arithmetic shift
// per lane at the end; this saves the two shifts per block the plain decode needs. Tails of float
// rows use masked loads, so every K >= 1 runs fully vectorized.
#if defined(__x86_64__) || defined(__i386__)

// GCC 12 reports its own _mm512_undefined_* placeholders (used by cvtph_ps, the reduce_*
// helpers, ...) as uninitialized once inlined; the warning is located in the header, so silencing
// it here covers those false positives and nothing in this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>

#include "kernels/kernels.h"
#include "kernels/tiling.h"
#include "util/common.h"

namespace bitnet {

namespace {

inline __mmask16 tail_mask16(int64_t n) { return (__mmask16)((1u << n) - 1u); }  // n < 16

// ---- activation quantization ----------------------------------------------------------------

// Input must be finite (max of a NaN is not defined the same way by every ISA).
void quantize_act_avx512(const float* x, int64_t k, int8_t* q, float* scale, int32_t* qsum) {
    BITNET_ASSERT(k >= 1);
    const int64_t kv = k / 16 * 16;
    const __mmask16 tail = tail_mask16(k - kv);
    __m512 vmax = _mm512_setzero_ps();
    for (int64_t i = 0; i < kv; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, x + kv)));
    const float amax = _mm512_reduce_max_ps(vmax);
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

// res[t] = Σ_k code(row[k]) * q[t*ldq + k] for NT tokens. Two blocks per step into four
// accumulators per token (block parity x mask pair), so even one token has four independent
// VPDPBUSD chains.
template <int NT>
inline void i2s_dot_avx512(const uint8_t* row, int64_t K, const int8_t* q, int64_t ldq, int32_t* res) {
    // Bytes 0..31 (the low 256 bits) take the first mask, bytes 32..63 the second.
    const __m512i mask_a = _mm512_inserti64x4(_mm512_set1_epi8((char)0xC0), _mm256_set1_epi8(0x30), 1);
    const __m512i mask_b = _mm512_inserti64x4(_mm512_set1_epi8(0x0C), _mm256_set1_epi8(0x03), 1);
    // Undo code*64 | code*16 and code*4 | code: int32 lanes 0-7 are the low half, 8-15 the high.
    const __m512i unscale_a = _mm512_inserti64x4(_mm512_set1_epi32(6), _mm256_set1_epi32(4), 1);
    const __m512i unscale_b = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(0), 1);
    __m512i acc[NT][4];
    for (int t = 0; t < NT; ++t)
        for (int a = 0; a < 4; ++a) acc[t][a] = _mm512_setzero_si512();
    auto block = [&](int64_t b, int a) {
        const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(row + b * 32)));
        const __m512i ca = _mm512_and_si512(v, mask_a);
        const __m512i cb = _mm512_and_si512(v, mask_b);
        for (int t = 0; t < NT; ++t) {
            const int8_t* qb = q + t * ldq + b * I2S_BLOCK;
            acc[t][a] = _mm512_dpbusd_epi32(acc[t][a], ca, _mm512_loadu_si512(qb));
            acc[t][a + 1] = _mm512_dpbusd_epi32(acc[t][a + 1], cb, _mm512_loadu_si512(qb + 64));
        }
    };
    // A lane gains at most 4 * (2*64) * 128 = 65536 in magnitude per block: int32 holds K/128
    // blocks of that for K < 2^22.
    BITNET_ASSERT(K < (int64_t(1) << 22));
    const int64_t nb = K / I2S_BLOCK;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        block(b, 0);
        block(b + 1, 2);
    }
    if (b < nb) block(b, 0);
    for (int t = 0; t < NT; ++t) {
        // Each lane is a sum of multiples of its factor, so the arithmetic shifts are exact.
        const __m512i sa = _mm512_srav_epi32(_mm512_add_epi32(acc[t][0], acc[t][2]), unscale_a);
        const __m512i sb = _mm512_srav_epi32(_mm512_add_epi32(acc[t][1], acc[t][3]), unscale_b);
        res[t] = _mm512_reduce_add_epi32(_mm512_add_epi32(sa, sb));
    }
}

void i2s_gemm_avx512(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                     int32_t* out, int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(K % I2S_BLOCK == 0);
    tiled_gemm<int32_t>(
        N, m0, m1, K, [&](int64_t m) { return W + m * (K / 4); },
        [&](auto nt, const uint8_t* row, int64_t n, int32_t* res) {
            i2s_dot_avx512<decltype(nt)::value>(row, K, Q + n * ldq, ldq, res);
        },
        out, ldo);
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
    constexpr int U = NT == 1 ? 4 : 2;
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
