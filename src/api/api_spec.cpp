// The speculative decoding part of the C API (include/bitnet.h) over src/spec.
#include <algorithm>
#include <cstring>
#include <vector>

#include "api/internal.h"
#include "bitnet.h"
#include "spec/spec.h"
#include "util/common.h"

struct bitnet_spec {
    bitnet::spec::Speculator s;
    int32_t n_vocab;
    std::vector<int32_t> out;  // scratch for verify
};

using bitnet::api::guarded;

extern "C" {

bitnet_spec_params bitnet_spec_default_params(void) {
    bitnet_spec_params p;
    std::memset(&p, 0, sizeof p);
    p.mode = BITNET_SPEC_OFF;
    p.draft_max = 16;
    p.draft_min = 0;
    p.draft_p_min = 0.75f;
    // A 1-gram repeats after any repeated token, mostly wrongly; 2 to 4 tokens of context are
    // what text that copies from its prompt shares with it.
    p.ngram_min = 2;
    p.ngram_max = 4;
    return p;
}

bitnet_spec* bitnet_spec_new(const bitnet_model* target, const bitnet_context* target_ctx,
                             const bitnet_spec_params* params, const bitnet_sampler* sampler) {
    return guarded<>((bitnet_spec*)nullptr, [&]() -> bitnet_spec* {
        if (!target || !target_ctx || !params || !sampler)
            bitnet::fail("bitnet_spec_new: a model, a context, parameters and a sampler are needed");
        const bitnet_spec_params& p = *params;
        if (p.draft_max < 0 || p.draft_min < 0 || p.draft_min > p.draft_max)
            bitnet::fail("draft lengths must satisfy 0 <= --draft-min <= --draft-max (got %d and %d)",
                         p.draft_min, p.draft_max);
        if (!(p.draft_p_min >= 0.0f && p.draft_p_min <= 1.0f))
            bitnet::fail("--draft-p-min must be in [0, 1]");
        bitnet::spec::Params sp;
        sp.draft_max = p.draft_max;
        sp.draft_min = p.draft_min;
        const int32_t n_vocab = bitnet_model_n_vocab(target);
        std::unique_ptr<bitnet::spec::Drafter> d;
        switch (p.mode) {
        case BITNET_SPEC_OFF:
            sp.draft_max = sp.draft_min = 0;  // no drafter: every step is a plain one
            break;
        case BITNET_SPEC_NGRAM:
            if (p.ngram_min < 1 || p.ngram_max < p.ngram_min)
                bitnet::fail("n-gram sizes must satisfy 1 <= --spec-ngram-min <= --spec-ngram-max "
                             "(got %d and %d)", p.ngram_min, p.ngram_max);
            d.reset(new bitnet::spec::NgramDrafter(p.ngram_min, p.ngram_max));
            break;
        case BITNET_SPEC_DRAFT: {
            if (!p.draft_model) bitnet::fail("speculation with a draft model needs one: give -md FILE");
            bitnet::SamplerParams s = sampler->s.params();
            d.reset(new bitnet::spec::ModelDrafter(
                target, p.draft_model, bitnet_context_n_ctx(target_ctx),
                p.draft_n_threads > 0 ? p.draft_n_threads : bitnet_context_n_threads(target_ctx),
                s, p.draft_p_min));
            break;
        }
        case BITNET_SPEC_REPLAY:
            if (p.n_replay < 0 || (p.n_replay > 0 && !p.replay_tokens))
                bitnet::fail("bitnet_spec_new: replay needs its tokens");
            d.reset(new bitnet::spec::ReplayDrafter(
                std::vector<int32_t>(p.replay_tokens, p.replay_tokens + p.n_replay), p.replay_error,
                p.seed, n_vocab));
            break;
        default:
            bitnet::fail("unknown speculation mode %d", p.mode);
        }
        return new bitnet_spec{bitnet::spec::Speculator(sp, std::move(d)), n_vocab, {}};
    });
}

void bitnet_spec_free(bitnet_spec* spec) { delete spec; }

int32_t bitnet_spec_draft(bitnet_spec* spec, const bitnet_token* history, int32_t n_history,
                          bitnet_token* out, int32_t n_max) {
    return guarded<>((int32_t)-1, [&] {
        if (!spec || n_history <= 0 || !history || n_max < 0 || (n_max > 0 && !out))
            bitnet::fail("bitnet_spec_draft: a history of at least one token and room for the "
                         "guesses are needed");
        const int32_t k = spec->s.draft(history, n_history, n_max);
        std::copy(spec->s.drafted().begin(), spec->s.drafted().end(), out);
        return k;
    });
}

int32_t bitnet_spec_verify(bitnet_spec* spec, bitnet_context* ctx, int32_t first,
                           bitnet_sampler* sampler, bitnet_token* out) {
    return guarded<>((int32_t)-1, [&] {
        if (!spec || !ctx || !sampler || !out) bitnet::fail("bitnet_spec_verify: NULL argument");
        spec->out.clear();
        spec->s.verify(ctx, first, sampler->s, spec->n_vocab, &spec->out);
        std::copy(spec->out.begin(), spec->out.end(), out);
        return (int32_t)spec->out.size();
    });
}

int32_t bitnet_spec_step(bitnet_spec* spec, bitnet_context* ctx, int32_t seq,
                         bitnet_sampler* sampler, const bitnet_token* history, int32_t n_history,
                         bitnet_token* out, int32_t n_out_max) {
    return guarded<>((int32_t)-1, [&] {
        if (!spec || !ctx || !sampler || !history || !out || n_history <= 0 || n_out_max <= 0)
            bitnet::fail("bitnet_spec_step: NULL argument, empty history or no room for output");
        const int32_t len = bitnet_seq_length(ctx, seq);
        if (len < 0) bitnet::fail("%s", bitnet_last_error());
        if (len != n_history - 1)
            bitnet::fail("bitnet_spec_step: sequence %d caches %d tokens but the history has %d "
                         "(the cache must hold all but the last, pending one)", seq, len, n_history);
        // Room: the pending token and k guesses must fit in the cache, and k + 1 in out.
        const int32_t room = bitnet_context_n_ctx(ctx) - n_history;
        const int32_t k = spec->s.draft(history, n_history, std::max(0, std::min(n_out_max - 1, room)));
        std::vector<bitnet_token> toks(1 + k);
        toks[0] = history[n_history - 1];
        std::copy(spec->s.drafted().begin(), spec->s.drafted().end(), toks.begin() + 1);
        std::vector<int32_t> seqs(1 + k, seq), pos(1 + k);
        std::vector<int8_t> want(1 + k, 1);
        for (int32_t i = 0; i <= k; ++i) pos[i] = len + i;
        if (bitnet_decode_batch(ctx, toks.data(), seqs.data(), pos.data(), want.data(), 1 + k) != 0)
            bitnet::fail("%s", bitnet_last_error());
        spec->out.clear();
        const int32_t kept = spec->s.verify(ctx, 0, sampler->s, spec->n_vocab, &spec->out);
        bitnet_seq_truncate(ctx, seq, n_history + kept);
        std::copy(spec->out.begin(), spec->out.end(), out);
        return (int32_t)spec->out.size();
    });
}

bitnet_spec_stats bitnet_spec_get_stats(const bitnet_spec* spec) {
    return spec ? spec->s.stats : bitnet_spec_stats{};
}

}  // extern "C"
