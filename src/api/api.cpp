// The C API of include/bitnet.h over the C++ engine: exceptions become NULL/negative returns and a
// per-thread message in bitnet_last_error().
#include "bitnet.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>

#include "api/internal.h"
#include "chat/chat.h"
#include "kernels/kernels.h"
#include "model/embed.h"
#include "util/common.h"

namespace {

thread_local std::string g_last_error;

using bitnet::api::guarded;

// Row of c's logits for token i of the last decode call, or -1.
int32_t logits_row(const bitnet::Context& c, int32_t i) {
    const auto it = std::lower_bound(c.logits_tok.begin(), c.logits_tok.end(), i);
    return it != c.logits_tok.end() && *it == i ? (int32_t)(it - c.logits_tok.begin()) : -1;
}

// Most worker threads a context may ask for: far above any CPU this runs on, low enough that a
// garbage n_threads is an error instead of an attempt to start billions of threads.
constexpr int32_t kMaxThreads = 1024;

// Fails unless buf can take len bytes (or ints): len >= 0, and buf given when len > 0.
void check_buffer(const void* buf, int32_t len, const char* fn, const char* what) {
    if (len < 0) bitnet::fail("%s: %s length %d is negative", fn, what, len);
    if (len > 0 && !buf) bitnet::fail("%s: %s is NULL but its length is %d", fn, what, len);
}

// True for a sequence id of ctx; otherwise false, with the reason in bitnet_last_error().
bool seq_valid(const bitnet_context* ctx, int32_t seq) {
    if (seq >= 0 && seq < ctx->c->n_seq) return true;
    g_last_error = bitnet::strfmt("sequence id %d is out of range (0..%d)", seq, ctx->c->n_seq - 1);
    return false;
}

}  // namespace

std::string& bitnet::api::last_error() { return g_last_error; }

extern "C" {

const char* bitnet_last_error(void) { return g_last_error.c_str(); }

const char* bitnet_isa(void) {
    return guarded<>((const char*)nullptr, [] { return bitnet::kernels().isa; });
}

bitnet_model_params bitnet_model_default_params(void) {
    bitnet_model_params p;
    p.use_mmap = 1;
    return p;
}

bitnet_model* bitnet_model_load_with_params(const char* path, bitnet_model_params params) {
    return guarded<>((bitnet_model*)nullptr, [&] {
        if (!path) bitnet::fail("no model path given");
        return new bitnet_model{bitnet::model_load(path, params.use_mmap != 0)};
    });
}

bitnet_model* bitnet_model_load(const char* path) {
    return bitnet_model_load_with_params(path, bitnet_model_default_params());
}

void bitnet_model_free(bitnet_model* model) { delete model; }

int32_t bitnet_model_n_vocab(const bitnet_model* model) { return model->m->hp.n_vocab; }
int32_t bitnet_model_n_ctx_train(const bitnet_model* model) { return model->m->hp.n_ctx_train; }
int32_t bitnet_model_n_embd(const bitnet_model* model) { return model->m->hp.n_embd; }
int32_t bitnet_model_n_layer(const bitnet_model* model) { return model->m->hp.n_layer; }
uint64_t bitnet_model_n_params(const bitnet_model* model) { return model->m->n_params; }
uint64_t bitnet_model_size(const bitnet_model* model) { return model->m->n_bytes; }
const char* bitnet_model_desc(const bitnet_model* model) { return model->m->desc.c_str(); }

const char* bitnet_model_meta_str(const bitnet_model* model, const char* key) {
    if (!key) return nullptr;
    const bitnet::GGUFValue* v = model->m->file->find(key);
    if (!v || v->type != bitnet::GGUFValueType::STRING) return nullptr;
    return v->s.c_str();
}

bitnet_token bitnet_token_bos(const bitnet_model* model) { return model->m->tokenizer->bos(); }
bitnet_token bitnet_token_eos(const bitnet_model* model) { return model->m->tokenizer->eos(); }
bitnet_token bitnet_token_eot(const bitnet_model* model) { return model->m->tokenizer->eot(); }
int bitnet_token_is_eog(const bitnet_model* model, bitnet_token token) {
    return model->m->tokenizer->is_eog(token) ? 1 : 0;
}
int bitnet_token_is_control(const bitnet_model* model, bitnet_token token) {
    return model->m->tokenizer->is_control(token) ? 1 : 0;
}

int32_t bitnet_tokenize(const bitnet_model* model, const char* text, int32_t text_len,
                        bitnet_token* out, int32_t n_max, int add_bos, int parse_special) {
    return guarded<>((int32_t)INT32_MIN, [&]() -> int32_t {
        check_buffer(text, text_len, "bitnet_tokenize", "the text");
        check_buffer(out, n_max, "bitnet_tokenize", "the output buffer");
        std::vector<int32_t> ids = model->m->tokenizer->encode(
            text_len > 0 ? std::string(text, (size_t)text_len) : std::string(), add_bos != 0, parse_special != 0);
        if ((int64_t)ids.size() > INT32_MAX) bitnet::fail("text too long");
        const int32_t n = (int32_t)ids.size();
        if (n > n_max) return -n;
        std::copy(ids.begin(), ids.end(), out);
        return n;
    });
}

int32_t bitnet_token_to_piece(const bitnet_model* model, bitnet_token token, char* buf,
                              int32_t len) {
    return guarded<>((int32_t)INT32_MIN, [&]() -> int32_t {
        check_buffer(buf, len, "bitnet_token_to_piece", "the buffer");
        const std::string p = model->m->tokenizer->token_to_piece(token);
        if (p.size() > (size_t)INT32_MAX) bitnet::fail("bitnet_token_to_piece: piece too long");
        const int32_t n = (int32_t)p.size();
        if (n > len) return -n;
        std::memcpy(buf, p.data(), p.size());
        return n;
    });
}

int32_t bitnet_detokenize(const bitnet_model* model, const bitnet_token* ids, int32_t n, char* buf,
                          int32_t len) {
    return guarded<>((int32_t)INT32_MIN, [&]() -> int32_t {
        if (n < 0 || (n > 0 && !ids)) bitnet::fail("bitnet_detokenize: no token ids");
        check_buffer(buf, len, "bitnet_detokenize", "the buffer");
        const std::string text = model->m->tokenizer->decode(std::vector<int32_t>(ids, ids + n));
        if (text.size() > (size_t)INT32_MAX) bitnet::fail("bitnet_detokenize: text too long");
        const int32_t size = (int32_t)text.size();
        if (size > len) return -size;
        if (size > 0) std::memcpy(buf, text.data(), text.size());
        return size;
    });
}

bitnet_context_params bitnet_context_default_params(void) {
    bitnet_context_params p;
    p.n_ctx = 0;
    p.n_threads = 0;
    p.n_batch = 512;
    p.n_seq_max = 1;
    p.type_k = BITNET_KV_F32;
    p.type_v = BITNET_KV_F32;
    p.flash_attn = 1;
    p.exact_output = 0;
    p.certified_top_k = 0;
    return p;
}

bitnet_context* bitnet_context_new(bitnet_model* model, bitnet_context_params params) {
    return guarded<>((bitnet_context*)nullptr, [&] {
        if (!model) bitnet::fail("no model");
        if (params.n_ctx < 0 || params.n_threads < 0 || params.n_batch < 0 || params.n_seq_max < 0)
            bitnet::fail("context parameters must not be negative");
        if (params.n_threads > kMaxThreads)
            bitnet::fail("n_threads = %d is too many (at most %d)", params.n_threads, kMaxThreads);
        if (params.certified_top_k < 0) bitnet::fail("certified_top_k must not be negative");
        bitnet::kernels();  // surface a bad BITNET_ISA here, not in the middle of a decode
        auto c = bitnet::context_new(model->m.get(), params.n_ctx, params.n_threads,
                                     params.n_batch, params.n_seq_max, (uint32_t)params.type_k,
                                     (uint32_t)params.type_v, params.flash_attn == 0);
        c->exact_output = params.exact_output != 0;
        c->cert_k = params.certified_top_k > 0 ? params.certified_top_k : 1;
        return new bitnet_context{std::move(c)};
    });
}

void bitnet_context_free(bitnet_context* ctx) { delete ctx; }
int32_t bitnet_context_n_ctx(const bitnet_context* ctx) { return ctx->c->n_ctx; }
int32_t bitnet_context_n_threads(const bitnet_context* ctx) { return ctx->c->pool->size(); }
int32_t bitnet_default_n_threads(void) { return bitnet::usable_cpus(); }
int32_t bitnet_max_n_threads(void) { return bitnet::max_pool_threads(); }
int32_t bitnet_context_n_seq_max(const bitnet_context* ctx) { return ctx->c->n_seq; }

const char* bitnet_model_output_compact(const bitnet_model* model) {
    const bitnet::Linear& c = model->m->cert.compact;
    if (c.data == nullptr) return nullptr;
    return c.type == bitnet::TYPE_Q6_K ? "Q6_K" : c.type == bitnet::TYPE_Q4_0 ? "Q4_0" : "Q8_0";
}

void bitnet_context_output_stats(const bitnet_context* ctx, int64_t* n_tokens, int64_t* n_rescored) {
    if (n_tokens) *n_tokens = ctx->c->cert_tokens;
    if (n_rescored) *n_rescored = ctx->c->cert_rescored;
}
int32_t bitnet_context_n_past(const bitnet_context* ctx) { return ctx->c->seq_len[0]; }

void bitnet_context_truncate(bitnet_context* ctx, int32_t n_keep) {
    bitnet::Context& c = *ctx->c;
    c.seq_len[0] = std::min(c.seq_len[0], std::max(n_keep, 0));
    bitnet::logits_reset(c, 0);
}

int bitnet_decode(bitnet_context* ctx, const bitnet_token* tokens, int32_t n, int logits_all) {
    return guarded<>(-1, [&] {
        bitnet::Context& c = *ctx->c;
        if (n <= 0 || !tokens) bitnet::fail("bitnet_decode: no tokens");
        // n > room, not seq_len + n > n_ctx: the sum overflows int32 for n near INT32_MAX.
        if (n > c.n_ctx - c.seq_len[0])
            bitnet::fail("the context is full: %d tokens cached + %d new > context size %d; "
                         "use a larger -c or a shorter prompt",
                         c.seq_len[0], n, c.n_ctx);
        const int32_t n_vocab = c.model->hp.n_vocab;
        for (int32_t i = 0; i < n; ++i)
            if (tokens[i] < 0 || tokens[i] >= n_vocab)
                bitnet::fail("token id %d is outside the vocabulary (0..%d)", tokens[i], n_vocab - 1);
        bitnet::logits_reset(c, n);
        for (int32_t done = 0; done < n;) {
            const int32_t chunk = std::min(n - done, c.n_batch);
            for (int32_t i = 0; i < chunk; ++i) {
                c.b_seq[i] = 0;
                c.b_pos[i] = c.seq_len[0] + i;
                c.b_want[i] = logits_all != 0 || done + i == n - 1;
            }
            bitnet::forward_batch(c, tokens + done, c.b_seq.data(), c.b_pos.data(),
                                  c.b_want.data(), chunk, done);
            done += chunk;
        }
        return 0;
    });
}

const float* bitnet_get_logits(bitnet_context* ctx, int32_t i) {
    const bitnet::Context& c = *ctx->c;
    const int32_t row = i >= -1 ? logits_row(c, i == -1 ? c.n_decoded - 1 : i) : -1;
    if (row < 0) {
        g_last_error = "no logits kept for that token";
        return nullptr;
    }
    return c.logits.data() + (size_t)row * c.model->hp.n_vocab;
}

int32_t bitnet_decode_batch(bitnet_context* ctx, const bitnet_token* tokens, const int32_t* seq_ids,
                            const int32_t* positions, const int8_t* want_logits, int32_t n) {
    return guarded<>((int32_t)-1, [&]() -> int32_t {
        bitnet::Context& c = *ctx->c;
        if (n <= 0) bitnet::fail("bitnet_decode_batch: no tokens");
        if (!tokens || !seq_ids || !positions)
            bitnet::fail("bitnet_decode_batch: tokens, seq_ids and positions are required");
        bitnet::batch_check(c, tokens, seq_ids, positions, n);
        bitnet::logits_reset(c, n);
        for (int32_t done = 0; done < n;) {
            const int32_t chunk = std::min(n - done, c.n_batch);
            const int8_t* want = want_logits ? want_logits + done : nullptr;
            if (!want) {  // only the batch's last token
                for (int32_t i = 0; i < chunk; ++i) c.b_want[i] = done + i == n - 1;
                want = c.b_want.data();
            }
            bitnet::forward_batch(c, tokens + done, seq_ids + done, positions + done, want, chunk,
                                  done);
            done += chunk;
        }
        return 0;
    });
}

const float* bitnet_get_logits_ith(bitnet_context* ctx, int32_t i) {
    const bitnet::Context& c = *ctx->c;
    if (i < 0 || i >= c.n_decoded) {
        g_last_error = bitnet::strfmt("bitnet_get_logits_ith: index %d is outside the last batch "
                                      "(%d tokens)", i, c.n_decoded);
        return nullptr;
    }
    const int32_t row = logits_row(c, i);
    if (row < 0) {
        g_last_error = bitnet::strfmt("bitnet_get_logits_ith: token %d of the last batch did not "
                                      "ask for logits (set its want_logits flag)", i);
        return nullptr;
    }
    return c.logits.data() + (size_t)row * c.model->hp.n_vocab;
}

int32_t bitnet_model_pooling_type(const bitnet_model* model) { return (int32_t)model->m->hp.pooling; }

int32_t bitnet_embed(bitnet_context* ctx, const bitnet_token* tokens, const int32_t* n_tokens,
                     int32_t n_texts, int32_t pooling, int32_t normalize, float* out) {
    return guarded<>((int32_t)-1, [&]() -> int32_t {
        if (n_texts <= 0) bitnet::fail("bitnet_embed: no texts");
        if (!tokens || !n_tokens || !out) bitnet::fail("bitnet_embed: tokens, n_tokens and out are required");
        if (pooling < -1 || pooling > 3)
            bitnet::fail("bitnet_embed: pooling %d is not one of -1 (the model's), 0..3", pooling);
        bitnet::Context& c = *ctx->c;
        const bitnet::Pooling p = pooling < 0 ? c.model->hp.pooling : (bitnet::Pooling)pooling;
        bitnet::embed_texts(c, tokens, n_tokens, n_texts, p, normalize != 0, out);
        return 0;
    });
}

int32_t bitnet_seq_length(const bitnet_context* ctx, int32_t seq) {
    return seq_valid(ctx, seq) ? ctx->c->seq_len[seq] : -1;
}

void bitnet_seq_clear(bitnet_context* ctx, int32_t seq) { bitnet_seq_truncate(ctx, seq, 0); }

void bitnet_seq_truncate(bitnet_context* ctx, int32_t seq, int32_t n_keep) {
    // The cached keys/values past n_keep stay in memory and are overwritten by the next tokens:
    // attention reads only positions below the sequence's length.
    if (seq_valid(ctx, seq)) ctx->c->seq_len[seq] = std::min(ctx->c->seq_len[seq], std::max(n_keep, 0));
}

bitnet_sampler_params bitnet_sampler_default_params(void) {
    bitnet::SamplerParams d;
    bitnet_sampler_params p;
    p.temperature = d.temperature;
    p.top_k = d.top_k;
    p.top_p = d.top_p;
    p.min_p = d.min_p;
    p.repeat_penalty = d.repeat_penalty;
    p.repeat_last_n = d.repeat_last_n;
    p.seed = d.seed;
    p.presence_penalty = d.presence_penalty;
    p.frequency_penalty = d.frequency_penalty;
    return p;
}

bitnet_sampler* bitnet_sampler_new(const bitnet_sampler_params* params) {
    return guarded<>((bitnet_sampler*)nullptr, [&] {
        if (!params) bitnet::fail("bitnet_sampler_new: no parameters");
        if (std::isnan(params->temperature) || std::isnan(params->top_p) ||
            std::isnan(params->min_p))
            bitnet::fail("sampler parameters must not be NaN");
        bitnet::SamplerParams p;
        p.temperature = params->temperature;
        p.top_k = params->top_k;
        p.top_p = params->top_p;
        p.min_p = params->min_p;
        p.repeat_penalty = params->repeat_penalty;
        p.repeat_last_n = params->repeat_last_n;
        p.seed = params->seed;
        p.presence_penalty = params->presence_penalty;
        p.frequency_penalty = params->frequency_penalty;
        if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty))
            bitnet::fail("presence and frequency penalties must be finite");
        if (!(p.repeat_penalty > 0.0f)) bitnet::fail("repeat penalty must be positive");
        // Infinite values turn a zero logit into 0 * inf = NaN (the penalty) or every weight into
        // e^0 (the temperature): refused rather than given a meaning.
        if (std::isinf(p.temperature) || std::isinf(p.repeat_penalty))
            bitnet::fail("sampler temperature and repeat penalty must be finite");
        return new bitnet_sampler{bitnet::Sampler(p)};
    });
}

void bitnet_sampler_free(bitnet_sampler* sampler) { delete sampler; }
void bitnet_sampler_accept(bitnet_sampler* sampler, bitnet_token token) { sampler->s.accept(token); }
void bitnet_sampler_reset(bitnet_sampler* sampler) { sampler->s.reset(); }
int bitnet_sampler_set_logit_bias(bitnet_sampler* sampler, const bitnet_token* ids, const float* bias,
                                  int32_t n) {
    return guarded<>(-1, [&] {
        if (!sampler) bitnet::fail("bitnet_sampler_set_logit_bias: no sampler");
        if (n < 0 || (n > 0 && (!ids || !bias)))
            bitnet::fail("bitnet_sampler_set_logit_bias: bad arrays (n = %d)", n);
        std::vector<std::pair<int32_t, float>> v;
        v.reserve(n);
        for (int32_t i = 0; i < n; ++i) {
            if (ids[i] < 0) bitnet::fail("logit bias: token id %d is negative", ids[i]);
            if (std::isnan(bias[i]) || bias[i] == INFINITY)
                bitnet::fail("logit bias of token %d must be a number below +inf", ids[i]);
            v.emplace_back(ids[i], bias[i]);
        }
        sampler->s.set_logit_bias(std::move(v));
        return 0;
    });
}
bitnet_token bitnet_sampler_sample(bitnet_sampler* sampler, const float* logits, int32_t n_vocab) {
    return guarded<>((bitnet_token)-1, [&] {
        if (!logits || n_vocab <= 0)
            bitnet::fail("bitnet_sampler_sample: no logits (n_vocab = %d)", n_vocab);
        return sampler->s.sample(logits, n_vocab);
    });
}

const char* bitnet_chat_template_names(void) { return bitnet::chat_family_names(); }

const char* bitnet_chat_template_name(const bitnet_model* model) {
    const char* jinja = bitnet_model_meta_str(model, "tokenizer.chat_template");
    bitnet::ChatFamily family;
    if (!jinja || !bitnet::chat_family_detect(jinja, &family)) return nullptr;
    return bitnet::chat_family_name(family);
}

int32_t bitnet_chat_apply(const bitnet_model* model, const char* tmpl,
                          const bitnet_chat_message* msgs, size_t n_msgs, bool add_assistant,
                          char* buf, int32_t buf_len) {
    return guarded<>((int32_t)-1, [&]() -> int32_t {
        if (!model) bitnet::fail("bitnet_chat_apply: no model");
        if (n_msgs > 0 && !msgs) bitnet::fail("bitnet_chat_apply: no messages");
        const bitnet::ChatFamily family = bitnet::chat_family_resolve(
            tmpl, bitnet_model_meta_str(model, "tokenizer.chat_template"));
        std::vector<bitnet::ChatMessage> chat(n_msgs);
        for (size_t i = 0; i < n_msgs; ++i) {
            if (!msgs[i].role || !msgs[i].content)
                bitnet::fail("bitnet_chat_apply: message %zu has no role or no content", i);
            chat[i] = {msgs[i].role, msgs[i].content};
        }
        // The templates write BOS/EOS by their text, which token_to_piece gives for special tokens.
        const bitnet::Tokenizer& tok = *model->m->tokenizer;
        const std::string bos = tok.bos() >= 0 ? tok.token_to_piece(tok.bos()) : std::string();
        const std::string eos = tok.eos() >= 0 ? tok.token_to_piece(tok.eos()) : std::string();
        const std::string text = bitnet::chat_render(family, chat, add_assistant, bos, eos);
        if (text.size() > (size_t)INT32_MAX) bitnet::fail("bitnet_chat_apply: conversation too long");
        if (buf && buf_len > 0) {
            const size_t n = std::min(text.size(), (size_t)buf_len);
            std::memcpy(buf, text.data(), n);
            if (n < (size_t)buf_len) buf[n] = '\0';
        }
        return (int32_t)text.size();
    });
}

}  // extern "C"
