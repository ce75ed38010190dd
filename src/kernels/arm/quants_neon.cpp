// NEON kernels of the llama.cpp block types for aarch64; see quants.h for the contracts. One
// source, two builds, as kernels_neon.cpp: "neon" (Armv8.0 Advanced SIMD, every aarch64 CPU) and,
// compiled again by quants_neon_dotprod.cpp under -march=armv8.2-a+dotprod, "neon-dotprod" (SDOT).
// Only the int8 products differ between them: dot16, q6_K_pair and the ternary kernels' TqPart.
//
// Nothing here may run before quant_kernels_available has seen kernels_available offer the ISA
// (HWCAP_ASIMDDP for the dotprod build), so everything but the accessor has internal linkage. On
// other targets the file is empty. It holds the block kernels; the gemm drivers around them are
// quants_tiling.h's, the same for every ISA.
//
// All weights meet the activations as signed bytes: Q8_0 as stored, Q4_0 and Q6_K with their
// offsets (8, 32) taken off the codes when a block is decoded, the ternary codes 0/1/2 as they
// are. Without SDOT a widening multiply (SMULL/SMLAL) sums two products per int16 lane and SADALP
// widens pairs into int32; the bounds that keep the int16 sums exact are stated where they are
// summed.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cstring>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/quants_tiling.h"
#include "util/common.h"

#if defined(__ARM_FEATURE_DOTPROD)
#define BITNET_QUANT_NEON_SET_NAME "neon-dotprod"
#define BITNET_QUANT_NEON_SET_FN quant_kernels_neon_dotprod
#else
#define BITNET_QUANT_NEON_SET_NAME "neon"
#define BITNET_QUANT_NEON_SET_FN quant_kernels_neon
#endif

namespace bitnet {

namespace {

// FCVT from half precision is Armv8.0: exact, and no call to types.cpp's portable conversion.
inline float half_to_float(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// acc + the 16 products w[i] * q[i], 4 to an int32 lane. Without SDOT two products share an int16
// lane first: |w * q| <= 128 * 127 (activations of ActBlocks are within ±127), so two sum to at
// most 32512 < 2^15.
inline int32x4_t dot16(int32x4_t acc, int8x16_t w, int8x16_t q) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, w, q);
#else
    return vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(q)), w, q));
#endif
}

// ---- Q8_0 / Q4_0 ------------------------------------------------------------------------------

inline void q32_weights(const block_q8_0& x, int8x16_t& w0, int8x16_t& w1) {
    w0 = vld1q_s8(x.qs);
    w1 = vld1q_s8(x.qs + 16);
}

inline void q32_weights(const block_q4_0& x, int8x16_t& w0, int8x16_t& w1) {
    const uint8x16_t v = vld1q_u8(x.qs);
    const int8x16_t eight = vdupq_n_s8(8);
    w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), eight);
    w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
}

template <typename BlockType>
struct Q32Neon {
    using Block = BlockType;

    // The integer product of one block's weights w0, w1 with 32 activations, in 4 int32 lanes.
    static int32x4_t block_dot(int8x16_t w0, int8x16_t w1, const int8_t* q) {
        return dot16(dot16(vdupq_n_s32(0), w0, vld1q_s8(q)), w1, vld1q_s8(q + 16));
    }

    // Blocks go four at a time: their lane sums fold into one vector (a lane per block) that meets
    // the four scales with one convert and one FMA, instead of four of each.
    template <int NT>
    static void dot(const Block* row, int64_t nb, const ActBlocks& A, int64_t n, float* res) {
        const int64_t K = nb * QK8_0;
        float32x4_t acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = vdupq_n_f32(0.0f);
        int64_t b = 0;
        for (; b + 4 <= nb; b += 4) {
            int8x16_t w[4][2];
            for (int i = 0; i < 4; ++i) q32_weights(row[b + i], w[i][0], w[i][1]);
            const uint16x4_t dh = {row[b].d, row[b + 1].d, row[b + 2].d, row[b + 3].d};
            const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(dh));
            for (int t = 0; t < NT; ++t) {
                const int8_t* q = A.q.data() + (n + t) * K + b * QK8_0;
                int32x4_t p[4];
                for (int i = 0; i < 4; ++i) p[i] = block_dot(w[i][0], w[i][1], q + i * QK8_0);
                // |a block's product| <= 32 * 128 * 127 < 2^24: the conversion is exact
                const int32x4_t s = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
                const float32x4_t da = vld1q_f32(A.d.data() + (n + t) * nb + b);
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_f32(dw, da));
            }
        }
        for (int t = 0; t < NT; ++t) res[t] = vaddvq_f32(acc[t]);
        for (; b < nb; ++b) {
            int8x16_t w0, w1;
            q32_weights(row[b], w0, w1);
            const float dw = half_to_float(row[b].d);
            for (int t = 0; t < NT; ++t) {
                const int32_t s = vaddvq_s32(block_dot(w0, w1, A.q.data() + (n + t) * K + b * QK8_0));
                res[t] += dw * A.d[(size_t)((n + t) * nb + b)] * (float)s;
            }
        }
    }
};

// ---- Q6_K -------------------------------------------------------------------------------------

// acc + sc0 * (c0 . q[0..16)) + sc1 * (c1 . q[16..32)): two 16-value sub-blocks with their scales.
inline int32x4_t q6_K_pair(int32x4_t acc, int8x16_t c0, int8x16_t c1, const int8_t* q, int8_t sc0, int8_t sc1) {
#if defined(__ARM_FEATURE_DOTPROD)
    const int32x4_t zero = vdupq_n_s32(0);
    acc = vmlaq_n_s32(acc, vdotq_s32(zero, c0, vld1q_s8(q)), sc0);
    return vmlaq_n_s32(acc, vdotq_s32(zero, c1, vld1q_s8(q + 16)), sc1);
#else
    // |code - 32| <= 32: an int16 lane of p holds two products (<= 2 * 32 * 127), a lane of the
    // pairwise sum four (<= 16256 < 2^15); lanes 0-3 are sub-block 0, lanes 4-7 sub-block 1.
    const int8x16_t q0 = vld1q_s8(q), q1 = vld1q_s8(q + 16);
    const int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(c0), vget_low_s8(q0)), c0, q0);
    const int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(c1), vget_low_s8(q1)), c1, q1);
    const int16x8_t pp = vpaddq_s16(p0, p1);
    return vmlal_high_n_s16(vmlal_n_s16(acc, vget_low_s16(pp), sc0), pp, sc1);
#endif
}

struct Q6KNeon {
    using Block = block_q6_K;

    // The block is decoded 32 values (two sub-blocks) at a time and each pair meets every token
    // before the next is decoded, so the codes take 2 registers, not 16, beside NT accumulators.
    // An int32 lane gains at most 16 * 4 * 32 * 127 * 128 < 2^25 per block, which vcvtq rounds
    // at worst once, like any float step of the sum.
    template <int NT>
    static void dot(const block_q6_K* row, int64_t nb, const ActBlocks& A, int64_t n, float* res) {
        const int64_t K = nb * QK_K;
        const uint8x16_t m4 = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
        const int8x16_t m32 = vdupq_n_s8(32);
        float32x4_t acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = vdupq_n_f32(0.0f);
        for (int64_t b = 0; b < nb; ++b) {
            const block_q6_K& x = row[b];
            int32x4_t isum[NT];
            for (int t = 0; t < NT; ++t) isum[t] = vdupq_n_s32(0);
            for (int h = 0; h < 2; ++h) {
                for (int j = 0; j < 4; ++j) {
                    // values 128h + 32j + l, l < 32 (see block_q6_K); the variable shift (left by
                    // 4 - 2j, right when negative) brings qh's bit pair j to bits 4-5
                    const int8x16_t hs = vdupq_n_s8((int8_t)(4 - 2 * j));
                    int8x16_t c[2];
                    for (int k = 0; k < 2; ++k) {
                        const uint8x16_t L = vld1q_u8(x.ql + 64 * h + 32 * (j & 1) + 16 * k);
                        const uint8x16_t H = vld1q_u8(x.qh + 32 * h + 16 * k);
                        const uint8x16_t lo = (j & 2) ? vshrq_n_u8(L, 4) : vandq_u8(L, m4);
                        const uint8x16_t hi = vandq_u8(vshlq_u8(H, hs), m30);
                        c[k] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), m32);
                    }
                    const int s = 8 * h + 2 * j;  // the sub-blocks of c[0] and c[1]
                    for (int t = 0; t < NT; ++t) {
                        const int8_t* q = A.q.data() + (n + t) * K + b * QK_K + 128 * h + 32 * j;
                        isum[t] = q6_K_pair(isum[t], c[0], c[1], q, x.scales[s], x.scales[s + 1]);
                    }
                }
            }
            const float dw = half_to_float(x.d);
            for (int t = 0; t < NT; ++t) {
                const float32x4_t s = vdupq_n_f32(dw * A.d[(size_t)((n + t) * nb + b)]);
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(isum[t]), s);
            }
        }
        for (int t = 0; t < NT; ++t) res[t] = vaddvq_f32(acc[t]);
    }
};

// ---- TQ2_0 / TQ1_0 ----------------------------------------------------------------------------

// Both add at most 256 products of |code * a| <= 2 * 128 per block to a token's 4 int32 lanes
// (<= 2^14 each): K < kTqMaxK keeps them far from overflow. Without SDOT they are summed in int16
// lanes first, widened once per block; each kernel bounds those sums.
struct TqNeon {
    using Acc = int32x4_t;
    static int32_t sum(const Acc& acc) { return vaddvq_s32(acc); }
    static float half(uint16_t h) { return half_to_float(h); }
};

#if defined(__ARM_FEATURE_DOTPROD)
using TqPart = int32x4_t;
inline TqPart tq_part_zero() { return vdupq_n_s32(0); }
inline TqPart tq_part_add(TqPart p, int8x16_t c, int8x16_t a) { return vdotq_s32(p, c, a); }
inline int32x4_t tq_part_end(int32x4_t acc, TqPart p) { return vaddq_s32(acc, p); }
#else
using TqPart = int16x8_t;
inline TqPart tq_part_zero() { return vdupq_n_s16(0); }
inline TqPart tq_part_add(TqPart p, int8x16_t c, int8x16_t a) {
    return vmlal_high_s8(vmlal_s8(p, vget_low_s8(c), vget_low_s8(a)), c, a);
}
inline int32x4_t tq_part_end(int32x4_t acc, TqPart p) { return vpadalq_s16(acc, p); }
#endif

struct Tq2Neon : TqNeon {
    using Block = block_tq2_0;

    // Without SDOT an int16 lane sums 32 products of at most 2 * 128 per block (<= 8192).
    template <int NT>
    static void add(const block_tq2_0& x, const int8_t* q, int64_t ldq, int32x4_t* acc) {
        const uint8x16_t m3 = vdupq_n_u8(3);
        TqPart p[NT];
        for (int t = 0; t < NT; ++t) p[t] = tq_part_zero();
        for (int c = 0; c < 2; ++c)
            for (int k = 0; k < 2; ++k) {
                // qs[32c + 16k + i] holds values 128c + 32l + 16k + i in bit pairs l = 0..3
                const uint8x16_t v = vld1q_u8(x.qs + 32 * c + 16 * k);
                const int8x16_t code[4] = {vreinterpretq_s8_u8(vandq_u8(v, m3)),
                                           vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 2), m3)),
                                           vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 4), m3)),
                                           vreinterpretq_s8_u8(vshrq_n_u8(v, 6))};
                for (int t = 0; t < NT; ++t)
                    for (int l = 0; l < 4; ++l)
                        p[t] = tq_part_add(p[t], code[l], vld1q_s8(q + t * ldq + 128 * c + 32 * l + 16 * k));
            }
        for (int t = 0; t < NT; ++t) acc[t] = tq_part_end(acc[t], p[t]);
    }
};

struct Tq1Neon : TqNeon {
    using Block = block_tq1_0;

    // Vectors 0-2 are qs[0..48), vector 3 holds qh[0..4) and zeros: tq1_permute's layout, digit by
    // digit. A byte's top base-3 digit is the high byte of 3 * byte and the next digit's byte its
    // low byte, so one widening multiply by 3 and an unzip give both. Without SDOT an int16 lane
    // sums 5 * (3 * 2 + 2) products of at most 2 * 128 per block (<= 10240).
    template <int NT>
    static void add(const block_tq1_0& x, const int8_t* p, int64_t ldp, int32x4_t* acc) {
        uint32_t qh;
        std::memcpy(&qh, x.qh, 4);  // only these 4 bytes: the block may end the mapping 6 bytes on
        uint8x16_t v[4] = {vld1q_u8(x.qs), vld1q_u8(x.qs + 16), vld1q_u8(x.qs + 32),
                           vreinterpretq_u8_u32(vsetq_lane_u32(qh, vdupq_n_u32(0), 0))};
        const uint8x8_t three = vdup_n_u8(3);
        TqPart s[NT];
        for (int t = 0; t < NT; ++t) s[t] = tq_part_zero();
        for (int i = 0; i < 5; ++i) {
            int8x16_t code[4];
            for (int k = 0; k < 4; ++k) {
                const uint8x16_t lo = vreinterpretq_u8_u16(vmull_u8(vget_low_u8(v[k]), three));
                const uint8x16_t hi = vreinterpretq_u8_u16(vmull_high_u8(v[k], vdupq_n_u8(3)));
                code[k] = vreinterpretq_s8_u8(vuzp2q_u8(lo, hi));
                v[k] = vuzp1q_u8(lo, hi);
            }
            for (int t = 0; t < NT; ++t) {
                const int8_t* pt = p + t * ldp + 64 * i;
                for (int k = 0; k < 4; ++k) s[t] = tq_part_add(s[t], code[k], vld1q_s8(pt + 16 * k));
            }
        }
        for (int t = 0; t < NT; ++t) acc[t] = tq_part_end(acc[t], s[t]);
    }
};

}  // namespace

// Only quant_kernels_available calls this, for an ISA kernels_available() offers.
const QuantKernelSet& BITNET_QUANT_NEON_SET_FN() {
    static const QuantKernelSet set = quant_kernel_set<Q32Neon<block_q8_0>, Q32Neon<block_q4_0>, Q6KNeon, Tq1Neon,
                                                       Tq2Neon>(BITNET_QUANT_NEON_SET_NAME);
    return set;
}

}  // namespace bitnet

#endif  // __aarch64__
