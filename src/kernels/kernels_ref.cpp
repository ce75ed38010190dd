// Scalar reference kernels: the oracle every ISA variant is tested against, and the portable
// fallback on CPUs without a SIMD set.
//
// They are written for obvious correctness, not speed: one output at a time, the loops spelled
// the way the contracts in kernels.h are. The float sums run in index order in float32, so the
// SIMD variants may differ from them only by summation order (tests/cpp/test_kernels.cpp derives
// its tolerance from that). quantize_act gives the same bits in every variant whatever the
// -ffp-contract setting: it has no multiply-add to contract, and the scale helper below keeps
// torch's two roundings (only -ffast-math could merge them; never build with it).
#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "util/common.h"

namespace bitnet {

namespace {

// Torch computes `127 / t` for a tensor t as `t.reciprocal() * 127` (Tensor.__rtruediv__), two
// float32 roundings; a single division differs from it in about a quarter of all inputs. Every
// quantize_act variant computes the scale with exactly these two scalar operations.
inline float act_scale(float amax) { return (1.0f / std::max(amax, 1e-5f)) * 127.0f; }

void quantize_act_ref(const float* x, int64_t k, int8_t* q, float* scale, int32_t* qsum) {
    BITNET_ASSERT(k >= 1);
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < k; ++i) {
        finite &= std::isfinite(x[i]);
        amax = std::max(amax, std::fabs(x[i]));
    }
    if (!finite) {  // see kernels.h: no scale for a row that is not all numbers
        std::fill(q, q + k, (int8_t)0);
        *scale = 0.0f;
        *qsum = 0;
        return;
    }
    const float s = act_scale(amax);
    int32_t sum = 0;
    for (int64_t i = 0; i < k; ++i) {
        // nearbyint rounds half to even under the default rounding mode, as torch.round does.
        float r = std::nearbyint(x[i] * s);
        r = std::min(127.0f, std::max(-128.0f, r));
        q[i] = (int8_t)r;
        sum += q[i];
    }
    *scale = s;
    *qsum = sum;
}

void i2s_gemm_ref(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                  int32_t* out, int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(K % I2S_BLOCK == 0);
    for (int64_t n = 0; n < N; ++n) {
        const int8_t* qn = Q + n * ldq;
        for (int64_t m = m0; m < m1; ++m) {
            const uint8_t* row = W + m * (K / 4);
            int32_t acc = 0;
            // The layout, literally: byte j of a 128-value block holds values j, j+32, j+64,
            // j+96 of the block in bit pairs 7-6, 5-4, 3-2, 1-0.
            for (int64_t b = 0; b < K / I2S_BLOCK; ++b) {
                const uint8_t* block = row + b * (I2S_BLOCK / 4);
                const int8_t* qb = qn + b * I2S_BLOCK;
                for (int j = 0; j < 32; ++j) {
                    acc += ((block[j] >> 6) & 3) * (int32_t)qb[j];
                    acc += ((block[j] >> 4) & 3) * (int32_t)qb[j + 32];
                    acc += ((block[j] >> 2) & 3) * (int32_t)qb[j + 64];
                    acc += (block[j] & 3) * (int32_t)qb[j + 96];
                }
            }
            out[n * ldo + m] = acc;
        }
    }
}

inline float to_float(float w) { return w; }
inline float to_float(uint16_t w) { return fp16_to_fp32(w); }

template <typename WT>
void fgemm_ref(const WT* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y, int64_t ldy,
               int64_t m0, int64_t m1) {
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t m = m0; m < m1; ++m) {
            const WT* w = W + m * K;
            const float* x = X + n * ldx;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += to_float(w[k]) * x[k];
            Y[n * ldy + m] = acc;
        }
    }
}

void f32_gemm_ref(const float* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                  int64_t ldy, int64_t m0, int64_t m1) {
    fgemm_ref(W, K, X, ldx, N, Y, ldy, m0, m1);
}

void f16_gemm_ref(const uint16_t* W, int64_t K, const float* X, int64_t ldx, int64_t N, float* Y,
                  int64_t ldy, int64_t m0, int64_t m1) {
    fgemm_ref(W, K, X, ldx, N, Y, ldy, m0, m1);
}

}  // namespace

const KernelSet& kernels_ref() {
    static const KernelSet set = {"scalar", quantize_act_ref, i2s_gemm_ref, f32_gemm_ref,
                                  f16_gemm_ref};
    return set;
}

}  // namespace bitnet
