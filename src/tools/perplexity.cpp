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
//
// KL divergence (llama-perplexity's mode, for comparing files of one model: i2_s against tl2, an
// f16 output against Q6_K): --kl-divergence-base FILE with -f writes, beside the perplexity, the
// tokens and, for every scored position, the log-probabilities of the whole vocabulary (float16:
// 2 bytes per vocabulary entry per scored token). --kl-divergence then evaluates the same chunks
// of those tokens with another model (no -f needed) and reports KL(base || model) per token (mean
// with its standard error, median, 99th percentile, maximum), how often both pick the same top
// token, and both perplexities.
//
// HellaSwag (--hellaswag, llama-perplexity's task file: per task four lines of context, the index
// of the right ending, and four endings, one line each): each ending is scored by the mean
// log-probability of its tokens after the context; a task is right when the right ending scores
// highest. Accuracy after each task, and the final one with its standard error.
// Uses only the public C API (include/bitnet.h).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
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
    std::string kld_base;  // --kl-divergence-base: the file of base log-probabilities
    bool kld = false;      // --kl-divergence: compare with that file instead of writing it
    bool hellaswag = false;
    int hellaswag_tasks = 0;  // 0: all
    bool ctx_given = false;
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
        "      --kl-divergence-base FILE\n"
        "                         with -f: also write the tokens and every scored position's\n"
        "                         log-probabilities (float16) to FILE\n"
        "      --kl-divergence    with --kl-divergence-base FILE (and no -f): KL divergence and\n"
        "                         top-token agreement of this model against that base\n"
        "      --hellaswag        -f is a HellaSwag task file (6 lines per task): accuracy\n"
        "      --hellaswag-tasks N  score the first N tasks only (default: all)\n"
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
        else if (f == "-c" || f == "--ctx-size") { a.n_ctx = (int)parse_int(f, next()); a.ctx_given = true; }
        else if (f == "-b" || f == "--batch-size") a.n_batch = (int)parse_int(f, next());
        else if (f == "-t" || f == "--threads") a.n_threads = (int)parse_int(f, next());
        else if (f == "--chunks") a.n_chunks = (int)parse_int(f, next());
        else if (f == "--kl-divergence-base") a.kld_base = next();
        else if (f == "--kl-divergence") a.kld = true;
        else if (f == "--hellaswag") a.hellaswag = true;
        else if (f == "--hellaswag-tasks") a.hellaswag_tasks = (int)parse_int(f, next());
        else if (tool::parse_cache_flag(f, next, a.cache)) {}
        else if (tool::parse_mmap_flag(f, a.use_mmap)) {}
        else die("unknown argument '" + f + "' (see bitnet-perplexity --help)");
    }
    if (a.model.empty()) die("no model given: use -m MODEL.gguf (see bitnet-perplexity --help)");
    if (a.kld && a.kld_base.empty())
        die("--kl-divergence needs the base file: give --kl-divergence-base FILE");
    if (a.kld && !a.file.empty())
        die("--kl-divergence scores the tokens stored in the base file: leave out -f");
    if (a.hellaswag && !a.kld_base.empty())
        die("--hellaswag and --kl-divergence-base are separate modes: use one");
    if (a.hellaswag_tasks < 0) die("--hellaswag-tasks must be >= 0");
    if (a.file.empty() && !a.kld)
        die("no text file given: use -f TEXT_FILE (see bitnet-perplexity --help)");
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

// log softmax(logits), in double for the sum; out[j] = logits[j] - max - log(sum exp).
void log_softmax(const float* logits, int32_t n_vocab, std::vector<double>& out) {
    out.resize((size_t)n_vocab);
    float mx = logits[0];
    for (int32_t j = 1; j < n_vocab; ++j) mx = std::max(mx, logits[j]);
    double sum = 0.0;
    for (int32_t j = 0; j < n_vocab; ++j) sum += std::exp((double)logits[j] - (double)mx);
    const double lse = (double)mx + std::log(sum);
    for (int32_t j = 0; j < n_vocab; ++j) out[(size_t)j] = (double)logits[j] - lse;
}

// IEEE half precision, round to nearest even; log-probabilities are <= 0, and those below the
// half range (-65504, a probability of e^-65504) are clamped to it: they weigh nothing.
uint16_t to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const float a = std::fabs(f);
    if (!(a <= 65504.0f)) return (uint16_t)(sign | 0x7bffu);  // clamp (NaN cannot occur here)
    if (a < 6.103515625e-05f) {  // subnormal half: a multiple of 2^-24
        return (uint16_t)(sign | (uint32_t)std::nearbyint(a * 16777216.0f));
    }
    uint32_t ax = x & 0x7fffffffu;
    // Rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits, ties to even.
    uint32_t h = ((ax >> 13) - ((127 - 15) << 10));
    const uint32_t rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return (uint16_t)(sign | h);
}

float from_half(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    float v;
    if (e == 0) v = (float)m * 5.9604644775390625e-08f;  // 2^-24
    else if (e == 31) v = m ? NAN : INFINITY;
    else {
        const uint32_t x = ((e + 127 - 15) << 23) | (m << 13);
        std::memcpy(&v, &x, 4);
    }
    return sign ? -v : v;
}

// The base file of --kl-divergence-base: magic, n_vocab, n_ctx, n_chunks, n_tokens, the tokens
// (int32), then per chunk its scored positions' log-probabilities (n_vocab float16 each).
constexpr char kMagic[8] = {'B', 'N', 'K', 'L', 'D', '0', '1', '\n'};

struct Base {
    int32_t n_vocab = 0, n_ctx = 0, n_chunks = 0;
    std::vector<bitnet_token> tokens;
    FILE* f = nullptr;  // positioned at the first chunk's log-probabilities
};

Base read_base(const std::string& path, int32_t n_vocab) {
    Base b;
    b.f = std::fopen(path.c_str(), "rb");
    if (!b.f) die("cannot open base file '" + path + "': " + std::strerror(errno));
    char magic[8];
    int32_t hdr[4];
    if (std::fread(magic, 1, 8, b.f) != 8 || std::memcmp(magic, kMagic, 8) != 0 ||
        std::fread(hdr, 4, 4, b.f) != 4)
        die("'" + path + "' is not a base file of bitnet-perplexity --kl-divergence-base");
    b.n_vocab = hdr[0], b.n_ctx = hdr[1], b.n_chunks = hdr[2];
    const int32_t n_tokens = hdr[3];
    if (b.n_vocab <= 0 || b.n_ctx < 6 || b.n_chunks <= 0 || n_tokens != b.n_ctx * b.n_chunks)
        die("base file '" + path + "' has a broken header");
    if (b.n_vocab != n_vocab)
        die("base file '" + path + "' holds log-probabilities over " + std::to_string(b.n_vocab) +
            " tokens, this model has " + std::to_string(n_vocab) + ": compare files of one model");
    const long long n_scored = (long long)b.n_chunks * (b.n_ctx - 1 - b.n_ctx / 2);
    const long long want = 8 + 16 + 4LL * n_tokens + 2LL * n_scored * b.n_vocab;
    if (std::fseek(b.f, 0, SEEK_END) != 0 || std::ftell(b.f) != want)
        die("base file '" + path + "' is truncated or too long: write it again");
    std::fseek(b.f, 24, SEEK_SET);
    b.tokens.resize((size_t)n_tokens);
    if (std::fread(b.tokens.data(), 4, (size_t)n_tokens, b.f) != (size_t)n_tokens)
        die("cannot read base file '" + path + "'");
    for (bitnet_token t : b.tokens)
        if (t < 0 || t >= n_vocab) die("base file '" + path + "' holds a token outside the vocabulary");
    return b;
}

// Writes the base file to PATH.tmp and renames it at the end, so that a failure or an interrupt
// never leaves a half-written base behind.
struct BaseWriter {
    std::string path, tmp;
    FILE* f = nullptr;
    std::vector<uint16_t> row;

    BaseWriter(const std::string& p, int32_t n_vocab, int n_ctx, int n_chunks,
               const std::vector<bitnet_token>& tokens)
        : path(p), tmp(p + ".tmp") {
        f = std::fopen(tmp.c_str(), "wb");
        if (!f) die("cannot write base file '" + tmp + "': " + std::strerror(errno));
        const int32_t hdr[4] = {n_vocab, n_ctx, n_chunks, n_ctx * n_chunks};
        put(kMagic, 8);
        put(hdr, sizeof hdr);
        put(tokens.data(), 4 * (size_t)n_ctx * n_chunks);
        row.resize((size_t)n_vocab);
    }
    void put(const void* p, size_t n) {
        if (std::fwrite(p, 1, n, f) != n) {
            std::fclose(f);
            std::remove(tmp.c_str());
            die("cannot write base file '" + tmp + "': " + std::strerror(errno));
        }
    }
    void add(const std::vector<double>& logp) {
        for (size_t j = 0; j < row.size(); ++j) row[j] = to_half((float)logp[j]);
        put(row.data(), 2 * row.size());
    }
    void finish() {
        const bool bad = std::fclose(f) != 0;
        f = nullptr;
        if (bad || std::rename(tmp.c_str(), path.c_str()) != 0) {
            std::remove(tmp.c_str());
            die("cannot write base file '" + path + "': " + std::strerror(errno));
        }
    }
};

bitnet_context* new_context(bitnet_model* model, const Args& a, int n_ctx) {
    bitnet_context_params cp = bitnet_context_default_params();
    cp.exact_output = 1;  // perplexity reads the logit of every target token, not only the top ones
    cp.n_ctx = n_ctx;
    cp.n_threads = a.n_threads;
    cp.n_batch = std::min(a.n_batch, n_ctx);
    a.cache.apply(cp);
    bitnet_context* ctx = bitnet_context_new(model, cp);
    if (!ctx) die(bitnet_last_error());
    return ctx;
}

// mean +/- standard error of the mean of values summed as (sum, sum of squares, count)
struct Stat {
    double s = 0.0, s2 = 0.0;
    long long n = 0;
    void add(double v) { s += v; s2 += v * v; ++n; }
    double mean() const { return s / (double)n; }
    double err() const {
        if (n < 2) return 0.0;
        const double var = std::max(0.0, s2 / (double)n - mean() * mean());
        return std::sqrt(var / (double)(n - 1));
    }
};

double percentile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    const double pos = q * (double)(v.size() - 1);
    const size_t i = (size_t)pos;
    const double frac = pos - (double)i;
    return i + 1 < v.size() ? v[i] * (1.0 - frac) + v[i + 1] * frac : v[i];
}

int run_kld(const Args& a, bitnet_model* model) {
    const int32_t n_vocab = bitnet_model_n_vocab(model);
    Base b = read_base(a.kld_base, n_vocab);
    if (a.ctx_given && a.n_ctx != 0 && a.n_ctx != b.n_ctx)
        die("the base file was written with -c " + std::to_string(b.n_ctx) + ": use that, or leave out -c");
    int n_chunks = b.n_chunks;
    if (a.n_chunks > 0) n_chunks = std::min(n_chunks, a.n_chunks);
    const int n_ctx = b.n_ctx, first = n_ctx / 2;
    const bool add_bos = bitnet_token_bos(model) >= 0 && b.tokens[0] == bitnet_token_bos(model);
    bitnet_context* ctx = new_context(model, a, n_ctx);
    std::fprintf(stderr, "model: %s, %d threads, kernels %s\n", bitnet_model_desc(model),
                 bitnet_context_n_threads(ctx), bitnet_isa());
    std::fprintf(stderr, "base '%s': %d chunks of %d tokens\n", a.kld_base.c_str(), n_chunks, n_ctx);

    Stat kld, same, nll_q, nll_b;
    std::vector<double> klds, logp;
    std::vector<uint16_t> row((size_t)n_vocab);
    std::vector<bitnet_token> chunk((size_t)n_ctx);
    for (int i = 0; i < n_chunks; ++i) {
        std::copy_n(b.tokens.begin() + (ptrdiff_t)i * n_ctx, n_ctx, chunk.begin());
        if (add_bos) chunk[0] = bitnet_token_bos(model);
        bitnet_context_truncate(ctx, 0);
        if (bitnet_decode(ctx, chunk.data(), n_ctx, 1) != 0) die(bitnet_last_error());
        for (int j = first; j < n_ctx - 1; ++j) {
            const float* logits = bitnet_get_logits(ctx, j);
            if (!logits) die(bitnet_last_error());
            if (std::fread(row.data(), 2, row.size(), b.f) != row.size())
                die("cannot read base file '" + a.kld_base + "'");
            log_softmax(logits, n_vocab, logp);
            double d = 0.0;
            size_t top_b = 0, top_q = 0;
            float best_b = -INFINITY;
            for (size_t k = 0; k < row.size(); ++k) {
                const double lb = from_half(row[k]);
                d += std::exp(lb) * (lb - logp[k]);
                if (lb > best_b) best_b = (float)lb, top_b = k;
                if (logp[k] > logp[top_q]) top_q = k;
            }
            const bitnet_token target = chunk[(size_t)j + 1];
            kld.add(d);
            klds.push_back(d);
            same.add(top_b == top_q ? 1.0 : 0.0);
            nll_q.add(-logp[(size_t)target]);
            nll_b.add(-(double)from_half(row[(size_t)target]));
        }
        std::printf("[%d] KLD %.6f, same top %.2f%%\n", i + 1, kld.mean(), 100.0 * same.mean());
        std::fflush(stdout);
    }
    const double ppl_q = std::exp(nll_q.mean()), ppl_b = std::exp(nll_b.mean());
    std::printf("PPL(model) = %.4f +/- %.5f\n", ppl_q, ppl_q * nll_q.err());
    std::printf("PPL(base)  = %.4f +/- %.5f\n", ppl_b, ppl_b * nll_b.err());
    std::printf("Mean KLD = %.6f +/- %.6f\n", kld.mean(), kld.err());
    std::printf("Median KLD = %.6f, 99%% KLD = %.6f, Maximum KLD = %.6f\n", percentile(klds, 0.5),
                percentile(klds, 0.99), percentile(klds, 1.0));
    std::printf("Same top token = %.3f +/- %.3f %% (%lld tokens)\n", 100.0 * same.mean(),
                100.0 * same.err(), same.n);
    std::fflush(stdout);
    std::fclose(b.f);
    bitnet_context_free(ctx);
    return 0;
}

std::vector<std::string> read_lines(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(start, end - start);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(std::move(line));
        start = end + 1;
    }
    return lines;
}

int run_hellaswag(const Args& a, bitnet_model* model, const std::string& text) {
    const std::vector<std::string> lines = read_lines(text);
    if (lines.empty() || lines.size() % 6 != 0)
        die("'" + a.file + "' is not a HellaSwag task file: it needs 6 lines per task (context, the "
            "right ending's index 0-3, four endings); it has " + std::to_string(lines.size()) + " lines");
    int n_tasks = (int)(lines.size() / 6);
    if (a.hellaswag_tasks > 0) n_tasks = std::min(n_tasks, a.hellaswag_tasks);
    for (int t = 0; t < n_tasks; ++t) {  // the whole file checked before any work
        const std::string& label = lines[(size_t)t * 6 + 1];
        if (label.size() != 1 || label[0] < '0' || label[0] > '3')
            die("task " + std::to_string(t + 1) + " (line " + std::to_string(t * 6 + 2) + "): the right "
                "ending's index must be 0, 1, 2 or 3, not '" + label + "'");
    }
    const bool add_bos = tokenize(model, std::string(), true).size() == 1;
    const int n_train = bitnet_model_n_ctx_train(model);
    const int n_ctx = a.n_ctx > 0 ? a.n_ctx : std::min(n_train > 0 ? n_train : BITNET_DEFAULT_CTX_MAX, BITNET_DEFAULT_CTX_MAX);
    tool::note_context(model, a.n_ctx, n_ctx);
    bitnet_context* ctx = new_context(model, a, n_ctx);
    const int32_t n_vocab = bitnet_model_n_vocab(model);
    std::fprintf(stderr, "model: %s, %d threads, kernels %s\n", bitnet_model_desc(model),
                 bitnet_context_n_threads(ctx), bitnet_isa());
    std::fprintf(stderr, "%d HellaSwag tasks\n", n_tasks);

    Stat acc;
    for (int t = 0; t < n_tasks; ++t) {
        const std::string& context = lines[(size_t)t * 6];
        const char label = lines[(size_t)t * 6 + 1][0];
        const std::vector<bitnet_token> ctx_toks = tokenize(model, context, add_bos);
        int best = -1;
        double best_score = -INFINITY;
        for (int e = 0; e < 4; ++e) {
            // The ending follows the context after a space, as in the task's sentences; its tokens
            // are those of the whole text past the context's, so a merge across the seam counts.
            std::vector<bitnet_token> all = tokenize(model, context + " " + lines[(size_t)t * 6 + 2 + e], add_bos);
            size_t common = 0;
            while (common < all.size() && common < ctx_toks.size() && all[common] == ctx_toks[common]) ++common;
            if (common == 0) common = 1;  // the first token is never scored: nothing predicts it
            if (common >= all.size())
                die("task " + std::to_string(t + 1) + ": ending " + std::to_string(e) + " adds no tokens");
            if ((int)all.size() > n_ctx)
                die("task " + std::to_string(t + 1) + " has " + std::to_string(all.size()) +
                    " tokens, more than the context of " + std::to_string(n_ctx) + ": give a larger -c");
            bitnet_context_truncate(ctx, 0);
            if (bitnet_decode(ctx, all.data(), (int32_t)all.size(), 1) != 0) die(bitnet_last_error());
            double lp = 0.0;
            for (size_t j = common; j < all.size(); ++j) {
                const float* logits = bitnet_get_logits(ctx, (int32_t)j - 1);
                if (!logits) die(bitnet_last_error());
                lp -= token_nll(logits, n_vocab, all[j]);
            }
            const double score = lp / (double)(all.size() - common);
            if (score > best_score) best_score = score, best = e;
        }
        acc.add(best == label - '0' ? 1.0 : 0.0);
        std::printf("%d\t%.4f\n", t + 1, 100.0 * acc.mean());
        std::fflush(stdout);
    }
    std::printf("Final HellaSwag accuracy = %.4f +/- %.4f %% (%d tasks)\n", 100.0 * acc.mean(),
                100.0 * acc.err(), n_tasks);
    bitnet_context_free(ctx);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse_args(argc, argv);
    bitnet_model* model = nullptr;
    if (a.kld) {
        model = tool::load_model(a.model, a.use_mmap);
        const int rc = run_kld(a, model);
        bitnet_model_free(model);
        return rc;
    }
    const std::string text = read_file(a.file);
    model = tool::load_model(a.model, a.use_mmap);
    if (a.hellaswag) {
        const int rc = run_hellaswag(a, model, text);
        bitnet_model_free(model);
        return rc;
    }
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

    bitnet_context* ctx = new_context(model, a, n_ctx);
    const int32_t n_vocab = bitnet_model_n_vocab(model);
    const bitnet_token bos = bitnet_token_bos(model);
    std::unique_ptr<BaseWriter> base;  // opened first: an unwritable path is the only message
    if (!a.kld_base.empty()) base = std::make_unique<BaseWriter>(a.kld_base, n_vocab, n_ctx, n_chunks, tokens);

    std::fprintf(stderr, "model: %s, %d threads, kernels %s\n", bitnet_model_desc(model),
                 bitnet_context_n_threads(ctx), bitnet_isa());
    std::fprintf(stderr, "%d tokens: %d chunks of %d, scoring the last %d tokens of each\n",
                 n_tokens, n_chunks, n_ctx, n_scored);

    Stat nll;
    double t_eval = 0.0;
    std::vector<bitnet_token> chunk((size_t)n_ctx);
    std::vector<double> logp;
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
            nll.add(token_nll(logits, n_vocab, chunk[(size_t)j + 1]));
            if (base) {
                log_softmax(logits, n_vocab, logp);
                base->add(logp);
            }
        }
        std::printf("[%d]%.4f,", i + 1, std::exp(nll.mean()));
        std::fflush(stdout);
    }
    std::printf("\n");
    if (base) base->finish();

    // Standard error of the mean NLL, propagated through exp.
    const double ppl = std::exp(nll.mean());
    std::printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, ppl * nll.err());
    std::fflush(stdout);

    const long long n_eval = (long long)n_chunks * n_ctx;
    std::fprintf(stderr, "scored %lld tokens in %d chunks; evaluated %lld tokens in %.3f s (%.2f tokens/s)\n",
                 nll.n, n_chunks, n_eval, t_eval, t_eval > 0 ? (double)n_eval / t_eval : 0.0);
    if (base) std::fprintf(stderr, "wrote the base log-probabilities to %s\n", a.kld_base.c_str());

    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return 0;
}
