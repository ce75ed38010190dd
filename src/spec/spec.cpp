// Drafters, draft length and the verification step of speculative decoding (see spec.h).
#include "spec/spec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "util/common.h"

namespace bitnet::spec {

int32_t draw(const Dist& d, double u) {
    double c = 0.0;
    for (const auto& e : d) {
        c += e.second;
        if (u < c) return e.first;
    }
    return d.back().first;
}

// ---- n-gram lookup ---------------------------------------------------------------------------

void NgramDrafter::draft(const int32_t* hist, int32_t n, int32_t n_max, std::vector<int32_t>* out,
                         std::vector<Dist>* q) {
    out->clear();
    q->clear();
    // A linear scan from the end: the history is at most a context long (a few thousand
    // tokens), which costs microseconds against a forward pass of milliseconds.
    for (int32_t m = std::min(n_max_, n - 1); m >= std::max(n_min_, 1); --m) {
        const int32_t* key = hist + n - m;
        for (int32_t end = n - 1; end >= m; --end) {  // an occurrence hist[end-m .. end)
            if (std::memcmp(hist + end - m, key, sizeof(int32_t) * m) != 0) continue;
            for (int32_t i = end; i < n && (int32_t)out->size() < n_max; ++i) {
                out->push_back(hist[i]);
                q->push_back({{hist[i], 1.0f}});
            }
            return;
        }
    }
}

// ---- draft model -----------------------------------------------------------------------------

ModelDrafter::ModelDrafter(const bitnet_model* target, bitnet_model* draft, int32_t n_ctx,
                           int32_t n_threads, const SamplerParams& sp, float p_min)
    : sampler_(sp), rng_(sp.seed ^ 0x9e3779b97f4a7c15ull), p_min_(p_min) {
    const int32_t nt = bitnet_model_n_vocab(target), nd = bitnet_model_n_vocab(draft);
    if (nt != nd)
        fail("the draft model's vocabulary has %d tokens but the model's has %d: use a draft model "
             "made with the same tokenizer", nd, nt);
    char a[256], b[256];
    for (int32_t t = 0; t < nt; ++t) {
        const int32_t la = bitnet_token_to_piece(target, t, a, sizeof a);
        const int32_t lb = bitnet_token_to_piece(draft, t, b, sizeof b);
        if (la != lb || (la > 0 && std::memcmp(a, b, (size_t)la) != 0))
            fail("the draft model's token %d differs from the model's: use a draft model made "
                 "with the same tokenizer", t);
    }
    n_vocab_ = nd;
    bitnet_context_params cp = bitnet_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    ctx_ = bitnet_context_new(draft, cp);
    if (!ctx_) fail("draft model context: %s", bitnet_last_error());
}

ModelDrafter::~ModelDrafter() { bitnet_context_free(ctx_); }

void ModelDrafter::draft(const int32_t* hist, int32_t n, int32_t n_max, std::vector<int32_t>* out,
                         std::vector<Dist>* q) {
    out->clear();
    q->clear();
    if (n_max <= 0 || n <= 0) return;
    // Keep the cached prefix the history still agrees with; the last history token is decoded
    // again even when cached, because its logits are not kept between steps.
    size_t keep = 0;
    while (keep < cached_.size() && keep + 1 < (size_t)n && cached_[keep] == hist[keep]) ++keep;
    bitnet_seq_truncate(ctx_, 0, (int32_t)keep);
    cached_.assign(hist, hist + keep);
    const int32_t room = bitnet_context_n_ctx(ctx_) - n;
    n_max = std::min(n_max, room);
    if (n_max <= 0) return;
    if (bitnet_decode(ctx_, hist + keep, n - (int32_t)keep, 0) != 0)
        fail("draft model: %s", bitnet_last_error());
    cached_.insert(cached_.end(), hist + keep, hist + n);

    const SamplerParams& sp = sampler_.params();
    sampler_.reset();
    for (int32_t i = std::max(0, n - std::max(sp.repeat_last_n, 0)); i < n; ++i) sampler_.accept(hist[i]);
    Dist d;
    for (int32_t i = 0; i < n_max; ++i) {
        const float* logits = bitnet_get_logits(ctx_, -1);
        float mx = -INFINITY;
        for (int32_t t = 0; t < n_vocab_; ++t) mx = std::max(mx, logits[t]);
        double z = 0.0;
        for (int32_t t = 0; t < n_vocab_; ++t) z += std::exp((double)logits[t] - mx);
        if (!(1.0 / z >= p_min_)) break;  // the draft model is unsure: its guesses would be wasted
        sampler_.distribution(logits, n_vocab_, &d);
        const int32_t tok =
            sampler_.greedy() ? d[0].first : draw(d, std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
        out->push_back(tok);
        q->push_back(d);
        sampler_.accept(tok);
        if (i + 1 == n_max) break;  // the last guess needs no forward pass
        if (bitnet_decode(ctx_, &tok, 1, 0) != 0) fail("draft model: %s", bitnet_last_error());
        cached_.push_back(tok);
    }
}

// ---- replay ----------------------------------------------------------------------------------

void ReplayDrafter::draft(const int32_t* hist, int32_t n, int32_t n_max, std::vector<int32_t>* out,
                          std::vector<Dist>* q) {
    out->clear();
    q->clear();
    for (int32_t i = n; i < (int32_t)ref_.size() && (int32_t)out->size() < n_max; ++i) {
        // A per-position generator: whether position i is wrong does not depend on when it is
        // drafted.
        std::mt19937_64 g(seed_ * 0x100000001b3ull + (uint64_t)i);
        const double u = std::uniform_real_distribution<double>(0.0, 1.0)(g);
        int32_t t = ref_[i];
        if (u < error_) t = (int32_t)((t + 1 + g() % (uint64_t)(n_vocab_ - 1)) % (uint64_t)n_vocab_);
        out->push_back(t);
        q->push_back({{t, 1.0f}});
    }
}

// ---- draft length ----------------------------------------------------------------------------

int32_t DraftLength::next() {
    if (skip_ > 0) {
        --skip_;
        return 0;
    }
    return limit_;
}

void DraftLength::record(int32_t drafted, int32_t accepted) {
    if (drafted <= 0) return;
    const int32_t floor = std::max(1, p_.draft_min);
    if (accepted == drafted) limit_ = std::min(p_.draft_max, std::max(limit_, 1) * 2);
    else limit_ = std::max({accepted + 1, limit_ / 2, floor});
    limit_ = std::min(limit_, p_.draft_max);
    misses_ = accepted == 0 ? misses_ + 1 : 0;
    if (misses_ > 0) {
        skip_ = 1 << std::min(misses_, 6);
        limit_ = floor;  // the probe after the pause
    }
}

// ---- the step --------------------------------------------------------------------------------

int32_t Speculator::draft(const int32_t* hist, int32_t n, int32_t n_max) {
    draft_.clear();
    q_.clear();
    const int32_t k = std::min(len_.next(), n_max);
    if (k > 0 && drafter_) drafter_->draft(hist, n, k, &draft_, &q_);
    if ((int32_t)draft_.size() < p_.draft_min) {
        draft_.clear();
        q_.clear();
    }
    return (int32_t)draft_.size();
}

int32_t Speculator::verify(bitnet_context* ctx, int32_t first, Sampler& sampler, int32_t n_vocab,
                           std::vector<int32_t>* out) {
    const int32_t k = (int32_t)draft_.size();
    int32_t kept = 0;
    auto uniform = [&] { return sampler.uniform(); };
    for (int32_t i = 0; i <= k; ++i) {
        const float* logits = bitnet_get_logits_ith(ctx, first + i);
        if (!logits) fail("%s", bitnet_last_error());
        int32_t t;
        if (i == k) {
            // Past the draft this is plain sampling, draws included: a step without guesses is
            // exactly a step of the ordinary loop.
            t = sampler.sample(logits, n_vocab);
        } else {
            sampler.distribution(logits, n_vocab, &p_dist_);
            t = verify_token(p_dist_, q_[i], draft_[i], uniform);
        }
        out->push_back(t);
        sampler.accept(t);
        if (i == k || t != draft_[i]) break;
        ++kept;
    }
    len_.record(k, kept);
    stats.steps += 1;
    stats.drafted += k;
    stats.accepted += kept;
    stats.generated += kept + 1;
    return kept;
}

}  // namespace bitnet::spec
