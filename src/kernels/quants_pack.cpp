// Weight quantizers for the block types the engine writes itself: the compact copy of an exact
// output matrix that certified output (model/output_cert.cpp) scores first.
//
// They need not match llama.cpp's quantizers bit for bit: nothing compares their bytes with
// another tool's, and certification never trusts them, it measures each row's error after
// dequantizing (any quantizer gives correct answers; a better one only gives fewer candidates).
// So they are the plain round-to-nearest kind, one pass per block, with the block scale chosen
// so that the value of largest magnitude lands exactly on the type's most negative code: that
// uses the one extra level of the asymmetric signed range (-8..7, -32..31), as llama.cpp does.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "util/common.h"

namespace bitnet {

namespace {

// The value of largest magnitude in x[0..n), with its sign (0 for an all-zero block).
float signed_absmax(const float* x, int64_t n) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; ++i)
        if (std::fabs(x[i]) > std::fabs(m)) m = x[i];
    return m;
}

// rint(v / d) clamped to [lo, hi]; d == 0 (an all-zero block) gives 0.
int quantize_value(float v, float d, int lo, int hi) {
    if (d == 0.0f) return 0;
    const float r = std::nearbyint(v / d);
    return (int)std::min((float)hi, std::max((float)lo, r));
}

void quantize_q8_0(const float* x, int64_t k, block_q8_0* y) {
    for (int64_t b = 0; b < k / QK8_0; ++b) {
        const float* xb = x + b * QK8_0;
        float amax = 0.0f;
        for (int i = 0; i < QK8_0; ++i) amax = std::max(amax, std::fabs(xb[i]));
        y[b].d = fp32_to_fp16(amax / 127.0f);
        const float d = fp16_to_fp32(y[b].d);  // the scale the dequantizer will use
        for (int i = 0; i < QK8_0; ++i) y[b].qs[i] = (int8_t)quantize_value(xb[i], d, -127, 127);
    }
}

void quantize_q4_0(const float* x, int64_t k, block_q4_0* y) {
    for (int64_t b = 0; b < k / QK8_0; ++b) {
        const float* xb = x + b * QK8_0;
        y[b].d = fp32_to_fp16(-signed_absmax(xb, QK8_0) / 8.0f);
        const float d = fp16_to_fp32(y[b].d);
        for (int i = 0; i < 16; ++i) {
            const int lo = quantize_value(xb[i], d, -8, 7) + 8;
            const int hi = quantize_value(xb[i + 16], d, -8, 7) + 8;
            y[b].qs[i] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void quantize_q6_K(const float* x, int64_t k, block_q6_K* y) {
    for (int64_t b = 0; b < k / QK_K; ++b) {
        const float* xb = x + b * QK_K;
        // Sub-block scales first (value = d * scales[s] * q, q in -32..31), then the super-block d
        // that maps the largest sub-block scale to -127 or 127 of its int8.
        float sub[QK_K / 16];
        float smax = 0.0f;
        for (int s = 0; s < QK_K / 16; ++s) {
            sub[s] = -signed_absmax(xb + 16 * s, 16) / 32.0f;
            if (std::fabs(sub[s]) > std::fabs(smax)) smax = sub[s];
        }
        block_q6_K& blk = y[b];
        blk.d = fp32_to_fp16(std::fabs(smax) / 127.0f);
        const float d = fp16_to_fp32(blk.d);
        std::memset(blk.ql, 0, sizeof blk.ql);
        std::memset(blk.qh, 0, sizeof blk.qh);
        for (int s = 0; s < QK_K / 16; ++s) {
            blk.scales[s] = (int8_t)quantize_value(sub[s], d, -127, 127);
            const float ds = d * (float)blk.scales[s];
            for (int i = 16 * s; i < 16 * s + 16; ++i) {
                const int q = quantize_value(xb[i], ds, -32, 31) + 32;
                // The layout of block_q6_K (quants.h): value 128h + 32j + l.
                const int h = i / 128, j = (i % 128) / 32, l = i % 32;
                blk.ql[64 * h + 32 * (j & 1) + l] |= (uint8_t)((q & 0x0F) << ((j & 2) ? 4 : 0));
                blk.qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * j));
            }
        }
    }
}

}  // namespace

void quantize_weight_row(uint32_t type, const float* x, int64_t k, uint8_t* out) {
    switch (type) {
    case TYPE_Q8_0: BITNET_ASSERT(k % QK8_0 == 0); quantize_q8_0(x, k, (block_q8_0*)out); return;
    case TYPE_Q4_0: BITNET_ASSERT(k % QK8_0 == 0); quantize_q4_0(x, k, (block_q4_0*)out); return;
    case TYPE_Q6_K: BITNET_ASSERT(k % QK_K == 0); quantize_q6_K(x, k, (block_q6_K*)out); return;
    default: fail("no weight quantizer for type %s", type_name(type).c_str());
    }
}

}  // namespace bitnet
