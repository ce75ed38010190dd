// bitnet-cli: text completion from a GGUF model. Prints the prompt, streams the generated text to
// stdout as tokens come, and prints prompt and generation speed to stderr at the end.
// Uses only the public C API (include/bitnet.h).
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bitnet.h"
#include "tools/tool_common.h"

namespace {

using tool::die;
using tool::now_s;
using tool::parse_int;
using tool::parse_float;

struct Args {
    std::string model;
    std::string prompt;
    int n_predict = 128;
    int n_threads = 0;
    int n_ctx = 2048;
    int n_batch = 512;
    float temp = 0.8f;
    int top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float repeat_penalty = 1.0f;
    int repeat_last_n = 64;
    long long seed = -1;
    bool ignore_eos = false;
    bool display_prompt = true;
};

void usage(FILE* out) {
    std::fprintf(out,
        "usage: bitnet-cli -m MODEL.gguf -p PROMPT [options]\n"
        "  -m, --model FILE        GGUF model\n"
        "  -p, --prompt TEXT       prompt\n"
        "  -n, --n-predict N       tokens to generate (default 128; -1 = until end of text or full context)\n"
        "  -t, --threads N         threads (default: all cores)\n"
        "  -c, --ctx-size N        context size in tokens (default 2048, 0 = the model's)\n"
        "  -b, --batch-size N      tokens per forward pass for the prompt (default 512)\n"
        "      --temp T            temperature (default 0.8; 0 = greedy)\n"
        "      --top-k N           top-k (default 40, 0 = off)\n"
        "      --top-p P           top-p (default 0.95, 1 = off)\n"
        "      --min-p P           min-p (default 0.05, 0 = off)\n"
        "      --repeat-penalty F  repetition penalty (default 1.0 = off)\n"
        "      --repeat-last-n N   tokens the penalty looks back over (default 64)\n"
        "  -s, --seed N            random seed (default -1 = random)\n"
        "      --ignore-eos        keep generating past the end-of-text token\n"
        "      --no-display-prompt do not echo the prompt\n");
}

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string f = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) die("missing value for " + f);
            return argv[++i];
        };
        if (f == "-h" || f == "--help") { usage(stdout); std::exit(0); }
        else if (f == "-m" || f == "--model") a.model = next();
        else if (f == "-p" || f == "--prompt") a.prompt = next();
        else if (f == "-n" || f == "--n-predict") a.n_predict = (int)parse_int(f, next());
        else if (f == "-t" || f == "--threads") a.n_threads = (int)parse_int(f, next());
        else if (f == "-c" || f == "--ctx-size") a.n_ctx = (int)parse_int(f, next());
        else if (f == "-b" || f == "--batch-size") a.n_batch = (int)parse_int(f, next());
        else if (f == "--temp" || f == "--temperature") a.temp = parse_float(f, next());
        else if (f == "--top-k") a.top_k = (int)parse_int(f, next());
        else if (f == "--top-p") a.top_p = parse_float(f, next());
        else if (f == "--min-p") a.min_p = parse_float(f, next());
        else if (f == "--repeat-penalty") a.repeat_penalty = parse_float(f, next());
        else if (f == "--repeat-last-n") a.repeat_last_n = (int)parse_int(f, next());
        else if (f == "-s" || f == "--seed") a.seed = parse_int(f, next());
        else if (f == "--ignore-eos") a.ignore_eos = true;
        else if (f == "--no-display-prompt") a.display_prompt = false;
        else die("unknown argument '" + f + "' (see bitnet-cli --help)");
    }
    if (a.model.empty()) die("no model given: use -m MODEL.gguf (see bitnet-cli --help)");
    if (a.n_threads < 0) die("-t must be >= 0");
    if (a.n_ctx < 0) die("-c must be >= 0");
    if (a.n_batch <= 0) die("-b must be > 0");
    if (a.n_predict < -1) die("-n must be >= -1");
    return a;
}

std::string piece(const bitnet_model* m, bitnet_token t) {
    std::string s(32, '\0');
    int32_t n = bitnet_token_to_piece(m, t, &s[0], (int32_t)s.size());
    if (n < 0 && n != INT32_MIN) {
        s.resize((size_t)-n);
        n = bitnet_token_to_piece(m, t, &s[0], (int32_t)s.size());
    }
    if (n < 0) die(bitnet_last_error());
    s.resize((size_t)n);
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    Args a = parse_args(argc, argv);

    bitnet_model* model = bitnet_model_load(a.model.c_str());
    if (!model) die(bitnet_last_error());

    bitnet_context_params cp = bitnet_context_default_params();
    cp.n_ctx = a.n_ctx;
    cp.n_threads = a.n_threads;
    cp.n_batch = a.n_batch;
    bitnet_context* ctx = bitnet_context_new(model, cp);
    if (!ctx) die(bitnet_last_error());

    std::vector<bitnet_token> prompt(a.prompt.size() + 8);
    int32_t np = bitnet_tokenize(model, a.prompt.data(), (int32_t)a.prompt.size(), prompt.data(),
                                 (int32_t)prompt.size(), 1, 1);
    if (np < 0) die(bitnet_last_error());
    prompt.resize((size_t)np);
    if (np == 0) die("the prompt is empty and the model adds no BOS token: give a prompt with -p");
    const int32_t n_ctx = bitnet_context_n_ctx(ctx);
    if (np >= n_ctx)
        die("the prompt has " + std::to_string(np) + " tokens but the context holds " +
            std::to_string(n_ctx) + ": use a larger -c or a shorter prompt");

    bitnet_sampler_params sp = bitnet_sampler_default_params();
    sp.temperature = a.temp;
    sp.top_k = a.top_k;
    sp.top_p = a.top_p;
    sp.min_p = a.min_p;
    sp.repeat_penalty = a.repeat_penalty;
    sp.repeat_last_n = a.repeat_last_n;
    sp.seed = a.seed < 0 ? std::random_device{}() : (uint64_t)a.seed;
    bitnet_sampler* sampler = bitnet_sampler_new(&sp);
    if (!sampler) die(bitnet_last_error());
    for (bitnet_token t : prompt) bitnet_sampler_accept(sampler, t);

    std::fprintf(stderr, "model: %s, %d threads, kernels %s, seed %llu\n", bitnet_model_desc(model),
                 bitnet_context_n_threads(ctx), bitnet_isa(), (unsigned long long)sp.seed);
    if (a.display_prompt) {
        std::fwrite(a.prompt.data(), 1, a.prompt.size(), stdout);
        std::fflush(stdout);
    }

    const double t0 = now_s();
    if (bitnet_decode(ctx, prompt.data(), np, 0) != 0) die(bitnet_last_error());
    const double t1 = now_s();

    const int32_t n_vocab = bitnet_model_n_vocab(model);
    int n_gen = 0;
    double t_gen = 0.0;
    const int limit = a.n_predict < 0 ? n_ctx - np : std::min(a.n_predict, n_ctx - np);
    while (n_gen < limit) {
        const float* logits = bitnet_get_logits(ctx, -1);
        bitnet_token t = bitnet_sampler_sample(sampler, logits, n_vocab);
        bitnet_sampler_accept(sampler, t);
        ++n_gen;
        if (!a.ignore_eos && bitnet_token_is_eog(model, t)) break;
        const std::string s = piece(model, t);
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
        if (n_gen == limit) break;  // the last token needs no forward pass
        const double ts = now_s();
        if (bitnet_decode(ctx, &t, 1, 0) != 0) die(bitnet_last_error());
        t_gen += now_s() - ts;
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);

    const double tp = t1 - t0;
    const int n_decoded = n_gen > 0 ? n_gen - 1 : 0;  // forward passes during generation
    std::fprintf(stderr, "prompt eval: %d tokens in %.3f s (%.2f tokens/s)\n", np, tp,
                 tp > 0 ? np / tp : 0.0);
    std::fprintf(stderr, "generation:  %d tokens in %.3f s (%.2f tokens/s)\n", n_decoded, t_gen,
                 t_gen > 0 ? n_decoded / t_gen : 0.0);

    bitnet_sampler_free(sampler);
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return 0;
}
