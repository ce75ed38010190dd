// AVX2 + FMA + F16C tiled-attention kernels (kernels/attn.h), run by AVX2 and AVX-512 CPUs.
//
// Scores: K is [head_dim][ATTN_CHUNK] (keys along a row), so one FMA advances the dot products of
// 8 keys by one dimension; 4 query rows x 16 keys per pass keep 8 accumulators in registers and
// need 2 loads and 4 broadcasts per 8 FMAs. P·V: 2 rows x 32 outputs per pass over the keys.
// Every score is one FMA chain over the dimensions in order and every output one FMA chain over
// the keys in order, whatever the rows beside it: the contract of attn.h.
#include <cmath>

#include "kernels/attn.h"
#include "kernels/quants.h"
#include "kernels/x86/simd_x86.h"

namespace bitnet {

namespace {

// e^x for x <= 0 (and -inf): x = k ln2 + f with |f| <= ln2/2, e^f by a degree-7 polynomial (the
// coefficients of the reference exp in ops.cpp), scaled by 2^k through the exponent bits. Below
// -87 the result is flushed to 0, which is below the float resolution of any sum of softmax terms
// that also holds the maximum's e^0 = 1.
inline __m256 exp_neg(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fmadd_ps(k, _mm256_set1_ps(-0.693145751953125f), x);
    f = _mm256_fmadd_ps(k, _mm256_set1_ps(-1.428606765330187045e-06f), f);
    __m256 u = _mm256_set1_ps(0.000198527617612853646278381f);
    u = _mm256_fmadd_ps(u, f, _mm256_set1_ps(0.00139304355252534151077271f));
    u = _mm256_fmadd_ps(u, f, _mm256_set1_ps(0.00833336077630519866943359f));
    u = _mm256_fmadd_ps(u, f, _mm256_set1_ps(0.0416664853692054748535156f));
    u = _mm256_fmadd_ps(u, f, _mm256_set1_ps(0.166666671633720397949219f));
    u = _mm256_fmadd_ps(u, f, _mm256_set1_ps(0.5f));
    u = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(f, f), u, f));
    // k in [-126, 0]: 2^k is a normal float
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    const __m256 r = _mm256_mul_ps(u, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(tiny, r);
}

inline float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Scores of 4 rows (q0..q3, head_dim floats each) against keys [t0, t0 + 16) of kt.
inline void scores_4x16(const float* const qr[4], const float* kt, int head_dim, int t0,
                        float (*s)[ATTN_CHUNK], int r0, int R) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
    const float* kd = kt + t0;
    for (int d = 0; d < head_dim; ++d, kd += ATTN_CHUNK) {
        const __m256 k0 = _mm256_loadu_ps(kd), k1 = _mm256_loadu_ps(kd + 8);
        __m256 x = _mm256_broadcast_ss(qr[0] + d);
        a0 = _mm256_fmadd_ps(x, k0, a0);
        a1 = _mm256_fmadd_ps(x, k1, a1);
        x = _mm256_broadcast_ss(qr[1] + d);
        b0 = _mm256_fmadd_ps(x, k0, b0);
        b1 = _mm256_fmadd_ps(x, k1, b1);
        x = _mm256_broadcast_ss(qr[2] + d);
        c0 = _mm256_fmadd_ps(x, k0, c0);
        c1 = _mm256_fmadd_ps(x, k1, c1);
        x = _mm256_broadcast_ss(qr[3] + d);
        d0 = _mm256_fmadd_ps(x, k0, d0);
        d1 = _mm256_fmadd_ps(x, k1, d1);
    }
    const __m256 acc[4][2] = {{a0, a1}, {b0, b1}, {c0, c1}, {d0, d1}};
    for (int i = 0; i < 4 && r0 + i < R; ++i) {
        _mm256_storeu_ps(s[r0 + i] + t0, acc[i][0]);
        _mm256_storeu_ps(s[r0 + i] + t0 + 8, acc[i][1]);
    }
}

// o[d0 .. d0 + 8*NV) of rows a (and b, unless null) += Σ_t p_t v_t over their keys, in key order.
template <int NV>
inline void pv_pair(const float* pa, int na, const float* pb, int nb, const float* v, int head_dim,
                    int d0, float* oa, float* ob) {
    __m256 x[NV], y[NV];
    for (int j = 0; j < NV; ++j) x[j] = y[j] = _mm256_setzero_ps();
    const int both = pb ? (na < nb ? na : nb) : 0;
    int t = 0;
    for (; t < both; ++t) {
        const float* vt = v + (int64_t)t * head_dim + d0;
        const __m256 wa = _mm256_broadcast_ss(pa + t), wb = _mm256_broadcast_ss(pb + t);
        for (int j = 0; j < NV; ++j) {
            const __m256 vv = _mm256_loadu_ps(vt + 8 * j);
            x[j] = _mm256_fmadd_ps(wa, vv, x[j]);
            y[j] = _mm256_fmadd_ps(wb, vv, y[j]);
        }
    }
    for (int u = t; u < na; ++u) {
        const __m256 wa = _mm256_broadcast_ss(pa + u);
        for (int j = 0; j < NV; ++j)
            x[j] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(v + (int64_t)u * head_dim + d0 + 8 * j), x[j]);
    }
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(oa + d0 + 8 * j, x[j]);
    if (!pb) return;
    for (int u = t; u < nb; ++u) {
        const __m256 wb = _mm256_broadcast_ss(pb + u);
        for (int j = 0; j < NV; ++j)
            y[j] = _mm256_fmadd_ps(wb, _mm256_loadu_ps(v + (int64_t)u * head_dim + d0 + 8 * j), y[j]);
    }
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(ob + d0 + 8 * j, y[j]);
}

void chunk_avx2(const float* q, int R, const int* valid, int n, const float* kt, const float* v,
                int head_dim, float* m, float* l, float* o) {
    alignas(32) float s[ATTN_ROWS][ATTN_CHUNK];
    const int nk = (n + 15) & ~15;
    for (int r0 = 0; r0 < R; r0 += 4) {
        // Rows past R compute on row R-1 and are not stored: no branch in the FMA loop.
        const float* qr[4];
        for (int i = 0; i < 4; ++i) qr[i] = q + (int64_t)(r0 + i < R ? r0 + i : R - 1) * head_dim;
        for (int t0 = 0; t0 < nk; t0 += 16) scores_4x16(qr, kt, head_dim, t0, s, r0, R);
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int r = 0; r < R; ++r) {
        const int nv = valid[r], nvv = (nv + 7) & ~7;
        const __m256i lim = _mm256_set1_epi32(nv);
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int t = 0; t < nvv; t += 8) {
            const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lim, _mm256_add_epi32(lane, _mm256_set1_epi32(t))));
            const __m256 x = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_load_ps(s[r] + t), keep);
            _mm256_store_ps(s[r] + t, x);
            mx = _mm256_max_ps(mx, x);
        }
        const float mr = hmax_ps(mx);
        const __m256 mv = _mm256_set1_ps(mr);
        __m256 sum = _mm256_setzero_ps();
        for (int t = 0; t < nvv; t += 8) {
            const __m256 e = exp_neg(_mm256_sub_ps(_mm256_load_ps(s[r] + t), mv));
            _mm256_store_ps(s[r] + t, e);
            sum = _mm256_add_ps(sum, e);
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
        for (; d0 + 32 <= head_dim; d0 += 32) pv_pair<4>(s[r], valid[r], pb, nb, v, head_dim, d0, oa, ob);
        for (; d0 < head_dim; d0 += 16) pv_pair<2>(s[r], valid[r], pb, nb, v, head_dim, d0, oa, ob);
    }
}

// 8 dequantized values of a Q8_0 row starting at dimension d (a multiple of 8).
inline __m256 q8_0_load8(const block_q8_0* b, int d) {
    const block_q8_0& blk = b[d / 32];
    const __m256 qs = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(blk.qs + d % 32))));
    return _mm256_mul_ps(_mm256_set1_ps(half_to_float(blk.d)), qs);
}

void load_k_f16_avx2(const uint8_t* src, int64_t, int n, int head_dim, float* kt) {
    const uint16_t* h = (const uint16_t*)src;
    const int nk = (n + 15) & ~15;
    for (int d = 0; d < head_dim; ++d)
        for (int t = 0; t < nk; t += 8)
            _mm256_storeu_ps(kt + d * ATTN_CHUNK + t,
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + d * ATTN_CHUNK + t))));
}

void load_k_q8_0_avx2(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* kt) {
    const int nk = (n + 15) & ~15;
    for (int t0 = 0; t0 < nk; t0 += 8)
        for (int d = 0; d < head_dim; d += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; ++j)
                r[j] = t0 + j < n ? q8_0_load8((const block_q8_0*)(src + (t0 + j) * row_bytes), d)
                                  : _mm256_setzero_ps();
            transpose8(r);  // r[e] = dimension d + e of keys t0 .. t0 + 7
            for (int e = 0; e < 8; ++e) _mm256_storeu_ps(kt + (d + e) * ATTN_CHUNK + t0, r[e]);
        }
}

void load_v_f16_avx2(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* v) {
    for (int t = 0; t < n; ++t) {
        const uint16_t* h = (const uint16_t*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; d += 8)
            _mm256_storeu_ps(v + (int64_t)t * head_dim + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + d))));
    }
}

void load_v_q8_0_avx2(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* v) {
    for (int t = 0; t < n; ++t) {
        const block_q8_0* b = (const block_q8_0*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; d += 8) _mm256_storeu_ps(v + (int64_t)t * head_dim + d, q8_0_load8(b, d));
    }
}

}  // namespace

const AttnKernelSet& attn_kernels_avx2() {
    static const AttnKernelSet set = {"avx2", chunk_avx2, load_k_f16_avx2, load_k_q8_0_avx2,
                                      load_v_f16_avx2, load_v_q8_0_avx2};
    return set;
}

}  // namespace bitnet
