// AVX2 + FMA + F16C kernel set (Intel Haswell and later, AMD Zen and later).
//
// CMake compiles this file alone with -mavx2 -mfma -mf16c; nothing in it may run before
// dispatch.cpp has checked the CPU, so every helper has internal linkage (an inline function
// shared with other files could be merged with a copy compiled for another ISA). On a non-x86
// target the file is empty.
//
// Matmuls loop rows outermost inside a chunk of tokens whose activations stay in L2, and compute
// one weight row against a tile of up to 4 tokens, so each decoded weight vector is reused across
// the tile; for one token (GEMV) this streams the weight matrix exactly once.
#if defined(__x86_64__) || defined(__i386__)

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/tiling.h"
#include "kernels/x86/simd_x86.h"
#include "util/common.h"

namespace bitnet {

namespace {

inline uint32_t hmax_epu32(__m256i v) {
    __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(m);
}

// ---- activation quantization ----------------------------------------------------------------

// The absmax is taken over the bit patterns of |x| as unsigned integers: for finite values the
// same order (and the same result) as float max, and inf/NaN land above every finite pattern, so
// a row that is not all numbers is seen here as in the reference (see kernels.h).
void quantize_act_avx2(const float* x, int64_t k, int8_t* q, float* scale, int32_t* qsum) {
    BITNET_ASSERT(k >= 1);
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    __m256i vmax = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        vmax = _mm256_max_epu32(vmax, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i)), abs_mask));
    uint32_t amax_bits = hmax_epu32(vmax);
    for (; i < k; ++i) amax_bits = std::max(amax_bits, float_bits(x[i]) & 0x7fffffffu);
    if (amax_bits > kMaxFiniteBits) {
        std::memset(q, 0, (size_t)k);
        *scale = 0.0f;
        *qsum = 0;
        return;
    }
    const float amax = float_from_bits(amax_bits);
    // torch's `127 / t` is `t.reciprocal() * 127`: two roundings, as in kernels_ref.cpp.
    const float s = (1.0f / std::max(amax, 1e-5f)) * 127.0f;

    const __m256 vs = _mm256_set1_ps(s);
    const __m256 lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
    // packs_epi32/packs_epi16 interleave the two 128-bit lanes; this puts the dwords back in order.
    const __m256i unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i vsum = _mm256_setzero_si256();
    auto quant8 = [&](const float* p) {
        __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(p), vs),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    };
    for (i = 0; i + 32 <= k; i += 32) {
        const __m256i c0 = quant8(x + i), c1 = quant8(x + i + 8);
        const __m256i c2 = quant8(x + i + 16), c3 = quant8(x + i + 24);
        vsum = _mm256_add_epi32(vsum, _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3)));
        const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
        _mm256_storeu_si256((__m256i*)(q + i), _mm256_permutevar8x32_epi32(packed, unshuffle));
    }
    int32_t sum = hsum_epi32(vsum);
    for (; i < k; ++i) {
        const float r = std::min(127.0f, std::max(-128.0f, std::nearbyint(x[i] * s)));
        q[i] = (int8_t)r;
        sum += q[i];
    }
    *scale = s;
    *qsum = sum;
}

// ---- I2_S x int8 ----------------------------------------------------------------------------

// Blocks summed in int16 before widening to int32. maddubs multiplies unsigned codes (<= 2) by
// signed activations (>= -128) and adds pairs: |lane| <= 2 * 2 * 128 = 512; a block adds 4 such
// results per lane (<= 2048), so 15 blocks stay within 15 * 2048 = 30720 < 32767.
constexpr int64_t kI2sBlocksPerWiden = 15;

// res[t] = Σ_k code(row[k]) * q[t*ldq + k] for NT tokens.
template <int NT>
inline void i2s_dot_avx2(const uint8_t* row, int64_t K, const int8_t* q, int64_t ldq, int32_t* res) {
    const __m256i mask = _mm256_set1_epi8(3);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc32[NT];
    for (int t = 0; t < NT; ++t) acc32[t] = _mm256_setzero_si256();
    const int64_t nb = K / I2S_BLOCK;
    for (int64_t b0 = 0; b0 < nb; b0 += kI2sBlocksPerWiden) {
        const int64_t b1 = std::min(nb, b0 + kI2sBlocksPerWiden);
        __m256i acc16[NT];
        for (int t = 0; t < NT; ++t) acc16[t] = _mm256_setzero_si256();
        for (int64_t b = b0; b < b1; ++b) {
            if (NT == 1) prefetch_stream(row + b * 32);
            // Byte j of the block holds values j, j+32, j+64, j+96 in bit pairs 7-6 .. 1-0; the
            // 16-bit shifts drag bits across byte borders, the mask drops them again.
            const __m256i v = _mm256_loadu_si256((const __m256i*)(row + b * 32));
            const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(v, 6), mask);
            const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
            const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(v, 2), mask);
            const __m256i c3 = _mm256_and_si256(v, mask);
            for (int t = 0; t < NT; ++t) {
                const int8_t* qb = q + t * ldq + b * I2S_BLOCK;
                const __m256i p0 = _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i*)qb));
                const __m256i p1 = _mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i*)(qb + 32)));
                const __m256i p2 = _mm256_maddubs_epi16(c2, _mm256_loadu_si256((const __m256i*)(qb + 64)));
                const __m256i p3 = _mm256_maddubs_epi16(c3, _mm256_loadu_si256((const __m256i*)(qb + 96)));
                acc16[t] = _mm256_add_epi16(acc16[t], _mm256_add_epi16(_mm256_add_epi16(p0, p1),
                                                                       _mm256_add_epi16(p2, p3)));
            }
        }
        for (int t = 0; t < NT; ++t) acc32[t] = _mm256_add_epi32(acc32[t], _mm256_madd_epi16(acc16[t], ones));
    }
    for (int t = 0; t < NT; ++t) res[t] = hsum_epi32(acc32[t]);
}

void i2s_gemm_avx2(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                   int32_t* out, int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(K % I2S_BLOCK == 0);
    tiled_gemm<int32_t>(
        N, m0, m1, K, [&](int64_t m) { return W + m * (K / 4); },
        [&](auto nt, const uint8_t* row, int64_t n, int32_t* res) {
            i2s_dot_avx2<decltype(nt)::value>(row, K, Q + n * ldq, ldq, res);
        },
        out, ldo);
}

// ---- float weights x float activations ------------------------------------------------------

inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
inline __m256 load8(const uint16_t* w) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)w)); }
inline float load1(const float* w) { return *w; }
inline float load1(const uint16_t* w) { return _cvtsh_ss(*w); }

// res[t] = Σ_k w[k] * x[t*ldx + k] for NT tokens, with NT*U independent FMA chains (FMA latency
// is 4-5 cycles on two ports: one chain per token would leave the units mostly idle).
template <int NT, typename WT>
inline void fdot_avx2(const WT* w, int64_t K, const float* x, int64_t ldx, float* res) {
    // The same chains for every NT: a token's sum must not depend on how many tokens share its
    // tile, or logits would depend on the batch (two chains per token leave registers for four tokens (16 ymm in all)).
    constexpr int U = 2;
    __m256 acc[NT][U];
    for (int t = 0; t < NT; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * U <= K; k += 8 * U) {
        for (int u = 0; u < U; ++u) {
            const __m256 wv = load8(w + k + 8 * u);
            for (int t = 0; t < NT; ++t)
                acc[t][u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + k + 8 * u), acc[t][u]);
        }
    }
    for (; k + 8 <= K; k += 8) {
        const __m256 wv = load8(w + k);
        for (int t = 0; t < NT; ++t) acc[t][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + k), acc[t][0]);
    }
    for (int t = 0; t < NT; ++t) {
        for (int u = 1; u < U; ++u) acc[t][0] = _mm256_add_ps(acc[t][0], acc[t][u]);
        float s = hsum_ps(acc[t][0]);
        for (int64_t kk = k; kk < K; ++kk) s += load1(w + kk) * x[t * ldx + kk];
        res[t] = s;
    }
}

template <typename WT>
void fgemm_avx2(const WT* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                int64_t ldy, int64_t m0, int64_t m1) {
    tiled_gemm<float>(
        N, m0, m1, K * (int64_t)sizeof(float), [&](int64_t m) { return W + m * K; },
        [&](auto nt, const WT* row, int64_t n, float* res) {
            fdot_avx2<decltype(nt)::value>(row, K, X + n * ldx, ldx, res);
        },
        Y, ldy);
}

void f32_gemm_avx2(const float* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                   int64_t ldy, int64_t m0, int64_t m1) {
    fgemm_avx2(W, K, X, ldx, N, Y, ldy, m0, m1);
}

void f16_gemm_avx2(const uint16_t* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                   int64_t ldy, int64_t m0, int64_t m1) {
    fgemm_avx2(W, K, X, ldx, N, Y, ldy, m0, m1);
}

}  // namespace

// The AVX2 set; only dispatch.cpp calls this, and only after checking AVX2, FMA and F16C.
const KernelSet& kernels_avx2() {
    static const KernelSet set = {"avx2", quantize_act_avx2, i2s_gemm_avx2, f32_gemm_avx2,
                                  f16_gemm_avx2};
    return set;
}

}  // namespace bitnet

#endif  // x86
