// Token sampling: repetition penalty, then greedy (temperature <= 0) or top-k, top-p, min-p and
// temperature followed by a seeded draw. The order follows llama.cpp's default chain, so the same
// flags mean the same thing to users of either tool.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace bitnet {

struct SamplerParams {
    float temperature = 0.8f;
    int32_t top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float repeat_penalty = 1.0f;
    int32_t repeat_last_n = 64;
    // OpenAI's penalties, over the same last repeat_last_n tokens: a token seen c times loses
    // c * frequency_penalty + presence_penalty (when c > 0) from its logit.
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(const SamplerParams& p);
    void accept(int32_t token);
    void reset();
    // Added to the logits before anything else (-inf bans a token); replaces any earlier set.
    void set_logit_bias(std::vector<std::pair<int32_t, float>> bias) { bias_ = std::move(bias); }
    // logits are not modified.
    int32_t sample(const float* logits, int32_t n_vocab);
    // The distribution sample() draws from, as (token, probability) pairs summing to 1 in
    // descending order; greedy gives its choice with probability 1. Speculative verification
    // needs it whole: the acceptance rule compares it with the draft's.
    void distribution(const float* logits, int32_t n_vocab,
                      std::vector<std::pair<int32_t, float>>* out);
    // A uniform draw in [0, 1) from this sampler's generator, so that a speculative step is as
    // reproducible from the seed as plain sampling.
    double uniform();
    bool greedy() const { return p_.temperature <= 0.0f; }
    const SamplerParams& params() const { return p_; }

private:
    // The candidates after the chain's cuts into cand_[0..n) with their unnormalized weights in
    // w_; returns n, or 0 when no draw is needed (greedy, or no finite logit): cand_[0] is the
    // choice.
    size_t prepare(const float* logits, int32_t n_vocab);

    SamplerParams p_;
    std::mt19937_64 rng_;
    std::deque<int32_t> history_;
    std::vector<std::pair<int32_t, float>> bias_;
    std::vector<std::pair<float, int32_t>> cand_;  // (logit or prob, token)
    std::vector<double> w_;                         // weights of cand_[0..n) after prepare()
};

}  // namespace bitnet
