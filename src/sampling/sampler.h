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
    uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(const SamplerParams& p);
    void accept(int32_t token);
    void reset();
    // logits are not modified.
    int32_t sample(const float* logits, int32_t n_vocab);

private:
    SamplerParams p_;
    std::mt19937_64 rng_;
    std::deque<int32_t> history_;
    std::vector<std::pair<float, int32_t>> cand_;  // (logit or prob, token)
};

}  // namespace bitnet
