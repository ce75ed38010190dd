// BitLinear and float matmuls over the kernels: binding a GGUF tensor as a Linear (type checks,
// I2_S/TL scale and divisor, TL layout metadata, TQ block scales), per-token activation quantization, and the threaded
// matrix products the forward pass calls.
//
// Every matmul cuts the output rows into pieces that start at multiples of 16 (so no two threads
// write into the same 64-byte cache line of an output row) and that the pool's threads claim one
// by one. A kernel's output row does not depend on the range it is computed in (the row tiles
// start at multiples of 16 and the last ends at M whatever the cut), so the results are the same
// bits for every thread count.
#include "model/linear.h"

#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/tl.h"
#include "model/model.h"
#include "util/common.h"

namespace bitnet {

namespace {

constexpr int64_t kRowAlign = 16;

// The fewest multiply-adds worth a piece of a matmul (tens of microseconds of kernel time on one
// core, against about a microsecond to claim and hand over a piece): smaller matmuls, like a
// token through a small model, run on the caller alone.
constexpr int64_t kMinPieceWork = 1 << 18;

// Calls fn(m0, m1) over pieces of the M output rows of an (M x K) x (K x n) product, started at
// multiples of align, on the pool.
template <typename F>
void for_rows(Context& ctx, int64_t M, int64_t K, int64_t n, int64_t align, F&& fn) {
    const int64_t per_row = K * n > 0 ? K * n : 1;
    const int64_t grain = (kMinPieceWork + per_row - 1) / per_row;
    ctx.pool->for_range(M, align, grain, [&](int64_t m0, int64_t m1, int) { fn(m0, m1); });
}

bool is_tq(uint32_t type) { return type == TYPE_TQ1_0 || type == TYPE_TQ2_0; }
bool is_tl(uint32_t type) { return type == TYPE_TL1 || type == TYPE_TL2; }

// The GGUF key that records the row block a TL file was packed with (see kernels/tl.h).
constexpr const char* kTLBlockKey = "bitnet.tl.bm";
constexpr const char* kTLLayoutKey = "bitnet.tl.layout";

// Reads the per-tensor scale and the exact divisor our converter stores after the packed weights
// (I2_S and TL share the 32-byte trailer layout).
void bind_trailer_scale(const GGUFFile& f, Linear& l, const uint8_t* trailer) {
    float div = 0.0f;
    std::memcpy(&l.scale, trailer, sizeof(float));
    std::memcpy(&div, trailer + 4, sizeof(float));
    if (!(l.scale > 0.0f) || l.scale > 1e30f)
        fail("%s: tensor '%s' has an invalid %s scale %g", f.path().c_str(), l.t->name.c_str(),
             type_name(l.type).c_str(), (double)l.scale);
    // Our converter stores the checkpoint's exact divisor in the trailer's padding (see
    // utils/ternary.py: pack_i2s); files from elsewhere have zeros there.
    const bool exact = div > 0.0f && std::fabs((double)div * l.scale - 1.0) < 1e-5;
    l.divisor = exact ? div : 1.0f / l.scale;
}

// A TL tensor is readable only in the layout this build's kernels use.
void check_tl_layout(const GGUFFile& f, const GGUFTensor& t) {
    const int64_t bm = f.get_int(kTLBlockKey, 0);
    if (bm == 0)
        fail("%s: tensor '%s' is %s but the file has no '%s' key: it was not written by this "
             "project's converter (bitnet.cpp's TL layout depends on its build's kernel_config.ini "
             "and is not readable); convert the checkpoint again with "
             "`python utils/convert_hf_to_gguf.py MODEL_DIR --outtype %s`",
             f.path().c_str(), t.name.c_str(), type_name(t.type).c_str(), kTLBlockKey,
             t.type == TYPE_TL1 ? "tl1" : "tl2");
    const int64_t layout = f.get_int(kTLLayoutKey, 0);
    if (layout != TL_LAYOUT)
        fail("%s: tensor '%s' is in TL byte layout version %lld ('%s') but this build reads version "
             "%lld: convert the checkpoint again with this checkout's "
             "`python utils/convert_hf_to_gguf.py MODEL_DIR --outtype %s`",
             f.path().c_str(), t.name.c_str(), (long long)layout, kTLLayoutKey, (long long)TL_LAYOUT,
             t.type == TYPE_TL1 ? "tl1" : "tl2");
    if (bm != TL_BM)
        fail("%s: tensor '%s' was packed with TL row blocks of %lld but this build's kernels use "
             "%lld: convert the checkpoint again with this checkout's "
             "`python utils/convert_hf_to_gguf.py MODEL_DIR --outtype %s`",
             f.path().c_str(), t.name.c_str(), (long long)bm, (long long)TL_BM,
             t.type == TYPE_TL1 ? "tl1" : "tl2");
}

// A zero-d TQ block stands for the zero matrix only if its codes are all 1; then it agrees with
// any common d.
bool tq_block_is_zero(uint32_t type, const uint8_t* block) {
    const size_t bytes = type_traits(type)->block_bytes;
    uint8_t copy[64 + 2];
    std::memcpy(copy, block, bytes);
    const uint16_t one = fp32_to_fp16(1.0f);
    std::memcpy(copy + bytes - 2, &one, 2);  // d is the last field of both layouts
    float v[QK_K];
    dequantize_row(type, copy, QK_K, 0, v);
    for (float x : v)
        if (x != 0.0f) return false;
    return true;
}

// For a TQ tensor: the common d of all its blocks (the ternary matmul then runs as I2_S with that
// scale), or block_scales when they differ.
void bind_tq_scales(Linear& l) {
    const int64_t nb = l.in / QK_K;
    const size_t row_bytes = quant_row_bytes(l.type, l.in), block_bytes = row_bytes / nb;
    bool found = false, uniform = true;
    float d = 0.0f;
    for (int64_t m = 0; m < l.out && uniform; ++m) {
        const uint8_t* row = l.data + m * row_bytes;
        for (int64_t b = 0; b < nb && uniform; ++b) {
            const float db = tq_block_d(l.type, row, b);
            if (db == 0.0f && tq_block_is_zero(l.type, row + b * block_bytes)) continue;
            if (!found) {
                d = db;
                found = true;
            }
            uniform = db == d;
        }
    }
    if (uniform && found && std::isfinite(d) && d != 0.0f) {
        l.scale = d;
        l.divisor = 1.0f / d;
    } else if (found) {
        l.block_scales = true;
    }
    // No block with weights (found false): every code is 1, so the I2_S-style path computes
    // Σ code·q - Σ q = 0 whatever the scale, exact zeros.
}

}  // namespace

Linear bind_linear(const GGUFFile& f, const GGUFTensor& t, bool ternary) {
    const std::string& name = t.name;
    const int64_t in = t.ne[0], out = t.n_dims > 1 ? t.ne[1] : 1;
    Linear l;
    l.t = &t;
    l.type = t.type;
    l.in = in;
    l.out = out;
    l.data = t.data;
    const uint32_t ty = t.type;
    const bool float_ok = ty == TYPE_F32 || ty == TYPE_F16;
    const bool ok = ternary ? (float_ok || ty == TYPE_I2_S || is_tq(ty) || is_tl(ty))
                            : (float_ok || act_block_size(ty) != 0);
    if (!ok)
        fail("%s: tensor '%s' has type %s, which this engine cannot use there (expected %s)",
             f.path().c_str(), name.c_str(), type_name(ty).c_str(),
             ternary ? "I2_S, TL1, TL2, TQ1_0, TQ2_0, F16 or F32" : "F32, F16, Q8_0, Q6_K or Q4_0");
    if (ty == TYPE_I2_S)  // rows padded to whole 128-value blocks, then the trailer
        bind_trailer_scale(f, l, t.data + (size_t)(out * (i2s_padded_k(in) / 4)));
    if (is_tl(ty)) {
        check_tl_layout(f, t);
        bind_trailer_scale(f, l, t.data + t.nbytes - TL_TRAILER);
    }
    if (is_tq(ty)) bind_tq_scales(l);
    return l;
}

void quantize_batch(Context& ctx, const float* x, int64_t n, int64_t k, QuantBatch& qb) {
    const int64_t ldq = i2s_padded_k(k);
    qb.n = n;
    qb.k = k;
    qb.ldq = ldq;
    if ((int64_t)qb.q.size() < n * ldq) qb.q.resize(n * ldq);
    qb.scale.resize(n);
    qb.qsum.resize(n);
    const quantize_act_fn quant = kernels().quantize_act;
    ctx.pool->for_each_row(n, [&](int64_t i) {
        int8_t* q = qb.q.data() + i * ldq;
        quant(x + i * k, k, q, &qb.scale[i], &qb.qsum[i]);
        std::memset(q + k, 0, (size_t)(ldq - k));
    }, (16384 + k - 1) / k);
}

void linear_forward(Context& ctx, const Linear& lin, const QuantBatch& qb, float* out) {
    const int64_t n = qb.n, K = lin.in, M = lin.out, ldq = qb.ldq;
    BITNET_ASSERT(qb.k == K);
    const int8_t* Q = qb.q.data();
    if (is_tl(lin.type) || lin.type == TYPE_I2_S || (is_tq(lin.type) && !lin.block_scales)) {
        // Exact integer products, one kernel signature: the TL kernels give Σ t·q; I2_S and TQ
        // store codes t+1, so theirs are Σ code·q = Σ t·q + Σ q, and Σ q comes off. The reference
        // (transformers' BitLinear) then computes y / (weight_scale * input_scale) in float32: the
        // same two roundings here give the same bits.
        i2s_gemm_fn gemm;
        int64_t k_arg = K, align = kRowAlign;
        bool codes = true;
        if (is_tl(lin.type)) {
            gemm = tl_gemm_for(tl_kernels(), lin.type, M, K);
            align = TL_BM;
            codes = false;
        } else if (lin.type == TYPE_I2_S) {
            gemm = kernels().i2s_gemm;
            k_arg = i2s_padded_k(K);
        } else {
            const QuantKernelSet& qs = quant_kernels();
            gemm = lin.type == TYPE_TQ1_0 ? qs.tq1_0_gemm_i32 : qs.tq2_0_gemm_i32;
        }
        int32_t* acc = ctx.acc.data();
        for_rows(ctx, M, K, n, align, [&](int64_t m0, int64_t m1) {
            gemm(lin.data, k_arg, Q, ldq, n, acc, M, m0, m1);
            for (int64_t i = 0; i < n; ++i) {
                const float d = qb.scale[i] * lin.divisor;
                const int32_t offset = codes ? qb.qsum[i] : 0;
                for (int64_t m = m0; m < m1; ++m) out[i * M + m] = (float)(acc[i * M + m] - offset) / d;
            }
        });
        return;
    }
    if (is_tq(lin.type)) {
        // Blocks with their own d: Σ_b d_b (Σ t·q) in float, then the activation scale.
        const QuantKernelSet& qs = quant_kernels();
        const tq_gemm_f32_fn tq = lin.type == TYPE_TQ1_0 ? qs.tq1_0_gemm_f32 : qs.tq2_0_gemm_f32;
        for_rows(ctx, M, K, n, kRowAlign, [&](int64_t m0, int64_t m1) {
            tq(lin.data, K, Q, ldq, n, out, M, m0, m1);
            for (int64_t i = 0; i < n; ++i)
                for (int64_t m = m0; m < m1; ++m) out[i * M + m] /= qb.scale[i];
        });
        return;
    }
    // F32/F16 ternary weights (already multiplied by their scale): the same BitLinear arithmetic
    // with the integer activations as floats.
    if ((int64_t)ctx.deq.size() < n * K) ctx.deq.resize(n * K);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < K; ++k) ctx.deq[i * K + k] = (float)Q[i * ldq + k];
    float_matmul(ctx, lin, ctx.deq.data(), n, out);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t m = 0; m < M; ++m) out[i * M + m] /= qb.scale[i];
}

void float_matmul(Context& ctx, const Linear& lin, const float* x, int64_t n, float* out) {
    const int64_t K = lin.in, M = lin.out;
    if (lin.type == TYPE_F32 || lin.type == TYPE_F16) {
        const KernelSet& ks = kernels();
        for_rows(ctx, M, K, n, kRowAlign, [&](int64_t m0, int64_t m1) {
            if (lin.type == TYPE_F32)
                ks.f32_gemm((const float*)lin.data, K, x, K, n, out, M, m0, m1);
            else
                ks.f16_gemm((const uint16_t*)lin.data, K, x, K, n, out, M, m0, m1);
        });
        return;
    }
    // Block-quantized weights: the activations quantized per block to int8 once, as llama.cpp
    // does, then integer block products. The buffer belongs to the thread that runs the forward
    // pass (the workers reach it through this reference, not through their own thread_local).
    const qgemm_fn gemm = quant_gemm_for(quant_kernels(), lin.type);
    BITNET_ASSERT(gemm != nullptr);
    thread_local ActBlocks act_buf;
    ActBlocks& act = act_buf;
    act_blocks_resize(act, n, K, act_block_size(lin.type));
    ctx.pool->for_each_row(n, [&](int64_t i) { act_blocks_quantize_row(x + i * K, act, i); },
                          (16384 + K - 1) / K);
    for_rows(ctx, M, K, n, kRowAlign, [&](int64_t m0, int64_t m1) {
        gemm(lin.data, K, act, out, M, m0, m1);
    });
}

}  // namespace bitnet
