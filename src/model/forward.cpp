// The transformer forward pass shared by every architecture the engine runs (bitnet-b1.58 /
// bitnet-25, bitnet, llama). What differs between them was resolved at load time into HParams
// (model.cpp): the FFN activation, whether sub-norms are present, and the RoPE pairing.
//
//   h = embed(tokens)
//   per layer:  n = attn_norm(h)
//               a = Attention(RoPE(Wq·n), RoPE(Wk·n), Wv·n)       grouped-query, causal, KV cache
//               h = h + Wo·[attn_sub_norm](a)
//               n = ffn_norm(h)
//               h = h + Wdown·[ffn_sub_norm](act(Wgate·n) * (Wup·n))  act = relu² | SiLU
//   logits = output · output_norm(h)      (output = token embedding when tied; through its
//                                          compact copy when certified, output_cert.h)
//
// qwen3 (BitNet embedding models) differs in two places: each W· normalizes its own input first
// (W·RMSNorm_W(n), transformers' BitLinear use_rms_norm: a separate int8 quantization per
// projection), and q and k get a per-head RMSNorm before RoPE.
//
// Every W· is a BitLinear: activations quantized per token to int8 (absmax), ternary weights,
// integer dot products, one float rescale (linear.cpp), then llama.cpp's optional per-tensor
// output scale. Scratch buffers live in the Context, so nothing here allocates per token.
//
// A batch holds tokens of one or several sequences (each with its own KV cache slot, see Context):
// the matmuls run once over all of them, so each weight is read once per step however many
// sequences advance; only RoPE, the cache writes and attention look at a token's sequence.
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "model/model.h"
#include "ops/ops.h"
#include "util/common.h"
#include "util/profile.h"

namespace bitnet {

namespace {

// The element-wise steps split by tokens: their results do not depend on the split, and a prompt
// batch of hundreds of tokens would otherwise leave all but one thread idle. Pieces of fewer than
// kMinPieceValues values are not worth handing to another thread (a microsecond of work against
// about as much to claim it), so one token, or a few of a small model, runs on the caller.
constexpr int64_t kMinPieceValues = 16384;

int64_t row_grain(int64_t k) { return k > 0 ? (kMinPieceValues + k - 1) / k : 1; }

void add_rows(Context& ctx, float* x, const float* y, int64_t n, int64_t k) {
    BITNET_PROFILE_SCOPE("residual");
    ctx.pool->for_each_row(n, [&](int64_t i) {
        float* xi = x + i * k;
        const float* yi = y + i * k;
        for (int64_t j = 0; j < k; ++j) xi[j] += yi[j];
    }, row_grain(k));
}

void norm_rows(Context& ctx, const float* x, const std::vector<float>& w, int64_t n, int64_t k,
               float eps, float* out) {
    BITNET_PROFILE_SCOPE("norm");
    ctx.pool->for_each_row(n, [&](int64_t i) { rms_norm(x + i * k, w.data(), k, eps, out + i * k); },
                          row_grain(k));
}

void quantize_rows(Context& ctx, const float* x, int64_t n, int64_t k, QuantBatch& qb) {
    BITNET_PROFILE_SCOPE("quantize");
    quantize_batch(ctx, x, n, k, qb);
}

// out(n, p.out) = BitLinear(p)(qb), times the projection's per-tensor scale when it has one.
void project(Context& ctx, const Proj& p, const QuantBatch& qb, float* out) {
    linear_forward(ctx, p.w, qb, out);
    if (p.scale != 1.0f)
        for (int64_t i = 0; i < qb.n * p.w.out; ++i) out[i] *= p.scale;
}

// out = BitLinear(p)(x) for n rows of length k; with a non-empty input norm `in`, of
// RMSNorm_in(x) (quantized on its own: the norm changes each row's absmax).
void project_rows(Context& ctx, const Proj& p, const std::vector<float>& in, const float* x,
                  int64_t n, int64_t k, float eps, QuantBatch& qb, float* out) {
    if (!in.empty()) {
        norm_rows(ctx, x, in, n, k, eps, ctx.xin.data());
        x = ctx.xin.data();
    }
    quantize_rows(ctx, x, n, k, qb);
    project(ctx, p, qb, out);
}

// fa = act(fa) * fb over n values (the buffers never overlap).
void gated_activation_row(FfnAct act, float* __restrict fa, const float* __restrict fb, int64_t n) {
    if (act == FfnAct::RELU2) {
        // relu(x) = x > 0 ? x : +0, written as a bit mask: compilers vectorize this, while the
        // select stayed a scalar loop whose branch on the sign mispredicted about every other
        // element (1 ms per token on the 2B4T shapes).
        for (int64_t i = 0; i < n; ++i) {
            const float x = fa[i];
            uint32_t bits;
            std::memcpy(&bits, &x, sizeof bits);
            bits &= x > 0.0f ? 0xffffffffu : 0u;
            float r;
            std::memcpy(&r, &bits, sizeof r);
            fa[i] = r * r * fb[i];
        }
    } else {
        // SiLU as torch evaluates it in float32: x / (1 + exp(-x)).
        for (int64_t i = 0; i < n; ++i) fa[i] = fa[i] / (1.0f + std::exp(-fa[i])) * fb[i];
    }
}

void gated_activation(Context& ctx, FfnAct act, float* fa, const float* fb, int64_t n, int64_t k) {
    BITNET_PROFILE_SCOPE("ffn-act");
    ctx.pool->for_each_row(n, [&](int64_t i) { gated_activation_row(act, fa + i * k, fb + i * k, k); },
                          row_grain(k));
}

}  // namespace

void batch_check(Context& ctx, const int32_t* tokens, const int32_t* seq_ids,
                 const int32_t* positions, int n) {
    const int n_vocab = ctx.model->hp.n_vocab;
    for (int s = 0; s < ctx.n_seq; ++s) ctx.seq_end[s] = ctx.seq_len[s];
    for (int i = 0; i < n; ++i) {
        const int s = seq_ids[i], pos = positions[i];
        if (s < 0 || s >= ctx.n_seq)
            fail("token %d of the batch: sequence id %d is out of range; this context has %d "
                 "sequence slot(s) (0..%d): create it with a larger n_seq_max",
                 i, s, ctx.n_seq, ctx.n_seq - 1);
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            fail("token %d of the batch: token id %d is outside the vocabulary (0..%d)", i,
                 tokens[i], n_vocab - 1);
        if (pos != ctx.seq_end[s])
            fail("token %d of the batch: position %d for sequence %d, expected %d: each sequence "
                 "continues at its current length (%d cached), one position per token",
                 i, pos, s, ctx.seq_end[s], ctx.seq_len[s]);
        if (pos >= ctx.n_ctx)
            fail("the context is full for sequence %d: token %d of the batch would take position "
                 "%d of a context of %d; use a larger context size or a shorter prompt, or clear "
                 "the sequence",
                 s, i, pos, ctx.n_ctx);
        ctx.seq_end[s] = pos + 1;
    }
}

void logits_reset(Context& ctx, int n) {
    ctx.n_logits = 0;
    ctx.logits_tok.clear();
    ctx.n_decoded = n;
}

void forward_batch(Context& ctx, const int32_t* tokens, const int32_t* seq_ids,
                   const int32_t* positions, const int8_t* want, int n, int first_index) {
    Model& m = *ctx.model;
    const HParams& hp = m.hp;
    BITNET_ASSERT(n > 0 && n <= ctx.n_batch);
    const int64_t d = hp.n_embd, hd = hp.head_dim, dq = (int64_t)hp.n_head * hd,
                  dkv = (int64_t)hp.n_head_kv * hd, ff = hp.n_ff;
    const float eps = hp.norm_eps;
    const auto rope = hp.rope == RopeType::NEOX ? rope_neox : rope_norm;
    float* x = ctx.x.data();
    float* xn = ctx.xn.data();

    // Each sequence's length after this batch: the key count of the reference's one attention
    // product over that sequence's tokens (attention_head's n_keys). It depends only on the
    // sequence, so its tokens get the same sums as when that sequence is decoded alone.
    for (int i = 0; i < n; ++i) ctx.seq_end[seq_ids[i]] = ctx.seq_len[seq_ids[i]];
    for (int i = 0; i < n; ++i) {
        const int s = seq_ids[i];
        BITNET_ASSERT(s >= 0 && s < ctx.n_seq && positions[i] == ctx.seq_end[s] &&
                      positions[i] < ctx.n_ctx);
        ctx.seq_end[s] = positions[i] + 1;
    }
    for (int i = 0; i < n; ++i) ctx.b_keys[i] = ctx.seq_end[seq_ids[i]];
    for (int i = 0; i < n; ++i) rope_angles((int)hd, positions[i], ctx.inv_freq.data(), ctx.rope_cs.data() + i * hd);

    {
        BITNET_PROFILE_SCOPE("embed");
        for (int i = 0; i < n; ++i) dequantize_row(m.tok_embd.type, m.tok_embd.data, d, tokens[i], x + i * d);
    }

    attention_prepare(ctx, seq_ids, positions, n);
    for (int l = 0; l < hp.n_layer; ++l) {
        const Layer& L = m.layers[l];

        // attention
        norm_rows(ctx, x, L.attn_norm, n, d, eps, xn);
        if (hp.norm_in) {
            BITNET_PROFILE_SCOPE("matmul-qkv");
            project_rows(ctx, L.wq, L.q_in, xn, n, d, eps, ctx.qa, ctx.q.data());
            project_rows(ctx, L.wk, L.k_in, xn, n, d, eps, ctx.qa, ctx.k.data());
            project_rows(ctx, L.wv, L.v_in, xn, n, d, eps, ctx.qa, ctx.v.data());
        } else {
            quantize_rows(ctx, xn, n, d, ctx.qa);
            BITNET_PROFILE_SCOPE("matmul-qkv");
            project(ctx, L.wq, ctx.qa, ctx.q.data());
            project(ctx, L.wk, ctx.qa, ctx.k.data());
            project(ctx, L.wv, ctx.qa, ctx.v.data());
        }
        if (hp.qk_norm) {
            BITNET_PROFILE_SCOPE("norm");
            ctx.pool->for_each_row(n, [&](int64_t i) {
                float* qi = ctx.q.data() + i * dq;
                float* ki = ctx.k.data() + i * dkv;
                for (int h = 0; h < hp.n_head; ++h) rms_norm(qi + h * hd, L.q_norm.data(), hd, eps, qi + h * hd);
                for (int h = 0; h < hp.n_head_kv; ++h) rms_norm(ki + h * hd, L.k_norm.data(), hd, eps, ki + h * hd);
            }, row_grain(dq + dkv));
        }
        {
            BITNET_PROFILE_SCOPE("rope");
            ctx.pool->for_each_row(n, [&](int64_t i) {
                rope(ctx.q.data() + i * dq, hp.n_head, (int)hd, ctx.rope_cs.data() + i * hd);
                rope(ctx.k.data() + i * dkv, hp.n_head_kv, (int)hd, ctx.rope_cs.data() + i * hd);
                kv_store(ctx, l, seq_ids[i], positions[i], ctx.k.data() + i * dkv, ctx.v.data() + i * dkv);
            }, row_grain(dq + dkv));
        }
        {
            BITNET_PROFILE_SCOPE("attention");
            attention_layer(ctx, l, seq_ids, positions, n);
        }
        if (hp.sub_norms) norm_rows(ctx, ctx.att.data(), L.attn_sub_norm, n, dq, eps, ctx.att.data());
        {
            BITNET_PROFILE_SCOPE("matmul-o");
            project_rows(ctx, L.wo, L.o_in, ctx.att.data(), n, dq, eps, ctx.qb, xn);
        }
        add_rows(ctx, x, xn, n, d);

        // feed-forward
        norm_rows(ctx, x, L.ffn_norm, n, d, eps, xn);
        if (hp.norm_in) {
            BITNET_PROFILE_SCOPE("matmul-ffn");
            project_rows(ctx, L.gate, L.gate_in, xn, n, d, eps, ctx.qa, ctx.ffa.data());
            project_rows(ctx, L.up, L.up_in, xn, n, d, eps, ctx.qa, ctx.ffb.data());
        } else {
            quantize_rows(ctx, xn, n, d, ctx.qa);
            BITNET_PROFILE_SCOPE("matmul-ffn");
            project(ctx, L.gate, ctx.qa, ctx.ffa.data());
            project(ctx, L.up, ctx.qa, ctx.ffb.data());
        }
        float* fa = ctx.ffa.data();
        gated_activation(ctx, hp.act, fa, ctx.ffb.data(), n, ff);
        if (hp.sub_norms) norm_rows(ctx, fa, L.ffn_sub_norm, n, ff, eps, fa);
        {
            BITNET_PROFILE_SCOPE("matmul-ffn");
            project_rows(ctx, L.down, L.down_in, fa, n, ff, eps, ctx.qb, xn);
        }
        add_rows(ctx, x, xn, n, d);
    }
    for (int i = 0; i < n; ++i) ctx.seq_len[seq_ids[i]] = ctx.seq_end[seq_ids[i]];

    // The output layer only for the tokens that want logits, their rows gathered into xn.
    int rows = 0;
    for (int i = 0; i < n; ++i)
        if (want[i]) ctx.b_rows[rows++] = i;
    if (rows == 0) return;
    const int32_t* src = ctx.b_rows.data();
    if (ctx.embd_out) {  // embeddings: the final hidden states themselves, no output layer
        BITNET_PROFILE_SCOPE("norm");
        ctx.pool->for_each_row(rows, [&](int64_t r) {
            rms_norm(x + src[r] * d, m.output_norm.data(), d, eps, ctx.embd_out + (first_index + src[r]) * d);
        }, row_grain(d));
        return;
    }
    {
        BITNET_PROFILE_SCOPE("norm");
        ctx.pool->for_each_row(rows, [&](int64_t r) {
            rms_norm(x + src[r] * d, m.output_norm.data(), d, eps, xn + r * d);
        }, row_grain(d));
    }
    const size_t first = (size_t)ctx.n_logits * hp.n_vocab;
    ctx.logits.resize(first + (size_t)rows * hp.n_vocab);
    {
        BITNET_PROFILE_SCOPE("output");
        if (output_cert_active(ctx))
            output_certified(ctx, xn, rows, ctx.logits.data() + first);
        else
            float_matmul(ctx, m.output, xn, rows, ctx.logits.data() + first);
    }
    for (int r = 0; r < rows; ++r) ctx.logits_tok.push_back(first_index + src[r]);
    ctx.n_logits += rows;
}

}  // namespace bitnet
