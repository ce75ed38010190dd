// Model loading (hyperparameters, tensor binding with shape and type checks, tokenizer) and the
// pieces of the forward pass shared by architectures: BitLinear with int8 activations over the
// ternary kernels, float matmul for the embedding/output matrix, and the inference context.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "kernels/kernels.h"
#include "ops/ops.h"
#include "util/common.h"

namespace bitnet {

namespace {

// Architectures whose forward pass this engine has, by GGUF name. "bitnet-25" is the name older
// bitnet.cpp conversions of the 2B4T model use.
bool arch_is_bitnet_b158(const std::string& a) { return a == "bitnet-b1.58" || a == "bitnet-25"; }

const GGUFTensor& require_tensor(const GGUFFile& f, const std::string& name) {
    const GGUFTensor* t = f.find_tensor(name);
    if (!t)
        fail("%s: missing tensor '%s': the file is incomplete or was made for another architecture; "
             "convert the model again with utils/convert_hf_to_gguf.py",
             f.path().c_str(), name.c_str());
    return *t;
}

void check_shape(const GGUFFile& f, const GGUFTensor& t, int64_t ne0, int64_t ne1) {
    const bool ok = ne1 == 0 ? (t.n_dims == 1 && t.ne[0] == ne0)
                             : (t.n_dims == 2 && t.ne[0] == ne0 && t.ne[1] == ne1);
    if (!ok)
        fail("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] from the model's "
             "hyperparameters: the file is inconsistent; convert the model again",
             f.path().c_str(), t.name.c_str(), (long long)t.ne[0],
             (long long)(t.n_dims > 1 ? t.ne[1] : 1), (long long)ne0, (long long)(ne1 ? ne1 : 1));
}

std::vector<float> load_vector(const GGUFFile& f, const std::string& name, int64_t n) {
    const GGUFTensor& t = require_tensor(f, name);
    check_shape(f, t, n, 0);
    if (t.type != TYPE_F32 && t.type != TYPE_F16 && t.type != TYPE_BF16)
        fail("%s: tensor '%s' has type %s; norm weights must be F32, F16 or BF16",
             f.path().c_str(), name.c_str(), type_name(t.type).c_str());
    std::vector<float> v((size_t)n);
    dequantize_row(t.type, t.data, n, 0, v.data());
    return v;
}

Linear load_linear(const GGUFFile& f, const std::string& name, int64_t in, int64_t out,
                   bool ternary) {
    const GGUFTensor& t = require_tensor(f, name);
    check_shape(f, t, in, out);
    Linear l;
    l.t = &t;
    l.type = t.type;
    l.in = in;
    l.out = out;
    l.data = t.data;
    const bool ok = t.type == TYPE_F32 || t.type == TYPE_F16 || (ternary && t.type == TYPE_I2_S);
    if (!ok)
        fail("%s: tensor '%s' has type %s, which this engine cannot use there (expected %s)",
             f.path().c_str(), name.c_str(), type_name(t.type).c_str(),
             ternary ? "I2_S, F16 or F32" : "F16 or F32");
    if (t.type == TYPE_I2_S) {
        const uint8_t* trailer = t.data + (size_t)(in * out / 4);
        float div = 0.0f;
        std::memcpy(&l.scale, trailer, sizeof(float));
        std::memcpy(&div, trailer + 4, sizeof(float));
        if (!(l.scale > 0.0f) || l.scale > 1e30f)
            fail("%s: tensor '%s' has an invalid I2_S scale %g", f.path().c_str(), name.c_str(),
                 (double)l.scale);
        // Our converter stores the checkpoint's exact divisor in the trailer's padding (see
        // utils/ternary.py: pack_i2s); files from elsewhere have zeros there.
        const bool exact = div > 0.0f && std::fabs((double)div * l.scale - 1.0) < 1e-5;
        l.divisor = exact ? div : 1.0f / l.scale;
    }
    return l;
}

int get_hparam(const GGUFFile& f, const std::string& key, int64_t def = -1) {
    int64_t v = def < 0 ? f.get_int(key) : f.get_int(key, def);
    if (v <= 0 || v > (1 << 28))
        fail("%s: metadata '%s' = %lld is out of range", f.path().c_str(), key.c_str(),
             (long long)v);
    return (int)v;
}

std::string human_count(uint64_t n) {
    if (n >= 1000000000ull) return strfmt("%.2fB", n / 1e9);
    if (n >= 1000000ull) return strfmt("%.1fM", n / 1e6);
    return strfmt("%.1fK", n / 1e3);
}

std::unique_ptr<Tokenizer> load_tokenizer(const GGUFFile& f) {
    TokenizerConfig c;
    c.model = f.get_str("tokenizer.ggml.model");
    if (c.model != "gpt2")
        fail("%s: tokenizer model '%s' is not supported (this engine reads byte-level BPE "
             "vocabularies, tokenizer.ggml.model = gpt2)",
             f.path().c_str(), c.model.c_str());
    c.pre = f.get_str("tokenizer.ggml.pre", "default");
    c.tokens = f.get_str_array("tokenizer.ggml.tokens");
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) c.token_types.push_back((int32_t)t);
    if (f.find("tokenizer.ggml.merges")) c.merges = f.get_str_array("tokenizer.ggml.merges");
    c.bos = (int32_t)f.get_int("tokenizer.ggml.bos_token_id", -1);
    c.eos = (int32_t)f.get_int("tokenizer.ggml.eos_token_id", -1);
    c.eot = (int32_t)f.get_int("tokenizer.ggml.eot_token_id", -1);
    c.pad = (int32_t)f.get_int("tokenizer.ggml.padding_token_id", -1);
    c.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true);
    const int32_t n = (int32_t)c.tokens.size();
    for (int32_t id : {c.bos, c.eos, c.eot, c.pad})
        if (id >= n)
            fail("%s: a special token id (%d) is past the end of the vocabulary (%d tokens)",
                 f.path().c_str(), id, n);
    return std::make_unique<Tokenizer>(std::move(c));
}

}  // namespace

std::unique_ptr<Model> model_load(const std::string& path) {
    auto m = std::make_unique<Model>();
    m->file = GGUFFile::open(path);
    const GGUFFile& f = *m->file;
    HParams& hp = m->hp;

    hp.arch = f.get_str("general.architecture");
    if (!arch_is_bitnet_b158(hp.arch))
        fail("%s: unknown model architecture '%s' (this engine runs: bitnet-b1.58)", path.c_str(),
             hp.arch.c_str());
    const std::string p = hp.arch + ".";
    hp.n_ctx_train = get_hparam(f, p + "context_length");
    hp.n_embd = get_hparam(f, p + "embedding_length");
    hp.n_layer = get_hparam(f, p + "block_count");
    hp.n_ff = get_hparam(f, p + "feed_forward_length");
    hp.n_head = get_hparam(f, p + "attention.head_count");
    hp.n_head_kv = get_hparam(f, p + "attention.head_count_kv", hp.n_head);
    hp.head_dim = get_hparam(f, p + "rope.dimension_count", hp.n_embd / hp.n_head);
    hp.norm_eps = (float)f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5);
    hp.rope_theta = (float)f.get_float(p + "rope.freq_base", 10000.0);
    if (hp.n_head % hp.n_head_kv != 0 || hp.head_dim % 2 != 0 || hp.n_layer > 4096)
        fail("%s: inconsistent attention hyperparameters (heads %d, kv heads %d, head dim %d)",
             path.c_str(), hp.n_head, hp.n_head_kv, hp.head_dim);

    m->tokenizer = load_tokenizer(f);

    const GGUFTensor& embd = require_tensor(f, "token_embd.weight");
    if (embd.n_dims != 2 || embd.ne[0] != hp.n_embd)
        fail("%s: tensor 'token_embd.weight' has row length %lld, expected %d", path.c_str(),
             (long long)embd.ne[0], hp.n_embd);
    hp.n_vocab = (int)embd.ne[1];
    if (hp.n_vocab < m->tokenizer->n_vocab())
        fail("%s: the embedding has %d rows but the vocabulary has %d tokens", path.c_str(),
             hp.n_vocab, m->tokenizer->n_vocab());
    m->tok_embd = load_linear(f, "token_embd.weight", hp.n_embd, hp.n_vocab, false);
    m->output = f.find_tensor("output.weight")
                    ? load_linear(f, "output.weight", hp.n_embd, hp.n_vocab, false)
                    : m->tok_embd;
    m->output_norm = load_vector(f, "output_norm.weight", hp.n_embd);

    const int64_t d = hp.n_embd, dq = (int64_t)hp.n_head * hp.head_dim,
                  dkv = (int64_t)hp.n_head_kv * hp.head_dim, ff = hp.n_ff;
    for (int i = 0; i < hp.n_layer; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        Layer L;
        L.attn_norm = load_vector(f, b + "attn_norm.weight", d);
        L.wq = load_linear(f, b + "attn_q.weight", d, dq, true);
        L.wk = load_linear(f, b + "attn_k.weight", d, dkv, true);
        L.wv = load_linear(f, b + "attn_v.weight", d, dkv, true);
        L.attn_sub_norm = load_vector(f, b + "attn_sub_norm.weight", dq);
        L.wo = load_linear(f, b + "attn_output.weight", dq, d, true);
        L.ffn_norm = load_vector(f, b + "ffn_norm.weight", d);
        L.gate = load_linear(f, b + "ffn_gate.weight", d, ff, true);
        L.up = load_linear(f, b + "ffn_up.weight", d, ff, true);
        L.ffn_sub_norm = load_vector(f, b + "ffn_sub_norm.weight", ff);
        L.down = load_linear(f, b + "ffn_down.weight", ff, d, true);
        m->layers.push_back(std::move(L));
    }

    for (const GGUFTensor& t : f.tensors()) {
        m->n_params += (uint64_t)t.n_elements();
        m->n_bytes += t.nbytes;
    }
    const uint32_t wtype = m->layers.empty() ? m->tok_embd.type : m->layers[0].wq.type;
    m->desc = hp.arch + " " + human_count(m->n_params) + " " + type_name(wtype);
    return m;
}

std::unique_ptr<Context> context_new(Model* model, int n_ctx, int n_threads, int n_batch) {
    const HParams& hp = model->hp;
    auto c = std::make_unique<Context>();
    c->model = model;
    c->n_ctx = n_ctx > 0 ? n_ctx : hp.n_ctx_train;
    if (n_threads <= 0) n_threads = (int)std::max(1u, std::thread::hardware_concurrency());
    c->n_batch = std::min(n_batch > 0 ? n_batch : 512, c->n_ctx);
    if (c->n_ctx > (1 << 20)) fail("context size %d is too large", c->n_ctx);
    c->pool = std::make_unique<ThreadPool>(n_threads);

    const int64_t dkv = (int64_t)hp.n_head_kv * hp.head_dim, dq = (int64_t)hp.n_head * hp.head_dim;
    const size_t cache = (size_t)hp.n_layer * c->n_ctx * dkv;
    c->k_cache.assign(cache, 0.0f);
    c->v_cache.assign(cache, 0.0f);
    c->inv_freq.resize(hp.head_dim / 2);
    rope_inv_freq(hp.rope_theta, hp.head_dim, c->inv_freq.data());

    const int64_t nb = c->n_batch;
    const int64_t widest = std::max<int64_t>({hp.n_embd, dq, hp.n_ff});
    c->x.resize(nb * hp.n_embd);
    c->xn.resize(nb * widest);
    c->q.resize(nb * dq);
    c->k.resize(nb * dkv);
    c->v.resize(nb * dkv);
    c->att.resize(nb * dq);
    c->ffa.resize(nb * hp.n_ff);
    c->ffb.resize(nb * hp.n_ff);
    c->acc.resize(nb * widest);
    c->scores.resize((size_t)n_threads * c->n_ctx);
    return c;
}

void quantize_batch(Context& ctx, const float* x, int64_t n, int64_t k, QuantBatch& qb) {
    qb.n = n;
    qb.k = k;
    if ((int64_t)qb.q.size() < n * k) qb.q.resize(n * k);
    qb.scale.resize(n);
    qb.qsum.resize(n);
    const quantize_act_fn quant = kernels().quantize_act;
    ctx.pool->for_each_row(n, [&](int64_t i) {
        quant(x + i * k, k, qb.q.data() + i * k, &qb.scale[i], &qb.qsum[i]);
    });
}

// Rows of the output split across threads in multiples of 16, so that no two threads write into
// the same 64-byte cache line of an output row.
static constexpr int64_t kRowAlign = 16;

void linear_forward(Context& ctx, const Linear& lin, const QuantBatch& qb, float* out) {
    const int64_t n = qb.n, K = lin.in, M = lin.out;
    BITNET_ASSERT(qb.k == K);
    const KernelSet& ks = kernels();
    if (lin.type == TYPE_I2_S) {
        int32_t* acc = ctx.acc.data();
        ctx.pool->run([&](int ith, int nth) {
            int64_t m0, m1;
            ThreadPool::split(M, ith, nth, kRowAlign, &m0, &m1);
            if (m0 >= m1) return;
            ks.i2s_gemm(lin.data, K, qb.q.data(), K, n, acc, M, m0, m1);
            // The codes are t+1, so Σ code·q = Σ t·q + Σ q, exact in integers. The reference
            // (transformers' BitLinear) then computes y / (weight_scale * input_scale) in float32:
            // the same two roundings here give the same bits.
            for (int64_t i = 0; i < n; ++i) {
                const float d = qb.scale[i] * lin.divisor;
                for (int64_t m = m0; m < m1; ++m)
                    out[i * M + m] = (float)(acc[i * M + m] - qb.qsum[i]) / d;
            }
        });
        return;
    }
    // F32/F16 ternary weights (already multiplied by their scale): the same BitLinear arithmetic
    // with the integer activations as floats.
    if ((int64_t)ctx.deq.size() < n * K) ctx.deq.resize(n * K);
    for (int64_t i = 0; i < n * K; ++i) ctx.deq[i] = (float)qb.q[i];
    float_matmul(ctx, lin, ctx.deq.data(), n, out);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t m = 0; m < M; ++m) out[i * M + m] /= qb.scale[i];
}

void float_matmul(Context& ctx, const Linear& lin, const float* x, int64_t n, float* out) {
    const int64_t K = lin.in, M = lin.out;
    const KernelSet& ks = kernels();
    ctx.pool->run([&](int ith, int nth) {
        int64_t m0, m1;
        ThreadPool::split(M, ith, nth, kRowAlign, &m0, &m1);
        if (m0 >= m1) return;
        if (lin.type == TYPE_F32)
            ks.f32_gemm((const float*)lin.data, K, x, K, n, out, M, m0, m1);
        else if (lin.type == TYPE_F16)
            ks.f16_gemm((const uint16_t*)lin.data, K, x, K, n, out, M, m0, m1);
        else
            BITNET_ASSERT(!"float_matmul: unsupported type");
    });
}

}  // namespace bitnet
