#include "ops/ops.h"

#include <cmath>

namespace bitnet {

namespace {

// Eight independent partial sums: the compiler vectorizes this without -ffast-math (a plain
// running sum fixes the order of additions and cannot be vectorized).
float dot(const float* a, const float* b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

}  // namespace

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
    // Accumulate in double: the reference sums in float32 with pairwise/vector reductions, and a
    // double sum is closer to that than a naive float loop.
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += (double)x[i] * x[i];
    const float var = (float)(ss / (double)n);
    const float r = 1.0f / std::sqrt(var + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * r);
}

void rope_inv_freq(float theta, int head_dim, float* inv_freq) {
    // Hugging Face: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in float32.
    for (int i = 0; i < head_dim / 2; ++i)
        inv_freq[i] = 1.0f / std::pow(theta, (float)(2 * i) / (float)head_dim);
}

void rope_neox(float* x, int n_heads, int head_dim, int pos, const float* inv_freq) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; ++i) {
        const float f = (float)pos * inv_freq[i];
        const float c = std::cos(f), s = std::sin(f);
        for (int h = 0; h < n_heads; ++h) {
            float* hx = x + (int64_t)h * head_dim;
            const float x0 = hx[i], x1 = hx[i + half];
            hx[i] = x0 * c - x1 * s;
            hx[i + half] = x1 * c + x0 * s;
        }
    }
}

void attention_head(const float* q, const float* k, const float* v, int64_t stride, int n_kv,
                    int head_dim, float scale, float* scratch, float* out) {
    float mx = -INFINITY;
    for (int t = 0; t < n_kv; ++t) {
        const float d = dot(q, k + (int64_t)t * stride, head_dim) * scale;
        scratch[t] = d;
        mx = d > mx ? d : mx;
    }
    float sum = 0.0f;
    for (int t = 0; t < n_kv; ++t) {
        scratch[t] = std::exp(scratch[t] - mx);
        sum += scratch[t];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < head_dim; ++i) out[i] = 0.0f;
    for (int t = 0; t < n_kv; ++t) {
        const float p = scratch[t] * inv;
        const float* vt = v + (int64_t)t * stride;
        for (int i = 0; i < head_dim; ++i) out[i] += p * vt[i];
    }
}

}  // namespace bitnet
