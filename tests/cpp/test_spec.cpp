// The speculative sampling rule on synthetic distributions: tokens drafted from q and passed
// through verify_token must be distributed as p (a chi-square test per case, fixed seed, 400,000
// draws), for a general q, for the point mass of a deterministic drafter (with p(draft) positive
// and zero), and through the sampler chain's own distribution (which must also be what
// Sampler::sample draws from). Also: n-gram lookup, and the draft length on a stream where nothing
// is accepted. Exits non-zero with the first failures.
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "sampling/sampler.h"
#include "spec/spec.h"

using bitnet::spec::Dist;

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (ok) return;
    if (failures++ < 10) std::printf("FAIL: %s\n", what);
}

constexpr int kDraws = 400000;

// Pearson's statistic of counts against p; a token p never gives must never appear. Critical
// values at significance 1e-3 (chi-square table, df 1..10): a correct rule fails for one seed in a
// thousand, not for these fixed ones; a wrong one (a residual off by a percent of the mass) gives
// statistics in the hundreds at this many draws.
constexpr double kChi2Crit[11] = {0.0,   10.83, 13.82, 16.27, 18.47, 20.52,
                                  22.46, 24.32, 26.12, 27.88, 29.59};

bool chi_square_ok(const std::map<int32_t, int>& counts, const Dist& p, const char* what) {
    double chi = 0.0;
    int df = -1;
    for (const auto& e : p) {
        if (e.second <= 0.0f) continue;
        const double expect = e.second * (double)kDraws;
        const auto it = counts.find(e.first);
        const double obs = it == counts.end() ? 0.0 : it->second;
        chi += (obs - expect) * (obs - expect) / expect;
        ++df;
    }
    for (const auto& c : counts)
        if (bitnet::spec::prob_of(p, c.first) <= 0.0f) {
            std::printf("%s: token %d drawn %d times but p gives it 0\n", what, c.first, c.second);
            return false;
        }
    if (df <= 0) return true;  // one possible token: its count is all there is to check
    const double crit = kChi2Crit[df];
    std::printf("%-44s chi2 %.2f (df %d, critical %.1f)\n", what, chi, df, crit);
    return chi < crit;
}

// Tokens from drafts drawn from q, kept or replaced by the rule.
void test_rule(const Dist& p, const Dist& q, const char* what, uint64_t seed) {
    std::mt19937_64 g(seed);
    auto u = [&] { return std::uniform_real_distribution<double>(0.0, 1.0)(g); };
    std::map<int32_t, int> counts;
    int kept = 0;
    for (int i = 0; i < kDraws; ++i) {
        const int32_t d = bitnet::spec::draw(q, u());
        const int32_t t = bitnet::spec::verify_token(p, q, d, u);
        kept += t == d;
        ++counts[t];
    }
    // The rule keeps a draft with probability sum_t min(p(t), q(t)).
    double overlap = 0.0;
    for (const auto& e : q) overlap += std::min(e.second, bitnet::spec::prob_of(p, e.first));
    std::printf("%-44s kept %.4f (expected %.4f)\n", what, (double)kept / kDraws, overlap);
    check(std::fabs((double)kept / kDraws - overlap) < 0.005, what);
    check(chi_square_ok(counts, p, what), what);
}

void test_rules() {
    const Dist p = {{0, 0.40f}, {1, 0.25f}, {2, 0.15f}, {3, 0.10f}, {5, 0.10f}};
    const Dist q = {{0, 0.10f}, {1, 0.30f}, {2, 0.30f}, {4, 0.20f}, {5, 0.10f}};
    test_rule(p, q, "general q (token 4: q only, token 3: p only)", 1);
    test_rule(p, p, "q = p: everything kept", 2);
    test_rule(p, {{1, 1.0f}}, "point mass, p(draft) = 0.25", 3);
    test_rule(p, {{4, 1.0f}}, "point mass, p(draft) = 0", 4);
    test_rule({{3, 1.0f}}, {{3, 1.0f}}, "greedy, draft = argmax", 5);
    test_rule({{3, 1.0f}}, {{2, 1.0f}}, "greedy, draft != argmax", 6);
}

// The chain's distribution (temperature, top-k, top-p, min-p, repetition penalty) through the
// rule, and the same distribution against what sample() draws.
void test_sampler_chain() {
    bitnet::SamplerParams sp;
    sp.temperature = 0.7f;
    sp.top_k = 6;
    sp.top_p = 0.97f;
    sp.min_p = 0.01f;
    sp.repeat_penalty = 1.3f;
    sp.seed = 7;
    const std::vector<float> logits = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.8f, 0.9f, 2.2f, -3.0f, 1.5f};
    bitnet::Sampler s(sp);
    s.accept(1);  // penalized
    Dist p;
    s.distribution(logits.data(), (int32_t)logits.size(), &p);
    std::map<int32_t, int> counts;
    for (int i = 0; i < kDraws; ++i) ++counts[s.sample(logits.data(), (int32_t)logits.size())];
    check(p.size() == 6, "the chain keeps 6 candidates (top-k)");
    check(chi_square_ok(counts, p, "Sampler::sample against distribution()"), "sample vs distribution");
    test_rule(p, {{7, 1.0f}}, "sampler chain, point-mass draft", 8);
    test_rule(p, {{4, 1.0f}}, "sampler chain, draft outside the cuts", 9);
}

void test_ngram() {
    bitnet::spec::NgramDrafter d(2, 3);
    std::vector<int32_t> out;
    std::vector<Dist> q;
    const std::vector<int32_t> h = {5, 6, 7, 8, 9, 1, 6, 7};  // "6 7" was followed by 8 9 1 6
    d.draft(h.data(), (int32_t)h.size(), 3, &out, &q);
    check(out == std::vector<int32_t>({8, 9, 1}) && q.size() == 3, "n-gram continuation");
    const std::vector<int32_t> none = {1, 2, 3, 4, 5};
    d.draft(none.data(), (int32_t)none.size(), 3, &out, &q);
    check(out.empty(), "n-gram without a match");
}

void test_draft_length() {
    bitnet::spec::Params p;
    p.draft_max = 16;
    bitnet::spec::DraftLength len(p);
    long long drafted = 0;
    for (int step = 0; step < 1000; ++step) {
        const int32_t k = len.next();
        drafted += k;
        len.record(k, 0);
    }
    // Steady state: one probe per 65 steps, after 6 shorter pauses.
    std::printf("draft length: %lld tokens drafted over 1000 steps with nothing accepted\n", drafted);
    check(drafted <= 1000 / 64 + 6, "draft length backs off when nothing is accepted");
    bitnet::spec::DraftLength full(p);
    for (int step = 0; step < 6; ++step) {
        const int32_t k = full.next();
        full.record(k, k);
    }
    check(full.next() == 16, "draft length stays at --draft-max when everything is accepted");
}

}  // namespace

int main() {
    test_rules();
    test_sampler_chain();
    test_ngram();
    test_draft_length();
    if (failures) std::printf("%d failures\n", failures);
    else std::printf("all passed\n");
    return failures ? 1 : 0;
}
