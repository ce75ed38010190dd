// Scalar reference kernels of the llama.cpp block types, the activation quantizer they share, and
// the choice of the QuantKernelSet (by the ISA kernels() picked).
//
// The kernels are written for obvious correctness: one output at a time, every value decoded by
// the layout description in quants.h, integer block products, then the float arithmetic of the
// contracts in the order they state. This file is compiled without -m flags.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/isa_select.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "util/common.h"

namespace bitnet {

#if defined(BITNET_HAVE_X86)
const QuantKernelSet& quant_kernels_avx2();        // x86/quants_avx2.cpp
const QuantKernelSet& quant_kernels_avx512vnni();  // x86/quants_avx512.cpp
#endif
#if defined(BITNET_HAVE_ARM)
const QuantKernelSet& quant_kernels_neon();          // arm/quants_neon.cpp
const QuantKernelSet& quant_kernels_neon_dotprod();  // arm/quants_neon_dotprod.cpp (SDOT)
#endif

void act_blocks_resize(ActBlocks& a, int64_t n, int64_t k, int64_t bs) {
    BITNET_ASSERT((bs == QK8_0 || bs == QK_K) && k % bs == 0);
    a.n = n;
    a.k = k;
    a.bs = bs;
    if ((int64_t)a.q.size() < n * k) a.q.resize((size_t)(n * k));
    if ((int64_t)a.d.size() < n * (k / bs)) a.d.resize((size_t)(n * (k / bs)));
    if (bs == QK_K && (int64_t)a.bsum.size() < n * (k / 16)) a.bsum.resize((size_t)(n * (k / 16)));
}

void act_blocks_quantize_row(const float* x, ActBlocks& a, int64_t row) {
    const int64_t k = a.k, bs = a.bs, nb = k / bs;
    int8_t* q = a.q.data() + row * k;
    float* d = a.d.data() + row * nb;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * bs;
        float amax = 0.0f;
        bool finite = true;
        for (int64_t i = 0; i < bs; ++i) {
            finite &= std::isfinite(xb[i]);
            amax = std::max(amax, std::fabs(xb[i]));
        }
        if (!finite) {  // see quants.h: no scale for a block that is not all numbers
            std::fill(q + b * bs, q + (b + 1) * bs, (int8_t)0);
            d[b] = NAN;
            continue;
        }
        // As llama.cpp's q8_0: d = amax/127 and multiply by its inverse; x*id never exceeds
        // 127 by more than a rounding, so the rounded value fits int8 without a clamp. Below
        // amax ~ 3.7e-37 the inverse overflows to inf (llama.cpp then converts inf or NaN to
        // int8, undefined): those blocks divide by d instead, |x / d| <= 127 + a rounding.
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        if (std::isinf(id)) {
            for (int64_t i = 0; i < bs; ++i)
                q[b * bs + i] = (int8_t)std::min(127.0f, std::max(-127.0f, std::nearbyint(xb[i] / db)));
        } else {
            for (int64_t i = 0; i < bs; ++i) q[b * bs + i] = (int8_t)std::nearbyint(xb[i] * id);
        }
        d[b] = db;
    }
    if (bs == QK_K) {
        int16_t* s = a.bsum.data() + row * (k / 16);
        for (int64_t g = 0; g < k / 16; ++g) {
            int sum = 0;
            for (int i = 0; i < 16; ++i) sum += q[g * 16 + i];
            s[g] = (int16_t)sum;  // |sum| <= 16 * 127
        }
    }
}

int64_t act_block_size(uint32_t type) {
    switch (type) {
    case TYPE_Q8_0:
    case TYPE_Q4_0: return QK8_0;
    case TYPE_Q6_K: return QK_K;
    default: return 0;
    }
}

size_t quant_row_bytes(uint32_t type, int64_t k) {
    const TypeTraits* t = type_traits(type);
    BITNET_ASSERT(t != nullptr && k % t->block_size == 0);
    return (size_t)(k / t->block_size) * t->block_bytes;
}

float tq_block_d(uint32_t type, const uint8_t* row, int64_t b) {
    uint16_t h;
    if (type == TYPE_TQ1_0)
        std::memcpy(&h, row + b * sizeof(block_tq1_0) + offsetof(block_tq1_0, d), 2);
    else
        std::memcpy(&h, row + b * sizeof(block_tq2_0) + offsetof(block_tq2_0, d), 2);
    return fp16_to_fp32(h);
}

int8_t* quant_scratch_i8(size_t n) {
    thread_local std::vector<int8_t> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

int32_t* quant_scratch_i32(size_t n) {
    thread_local std::vector<int32_t> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

namespace {

// ---- float-weight types ----------------------------------------------------------------------

// Integer products of one block with its activations q.
template <typename Block, int (*value)(const Block&, int)>
int32_t q32_block_dot(const Block& x, const int8_t* q) {
    int32_t isum = 0;
    for (int i = 0; i < 32; ++i) isum += value(x, i) * q[i];
    return isum;
}

int32_t q6_K_block_dot(const block_q6_K& x, const int8_t* q) {
    int32_t isum = 0;
    for (int s = 0; s < 16; ++s) {
        int32_t sub = 0;
        for (int i = 16 * s; i < 16 * s + 16; ++i) sub += q6_K_value(x, i) * q[i];
        isum += x.scales[s] * sub;
    }
    return isum;
}

// Σ_b dW_b * dA_b * (integer block product), blocks of BS values.
template <typename Block, int64_t BS, int32_t (*block_dot)(const Block&, const int8_t*)>
void act_gemm_ref(const uint8_t* W, int64_t K, const ActBlocks& A, float* Y, int64_t ldy,
                  int64_t m0, int64_t m1) {
    BITNET_ASSERT(A.k == K && A.bs == BS);
    const int64_t nb = K / BS;
    for (int64_t n = 0; n < A.n; ++n) {
        const int8_t* q = A.q.data() + n * K;
        const float* da = A.d.data() + n * nb;
        for (int64_t m = m0; m < m1; ++m) {
            const Block* row = (const Block*)(W + m * nb * sizeof(Block));
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; ++b)
                acc += fp16_to_fp32(row[b].d) * da[b] * (float)block_dot(row[b], q + b * BS);
            Y[n * ldy + m] = acc;
        }
    }
}

// ---- ternary types ---------------------------------------------------------------------------

// Σ (code - offset) * q over one block and its activations q.
template <typename Block, int (*code)(const Block&, int)>
int32_t tq_block_dot(const Block& x, const int8_t* q, int offset) {
    int32_t isum = 0;
    for (int i = 0; i < QK_K; ++i) isum += (code(x, i) - offset) * q[i];
    return isum;
}

// Out = int32_t: the code products; Out = float: the ternary products scaled per block.
template <typename Block, int (*code)(const Block&, int), typename Out>
void tq_gemm_ref(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N, Out* out,
                 int64_t ldo, int64_t m0, int64_t m1) {
    BITNET_ASSERT(K % QK_K == 0);
    const int64_t nb = K / QK_K;
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t m = m0; m < m1; ++m) {
            const Block* row = (const Block*)(W + m * nb * sizeof(Block));
            Out acc = 0;
            for (int64_t b = 0; b < nb; ++b) {
                const int8_t* q = Q + n * ldq + b * QK_K;
                if constexpr (std::is_same<Out, float>::value) {
                    // Two statements, so that no compiler contracts them into one fused
                    // multiply-add: every ISA rounds the product and the sum separately.
                    const float term = fp16_to_fp32(row[b].d) * (float)tq_block_dot<Block, code>(row[b], q, 1);
                    acc += term;
                } else {
                    acc += tq_block_dot<Block, code>(row[b], q, 0);
                }
            }
            out[n * ldo + m] = acc;
        }
    }
}

}  // namespace

const QuantKernelSet& quant_kernels_ref() {
    static const QuantKernelSet set = {
        "scalar",
        act_gemm_ref<block_q8_0, QK8_0, q32_block_dot<block_q8_0, q8_0_value>>,
        act_gemm_ref<block_q4_0, QK8_0, q32_block_dot<block_q4_0, q4_0_value>>,
        act_gemm_ref<block_q6_K, QK_K, q6_K_block_dot>,
        tq_gemm_ref<block_tq1_0, tq1_0_code, int32_t>,
        tq_gemm_ref<block_tq2_0, tq2_0_code, int32_t>,
        tq_gemm_ref<block_tq1_0, tq1_0_code, float>,
        tq_gemm_ref<block_tq2_0, tq2_0_code, float>,
    };
    return set;
}

std::vector<const QuantKernelSet*> quant_kernels_available() {
    std::vector<const QuantKernelSet*> all = {&quant_kernels_ref()};
#if defined(BITNET_HAVE_X86)
    all.push_back(&quant_kernels_avx2());
    all.push_back(&quant_kernels_avx512vnni());
#endif
#if defined(BITNET_HAVE_ARM)
    all.push_back(&quant_kernels_neon());
    all.push_back(&quant_kernels_neon_dotprod());
#endif
    return isa_sets_available(all);
}

const QuantKernelSet& quant_kernels() {
    // an ISA with no block-type kernels of its own gets the reference
    static const QuantKernelSet& chosen = isa_set_chosen(quant_kernels_available(), quant_kernels_ref());
    return chosen;
}

qgemm_fn quant_gemm_for(const QuantKernelSet& ks, uint32_t type) {
    switch (type) {
    case TYPE_Q8_0: return ks.q8_0_gemm;
    case TYPE_Q4_0: return ks.q4_0_gemm;
    case TYPE_Q6_K: return ks.q6_K_gemm;
    default: return nullptr;
    }
}

}  // namespace bitnet
