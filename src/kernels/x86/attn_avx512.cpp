// AVX-512 tiled-attention kernel (kernels/attn.h): the chunk kernel of attn_avx2.cpp on 16-lane
// registers, bit-identical with it, so a model gives the same logits on AVX2 and AVX-512 CPUs.
//
// Why the bits agree: every score is the same FMA chain over the dimensions in order, every output
// the same FMA chain over the keys in order, e^x the same polynomial lane by lane; l is summed into
// an 8-lane accumulator in key order (the two halves of each 16-key vector one after the other,
// which is the AVX2 order) and reduced by the same hsum_ps. What changes is how many lanes one
// instruction carries: scores take 4 rows x 32 keys per pass (2 loads and 4 broadcasts per 8 FMAs
// of 16 lanes, twice the work per load of the AVX2 pass), P·V 2 rows x 64 outputs per pass.
// The loaders are memory-bound format conversions: the set reuses the AVX2 ones.
#include <cmath>

#include "kernels/attn.h"
#include "kernels/x86/simd_x86.h"

namespace bitnet {

namespace {

// e^x for x <= 0 (and -inf), lane for lane the exp_neg of attn_avx2.cpp.
inline __m512 exp_neg(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.0f);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);
    x = _mm512_max_ps(x, lo);
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693145751953125f), x);
    f = _mm512_fmadd_ps(k, _mm512_set1_ps(-1.428606765330187045e-06f), f);
    __m512 u = _mm512_set1_ps(0.000198527617612853646278381f);
    u = _mm512_fmadd_ps(u, f, _mm512_set1_ps(0.00139304355252534151077271f));
    u = _mm512_fmadd_ps(u, f, _mm512_set1_ps(0.00833336077630519866943359f));
    u = _mm512_fmadd_ps(u, f, _mm512_set1_ps(0.0416664853692054748535156f));
    u = _mm512_fmadd_ps(u, f, _mm512_set1_ps(0.166666671633720397949219f));
    u = _mm512_fmadd_ps(u, f, _mm512_set1_ps(0.5f));
    u = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_mul_ps(f, f), u, f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps(keep, u, _mm512_castsi512_ps(e));
}

// Scores of 4 rows against keys [t0, t0 + 16 * NK) of kt.
template <int NK>
inline void scores_4(const float* const qr[4], const float* kt, int head_dim, int t0,
                     float (*s)[ATTN_CHUNK], int r0, int R) {
    __m512 acc[4][NK];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < NK; ++j) acc[i][j] = _mm512_setzero_ps();
    const float* kd = kt + t0;
    for (int d = 0; d < head_dim; ++d, kd += ATTN_CHUNK) {
        __m512 k[NK];
        for (int j = 0; j < NK; ++j) k[j] = _mm512_loadu_ps(kd + 16 * j);
        for (int i = 0; i < 4; ++i) {
            const __m512 x = _mm512_set1_ps(qr[i][d]);
            for (int j = 0; j < NK; ++j) acc[i][j] = _mm512_fmadd_ps(x, k[j], acc[i][j]);
        }
    }
    for (int i = 0; i < 4 && r0 + i < R; ++i)
        for (int j = 0; j < NK; ++j) _mm512_storeu_ps(s[r0 + i] + t0 + 16 * j, acc[i][j]);
}

// o[d0 .. d0 + 16*NV) of rows a (and b, unless null) += Σ_t p_t v_t over their keys, in key order.
template <int NV>
inline void pv_pair(const float* pa, int na, const float* pb, int nb, const float* v, int head_dim,
                    int d0, float* oa, float* ob) {
    __m512 x[NV], y[NV];
    for (int j = 0; j < NV; ++j) x[j] = y[j] = _mm512_setzero_ps();
    const int both = pb ? (na < nb ? na : nb) : 0;
    int t = 0;
    for (; t < both; ++t) {
        const float* vt = v + (int64_t)t * head_dim + d0;
        const __m512 wa = _mm512_set1_ps(pa[t]), wb = _mm512_set1_ps(pb[t]);
        for (int j = 0; j < NV; ++j) {
            const __m512 vv = _mm512_loadu_ps(vt + 16 * j);
            x[j] = _mm512_fmadd_ps(wa, vv, x[j]);
            y[j] = _mm512_fmadd_ps(wb, vv, y[j]);
        }
    }
    for (int u = t; u < na; ++u) {
        const __m512 wa = _mm512_set1_ps(pa[u]);
        for (int j = 0; j < NV; ++j)
            x[j] = _mm512_fmadd_ps(wa, _mm512_loadu_ps(v + (int64_t)u * head_dim + d0 + 16 * j), x[j]);
    }
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(oa + d0 + 16 * j, x[j]);
    if (!pb) return;
    for (int u = t; u < nb; ++u) {
        const __m512 wb = _mm512_set1_ps(pb[u]);
        for (int j = 0; j < NV; ++j)
            y[j] = _mm512_fmadd_ps(wb, _mm512_loadu_ps(v + (int64_t)u * head_dim + d0 + 16 * j), y[j]);
    }
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(ob + d0 + 16 * j, y[j]);
}

void chunk_avx512(const float* q, int R, const int* valid, int n, const float* kt, const float* v,
                  int head_dim, float* m, float* l, float* o) {
    alignas(64) float s[ATTN_ROWS][ATTN_CHUNK];
    const int nk = (n + 15) & ~15;
    for (int r0 = 0; r0 < R; r0 += 4) {
        // Rows past R compute on row R-1 and are not stored: no branch in the FMA loop.
        const float* qr[4];
        for (int i = 0; i < 4; ++i) qr[i] = q + (int64_t)(r0 + i < R ? r0 + i : R - 1) * head_dim;
        int t0 = 0;
        for (; t0 + 32 <= nk; t0 += 32) scores_4<2>(qr, kt, head_dim, t0, s, r0, R);
        if (t0 < nk) scores_4<1>(qr, kt, head_dim, t0, s, r0, R);
    }
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int r = 0; r < R; ++r) {
        // Lanes from valid[r] up to the next multiple of 16 (<= nk) are -inf, so e^(s - m) = 0 there
        // and adding them leaves l's bits as the AVX2 kernel's 8-key steps leave them.
        const int nv = valid[r], nv16 = (nv + 15) & ~15;
        const __m512i lim = _mm512_set1_epi32(nv);
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int t = 0; t < nv16; t += 16) {
            const __mmask16 keep = _mm512_cmpgt_epi32_mask(lim, _mm512_add_epi32(lane, _mm512_set1_epi32(t)));
            const __m512 x = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), keep, _mm512_load_ps(s[r] + t));
            _mm512_store_ps(s[r] + t, x);
            mx = _mm512_max_ps(mx, x);
        }
        const float mr = _mm512_reduce_max_ps(mx);
        const __m512 mv = _mm512_set1_ps(mr);
        __m256 sum = _mm256_setzero_ps();
        for (int t = 0; t < nv16; t += 16) {
            const __m512 e = exp_neg(_mm512_sub_ps(_mm512_load_ps(s[r] + t), mv));
            _mm512_store_ps(s[r] + t, e);
            sum = _mm256_add_ps(sum, _mm512_castps512_ps256(e));
            sum = _mm256_add_ps(sum, _mm512_extractf32x8_ps(e, 1));
        }
        m[r] = mr;
        l[r] = hsum_ps(sum);
    }
    for (int r = 0; r < R; r += 2) {
        const bool pair = r + 1 < R;
        float* oa = o + (int64_t)r * head_dim;
        float* ob = pair ? oa + head_dim : nullptr;
        const float* pb = pair ? s[r + 1] : nullptr;
        const int nb = pair ? valid[r + 1] : 0;
        int d0 = 0;
        for (; d0 + 64 <= head_dim; d0 += 64) pv_pair<4>(s[r], valid[r], pb, nb, v, head_dim, d0, oa, ob);
        for (; d0 < head_dim; d0 += 16) pv_pair<1>(s[r], valid[r], pb, nb, v, head_dim, d0, oa, ob);
    }
}

}  // namespace

const AttnKernelSet& attn_kernels_avx512() {
    const AttnKernelSet& avx2 = attn_kernels_avx2();
    static const AttnKernelSet set = {"avx512vnni", chunk_avx512, avx2.load_k_f16, avx2.load_k_q8_0,
                                      avx2.load_v_f16, avx2.load_v_q8_0};
    return set;
}

}  // namespace bitnet
