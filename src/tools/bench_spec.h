// bitnet-bench's speculative decoding measurements (included by bench.cpp only), selected by
// --spec-curve or --spec-replay; they take -m, -t, -r, -p, -n, --draft-max and print their own
// tables, with every configuration of a repetition measured side by side, and medians.
//
//   --spec-curve        the verification cost curve: wall time of one forward pass over k = 1, 2,
//                       4, 8, 16 tokens of one sequence (logits for each, as verification needs)
//                       after a -p token prompt, relative to k = 1.
//   --spec-replay E,..  end-to-end generation of -n tokens after a -p token random prompt, plain
//                       and with the replay drafter, which proposes the model's own recorded greedy
//                       continuation with a fraction E of its tokens replaced by wrong ones: tg
//                       against acceptance. Each speculative run's output is checked against the
//                       recording (a mismatch is an error: speculation must be lossless).
#pragma once

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bitnet.h"
#include "tools/tool_common.h"

namespace spec_bench {

struct Args {
    std::string model;
    int n_threads = 0, reps = 5, n_prompt = 64, n_gen = 64, draft_max = 16;
    bool curve = false;
    std::vector<float> errors;
};

inline bool wanted(int argc, char** argv) {
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--spec-curve" || std::string(argv[i]) == "--spec-replay") return true;
    return false;
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string f = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) tool::die("missing value for " + f);
            return argv[++i];
        };
        if (f == "-m" || f == "--model") a.model = next();
        else if (f == "-t" || f == "--threads") a.n_threads = (int)tool::parse_int(f, next());
        else if (f == "-r" || f == "--repetitions") a.reps = (int)tool::parse_int(f, next());
        else if (f == "-p" || f == "--n-prompt") a.n_prompt = (int)tool::parse_int(f, next());
        else if (f == "-n" || f == "--n-gen") a.n_gen = (int)tool::parse_int(f, next());
        else if (f == "--draft-max") a.draft_max = (int)tool::parse_int(f, next());
        else if (f == "--spec-curve") a.curve = true;
        else if (f == "--spec-replay") {
            std::string v = next();
            size_t pos = 0;
            while (pos <= v.size()) {
                const size_t c = std::min(v.find(',', pos), v.size());
                const float e = tool::parse_float(f, v.substr(pos, c - pos).c_str());
                if (!(e >= 0.0f && e <= 1.0f)) tool::die("--spec-replay takes error fractions in [0, 1]");
                a.errors.push_back(e);
                pos = c + 1;
            }
        } else tool::die("unknown argument '" + f + "' with --spec-curve/--spec-replay (see --help)");
    }
    if (a.model.empty()) tool::die("no model given: pass -m MODEL.gguf");
    tool::check_threads(a.n_threads);
    if (a.reps < 1 || a.n_prompt < 1 || a.n_gen < 2 || a.draft_max < 1)
        tool::die("-r, -p and --draft-max must be >= 1 and -n >= 2");
    return a;
}

inline void check(int rc, const char* what) {
    if (rc != 0) tool::die(std::string(what) + " failed: " + bitnet_last_error());
}

inline void run_curve(bitnet_context* ctx, const std::vector<bitnet_token>& prompt, const Args& a) {
    const int ks[] = {1, 2, 4, 8, 16};
    const int np = (int)prompt.size();
    bitnet_context_truncate(ctx, 0);
    check(bitnet_decode(ctx, prompt.data(), np, 0), "prompt decode");
    std::vector<std::vector<double>> t(5);
    std::vector<bitnet_token> toks(prompt.begin(), prompt.begin() + 16);
    for (int rep = -1; rep < a.reps; ++rep)  // rep -1: warm-up, unrecorded
        for (int j = 0; j < 5; ++j) {
            bitnet_context_truncate(ctx, np);
            const double t0 = tool::now_s();
            check(bitnet_decode(ctx, toks.data(), ks[j], 1), "verification decode");
            if (rep >= 0) t[j].push_back(tool::now_s() - t0);
        }
    std::printf("| k (tokens verified) | ms per forward | relative to k = 1 | per token |\n");
    std::printf("| ---: | ---: | ---: | ---: |\n");
    const double base = median(t[0]);
    for (int j = 0; j < 5; ++j) {
        const double m = median(t[j]);
        std::printf("| %d | %.2f | %.3f | %.3f |\n", ks[j], 1e3 * m, m / base, m / base / ks[j]);
    }
}

// Generates a.n_gen tokens greedily after prompt; with spec, by its steps. Returns the time of
// the generation after the first token (as bitnet-cli counts it) and the tokens in *out.
inline double generate(bitnet_context* ctx, bitnet_sampler* smp, bitnet_spec* spec,
                       const std::vector<bitnet_token>& prompt, int n_gen, int n_vocab,
                       std::vector<bitnet_token>* out) {
    bitnet_context_truncate(ctx, 0);
    bitnet_sampler_reset(smp);
    check(bitnet_decode(ctx, prompt.data(), (int32_t)prompt.size(), 0), "prompt decode");
    std::vector<bitnet_token> hist(prompt);
    hist.push_back(bitnet_sampler_sample(smp, bitnet_get_logits(ctx, -1), n_vocab));
    std::vector<bitnet_token> step((size_t)n_gen);
    const double t0 = tool::now_s();
    while ((int)(hist.size() - prompt.size()) < n_gen) {
        const int32_t room = n_gen - (int32_t)(hist.size() - prompt.size());
        int32_t n;
        if (spec) {
            n = bitnet_spec_step(spec, ctx, 0, smp, hist.data(), (int32_t)hist.size(), step.data(), room);
            if (n < 0) tool::die(bitnet_last_error());
        } else {
            check(bitnet_decode(ctx, &hist.back(), 1, 0), "generation decode");
            step[0] = bitnet_sampler_sample(smp, bitnet_get_logits(ctx, -1), n_vocab);
            n = 1;
        }
        hist.insert(hist.end(), step.begin(), step.begin() + n);
    }
    const double dt = tool::now_s() - t0;
    out->assign(hist.begin() + (long)prompt.size(), hist.end());
    return dt;
}

inline void run_replay(bitnet_model* model, bitnet_context* ctx, const std::vector<bitnet_token>& prompt,
                       const Args& a) {
    const int n_vocab = bitnet_model_n_vocab(model);
    bitnet_sampler_params sp = bitnet_sampler_default_params();
    sp.temperature = 0.0f;
    bitnet_sampler* smp = bitnet_sampler_new(&sp);
    std::vector<bitnet_token> ref;
    generate(ctx, smp, nullptr, prompt, a.n_gen, n_vocab, &ref);  // the recording (and a warm-up)
    std::vector<bitnet_token> whole(prompt);
    whole.insert(whole.end(), ref.begin(), ref.end());

    const size_t n_cfg = a.errors.size() + 1;  // 0: plain decoding
    std::vector<std::vector<double>> t(n_cfg);
    std::vector<bitnet_spec_stats> st(n_cfg);
    for (int rep = 0; rep < a.reps; ++rep)
        for (size_t j = 0; j < n_cfg; ++j) {
            // The order rotates from one repetition to the next, so that a slow spell of a shared
            // machine does not always fall on the same configuration.
            const size_t c = (j + (size_t)rep) % n_cfg;
            bitnet_spec* spec = nullptr;
            if (c > 0) {
                bitnet_spec_params pp = bitnet_spec_default_params();
                pp.mode = BITNET_SPEC_REPLAY;
                pp.draft_max = a.draft_max;
                pp.replay_tokens = whole.data();
                pp.n_replay = (int32_t)whole.size();
                pp.replay_error = a.errors[c - 1];
                pp.seed = 42;
                spec = bitnet_spec_new(model, ctx, &pp, smp);
                if (!spec) tool::die(bitnet_last_error());
            }
            std::vector<bitnet_token> got;
            t[c].push_back(generate(ctx, smp, spec, prompt, a.n_gen, n_vocab, &got));
            if (got != ref) tool::die("speculative output differs from plain greedy decoding");
            if (spec) st[c] = bitnet_spec_get_stats(spec);
            bitnet_spec_free(spec);
        }
    bitnet_sampler_free(smp);
    const double base = median(t[0]);
    std::printf("| drafter | wrong tokens | accepted | tokens per pass | tg t/s | vs plain |\n");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    std::printf("| plain | - | - | 1.00 | %.2f | 1.000 |\n", (a.n_gen - 1) / base);
    for (size_t c = 1; c < n_cfg; ++c) {
        const double m = median(t[c]);
        const bitnet_spec_stats& s = st[c];
        std::printf("| replay | %.0f%% | %.1f%% | %.2f | %.2f | %.3f |\n", 100.0 * a.errors[c - 1],
                    s.drafted ? 100.0 * s.accepted / s.drafted : 0.0,
                    s.steps ? (double)s.generated / s.steps : 0.0, (a.n_gen - 1) / m, base / m);
    }
}

inline int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    bitnet_model* model = bitnet_model_load(a.model.c_str());
    if (!model) tool::die(bitnet_last_error());
    bitnet_context_params cp = bitnet_context_default_params();
    cp.n_ctx = a.n_prompt + std::max(a.n_gen, 16) + 1;
    cp.n_threads = a.n_threads;
    bitnet_context* ctx = bitnet_context_new(model, cp);
    if (!ctx) tool::die(bitnet_last_error());
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> tok(0, bitnet_model_n_vocab(model) - 1);
    std::vector<bitnet_token> prompt((size_t)std::max(a.n_prompt, 16));
    for (auto& x : prompt) x = tok(rng);
    std::printf("model %s, %d threads, prompt %zu tokens, median of %d runs\n\n", bitnet_model_desc(model),
                bitnet_context_n_threads(ctx), prompt.size(), a.reps);
    if (a.curve) run_curve(ctx, prompt, a);
    if (a.curve && !a.errors.empty()) std::printf("\n");
    if (!a.errors.empty()) run_replay(model, ctx, prompt, a);
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return 0;
}

}  // namespace spec_bench
