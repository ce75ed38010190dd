// Scalar reference of the tiled-attention kernels (kernels/attn.h): the definition the SIMD sets
// are tested against, and the set every CPU without one runs. Also the choice of the set.
#include <cmath>
#include <cstring>

#include "kernels/attn.h"
#include "kernels/isa_select.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"

namespace bitnet {

namespace {

void chunk_ref(const float* q, int R, const int* valid, int n, const float* kt, const float* v,
               int head_dim, float* m, float* l, float* o) {
    float s[ATTN_CHUNK];
    for (int r = 0; r < R; ++r) {
        const float* qr = q + (int64_t)r * head_dim;
        const int nv = valid[r];
        float mx = -INFINITY;
        for (int t = 0; t < nv; ++t) {
            float acc = 0.0f;
            for (int d = 0; d < head_dim; ++d) acc = std::fma(qr[d], kt[d * ATTN_CHUNK + t], acc);
            s[t] = acc;
            mx = acc > mx ? acc : mx;
        }
        float sum = 0.0f;
        for (int t = 0; t < nv; ++t) {
            s[t] = std::exp(s[t] - mx);
            sum += s[t];
        }
        float* orow = o + (int64_t)r * head_dim;
        for (int d = 0; d < head_dim; ++d) {
            float acc = 0.0f;
            for (int t = 0; t < nv; ++t) acc = std::fma(s[t], v[(int64_t)t * head_dim + d], acc);
            orow[d] = acc;
        }
        m[r] = mx;
        l[r] = sum;
    }
}

void load_k_f16_ref(const uint8_t* src, int64_t, int n, int head_dim, float* kt) {
    const uint16_t* h = (const uint16_t*)src;
    const int nk = (n + 15) & ~15;
    for (int d = 0; d < head_dim; ++d)
        for (int t = 0; t < nk; ++t) kt[d * ATTN_CHUNK + t] = fp16_to_fp32(h[d * ATTN_CHUNK + t]);
}

void load_k_q8_0_ref(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* kt) {
    const int nk = (n + 15) & ~15;
    for (int t = 0; t < nk; ++t) {
        const block_q8_0* b = (const block_q8_0*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; ++d)
            kt[d * ATTN_CHUNK + t] = t < n ? fp16_to_fp32(b[d / 32].d) * (float)b[d / 32].qs[d % 32] : 0.0f;
    }
}

void load_v_f16_ref(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* v) {
    for (int t = 0; t < n; ++t) {
        const uint16_t* h = (const uint16_t*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; ++d) v[(int64_t)t * head_dim + d] = fp16_to_fp32(h[d]);
    }
}

void load_v_q8_0_ref(const uint8_t* src, int64_t row_bytes, int n, int head_dim, float* v) {
    for (int t = 0; t < n; ++t) {
        const block_q8_0* b = (const block_q8_0*)(src + t * row_bytes);
        for (int d = 0; d < head_dim; ++d)
            v[(int64_t)t * head_dim + d] = fp16_to_fp32(b[d / 32].d) * (float)b[d / 32].qs[d % 32];
    }
}

}  // namespace

void kv_quantize_q8_0(const float* x, int64_t k, uint8_t* out) {
    block_q8_0* b = (block_q8_0*)out;
    for (int64_t i = 0; i < k / 32; ++i, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < 32; ++j) {
            // NaN (a broken model) is stored as 0 and infinities saturate: no float-to-int
            // conversion of a value outside int8 is ever made.
            float qv = std::nearbyint(x[j] * id);
            qv = qv > 127.0f ? 127.0f : qv < -127.0f ? -127.0f : qv;
            b[i].qs[j] = (int8_t)(qv == qv ? qv : 0.0f);
        }
    }
}

const AttnKernelSet& attn_kernels_ref() {
    static const AttnKernelSet set = {"scalar", chunk_ref, load_k_f16_ref, load_k_q8_0_ref,
                                      load_v_f16_ref, load_v_q8_0_ref};
    return set;
}

// SDOT CPUs run the NEON set (the kernels are float, no dot-product instruction helps them).
std::vector<const AttnKernelSet*> attn_kernels_available() {
    std::vector<const AttnKernelSet*> all = {&attn_kernels_ref()};
#if defined(BITNET_HAVE_X86)
    all.push_back(&attn_kernels_avx2());
    all.push_back(&attn_kernels_avx512());
#endif
#if defined(BITNET_HAVE_ARM)
    all.push_back(&attn_kernels_neon());
#endif
    return isa_sets_available(all);
}

const AttnKernelSet& attn_kernels() {
    static const AttnKernelSet& chosen = isa_set_chosen(attn_kernels_available(), attn_kernels_ref());
    return chosen;
}

}  // namespace bitnet
