// libFuzzer harness: the sampler given any parameters and any logits, NaN and infinities
// included. The input is the parameter block, then a count of history tokens (any ids, in range
// or not) for the repetition penalty, then the logits as raw floats. The sampler must return a
// token of the vocabulary or refuse the parameters, with no UB (sorting NaN is UB with the
// comparators the STL requires).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_common.h"

namespace {

struct RawParams {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    uint64_t seed;
    uint8_t n_history;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // The packed fields, not sizeof(RawParams): its padding bytes would be inputs that do nothing.
    constexpr size_t kHeader = 4 * 6 + 8 + 1;
    if (size < kHeader) return 0;
    RawParams r;
    std::memcpy(&r.temperature, data + 0, 4);
    std::memcpy(&r.top_k, data + 4, 4);
    std::memcpy(&r.top_p, data + 8, 4);
    std::memcpy(&r.min_p, data + 12, 4);
    std::memcpy(&r.repeat_penalty, data + 16, 4);
    std::memcpy(&r.repeat_last_n, data + 20, 4);
    std::memcpy(&r.seed, data + 24, 8);
    r.n_history = data[32];
    data += kHeader;
    size -= kHeader;

    const size_t history_bytes = std::min(size, (size_t)r.n_history * 4);
    std::vector<int32_t> history(history_bytes / 4);
    if (!history.empty()) std::memcpy(history.data(), data, history.size() * 4);
    data += history_bytes;
    size -= history_bytes;
    std::vector<float> logits(size / 4);
    if (logits.empty()) return 0;
    std::memcpy(logits.data(), data, logits.size() * 4);

    bitnet_sampler_params p = bitnet_sampler_default_params();
    p.temperature = r.temperature;
    p.top_k = r.top_k;
    p.top_p = r.top_p;
    p.min_p = r.min_p;
    p.repeat_penalty = r.repeat_penalty;
    p.repeat_last_n = r.repeat_last_n;
    p.seed = r.seed;
    bitnet_sampler* s = bitnet_sampler_new(&p);
    if (!s) return 0;
    for (int32_t t : history) bitnet_sampler_accept(s, t);
    const int32_t n_vocab = (int32_t)logits.size();
    // NaN counts as -inf, so a token whose logit is NaN or -inf may only come out when no logit is
    // above -inf (without a repetition penalty, which can push a finite logit to -inf).
    const bool any_above = std::any_of(logits.begin(), logits.end(),
                                       [](float l) { return l > -INFINITY; });
    for (int round = 0; round < 2; ++round) {
        const bitnet_token t = bitnet_sampler_sample(s, logits.data(), n_vocab);
        if (t < 0 || t >= n_vocab) fuzz::fail("sampled token outside the vocabulary");
        if (p.repeat_penalty == 1.0f && any_above && !(logits[t] > -INFINITY))
            fuzz::fail("sampled a token whose logit is NaN or -inf while others are above");
        bitnet_sampler_accept(s, t);
    }
    bitnet_sampler_free(s);
    return 0;
}
