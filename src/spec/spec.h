// Speculative decoding: drafters that guess the next tokens cheaply, the rule that accepts or
// replaces each guess so that the output is distributed exactly as the target model's sampler
// chain says, and the controller that drafts, verifies the draft in one batched forward pass and
// drops the rejected tokens from the KV cache.
//
// Why it is lossless: a batch of k tokens gives bit-identical logits to k single-token decodes
// (tests/test_batch_invariance.py), so the target distribution at every drafted position is the
// one plain decoding would see. Greedy: a guess is kept while it equals the target's argmax.
// Sampling: the speculative sampling rule (Leviathan et al. 2023, Chen et al. 2023): keep guess d
// with probability min(1, p(d)/q(d)), else draw from max(0, p - q) renormalized. A deterministic
// drafter (n-gram lookup, greedy draft model) has q = a point mass, where the rule reduces to:
// keep d with probability p(d), else draw from p without d.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "bitnet.h"
#include "sampling/sampler.h"

namespace bitnet::spec {

// (token, probability) pairs summing to 1.
using Dist = std::vector<std::pair<int32_t, float>>;

// Draws from d with u uniform in [0, 1); the last entry absorbs float rounding of the sum.
int32_t draw(const Dist& d, double u);

// The acceptance rule for one drafted token: returns draft when it is kept, otherwise the token
// drawn in its place. p: target distribution; q: the distribution draft was drawn from (it must
// give draft a positive probability). uniform() is called at most twice.
template <typename U>
int32_t verify_token(const Dist& p, const Dist& q, int32_t draft, U&& uniform);

// Proposes tokens to follow a history (prompt and generated text).
class Drafter {
public:
    virtual ~Drafter() = default;
    // Up to n_max guesses to follow hist[0..n) into out, each with the distribution it was
    // drawn from in q (a point mass for deterministic drafters).
    virtual void draft(const int32_t* hist, int32_t n, int32_t n_max, std::vector<int32_t>* out,
                       std::vector<Dist>* q) = 0;
};

// Prompt lookup: finds the most recent earlier occurrence of the history's last m tokens (m from
// n_max down to n_min, longest first) and proposes the tokens that followed it.
class NgramDrafter : public Drafter {
public:
    NgramDrafter(int32_t n_min, int32_t n_max) : n_min_(n_min), n_max_(n_max) {}
    void draft(const int32_t* hist, int32_t n, int32_t n_max, std::vector<int32_t>* out,
               std::vector<Dist>* q) override;

private:
    int32_t n_min_, n_max_;
};

// A smaller model with the same vocabulary, decoding ahead in its own context. Greedy targets get
// its argmax; sampling targets get draws from its own distribution under the target's sampler
// chain (same temperature and cuts), with a generator of its own. Drafting stops early when the
// draft model's top probability (plain softmax) is below p_min.
class ModelDrafter : public Drafter {
public:
    // Fails (bitnet::fail) when the vocabularies differ.
    ModelDrafter(const bitnet_model* target, bitnet_model* draft, int32_t n_ctx, int32_t n_threads,
                 const SamplerParams& sp, float p_min);
    ~ModelDrafter() override;
    void draft(const int32_t* hist, int32_t n, int32_t n_max, std::vector<int32_t>* out,
               std::vector<Dist>* q) override;

private:
    bitnet_context* ctx_ = nullptr;
    Sampler sampler_;
    std::mt19937_64 rng_;
    float p_min_;
    int32_t n_vocab_;
    std::vector<int32_t> cached_;  // the tokens in ctx_'s KV cache, in order
};

// For benchmarks: proposes a recorded sequence (prompt and the model's own greedy continuation),
// with the token at each position replaced by a wrong one with probability error (decided once
// per position from the seed, so a wrong position stays wrong when it is drafted again).
class ReplayDrafter : public Drafter {
public:
    ReplayDrafter(std::vector<int32_t> ref, float error, uint64_t seed, int32_t n_vocab)
        : ref_(std::move(ref)), error_(error), seed_(seed), n_vocab_(n_vocab) {}
    void draft(const int32_t* hist, int32_t n, int32_t n_max, std::vector<int32_t>* out,
               std::vector<Dist>* q) override;

private:
    std::vector<int32_t> ref_;
    float error_;
    uint64_t seed_;
    int32_t n_vocab_;
};

struct Params {
    int32_t draft_max = 16;
    int32_t draft_min = 0;
};

// Draft length from recent acceptance. It starts at one token and doubles after each fully
// accepted draft (up to draft_max), so a stream the drafter cannot guess never pays for a long
// draft, while a stream it guesses reaches draft_max within a few steps; after a rejection it
// halves (never below what was accepted plus one). A draft with nothing accepted pauses drafting
// for 2, 4, ... 64 steps (doubling while probes keep failing), so such a stream costs one extra
// verified token every few dozen steps.
class DraftLength {
public:
    explicit DraftLength(const Params& p) : p_(p), limit_(std::min(std::max(p.draft_min, 1), p.draft_max)) {}
    int32_t next();                                  // how many tokens to draft now
    void record(int32_t drafted, int32_t accepted);  // the outcome of a draft of that length

private:
    Params p_;
    int32_t limit_;
    int32_t misses_ = 0, skip_ = 0;
};

// One sequence's speculation: its drafter, draft length and statistics.
class Speculator {
public:
    Speculator(const Params& p, std::unique_ptr<Drafter> d) : p_(p), len_(p), drafter_(std::move(d)) {}

    // Drafts for hist[0..n) into draft() with at most n_max tokens (fewer than draft_min: none).
    int32_t draft(const int32_t* hist, int32_t n, int32_t n_max);
    const std::vector<int32_t>& drafted() const { return draft_; }

    // Verifies the last draft against the logits of tokens first .. first+k of ctx's last batch
    // (the pending token and the k drafted ones) with sampler's chain: appends the kept drafts and
    // one more token (the replacement of the first rejected guess, or the next token after a
    // fully kept draft) to out, recording each in sampler. Returns the number of kept drafts.
    int32_t verify(bitnet_context* ctx, int32_t first, Sampler& sampler, int32_t n_vocab,
                   std::vector<int32_t>* out);

    bitnet_spec_stats stats{};

private:
    Params p_;
    DraftLength len_;
    std::unique_ptr<Drafter> drafter_;
    std::vector<int32_t> draft_;
    std::vector<Dist> q_;
    Dist p_dist_;
};

// ---- template definition ---------------------------------------------------------------------

inline float prob_of(const Dist& d, int32_t t) {
    for (const auto& e : d)
        if (e.first == t) return e.second;
    return 0.0f;
}

template <typename U>
int32_t verify_token(const Dist& p, const Dist& q, int32_t draft, U&& uniform) {
    const double pd = prob_of(p, draft), qd = prob_of(q, draft);
    if (pd >= qd) return draft;
    if (pd > 0.0 && uniform() * qd < pd) return draft;
    // The residual max(0, p - q); its mass is positive whenever a rejection can happen (some
    // token has p > q because p(draft) < q(draft) and both sum to 1), except through rounding,
    // where p itself is the fallback.
    Dist qs(q);  // by token, for lookups: p and q can each hold the whole vocabulary
    std::sort(qs.begin(), qs.end());
    auto q_of = [&](int32_t t) {
        const auto it = std::lower_bound(qs.begin(), qs.end(), std::make_pair(t, -1.0f));
        return it != qs.end() && it->first == t ? (double)it->second : 0.0;
    };
    Dist r;
    double sum = 0.0;
    for (const auto& e : p) {
        const double v = (double)e.second - q_of(e.first);
        if (v > 0.0) {
            r.push_back({e.first, (float)v});
            sum += v;
        }
    }
    if (!(sum > 0.0)) return draw(p, uniform());
    for (auto& e : r) e.second = (float)(e.second / sum);
    return draw(r, uniform());
}

}  // namespace bitnet::spec
