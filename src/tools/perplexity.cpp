// bitnet-perplexity: perplexity of a GGUF model on a text file, with llama-perplexity's protocol so
// the numbers compare with published llama.cpp / bitnet.cpp ones.
//
// Protocol: the whole file is tokenized (with BOS when the model's vocabulary asks for one) and
// cut into chunks of c tokens (-c); the tail that does not fill a chunk is dropped. Each chunk has
// its first token replaced by BOS (when the model has one), is evaluated from an empty KV cache,
// and scores only its second half: the tokens at positions c/2+1 .. c-1, each predicted by the
// logits of the position before it, so every scored token sees more than c/2 tokens of context.
// PPL = exp(mean NLL) over all scored tokens; its +/- is the standard error of the mean NLL
// propagated through exp (PPL * stderr).
//
// stdout: the running estimate after each chunk ("[1]12.3456,[2]11.9876,...", flushed as it
// comes) and "Final estimate: PPL = 12.3456 +/- 0.12345". stderr: model, token counts, speed.
// Uses only the public C API (include/bitnet.h).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bitnet.h"
#include "tools/tool_common.h"

namespace {

using tool::die;
using tool::now_s;
using tool::parse_int;

struct Args {
    std::string model;
    std::string file;
    int n_ctx = 512;
    int n_batch = 512;
    int n_threads = 0;
    int n_chunks = -1;  // -1: every full chunk of the file
    tool::CacheArgs cache;
    bool use_mmap = true;
};

void usage(FILE* out) {
    std::fprintf(out,
        "usage: bitnet-perplexity -m MODEL.gguf -f TEXT_FILE [options]\n"
        "  -m, --model FILE       GGUF model\n"
        "  -f, --file FILE        text to score (read as UTF-8 bytes)\n"
        "  -c, --ctx-size N       tokens per chunk (default 512, 0 = the model's training context)\n"
        "  -b, --batch-size N     tokens per forward pass (default 512)\n"
        "  -t, --threads N        threads (default: the usable CPUs)\n"
        "      --chunks N         score at most N chunks (default -1 = all)\n"
        "%s%s", tool::kCacheUsage, tool::kMmapUsage);
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
        else if (f == "-f" || f == "--file") a.file = next();
        else if (f == "-c" || f == "--ctx-size") a.n_ctx = (int)parse_int(f, next());
        else if (f == "-b" || f == "--batch-size") a.n_batch = (int)parse_int(f, next());
        else if (f == "-t" || f == "--threads") a.n_threads = (int)parse_int(f, next());
        else if (f == "--chunks") a.n_chunks = (int)parse_int(f, next());
        else if (tool::parse_cache_flag(f, next, a.cache)) {}
        else if (tool::parse_mmap_flag(f, a.use_mmap)) {}
        else die("unknown argument '" + f + "' (see bitnet-perplexity --help)");
    }
    if (a.model.empty()) die("no model given: use -m MODEL.gguf (see bitnet-perplexity --help)");
    if (a.file.empty()) die("no text file given: use -f TEXT_FILE (see bitnet-perplexity --help)");
    if (a.n_ctx < 0) die("-c must be >= 0");
    if (a.n_batch <= 0) die("-b must be > 0");
    tool::check_threads(a.n_threads);
    if (a.n_chunks == 0 || a.n_chunks < -1) die("--chunks must be a positive count, or -1 for all");
    return a;
}

std::string read_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) die("cannot open text file '" + path + "': " + std::strerror(errno));
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) die("cannot read text file '" + path + "'");
    if (text.size() > (size_t)INT32_MAX) die("text file '" + path + "' is over 2 GiB: split it");
    return text;
}

std::vector<bitnet_token> tokenize(const bitnet_model* m, const std::string& text, bool add_bos) {
    // A token covers at least one byte, plus BOS: this guess is almost always enough, and the API
    // tells the exact need when it is not.
    std::vector<bitnet_token> toks(text.size() + 2);
    int32_t n = bitnet_tokenize(m, text.data(), (int32_t)text.size(), toks.data(),
                                (int32_t)toks.size(), add_bos, 0);
    if (n < 0 && n != INT32_MIN) {
        toks.resize((size_t)-n);
        n = bitnet_tokenize(m, text.data(), (int32_t)text.size(), toks.data(), (int32_t)toks.size(),
                            add_bos, 0);
    }
    if (n < 0) die(bitnet_last_error());
    toks.resize((size_t)n);
    return toks;
}

// -log softmax(logits)[target], in double: a 128k-entry sum in float loses ~1e-4 relative, which
// would show in the 4th digit of the PPL.
double token_nll(const float* logits, int32_t n_vocab, bitnet_token target) {
    float mx = logits[0];
    for (int32_t j = 1; j < n_vocab; ++j) mx = std::max(mx, logits[j]);
    double sum = 0.0;
    for (int32_t j = 0; j < n_vocab; ++j) sum += std::exp((double)logits[j] - (double)mx);
    return std::log(sum) - ((double)logits[target] - (double)mx);
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse_args(argc, argv);
    const std::string text = read_file(a.file);

    bitnet_model* model = tool::load_model(a.model, a.use_mmap);
    const int n_train = bitnet_model_n_ctx_train(model);
    const int n_ctx = a.n_ctx > 0 ? a.n_ctx : std::min(n_train > 0 ? n_train : BITNET_DEFAULT_CTX_MAX, BITNET_DEFAULT_CTX_MAX);
    tool::note_context(model, a.n_ctx, n_ctx);
    if (n_ctx < 6)  // fewer would score under 2 tokens a chunk: no spread to estimate
        die("-c " + std::to_string(n_ctx) + " is too small: each chunk scores the tokens after its "
            "first half, so use -c 6 or more (512 is usual)");

    // Does the vocabulary ask for BOS? Ask the tokenizer itself: the empty text yields just BOS then.
    const bool add_bos = tokenize(model, std::string(), true).size() == 1;
    const std::vector<bitnet_token> tokens = tokenize(model, text, add_bos);
    const int n_tokens = (int)tokens.size();
    if (n_tokens < n_ctx)
        die("'" + a.file + "' has " + std::to_string(n_tokens) + " tokens, fewer than one chunk of -c " +
            std::to_string(n_ctx) + ": use " +
            (n_tokens >= 6 ? "-c " + std::to_string(n_tokens) + " or less, or " : std::string()) +
            "a longer text");
    int n_chunks = n_tokens / n_ctx;
    if (a.n_chunks > 0) n_chunks = std::min(n_chunks, a.n_chunks);
    const int first = n_ctx / 2;
    const int n_scored = n_ctx - 1 - first;  // per chunk: positions first+1 .. n_ctx-1

    bitnet_context_params cp = bitnet_context_default_params();
    cp.exact_output = 1;  // perplexity reads the logit of every target token, not only the top ones
    cp.n_ctx = n_ctx;
    cp.n_threads = a.n_threads;
    cp.n_batch = std::min(a.n_batch, n_ctx);
    a.cache.apply(cp);
    bitnet_context* ctx = bitnet_context_new(model, cp);
    if (!ctx) die(bitnet_last_error());
    const int32_t n_vocab = bitnet_model_n_vocab(model);
    const bitnet_token bos = bitnet_token_bos(model);

    std::fprintf(stderr, "model: %s, %d threads, kernels %s\n", bitnet_model_desc(model),
                 bitnet_context_n_threads(ctx), bitnet_isa());
    std::fprintf(stderr, "%d tokens: %d chunks of %d, scoring the last %d tokens of each\n",
                 n_tokens, n_chunks, n_ctx, n_scored);

    double nll = 0.0, nll2 = 0.0;  // sums over scored tokens of NLL and NLL^2
    long long count = 0;
    double t_eval = 0.0;
    std::vector<bitnet_token> chunk((size_t)n_ctx);
    for (int i = 0; i < n_chunks; ++i) {
        std::copy_n(tokens.begin() + (ptrdiff_t)i * n_ctx, n_ctx, chunk.begin());
        if (add_bos) chunk[0] = bos;
        bitnet_context_truncate(ctx, 0);
        const double t0 = now_s();
        if (bitnet_decode(ctx, chunk.data(), n_ctx, 1) != 0) die(bitnet_last_error());
        t_eval += now_s() - t0;
        if (i == 0)
            std::fprintf(stderr, "%.2f s per chunk, %.1f s to go\n", t_eval, t_eval * (n_chunks - 1));

        for (int j = first; j < n_ctx - 1; ++j) {
            const float* logits = bitnet_get_logits(ctx, j);
            if (!logits) die(bitnet_last_error());
            const double v = token_nll(logits, n_vocab, chunk[(size_t)j + 1]);
            nll += v;
            nll2 += v * v;
        }
        count += n_scored;
        std::printf("[%d]%.4f,", i + 1, std::exp(nll / (double)count));
        std::fflush(stdout);
    }
    std::printf("\n");

    const double mean = nll / (double)count;
    const double ppl = std::exp(mean);
    // Standard error of the mean NLL: sqrt(sample variance / count) = sqrt(population variance /
    // (count - 1)); max() guards the rounding of E[x^2] - E[x]^2 near 0.
    const double var = std::max(0.0, nll2 / (double)count - mean * mean);
    const double stderr_mean = std::sqrt(var / (double)(count - 1));
    std::printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, ppl * stderr_mean);
    std::fflush(stdout);

    const long long n_eval = (long long)n_chunks * n_ctx;
    std::fprintf(stderr, "scored %lld tokens in %d chunks; evaluated %lld tokens in %.3f s (%.2f tokens/s)\n",
                 count, n_chunks, n_eval, t_eval, t_eval > 0 ? (double)n_eval / t_eval : 0.0);

    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return 0;
}
