// Forward pass of BitNet b1.58 (architecture "bitnet-b1.58", the layout of
// microsoft/bitnet-b1.58-2B-4T and of Hugging Face's BitNetForCausalLM):
//
//   h = embed(tokens)
//   per layer:  a = attn_sub_norm(Attention(RoPE(Wq·n), RoPE(Wk·n), Wv·n))   n = attn_norm(h)
//               h = h + Wo·a
//               f = ffn_sub_norm(relu(Wgate·n)² * (Wup·n))                   n = ffn_norm(h)
//               h = h + Wdown·f
//   logits = output · output_norm(h)      (output = token embedding when tied)
//
// Every W· is a BitLinear: activations quantized per token to int8 (absmax), ternary weights,
// integer dot products, one float rescale. RoPE is the NEOX (rotate-half) form.
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "model/model.h"
#include "ops/ops.h"
#include "util/common.h"

namespace bitnet {

namespace {

void add_in_place(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void norm_rows(Context& ctx, const float* x, const std::vector<float>& w, int64_t n, int64_t k,
               float eps, float* out) {
    ctx.pool->for_each_row(n, [&](int64_t i) { rms_norm(x + i * k, w.data(), k, eps, out + i * k); });
}

}  // namespace

void forward_bitnet_b158(Context& ctx, const int32_t* tokens, int n, bool logits_all) {
    Model& m = *ctx.model;
    const HParams& hp = m.hp;
    BITNET_ASSERT(n > 0 && n <= ctx.n_batch && ctx.n_past + n <= ctx.n_ctx);
    const int64_t d = hp.n_embd, hd = hp.head_dim, dq = (int64_t)hp.n_head * hd,
                  dkv = (int64_t)hp.n_head_kv * hd, ff = hp.n_ff;
    const int group = hp.n_head / hp.n_head_kv;
    const float eps = hp.norm_eps, att_scale = 1.0f / std::sqrt((float)hd);
    float* x = ctx.x.data();
    float* xn = ctx.xn.data();

    for (int i = 0; i < n; ++i) dequantize_row(m.tok_embd.type, m.tok_embd.data, d, tokens[i], x + i * d);

    for (int l = 0; l < hp.n_layer; ++l) {
        const Layer& L = m.layers[l];
        float* kc = ctx.k_cache.data() + (size_t)l * ctx.n_ctx * dkv;
        float* vc = ctx.v_cache.data() + (size_t)l * ctx.n_ctx * dkv;

        // attention
        norm_rows(ctx, x, L.attn_norm, n, d, eps, xn);
        quantize_batch(ctx, xn, n, d, ctx.qa);
        linear_forward(ctx, L.wq, ctx.qa, ctx.q.data());
        linear_forward(ctx, L.wk, ctx.qa, ctx.k.data());
        linear_forward(ctx, L.wv, ctx.qa, ctx.v.data());
        for (int i = 0; i < n; ++i) {
            const int pos = ctx.n_past + i;
            rope_neox(ctx.q.data() + i * dq, hp.n_head, (int)hd, pos, ctx.inv_freq.data());
            rope_neox(ctx.k.data() + i * dkv, hp.n_head_kv, (int)hd, pos, ctx.inv_freq.data());
            std::memcpy(kc + (size_t)pos * dkv, ctx.k.data() + i * dkv, dkv * sizeof(float));
            std::memcpy(vc + (size_t)pos * dkv, ctx.v.data() + i * dkv, dkv * sizeof(float));
        }
        ctx.pool->run([&](int ith, int nth) {
            float* scratch = ctx.scores.data() + (size_t)ith * ctx.n_ctx;
            const int64_t units = (int64_t)n * hp.n_head;
            int64_t b, e;
            ThreadPool::split(units, ith, nth, 1, &b, &e);
            for (int64_t u = b; u < e; ++u) {
                const int i = (int)(u / hp.n_head), h = (int)(u % hp.n_head);
                const int64_t kvo = (int64_t)(h / group) * hd;
                attention_head(ctx.q.data() + i * dq + h * hd, kc + kvo, vc + kvo, dkv,
                               ctx.n_past + i + 1, (int)hd, att_scale, scratch,
                               ctx.att.data() + i * dq + h * hd);
            }
        });
        norm_rows(ctx, ctx.att.data(), L.attn_sub_norm, n, dq, eps, ctx.att.data());
        quantize_batch(ctx, ctx.att.data(), n, dq, ctx.qb);
        linear_forward(ctx, L.wo, ctx.qb, xn);
        add_in_place(x, xn, n * d);

        // feed-forward
        norm_rows(ctx, x, L.ffn_norm, n, d, eps, xn);
        quantize_batch(ctx, xn, n, d, ctx.qa);
        linear_forward(ctx, L.gate, ctx.qa, ctx.ffa.data());
        linear_forward(ctx, L.up, ctx.qa, ctx.ffb.data());
        float* fa = ctx.ffa.data();
        const float* fb = ctx.ffb.data();
        for (int64_t i = 0; i < n * ff; ++i) {
            const float r = fa[i] > 0.0f ? fa[i] : 0.0f;  // relu²
            fa[i] = r * r * fb[i];
        }
        norm_rows(ctx, fa, L.ffn_sub_norm, n, ff, eps, fa);
        quantize_batch(ctx, fa, n, ff, ctx.qb);
        linear_forward(ctx, L.down, ctx.qb, xn);
        add_in_place(x, xn, n * d);
    }

    const int first = logits_all ? 0 : n - 1;
    const int rows = n - first;
    norm_rows(ctx, x + (int64_t)first * d, m.output_norm, rows, d, eps, xn);
    ctx.logits.resize((size_t)rows * hp.n_vocab);
    float_matmul(ctx, m.output, xn, rows, ctx.logits.data());
    ctx.n_logits = rows;
    ctx.logits_first = first;
    ctx.n_past += n;
}

}  // namespace bitnet
