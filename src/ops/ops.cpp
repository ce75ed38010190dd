// Float operations of the transformer, written to give the same bits as the float32 reference
// (transformers' BitNetForCausalLM on PyTorch's CPU kernels, eager attention). Why bits and not
// just rounding: every RMSNorm output feeds an int8 activation quantizer round(x * 127 / absmax),
// a step function; one ulp of difference next to a rounding tie flips an int8 value, moves the
// logits by ~1e-3 and stays in the KV cache. So each op follows PyTorch's order of operations:
//
//   rms_norm     x.pow(2).mean(-1): the float sum in torch's cascade order (8 lanes x 4
//                accumulators, chunks of 16 rows, lanes added left to right), then / n, then
//                x * (1 / sqrt(var + eps)) * w.
//   attention    scores by MKL's sgemm order (one FMA chain over the head dimension), times the
//                scale; softmax as torch's vector kernel (Sleef's expf_u10, 16 partial sums on an
//                AVX-512 CPU, 8 on an AVX2 one, combined as a tree, times 1 / sum); P·V by MKL's sgemm order (FMA chains over
//                keys in the blocks MKL splits K into, block sums added in order).
//   rope         q * cos + rotate_half(q) * sin with cos/sin of (float)pos * inv_freq.
//
// What still differs: torch takes cos/sin from MKL's vector math library (vsCos/vsSin, "high
// accuracy", not correctly rounded: ~5% of the values differ from the correctly rounded ones), an
// algorithm we cannot reproduce; we use the C library's (usually the correctly rounded value).
//
// No multiply-add here may be contracted into an FMA behind our back (it would change the bits):
// this file is built without -mfma and in ISO C++ mode, where GCC does not contract; clang is
// told so below. The FMAs the reference does are explicit (std::fma, _mm256_fmadd_ps).
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/kernels.h"
#include "kernels/x86/simd_x86.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BITNET_OPS_X86 1
#endif

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace bitnet {

namespace {

// ---- torch's float32 sum (aten/src/ATen/native/cpu/SumKernel.cpp, the AVX2 build, which
// AVX-512 CPUs run too): the row is read as 8-float vectors, vector r goes to accumulator r % 4,
// and each accumulator sums its vectors in a cascade (chunks of 2^p rows summed separately, then
// their sums, so that only like magnitudes are added); leftover vectors go to accumulator 0, the
// accumulators are added 0+1+2+3, the scalar tail is summed, then the 8 lanes left to right.
constexpr int kSumLanes = 8, kSumIlp = 4, kSumWidth = kSumLanes * kSumIlp, kSumLevels = 4;

float sum_of_squares_torch(const float* x, int64_t n) {
    const int64_t n_vec = n / kSumLanes, rows = n_vec / kSumIlp;
    int64_t log2_rows = 1;  // ATen's CeilLog2 (1 for 0..2)
    while ((int64_t(1) << log2_rows) < rows) ++log2_rows;
    const int level_power = (int)std::max<int64_t>(4, log2_rows / kSumLevels);
    const int64_t level_step = int64_t(1) << level_power, level_mask = level_step - 1;

    float acc[kSumLevels][kSumWidth] = {};
    auto add_row = [&](int64_t r) {
        const float* xr = x + r * kSumWidth;
        for (int c = 0; c < kSumWidth; ++c) {
            const float sq = xr[c] * xr[c];  // torch materializes x.pow(2): rounded before the sum
            acc[0][c] += sq;
        }
    };
    int64_t r = 0;
    while (r + level_step <= rows) {
        for (int64_t j = 0; j < level_step; ++j) add_row(r++);
        for (int l = 1; l < kSumLevels; ++l) {
            for (int c = 0; c < kSumWidth; ++c) {
                acc[l][c] += acc[l - 1][c];
                acc[l - 1][c] = 0.0f;
            }
            if ((r & (level_mask << (l * level_power))) != 0) break;
        }
    }
    for (; r < rows; ++r) add_row(r);
    for (int l = 1; l < kSumLevels; ++l)
        for (int c = 0; c < kSumWidth; ++c) acc[0][c] += acc[l][c];

    float lanes[kSumLanes];
    for (int c = 0; c < kSumLanes; ++c) lanes[c] = acc[0][c];
    for (int64_t v = rows * kSumIlp; v < n_vec; ++v)
        for (int c = 0; c < kSumLanes; ++c) {
            const float e = x[v * kSumLanes + c];
            const float sq = e * e;
            lanes[c] += sq;
        }
    for (int k = 1; k < kSumIlp; ++k)
        for (int c = 0; c < kSumLanes; ++c) lanes[c] += acc[0][k * kSumLanes + c];
    float s = 0.0f;
    for (int64_t i = n_vec * kSumLanes; i < n; ++i) {
        const float sq = x[i] * x[i];
        s += sq;
    }
    for (int c = 0; c < kSumLanes; ++c) s += lanes[c];
    return s;
}

// 2^e for a normal exponent, built from its bits.
__attribute__((always_inline)) inline float pow2i(int e) {
    const uint32_t bits = (uint32_t)(e + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// ---- exp as torch's vectorized softmax computes it: Sleef's expf_u10 with FMA (the AVX2 and
// AVX-512 builds). x = q·ln2 + s with q = rint(x / ln2) and ln2 split in two parts so that q·ln2
// is exact; e^s by a degree-7 minimax polynomial (coefficients from Sleef, mathematical constants);
// the result scaled by 2^q in two steps (2^q alone can leave the float range).
__attribute__((always_inline)) inline float exp_sleef(float d) {
    if (!(d >= -104.0f)) return d != d ? d : 0.0f;  // NaN stays NaN; below -104 every result is 0
    if (d > 100.0f) return INFINITY;
    const float q = std::nearbyint(d * 1.442695040888963407359924681001892137426645954152985934f);
    float s = std::fma(q, -0.693145751953125f, d);
    s = std::fma(q, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = std::fma(u, s, 0.00139304355252534151077271f);
    u = std::fma(u, s, 0.00833336077630519866943359f);
    u = std::fma(u, s, 0.0416664853692054748535156f);
    u = std::fma(u, s, 0.166666671633720397949219f);
    u = std::fma(u, s, 0.5f);
    const float s2 = s * s;
    u = 1.0f + std::fma(s2, u, s);
    const int qi = (int)q, h = qi >> 1;  // -150 <= q <= 145: both factors are normal floats
    return (u * pow2i(h)) * pow2i(qi - h);
}

// ---- MKL's sgemm (torch 2.13's MKL 2024.2, one thread, measured on its AVX-512 and AVX2 paths)
// sums K products per output as FMA chains over blocks of K, adding the block sums in order:
// K <= 192 one block; K <= 384 two halves (and the last element alone when K is odd); beyond, blocks
// of 192. Returns where the block starting at k0 ends.
constexpr int64_t kMklKc = 192;

__attribute__((always_inline)) inline int64_t mkl_block_end(int64_t K, int64_t k0) {
    if (K <= kMklKc) return K;
    if (K <= 2 * kMklKc) {
        const int64_t half = K / 2;
        return k0 < half ? half : k0 < 2 * half ? 2 * half : K;
    }
    return std::min(K, k0 + kMklKc);
}

// Softmax lanes: torch's kernel keeps one vector of partial sums, scores t, t+W, t+2W... in lane
// t % W, W the width of the vector code ATen dispatches to: 16 floats on a CPU with AVX-512
// (F, BW, VL, DQ: its AVX512 capability), 8 on one with AVX2 only.
constexpr int kSoftmaxLanesMax = 16;

int softmax_lanes() {
#if BITNET_OPS_X86
    static const int w = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
                             ? 16
                             : 8;
    return w;
#else
    return 16;
#endif
}

// The probabilities: scores[t] = exp(scores[t] - max) / Σ, in torch's order (see the file comment).
__attribute__((always_inline)) inline void softmax_torch(float* scores, int n) {
    const int W = softmax_lanes();
    float mx = -INFINITY;
    for (int t = 0; t < n; ++t) mx = scores[t] > mx ? scores[t] : mx;
    float lanes[kSoftmaxLanesMax] = {};
    for (int t = 0; t < n; ++t) {
        scores[t] = exp_sleef(scores[t] - mx);
        lanes[t % W] += scores[t];
    }
    // Combined as the vector horizontal add does: halves folded onto halves.
    for (int w = W / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
    const float inv = 1.0f / lanes[0];
    for (int t = 0; t < n; ++t) scores[t] *= inv;
}

// Element i of P·V: FMA chains over the keys of each MKL block, block sums added in order.
__attribute__((always_inline)) inline float pv_element(const float* p, const float* v, int64_t stride,
                                                       int n_kv, int n_keys, int i) {
    float res = 0.0f;
    for (int64_t t0 = 0; t0 < n_kv;) {
        const int64_t t1 = std::min<int64_t>(n_kv, mkl_block_end(n_keys, t0));
        float acc = 0.0f;
        for (int64_t t = t0; t < t1; ++t) acc = std::fma(p[t], v[t * stride + i], acc);
        res = t0 == 0 ? acc : res + acc;
        t0 = t1;
    }
    return res;
}

// Score of one key: an FMA chain over the head dimension (in MKL's blocks), times the scale.
__attribute__((always_inline)) inline float qk_score(const float* q, const float* kt, int head_dim,
                                                     float scale) {
    float total = 0.0f;
    for (int64_t d0 = 0; d0 < head_dim;) {
        const int64_t d1 = mkl_block_end(head_dim, d0);
        float acc = 0.0f;
        for (int64_t d = d0; d < d1; ++d) acc = std::fma(q[d], kt[d], acc);
        total = d0 == 0 ? acc : total + acc;
        d0 = d1;
    }
    return total * scale;
}

// One attention row, the portable way: the same operations as the AVX2 path, one at a time.
void attention_row_generic(const float* q, const float* k, const float* v, int64_t stride, int n_kv,
                           int n_keys, int head_dim, float scale, float* scores, float* out) {
    for (int t = 0; t < n_kv; ++t) scores[t] = qk_score(q, k + (int64_t)t * stride, head_dim, scale);
    softmax_torch(scores, n_kv);
    for (int i = 0; i < head_dim; ++i) out[i] = pv_element(scores, v, stride, n_kv, n_keys, i);
}

#if BITNET_OPS_X86
// The same row with AVX2 + FMA: 8 keys at a time, their rows transposed in registers so that one
// vector FMA advances 8 dot products by one element of the head dimension (each product chain
// keeps MKL's order), and P·V 8 output elements at a time.
__attribute__((target("avx2,fma"))) void attention_row_avx2(const float* q, const float* k,
                                                           const float* v, int64_t stride, int n_kv,
                                                           int n_keys, int head_dim, float scale,
                                                           float* scores, float* out) {
    int t = 0;
    for (; t + 8 <= n_kv; t += 8) {
        const float* kt = k + (int64_t)t * stride;
        __m256 total = _mm256_setzero_ps();
        for (int d0 = 0; d0 < head_dim;) {
            const int d1 = (int)mkl_block_end(head_dim, d0);
            __m256 acc = _mm256_setzero_ps();
            int d = d0;
            for (; d + 8 <= d1; d += 8) {
                __m256 r[8];
                for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(kt + j * stride + d);
                transpose8(r);  // r[e] = element d+e of the 8 keys
                for (int e = 0; e < 8; ++e) acc = _mm256_fmadd_ps(_mm256_set1_ps(q[d + e]), r[e], acc);
            }
            for (; d < d1; ++d) {
                const __m256 kd = _mm256_set_ps(kt[7 * stride + d], kt[6 * stride + d], kt[5 * stride + d],
                                                kt[4 * stride + d], kt[3 * stride + d], kt[2 * stride + d],
                                                kt[1 * stride + d], kt[d]);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(q[d]), kd, acc);
            }
            total = d0 == 0 ? acc : _mm256_add_ps(total, acc);
            d0 = d1;
        }
        _mm256_storeu_ps(scores + t, _mm256_mul_ps(total, _mm256_set1_ps(scale)));
    }
    for (; t < n_kv; ++t) scores[t] = qk_score(q, k + (int64_t)t * stride, head_dim, scale);
    softmax_torch(scores, n_kv);
    int i0 = 0;
    for (; i0 + 8 <= head_dim; i0 += 8) {
        __m256 res = _mm256_setzero_ps();
        for (int64_t t0 = 0; t0 < n_kv;) {
            const int64_t t1 = std::min<int64_t>(n_kv, mkl_block_end(n_keys, t0));
            __m256 acc = _mm256_setzero_ps();
            for (int64_t tt = t0; tt < t1; ++tt)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(scores[tt]), _mm256_loadu_ps(v + tt * stride + i0), acc);
            res = t0 == 0 ? acc : _mm256_add_ps(res, acc);
            t0 = t1;
        }
        _mm256_storeu_ps(out + i0, res);
    }
    for (; i0 < head_dim; ++i0) out[i0] = pv_element(scores, v, stride, n_kv, n_keys, i0);
}

// Every x86 kernel set but the scalar one implies AVX2 and FMA: follow the set dispatch chose, so
// BITNET_ISA=scalar runs the generic attention too.
bool use_avx2_fma() {
    static const bool ok = std::string(kernels().isa) != "scalar";
    return ok;
}
#endif

}  // namespace

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
    const float var = sum_of_squares_torch(x, n) / (float)n;
    const float r = 1.0f / std::sqrt(var + eps);  // torch.rsqrt: 1 / sqrt, two roundings
    for (int64_t i = 0; i < n; ++i) {
        const float xr = x[i] * r;
        out[i] = w[i] * xr;
    }
}

void rope_inv_freq(float theta, int head_dim, float* inv_freq) {
    // Hugging Face: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in float32.
    for (int i = 0; i < head_dim / 2; ++i)
        inv_freq[i] = 1.0f / std::pow(theta, (float)(2 * i) / (float)head_dim);
}

void rope_angles(int head_dim, int pos, const float* inv_freq, float* cs) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; ++i) {
        const float f = (float)pos * inv_freq[i];
        cs[i] = std::cos(f);
        cs[half + i] = std::sin(f);
    }
}

void rope_neox(float* x, int n_heads, int head_dim, const float* cs) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; ++i) {
        const float c = cs[i], s = cs[half + i];
        for (int h = 0; h < n_heads; ++h) {
            float* hx = x + (int64_t)h * head_dim;
            const float x0 = hx[i], x1 = hx[i + half];
            // q*cos + rotate_half(q)*sin: rotate_half negates the second half, (-x1)*s = -(x1*s)
            const float a = x0 * c, b = x1 * s, e = x1 * c, g = x0 * s;
            hx[i] = a - b;
            hx[i + half] = e + g;
        }
    }
}

void rope_norm(float* x, int n_heads, int head_dim, const float* cs) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; ++i) {
        const float c = cs[i], s = cs[half + i];
        for (int h = 0; h < n_heads; ++h) {
            float* hx = x + (int64_t)h * head_dim + 2 * i;
            const float x0 = hx[0], x1 = hx[1];
            hx[0] = x0 * c - x1 * s;
            hx[1] = x1 * c + x0 * s;
        }
    }
}

void attention_head(const float* q, const float* k, const float* v, int64_t stride, int n_kv,
                    int head_dim, float scale, float* scratch, float* out, int n_keys) {
    if (n_keys < n_kv) n_keys = n_kv;
#if BITNET_OPS_X86
    if (use_avx2_fma()) {
        attention_row_avx2(q, k, v, stride, n_kv, n_keys, head_dim, scale, scratch, out);
        return;
    }
#endif
    attention_row_generic(q, k, v, stride, n_kv, n_keys, head_dim, scale, scratch, out);
}

}  // namespace bitnet
