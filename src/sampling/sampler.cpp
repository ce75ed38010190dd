#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace bitnet {

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}

void Sampler::accept(int32_t token) {
    if (p_.repeat_last_n <= 0) return;
    history_.push_back(token);
    while ((int32_t)history_.size() > p_.repeat_last_n) history_.pop_front();
}

void Sampler::reset() {
    history_.clear();
    rng_.seed(p_.seed);
}

size_t Sampler::prepare(const float* logits, int32_t n_vocab) {
    cand_.resize(n_vocab);
    // A NaN logit (a broken model) counts as -inf: the sorts below need an ordering.
    for (int32_t i = 0; i < n_vocab; ++i)
        cand_[i] = {std::isnan(logits[i]) ? -INFINITY : logits[i], i};

    // llama.cpp's order: the bias first, then the penalties over the recent tokens.
    for (const auto& [t, b] : bias_)
        if (t >= 0 && t < n_vocab) cand_[t].first += b;

    const bool penalize = p_.repeat_penalty != 1.0f || p_.presence_penalty != 0.0f ||
                          p_.frequency_penalty != 0.0f;
    if (penalize && !history_.empty()) {
        std::unordered_map<int32_t, int32_t> seen;
        for (int32_t t : history_) ++seen[t];
        for (const auto& [t, count] : seen) {
            if (t < 0 || t >= n_vocab) continue;
            float& l = cand_[t].first;
            // CTRL-style penalty, as llama.cpp: divide positive logits, multiply negative ones.
            if (p_.repeat_penalty != 1.0f) l = l > 0.0f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
            l -= (float)count * p_.frequency_penalty + p_.presence_penalty;
        }
    }

    if (p_.temperature <= 0.0f) {
        // First index of the maximum, as torch.argmax.
        int32_t best = 0;
        for (int32_t i = 1; i < n_vocab; ++i)
            if (cand_[i].first > cand_[best].first) best = i;
        std::swap(cand_[0], cand_[best]);
        return 0;
    }

    auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    size_t n = cand_.size();
    if (p_.top_k > 0 && (size_t)p_.top_k < n) {
        std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
        n = (size_t)p_.top_k;
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    cand_.resize(n);

    // Probabilities before temperature for the top-p / min-p cuts (llama.cpp applies the
    // temperature last in its default chain).
    const float mx = cand_[0].first;
    // All -inf, or a +inf: the probabilities below would be NaN; the top candidate it is.
    if (!std::isfinite(mx)) return 0;
    std::vector<float> prob(n);
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += (prob[i] = std::exp(cand_[i].first - mx));
    for (size_t i = 0; i < n; ++i) prob[i] = (float)(prob[i] / sum);

    size_t keep = n;
    if (p_.top_p < 1.0f) {
        double c = 0.0;
        for (size_t i = 0; i < n; ++i) {
            c += prob[i];
            if (c >= p_.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (p_.min_p > 0.0f) {
        const float cut = p_.min_p * prob[0];
        size_t k = 1;
        while (k < keep && prob[k] >= cut) ++k;
        keep = k;
    }

    w_.resize(keep);
    for (size_t i = 0; i < keep; ++i)
        w_[i] = std::exp((double)(cand_[i].first - mx) / p_.temperature);
    return keep;
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab) {
    const size_t n = prepare(logits, n_vocab);
    if (n == 0) return cand_[0].second;
    std::discrete_distribution<size_t> dist(w_.begin(), w_.begin() + n);
    return cand_[dist(rng_)].second;
}

void Sampler::distribution(const float* logits, int32_t n_vocab,
                           std::vector<std::pair<int32_t, float>>* out) {
    const size_t n = prepare(logits, n_vocab);
    if (n == 0) {
        out->assign(1, {cand_[0].second, 1.0f});
        return;
    }
    out->resize(n);
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += w_[i];
    for (size_t i = 0; i < n; ++i) (*out)[i] = {cand_[i].second, (float)(w_[i] / sum)};
}

double Sampler::uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

}  // namespace bitnet
