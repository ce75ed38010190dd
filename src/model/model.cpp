// Model loading (hyperparameters, tensor binding with shape and type checks, tokenizer) and the
// pieces of the forward pass shared by architectures: BitLinear with int8 activations over the
// ternary kernels, float matmul for the embedding/output matrix, and the inference context.
#include "model/model.h"
#include "model/linear.h"

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <new>
#include <thread>

#include "kernels/kernels.h"
#include "ops/ops.h"
#include "util/common.h"

namespace bitnet {

namespace {

// The architectures this engine runs, by GGUF name, and how their blocks differ:
//   bitnet-b1.58  BitNet b1.58 2B4T as bitnet.cpp writes it ("bitnet-25" in its older files):
//                 relu² FFN, sub-norms, NEOX RoPE on unpermuted Q/K;
//   bitnet        1bitLLM's bitnet_b1_58 models (SiLU FFN, sub-norms, NEOX), and also the 2B4T as
//                 llama.cpp converts it (relu², see resolve_activation);
//   llama         ternary Llama-3 / Falcon3 / Falcon-E: SiLU FFN, no sub-norms, NORM RoPE on Q/K
//                 rows permuted by the converter (llama.cpp's convention).
struct ArchTraits {
    const char* name;
    FfnAct act;  // default when the file does not name its activation
    RopeType rope;
    bool sub_norms;
};
constexpr ArchTraits kArchs[] = {
    {"bitnet-b1.58", FfnAct::RELU2, RopeType::NEOX, true},
    {"bitnet-25", FfnAct::RELU2, RopeType::NEOX, true},
    {"bitnet", FfnAct::SILU, RopeType::NEOX, true},
    {"llama", FfnAct::SILU, RopeType::NORM, false},
    {"qwen3", FfnAct::SILU, RopeType::NEOX, false},
};

const ArchTraits* find_arch(const std::string& a) {
    for (const ArchTraits& t : kArchs)
        if (a == t.name) return &t;
    return nullptr;
}

// The FFN activation. A file that names it ('<arch>.hidden_activation', written by our converter
// and by llama.cpp's for the 2B4T) is taken at its word. Otherwise the architecture decides,
// except that a "bitnet" file holding the 2B4T (llama.cpp converts it to "bitnet", older versions
// without the key, and then run it with SiLU: perplexity ~100 instead of ~17) must still run
// relu². It is recognized by what 1bitLLM's models (32002-token Llama-2 vocabulary, one KV head
// per head) never have: grouped-query attention, a 128256-row (Llama-3) embedding, or the 2B4T's
// name in general.name.
FfnAct resolve_activation(const GGUFFile& f, const ArchTraits& arch, const HParams& hp) {
    const std::string key = hp.arch + ".hidden_activation";
    const std::string act = f.get_str(key, "");
    if (act == "relu2" || act == "relu_sqr" || act == "relu_squared") return FfnAct::RELU2;
    if (act == "silu" || act == "swish" || act == "swiglu") return FfnAct::SILU;
    if (!act.empty())
        fail("%s: '%s' = '%s' is not an activation this engine has (relu2, silu)",
             f.path().c_str(), key.c_str(), act.c_str());
    if (hp.arch == "bitnet") {
        const GGUFTensor* embd = f.find_tensor("token_embd.weight");
        std::string name = f.get_str("general.name", "");
        for (char& c : name) c = (char)std::tolower((unsigned char)c);
        if (hp.n_head_kv != hp.n_head || (embd && embd->n_dims == 2 && embd->ne[1] == 128256) ||
            name.find("2b-4t") != std::string::npos || name.find("2b4t") != std::string::npos)
            return FfnAct::RELU2;
    }
    return arch.act;
}

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
    return bind_linear(f, t, ternary);
}

// A block's projection `name`.weight and llama.cpp's optional scalar `name`.scale.
Proj load_proj(const GGUFFile& f, const std::string& name, int64_t in, int64_t out) {
    Proj p;
    p.w = load_linear(f, name + ".weight", in, out, true);
    if (f.find_tensor(name + ".scale")) {
        const std::vector<float> s = load_vector(f, name + ".scale", 1);
        if (!(std::fabs(s[0]) > 0.0f) || !std::isfinite(s[0]))
            fail("%s: tensor '%s.scale' = %g is not a usable scale", f.path().c_str(), name.c_str(),
                 (double)s[0]);
        p.scale = s[0];
    }
    return p;
}

int get_hparam(const GGUFFile& f, const std::string& key, int64_t def = -1) {
    int64_t v = def < 0 ? f.get_int(key) : f.get_int(key, def);
    if (v <= 0 || v > (1 << 28))
        fail("%s: metadata '%s' = %lld is out of range", f.path().c_str(), key.c_str(),
             (long long)v);
    return (int)v;
}

constexpr int kMaxLayers = 4096;

// A float hyperparameter: finite, within float range (converting a larger double to float is
// undefined), and > 0 (>= 0 with zero_ok). A NaN epsilon or a RoPE base <= 0 would otherwise turn
// every activation into NaN without a word.
float get_float_hparam(const GGUFFile& f, const std::string& key, double def, bool zero_ok) {
    const double v = f.get_float(key, def);
    // v > FLT_MAX is tested first: only then may it be converted; a tiny v rounds to 0.0f.
    if (!std::isfinite(v) || v > FLT_MAX || v < 0.0 || ((float)v == 0.0f && !zero_ok))
        fail("%s: metadata '%s' = %g is out of range (expected a finite number %s 0)",
             f.path().c_str(), key.c_str(), v, zero_ok ? ">=" : ">");
    return (float)v;
}

std::string human_count(uint64_t n) {
    if (n >= 1000000000ull) return strfmt("%.2fB", n / 1e9);
    if (n >= 1000000ull) return strfmt("%.1fM", n / 1e6);
    return strfmt("%.1fK", n / 1e3);
}

}  // namespace

std::unique_ptr<Model> model_load(const std::string& path, bool use_mmap) {
    auto m = std::make_unique<Model>();
    m->file = GGUFFile::open(path, use_mmap);
    const GGUFFile& f = *m->file;
    HParams& hp = m->hp;

    hp.arch = f.get_str("general.architecture");
    const ArchTraits* arch = find_arch(hp.arch);
    if (!arch)
        fail("%s: unknown model architecture '%s' (this engine runs: bitnet-b1.58, bitnet-25, "
             "bitnet, llama, qwen3)",
             path.c_str(), hp.arch.c_str());
    const std::string p = hp.arch + ".";
    hp.n_ctx_train = get_hparam(f, p + "context_length");
    hp.n_embd = get_hparam(f, p + "embedding_length");
    hp.n_layer = get_hparam(f, p + "block_count");
    hp.n_ff = get_hparam(f, p + "feed_forward_length");
    hp.n_head = get_hparam(f, p + "attention.head_count");
    hp.n_head_kv = get_hparam(f, p + "attention.head_count_kv", hp.n_head);
    // The head size: llama.cpp's key_length when the converter wrote it (Falcon3-style configs
    // with an explicit head_dim), else the rotary dimension, else n_embd / n_head.
    const int n_rot = get_hparam(f, p + "rope.dimension_count", hp.n_embd / hp.n_head);
    hp.head_dim = get_hparam(f, p + "attention.key_length", n_rot);
    hp.norm_eps = get_float_hparam(f, p + "attention.layer_norm_rms_epsilon", 1e-5, true);
    hp.rope_theta = get_float_hparam(f, p + "rope.freq_base", 10000.0, false);
    // No released model has more than a few hundred blocks; the bound keeps a crafted file from
    // making the loader bind (and a context allocate for) millions of them.
    if (hp.n_layer > kMaxLayers)
        fail("%s: metadata '%sblock_count' = %d is more blocks than any model has (at most %d): "
             "the file is corrupt",
             path.c_str(), p.c_str(), hp.n_layer, kMaxLayers);
    if (hp.n_head % hp.n_head_kv != 0 || hp.head_dim % 2 != 0 ||
        get_hparam(f, p + "attention.value_length", hp.head_dim) != hp.head_dim)
        fail("%s: inconsistent attention hyperparameters (heads %d, kv heads %d, head dim %d)",
             path.c_str(), hp.n_head, hp.n_head_kv, hp.head_dim);
    if (n_rot != hp.head_dim)
        fail("%s: partial rotary embedding (%d of %d dimensions) is not supported", path.c_str(),
             n_rot, hp.head_dim);
    // bitnet.cpp writes "linear" scaling with factor 1 for 1bitLLM models, which is no scaling.
    const double rope_factor = f.get_float(p + "rope.scaling.factor", 1.0);
    const std::string rope_scaling = f.get_str(p + "rope.scaling.type", "none");
    if ((rope_scaling != "none" && rope_scaling != "linear") || rope_factor != 1.0 ||
        f.find_tensor("rope_freqs.weight"))
        fail("%s: RoPE scaling ('%s', factor %g%s) is not supported", path.c_str(),
             rope_scaling.c_str(), rope_factor,
             f.find_tensor("rope_freqs.weight") ? ", rope_freqs tensor" : "");
    hp.rope = arch->rope;
    hp.sub_norms = arch->sub_norms;
    hp.act = resolve_activation(f, *arch, hp);
    // qwen3: the BitNet embedding models' backbone (bitnet.cpp's layout: blk.N.*_norm_in).
    hp.norm_in = hp.qk_norm = hp.arch == "qwen3";
    const int64_t pooling = f.get_int(p + "pooling_type", 0);
    if (pooling < 0 || pooling > 3)
        fail("%s: metadata '%spooling_type' = %lld is not a pooling this engine has (0 none, 1 mean, "
             "2 cls, 3 last)", path.c_str(), p.c_str(), (long long)pooling);
    hp.pooling = (Pooling)pooling;

    m->tokenizer = tokenizer_from_gguf(f);

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
    // An embedding model never computes logits: no compact copy of its output matrix.
    if (hp.pooling == Pooling::NONE && (m->output.type == TYPE_F16 || m->output.type == TYPE_F32))
        output_cert_build(*m, output_compact_type(hp.n_embd, m->output.t->nbytes), usable_cpus());

    const int64_t d = hp.n_embd, dq = (int64_t)hp.n_head * hp.head_dim,
                  dkv = (int64_t)hp.n_head_kv * hp.head_dim, ff = hp.n_ff;
    for (int i = 0; i < hp.n_layer; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        Layer L;
        L.attn_norm = load_vector(f, b + "attn_norm.weight", d);
        L.wq = load_proj(f, b + "attn_q", d, dq);
        L.wk = load_proj(f, b + "attn_k", d, dkv);
        L.wv = load_proj(f, b + "attn_v", d, dkv);
        L.wo = load_proj(f, b + "attn_output", dq, d);
        L.ffn_norm = load_vector(f, b + "ffn_norm.weight", d);
        L.gate = load_proj(f, b + "ffn_gate", d, ff);
        L.up = load_proj(f, b + "ffn_up", d, ff);
        L.down = load_proj(f, b + "ffn_down", ff, d);
        if (hp.norm_in) {
            L.q_in = load_vector(f, b + "attn_q_norm_in.weight", d);
            L.k_in = load_vector(f, b + "attn_k_norm_in.weight", d);
            L.v_in = load_vector(f, b + "attn_v_norm_in.weight", d);
            L.o_in = load_vector(f, b + "attn_output_norm_in.weight", dq);
            L.gate_in = load_vector(f, b + "ffn_gate_norm_in.weight", d);
            L.up_in = load_vector(f, b + "ffn_up_norm_in.weight", d);
            L.down_in = load_vector(f, b + "ffn_down_norm_in.weight", ff);
        }
        if (hp.qk_norm) {
            L.q_norm = load_vector(f, b + "attn_q_norm.weight", hp.head_dim);
            L.k_norm = load_vector(f, b + "attn_k_norm.weight", hp.head_dim);
        }
        if (hp.sub_norms) {
            L.attn_sub_norm = load_vector(f, b + "attn_sub_norm.weight", dq);
            L.ffn_sub_norm = load_vector(f, b + "ffn_sub_norm.weight", ff);
        }
        m->layers.push_back(std::move(L));
    }

    for (const GGUFTensor& t : f.tensors()) {
        m->n_params += (uint64_t)t.n_elements();
        m->n_bytes += t.nbytes;
    }
    const uint32_t wtype = m->layers.empty() ? m->tok_embd.type : m->layers[0].wq.w.type;
    m->desc = hp.arch + " " + human_count(m->n_params) + " " + type_name(wtype) +
              (hp.act == FfnAct::RELU2 ? " relu2" : " silu");
    return m;
}

std::unique_ptr<Context> context_new(Model* model, int n_ctx, int n_threads, int n_batch,
                                     int n_seq, uint32_t type_k, uint32_t type_v, bool exact) {
    const HParams& hp = model->hp;
    auto c = std::make_unique<Context>();
    c->model = model;
    c->n_ctx = n_ctx > 0 ? n_ctx : std::min(hp.n_ctx_train > 0 ? hp.n_ctx_train : kDefaultCtxMax, kDefaultCtxMax);
    if (n_threads <= 0) n_threads = usable_cpus();
    if (n_threads > max_pool_threads())
        fail("%d threads is too many: this process may use %d CPU(s), and a pool takes at most 4 "
             "threads per CPU (at most 1024); use -t %d or fewer (0 = %d, the usable CPUs)",
             n_threads, usable_cpus(), max_pool_threads(), usable_cpus());
    c->n_batch = std::min(n_batch > 0 ? n_batch : 512, c->n_ctx);
    c->n_seq = n_seq > 0 ? n_seq : 1;
    if (c->n_ctx > (1 << 20)) fail("context size %d is too large", c->n_ctx);
    if (c->n_seq > 4096) fail("%d sequence slots is too many (at most 4096)", c->n_seq);

    const int64_t dkv = (int64_t)hp.n_head_kv * hp.head_dim, dq = (int64_t)hp.n_head * hp.head_dim;
    c->pool = std::make_unique<ThreadPool>(n_threads);
    kv_cache_init(*c, type_k, type_v, exact);
    c->seq_len.assign(c->n_seq, 0);
    c->seq_end.assign(c->n_seq, 0);
    c->inv_freq.resize(hp.head_dim / 2);
    rope_inv_freq(hp.rope_theta, hp.head_dim, c->inv_freq.data());
    c->rope_cs.resize((size_t)c->n_batch * hp.head_dim);

    const int64_t nb = c->n_batch;
    const int64_t widest = std::max<int64_t>({hp.n_embd, dq, hp.n_ff});
    c->x.resize(nb * hp.n_embd);
    c->xn.resize(nb * widest);
    if (hp.norm_in) c->xin.resize(nb * widest);
    c->q.resize(nb * dq);
    c->k.resize(nb * dkv);
    c->v.resize(nb * dkv);
    c->att.resize(nb * dq);
    c->ffa.resize(nb * hp.n_ff);
    c->ffb.resize(nb * hp.n_ff);
    c->acc.resize(nb * widest);
    if (exact) c->scores.resize((size_t)n_threads * c->n_ctx);
    c->attn_seq_order.resize(nb);
    c->b_seq.resize(nb);
    c->b_pos.resize(nb);
    c->b_want.resize(nb);
    c->b_keys.resize(nb);
    c->b_rows.resize(nb);
    c->logits_tok.reserve(nb);
    c->logits.reserve((size_t)hp.n_vocab);
    return c;
}

}  // namespace bitnet
