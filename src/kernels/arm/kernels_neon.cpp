// NEON kernel sets for aarch64: "neon" (Armv8.0 Advanced SIMD, every aarch64 CPU) and, when this
// file is compiled with the dot-product extension (kernels_neon_dotprod.cpp includes it under
// -march=armv8.2-a+dotprod), "neon-dotprod" (SDOT: Cortex-A55/A75 and later, Neoverse N1 and
// later, Apple M1 and later). One source, two builds: the only difference is how I2_S codes meet
// int8 activations.
//
// Nothing here may run before dispatch.cpp has checked the CPU (HWCAP_ASIMDDP for the dotprod
// build), so every helper has internal linkage. On other targets the file is empty.
//
// I2_S decode: byte j of a 32-byte block holds values j, j+32, j+64, j+96 in bit pairs 7-6, 5-4,
// 3-2, 1-0, so shifting the block's two 16-byte halves right by 6, 4, 2, 0 and masking with 3
// gives the codes of 4 x 32 contiguous values, ready to meet 16 contiguous activations each. The
// codes (0..2) are used as signed bytes. Register tiles of 2 rows x 4 tokens (tiling.h) reuse each
// decoded vector across 4 tokens and each activation vector across 2 rows.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/tiling.h"
#include "util/common.h"

#if defined(__ARM_FEATURE_DOTPROD)
#define BITNET_NEON_SET_NAME "neon-dotprod"
#define BITNET_NEON_SET_FN kernels_neon_dotprod
#else
#define BITNET_NEON_SET_NAME "neon"
#define BITNET_NEON_SET_FN kernels_neon
#endif

namespace bitnet {

namespace {

// ---- activation quantization ----------------------------------------------------------------

// vrndnq_f32 rounds half to even, as torch.round; the scale keeps torch's two roundings (see
// kernels_ref.cpp). The absmax is taken over the bit patterns of |x| as unsigned integers: for
// finite values the same order (and result) as float max, and inf/NaN land above every finite
// pattern, so a row that is not all numbers is seen here as in the reference (see kernels.h).
void quantize_act_neon(const float* x, int64_t k, int8_t* q, float* scale, int32_t* qsum) {
    BITNET_ASSERT(k >= 1);
    const uint32x4_t abs_mask = vdupq_n_u32(0x7fffffffu);
    uint32x4_t vmax = vdupq_n_u32(0);
    int64_t i = 0;
    for (; i + 4 <= k; i += 4)
        vmax = vmaxq_u32(vmax, vandq_u32(vreinterpretq_u32_f32(vld1q_f32(x + i)), abs_mask));
    uint32_t amax_bits = vmaxvq_u32(vmax);
    for (; i < k; ++i) amax_bits = std::max(amax_bits, float_bits(x[i]) & 0x7fffffffu);
    if (amax_bits > kMaxFiniteBits) {
        std::memset(q, 0, (size_t)k);
        *scale = 0.0f;
        *qsum = 0;
        return;
    }
    const float amax = float_from_bits(amax_bits);
    const float s = (1.0f / std::max(amax, 1e-5f)) * 127.0f;

    const float32x4_t vs = vdupq_n_f32(s);
    const float32x4_t lo = vdupq_n_f32(-128.0f), hi = vdupq_n_f32(127.0f);
    int32x4_t vsum = vdupq_n_s32(0);
    auto quant4 = [&](const float* p) {
        const float32x4_t r = vrndnq_f32(vmulq_f32(vld1q_f32(p), vs));
        return vcvtq_s32_f32(vminq_f32(vmaxq_f32(r, lo), hi));  // exact: r is an integer in range
    };
    for (i = 0; i + 8 <= k; i += 8) {
        const int32x4_t a = quant4(x + i), b = quant4(x + i + 4);
        vsum = vaddq_s32(vsum, vaddq_s32(a, b));
        const int16x8_t h = vcombine_s16(vmovn_s32(a), vmovn_s32(b));  // values fit: no saturation needed
        vst1_s8(q + i, vmovn_s16(h));
    }
    int32_t sum = vaddvq_s32(vsum);
    for (; i < k; ++i) {
        const float r = std::min(127.0f, std::max(-128.0f, std::nearbyint(x[i] * s)));
        q[i] = (int8_t)r;
        sum += q[i];
    }
    *scale = s;
    *qsum = sum;
}

// ---- I2_S x int8 ----------------------------------------------------------------------------

// Codes of half h (bytes 16h..16h+15) of a block: c[p] holds values 32p + 16h .. 32p + 16h + 15.
struct Codes {
    int8x16_t c[4];
};

inline Codes decode_half(const uint8_t* block_half) {
    const uint8x16_t v = vld1q_u8(block_half);
    const uint8x16_t m = vdupq_n_u8(3);
    return {{vreinterpretq_s8_u8(vshrq_n_u8(v, 6)), vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 4), m)),
             vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 2), m)), vreinterpretq_s8_u8(vandq_u8(v, m))}};
}

#if defined(__ARM_FEATURE_DOTPROD)

// acc += Σ over one block half of code * activation, 4 products per int32 lane (SDOT).
inline void dot_half(int32x4_t& acc, const Codes& c, const int8_t* qb, int h) {
    for (int p = 0; p < 4; ++p) acc = vdotq_s32(acc, c.c[p], vld1q_s8(qb + 32 * p + 16 * h));
}

using Acc = int32x4_t;
inline Acc acc_zero() { return vdupq_n_s32(0); }
inline int32_t acc_sum(Acc a) { return vaddvq_s32(a); }
inline void acc_block_end(Acc&) {}

#else

// Plain NEON: widening multiplies into int16, widened into int32 once per block. A lane of the
// int16 sums gains 2 products per block half (|code * q| <= 2 * 128 = 256) per p, so at most
// 2 * 2 * 4 * 256 = 4096 per block: far inside int16.
struct Acc {
    int32x4_t a32;
    int16x8_t a16;
};
inline Acc acc_zero() { return {vdupq_n_s32(0), vdupq_n_s16(0)}; }
inline int32_t acc_sum(const Acc& a) { return vaddvq_s32(a.a32); }
inline void acc_block_end(Acc& a) {
    a.a32 = vpadalq_s16(a.a32, a.a16);
    a.a16 = vdupq_n_s16(0);
}
inline void dot_half(Acc& acc, const Codes& c, const int8_t* qb, int h) {
    for (int p = 0; p < 4; ++p) {
        const int8x16_t x = vld1q_s8(qb + 32 * p + 16 * h);
        acc.a16 = vmlal_s8(acc.a16, vget_low_s8(c.c[p]), vget_low_s8(x));
        acc.a16 = vmlal_high_s8(acc.a16, c.c[p], x);
    }
}

#endif

// out[t*ldo + r] = Σ_k code(W[r, k]) * q[t*ldq + k] for NR rows x NT tokens.
template <int NR, int NT>
inline void i2s_tile_neon(const uint8_t* w, int64_t K, const int8_t* q, int64_t ldq, int32_t* out,
                          int64_t ldo) {
    const int64_t rs = K / 4;
    Acc acc[NR][NT];
    for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = acc_zero();
    for (int64_t b = 0; b < K / I2S_BLOCK; ++b) {
        for (int h = 0; h < 2; ++h) {
            Codes c[NR];
            for (int r = 0; r < NR; ++r) c[r] = decode_half(w + r * rs + b * 32 + 16 * h);
            for (int t = 0; t < NT; ++t)
                for (int r = 0; r < NR; ++r) dot_half(acc[r][t], c[r], q + t * ldq + b * I2S_BLOCK, h);
        }
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) acc_block_end(acc[r][t]);
    }
    for (int t = 0; t < NT; ++t)
        for (int r = 0; r < NR; ++r) out[t * ldo + r] = acc_sum(acc[r][t]);
}

void i2s_gemm_neon(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N, int32_t* out,
                   int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(K % I2S_BLOCK == 0);
    tiled_gemm_2d<2, 4>(N, m0, m1, K / 4, [&](auto nr, auto nt, int64_t m, int64_t n) {
        i2s_tile_neon<decltype(nr)::value, decltype(nt)::value>(W + m * (K / 4), K, Q + n * ldq, ldq,
                                                                out + n * ldo + m, ldo);
    });
}

// ---- float weights x float activations ------------------------------------------------------

inline float32x4_t load4(const float* w) { return vld1q_f32(w); }
inline float32x4_t load4(const uint16_t* w) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w))); }
inline float load1(const float* w) { return *w; }
inline float load1(const uint16_t* w) { return fp16_to_fp32(*w); }

// res[t] = Σ_k w[k] * x[t*ldx + k] for NT tokens, with NT*U independent FMA chains.
template <int NT, typename WT>
inline void fdot_neon(const WT* w, int64_t K, const float* x, int64_t ldx, float* res) {
    // The same chains for every NT: a token's sum must not depend on how many tokens share its
    // tile, or logits would depend on the batch (four chains per token fit four tokens in 16 of the 32 q registers).
    constexpr int U = 4;
    float32x4_t acc[NT][U];
    for (int t = 0; t < NT; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = vdupq_n_f32(0.0f);
    int64_t k = 0;
    for (; k + 4 * U <= K; k += 4 * U) {
        for (int u = 0; u < U; ++u) {
            const float32x4_t wv = load4(w + k + 4 * u);
            for (int t = 0; t < NT; ++t) acc[t][u] = vfmaq_f32(acc[t][u], wv, vld1q_f32(x + t * ldx + k + 4 * u));
        }
    }
    for (; k + 4 <= K; k += 4) {
        const float32x4_t wv = load4(w + k);
        for (int t = 0; t < NT; ++t) acc[t][0] = vfmaq_f32(acc[t][0], wv, vld1q_f32(x + t * ldx + k));
    }
    for (int t = 0; t < NT; ++t) {
        for (int u = 1; u < U; ++u) acc[t][0] = vaddq_f32(acc[t][0], acc[t][u]);
        float s = vaddvq_f32(acc[t][0]);
        for (int64_t kk = k; kk < K; ++kk) s += load1(w + kk) * x[t * ldx + kk];
        res[t] = s;
    }
}

template <typename WT>
void fgemm_neon(const WT* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y, int64_t ldy,
                int64_t m0, int64_t m1) {
    tiled_gemm<float>(
        N, m0, m1, K * (int64_t)sizeof(float), [&](int64_t m) { return W + m * K; },
        [&](auto nt, const WT* row, int64_t n, float* res) {
            fdot_neon<decltype(nt)::value>(row, K, X + n * ldx, ldx, res);
        },
        Y, ldy);
}

void f32_gemm_neon(const float* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y, int64_t ldy,
                   int64_t m0, int64_t m1) {
    fgemm_neon(W, K, X, ldx, N, Y, ldy, m0, m1);
}

void f16_gemm_neon(const uint16_t* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                   int64_t ldy, int64_t m0, int64_t m1) {
    fgemm_neon(W, K, X, ldx, N, Y, ldy, m0, m1);
}

}  // namespace

// Only dispatch.cpp calls this; for the dotprod build, only after checking HWCAP_ASIMDDP.
const KernelSet& BITNET_NEON_SET_FN() {
    static const KernelSet set = {BITNET_NEON_SET_NAME, quantize_act_neon, i2s_gemm_neon, f32_gemm_neon,
                                  f16_gemm_neon};
    return set;
}

}  // namespace bitnet

#endif  // __aarch64__
