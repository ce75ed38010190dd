// The C API of include/bitnet.h over the C++ engine: exceptions become NULL/negative returns and a
// per-thread message in bitnet_last_error().
#include "bitnet.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "kernels/kernels.h"
#include "model/model.h"
#include "sampling/sampler.h"
#include "util/common.h"

struct bitnet_model {
    std::unique_ptr<bitnet::Model> m;
};
struct bitnet_context {
    std::unique_ptr<bitnet::Context> c;
};
struct bitnet_sampler {
    bitnet::Sampler s;
};

namespace {

thread_local std::string g_last_error;

template <typename F, typename R>
R guarded(R on_error, F&& f) {
    try {
        g_last_error.clear();
        return f();
    } catch (const std::bad_alloc&) {
        g_last_error = "out of memory";
    } catch (const std::exception& e) {
        g_last_error = e.what();
    }
    return on_error;
}

}  // namespace

extern "C" {

const char* bitnet_last_error(void) { return g_last_error.c_str(); }

const char* bitnet_isa(void) {
    return guarded<>((const char*)nullptr, [] { return bitnet::kernels().isa; });
}

bitnet_model* bitnet_model_load(const char* path) {
    return guarded<>((bitnet_model*)nullptr, [&] {
        if (!path) bitnet::fail("no model path given");
        auto* m = new bitnet_model{bitnet::model_load(path)};
        return m;
    });
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

int32_t bitnet_tokenize(const bitnet_model* model, const char* text, int32_t text_len,
                        bitnet_token* out, int32_t n_max, int add_bos, int parse_special) {
    return guarded<>((int32_t)INT32_MIN, [&]() -> int32_t {
        if (text_len < 0) bitnet::fail("negative text length");
        std::vector<int32_t> ids = model->m->tokenizer->encode(
            std::string(text, (size_t)text_len), add_bos != 0, parse_special != 0);
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
        const std::string p = model->m->tokenizer->token_to_piece(token);
        const int32_t n = (int32_t)p.size();
        if (n > len) return -n;
        std::memcpy(buf, p.data(), p.size());
        return n;
    });
}

bitnet_context_params bitnet_context_default_params(void) {
    bitnet_context_params p;
    p.n_ctx = 0;
    p.n_threads = 0;
    p.n_batch = 512;
    return p;
}

bitnet_context* bitnet_context_new(bitnet_model* model, bitnet_context_params params) {
    return guarded<>((bitnet_context*)nullptr, [&] {
        if (!model) bitnet::fail("no model");
        if (params.n_ctx < 0 || params.n_threads < 0 || params.n_batch < 0)
            bitnet::fail("context parameters must not be negative");
        bitnet::kernels();  // surface a bad BITNET_ISA here, not in the middle of a decode
        return new bitnet_context{
            bitnet::context_new(model->m.get(), params.n_ctx, params.n_threads, params.n_batch)};
    });
}

void bitnet_context_free(bitnet_context* ctx) { delete ctx; }
int32_t bitnet_context_n_ctx(const bitnet_context* ctx) { return ctx->c->n_ctx; }
int32_t bitnet_context_n_threads(const bitnet_context* ctx) { return ctx->c->pool->size(); }
int32_t bitnet_context_n_past(const bitnet_context* ctx) { return ctx->c->n_past; }

void bitnet_context_truncate(bitnet_context* ctx, int32_t n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep < ctx->c->n_past) ctx->c->n_past = n_keep;
    ctx->c->n_logits = 0;
}

int bitnet_decode(bitnet_context* ctx, const bitnet_token* tokens, int32_t n, int logits_all) {
    return guarded<>(-1, [&] {
        bitnet::Context& c = *ctx->c;
        if (n <= 0) bitnet::fail("bitnet_decode: no tokens");
        if (c.n_past + n > c.n_ctx)
            bitnet::fail("the context is full: %d tokens cached + %d new > context size %d; "
                         "use a larger -c or a shorter prompt",
                         c.n_past, n, c.n_ctx);
        const int32_t n_vocab = c.model->hp.n_vocab;
        for (int32_t i = 0; i < n; ++i)
            if (tokens[i] < 0 || tokens[i] >= n_vocab)
                bitnet::fail("token id %d is outside the vocabulary (0..%d)", tokens[i], n_vocab - 1);
        // With logits_all every chunk's logits are kept, so gather them across chunks.
        std::vector<float> all;
        for (int32_t done = 0; done < n;) {
            const int32_t chunk = std::min(n - done, c.n_batch);
            bitnet::forward_bitnet_b158(c, tokens + done, chunk, logits_all != 0);
            if (logits_all) all.insert(all.end(), c.logits.begin(), c.logits.end());
            done += chunk;
        }
        if (logits_all) {
            c.logits.swap(all);
            c.n_logits = n;
            c.logits_first = 0;
        } else {
            c.logits_first = n - 1;
        }
        return 0;
    });
}

const float* bitnet_get_logits(bitnet_context* ctx, int32_t i) {
    bitnet::Context& c = *ctx->c;
    const int32_t n = c.logits_first + c.n_logits;  // tokens in the last decode
    if (i < 0) i = n - 1;
    if (i < c.logits_first || i >= n) {
        g_last_error = "no logits kept for that token";
        return nullptr;
    }
    return c.logits.data() + (size_t)(i - c.logits_first) * c.model->hp.n_vocab;
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
    return p;
}

bitnet_sampler* bitnet_sampler_new(const bitnet_sampler_params* params) {
    return guarded<>((bitnet_sampler*)nullptr, [&] {
        bitnet::SamplerParams p;
        p.temperature = params->temperature;
        p.top_k = params->top_k;
        p.top_p = params->top_p;
        p.min_p = params->min_p;
        p.repeat_penalty = params->repeat_penalty;
        p.repeat_last_n = params->repeat_last_n;
        p.seed = params->seed;
        if (!(p.repeat_penalty > 0.0f)) bitnet::fail("repeat penalty must be positive");
        return new bitnet_sampler{bitnet::Sampler(p)};
    });
}

void bitnet_sampler_free(bitnet_sampler* sampler) { delete sampler; }
void bitnet_sampler_accept(bitnet_sampler* sampler, bitnet_token token) { sampler->s.accept(token); }
void bitnet_sampler_reset(bitnet_sampler* sampler) { sampler->s.reset(); }
bitnet_token bitnet_sampler_sample(bitnet_sampler* sampler, const float* logits, int32_t n_vocab) {
    return sampler->s.sample(logits, n_vocab);
}

}  // extern "C"
