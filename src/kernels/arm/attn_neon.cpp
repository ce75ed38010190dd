// NEON tiled-attention kernels (kernels/attn.h), the AVX2 set's scheme in 4-lane vectors: scores
// of 4 query rows x 16 keys per pass (16 accumulators of aarch64's 32 registers), P·V of 2 rows x
// 16 outputs per pass over the keys. Each score is one FMA chain over the dimensions in order and
// each output one FMA chain over the keys in order, whatever the rows beside it.
#include <arm_neon.h>

#include <cmath>

#include "kernels/attn.h"
#include "kernels/quants.h"

namespace bitnet {

namespace {

// e^x for x <= 0 (and -inf), the polynomial of the AVX2 set (attn_avx2.cpp); flushed to 0 below -87.
inline float32x4_t exp_neg(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.0f);
    const uint32x4_t tiny = vcltq_f32(x, lo);
    x = vmaxq_f32(x, lo);
    const float32x4_t k = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t f = vfmaq_f32(x, k, vdupq_n_f32(-0.693145751953125f));
    f = vfmaq_f32(f, k, vdupq_n_f32(-1.428606765330187045e-06f));
    float32x4_t u = vdupq_n_f32(0.000198527617612853646278381f);
    u = vfmaq_f32(vdupq_n_f32(0.00139304355252534151077271f), u, f);
    u = vfmaq_f32(vdupq_n_f32(0.00833336077630519866943359f), u, f);
    u = vfmaq_f32(vdupq_n_f32(0.0416664853692054748535156f), u, f);
    u = vfmaq_f32(vdupq_n_f32(0.166666671633720397949219f), u, f);
    u = vfmaq_f32(vdupq_n_f32(0.5f), u, f);
    u = vaddq_f32(vdupq_n_f32(1.0f), vfmaq_f32(f, vmulq_f32(f, f), u));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)), 23);
    const float32x4_t r = vmulq_f32(u, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(r), tiny));
}

void scores_4x16(const float* const qr[4], const float* kt, int head_dim, int t0, float (*s)[ATTN_CHUNK],
                 int r0, int R) {
    float32x4_t a[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) a[i][j] = vdupq_n_f32(0.0f);
    const float* kd = kt + t0;
    for (int d = 0; d < head_dim; ++d, kd += ATTN_CHUNK) {
        const float32x4_t k0 = vld1q_f32(kd), k1 = vld1q_f32(kd + 4), k2 = vld1q_f32(kd + 8), k3 = vld1q_f32(kd + 12);
        for (int i = 0; i < 4; ++i) {
            const float x = qr[i][d];
            a[i][0] = vfmaq_n_f32(a[i][0], k0, x);
            a[i][1] = vfmaq_n_f32(a[i][1], k1, x);
            a[i][2] = vfmaq_n_f32(a[i][2], k2, x);
            a[i][3] = vfmaq_n_f32(a[i][3], k3, x);
        }
    }
    for (int i = 0; i < 4 && r0 + i < R; ++i)
        for (int j = 0; j < 4; ++j) vst1q_f32(s[r0 + i] + t0 + 4 * j, a[i][j]);
}

template <int NV>
void pv_pair(const float* pa, int na, const float* pb, int nb, const float* v, int head_dim, int d0, float* oa,
             float* ob) {
    float32x4_t x[NV], y[NV];
    for (int j = 0; j < NV; ++j) x[j] = y[j] = vdupq_n_f32(0.0f);
    const int both = pb ? (na < nb ? na : nb) : 0;
    int t = 0;
    for (; t < both; ++t) {
        const float* vt = v + (int64_t)t * head_dim + d0;
        for (int j = 0; j < NV; ++j) {
            const float32x4_t vv = vld1q_f32(vt + 4 * j);
            x[j] = vfmaq_n_f32(x[j], vv, pa[t]);
            y[j] = vfmaq_n_f32(y[j], vv, pb[t]);
        }
    }
    for (int u = t; u < na; ++u)
        for (int j = 0; j < NV; ++j) x[j] = vfmaq_n_f32(x[j], vld1q_f32(v + (int64_t)u * head_dim + d0 + 4 * j), pa[u]);
    for (int j = 0; j < NV; ++j) vst1q_f32(oa + d0 + 4 * j, x[j]);
    if (!pb) return;
    for (int u = t; u < nb; ++u)
        for (int j = 0; j < NV; ++j) y[j] = vfmaq_n_f32(y[j], vld1q_f32(v + (int64_t)u * head_dim + d0 + 4 * j), pb[u]);
    for (int j = 0; j < NV; ++j) vst1q_f32(ob + d0 + 4 * j, y[j]);
}

void chunk_neon(const float* q, int R, const int* valid, int n, const float* kt, const float* v, int head_dim,
                float* m, float* l, float* o) {
    alignas(16) float s[ATTN_ROWS][ATTN_CHUNK];
    const int nk = (n + 15) & ~15;
    for (int r0 = 0; r0 < R; r0 += 4) {
        const float* qr[4];
        for (int i = 0; i < 4; ++i) qr[i] = q + (int64_t)(r0 + i < R ? r0 + i : R - 1) * head_dim;
        for (int t0 = 0; t0 < nk; t0 += 16) scores_4x16(qr, kt, head_dim, t0, s, r0, R);
    }
    const int32x4_t lane = {0, 1, 2, 3};
    for (int r = 0; r < R; ++r) {
        const int nv = valid[r], nvv = (nv + 3) & ~3;
        float32x4_t mx = vdupq_n_f32(-INFINITY);
        for (int t = 0; t < nvv; t += 4) {
            const uint32x4_t keep = vcltq_s32(vaddq_s32(lane, vdupq_n_s32(t)), vdupq_n_s32(nv));
            const float32x4_t x = vbslq_f32(keep, vld1q_f32(s[r] + t), vdupq_n_f32(-INFINITY));
            vst1q_f32(s[r] + t, x);
            mx = vmaxq_f32(mx, x);
        }
        const float mr = vmaxvq_f32(mx);
        const float32x4_t mv = vdupq_n_f32(mr);
        float32x4_t sum = vdupq_n_f32(0.0f);
        for (int t = 0; t < nvv; t += 4) {
            const float32x4_t e = exp_neg(vsubq_f32(vld1q_f32(s[r] + t), mv));
            vst1q_f32(s[r] + t, e);
            sum = vaddq_f32(sum, e);
        }
        m[r] = mr;
        l[r] = vaddvq_f32(sum);
    }
    for (int r = 0; r < R; r += 2) {
        const bool pair = r + 1 < R;
        float* oa = o + (int64_t)r * head_dim;
        float* ob = pair ? oa + head_dim : nullptr;
        const float* pb = pair ? s[r + 1] : nullptr;
        const int nb = pair ? valid[r + 1] : 0;
        for (int d0 = 0; d0 < head_dim; d0 += 16) pv_pair<4>(s[r], valid[r], pb, nb, v, head_dim, d0, oa, ob);
    }
}

// 8 dequantized values of a Q8_0 row from dimension d (a multiple of 8), as two vectors.
inline void q8_0_load8(const block_q8_0* b, int d, float32x4_t* lo, float32x4_t* hi) {
    const block_q8_0& blk = b[d / 32];
    const int16x8_t w = vmovl_s8(vld1_s8(blk.qs + d % 32));
    const float dd = (float)vget_lane_f16(vreinterpret_f16_u16(vdup_n_u16(blk.d)), 0);
    *lo = vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))), dd);
    *hi = vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(w))), dd);
}

void load_k_f16_neon(const uint8_t* src, int64_t, int n, int head_dim, float* kt) {
    const uint16_t* h = (const uint16_t*)src;
    const int nk = (n + 15) & ~15;
    for (int d = 0; d < head_dim; ++d)
        for (int t = 0; t < nk; t += 4)
            vst1q_f32(kt + d * ATTN_CHUNK + t, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + d * ATTN_CHUNK + t))));
}

void load_k_q8_0_neon(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* kt) {
    const int nk = (n + 15) & ~15;
    for (int t = 0; t < nk; ++t) {
        if (t >= n) {
            for (int d = 0; d < head_dim; ++d) kt[d * ATTN_CHUNK + t] = 0.0f;
            continue;
        }
        const block_q8_0* b = (const block_q8_0*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; d += 8) {
            alignas(16) float tmp[8];
            float32x4_t lo, hi;
            q8_0_load8(b, d, &lo, &hi);
            vst1q_f32(tmp, lo);
            vst1q_f32(tmp + 4, hi);
            for (int e = 0; e < 8; ++e) kt[(d + e) * ATTN_CHUNK + t] = tmp[e];
        }
    }
}

void load_v_f16_neon(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* v) {
    for (int t = 0; t < n; ++t) {
        const uint16_t* h = (const uint16_t*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; d += 4)
            vst1q_f32(v + (int64_t)t * head_dim + d, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + d))));
    }
}

void load_v_q8_0_neon(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* v) {
    for (int t = 0; t < n; ++t) {
        const block_q8_0* b = (const block_q8_0*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; d += 8) {
            float32x4_t lo, hi;
            q8_0_load8(b, d, &lo, &hi);
            vst1q_f32(v + (int64_t)t * head_dim + d, lo);
            vst1q_f32(v + (int64_t)t * head_dim + d + 4, hi);
        }
    }
}

}  // namespace

const AttnKernelSet& attn_kernels_neon() {
    static const AttnKernelSet set = {"neon", chunk_neon, load_k_f16_neon, load_k_q8_0_neon, load_v_f16_neon,
                                      load_v_q8_0_neon};
    return set;
}

}  // namespace bitnet
