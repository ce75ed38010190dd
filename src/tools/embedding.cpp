// bitnet-embedding: embeddings of texts with an embedding model (bitnet-embedding-0.6b), in the
// manner of llama.cpp's llama-embedding.
//
// Texts: -p TEXT (repeatable) and/or -f FILE (one text per line; empty lines skipped). Each is
// tokenized (special tokens parsed, as llama-embedding does) and, when the model pools the last
// token, ends with the model's EOS (appended unless already there: the embedding is that token's
// hidden state). All texts go through the engine together, --parallel of them per batch.
//
// stdout: plain (default: one line per text, the floats separated by spaces) or json (an OpenAI
// embeddings list: {"object":"list","data":[{"object":"embedding","index":0,"embedding":[...]}]}).
// stderr: model, counts, speed. Uses only the public C API (include/bitnet.h).
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bitnet.h"
#include "tools/tool_common.h"

namespace {

using tool::die;
using tool::parse_int;

struct Args {
    std::string model;
    std::vector<std::string> texts;
    int n_ctx = 0;
    int n_batch = 2048;
    int n_threads = 0;
    int n_parallel = 8;
    int pooling = -1;    // -1: the model's
    int normalize = 2;   // llama-embedding's --embd-normalize: -1 none, 2 euclidean
    bool json = false;
    tool::CacheArgs cache;
    bool use_mmap = true;
};

void usage(FILE* out) {
    std::fprintf(out,
        "usage: bitnet-embedding -m MODEL.gguf (-p TEXT | -f FILE)... [options]\n"
        "  -m, --model FILE            GGUF embedding model\n"
        "  -p, --prompt TEXT           a text to embed (repeatable)\n"
        "  -f, --file FILE             texts to embed, one per line (empty lines skipped)\n"
        "  --pooling none|mean|cls|last  pooling (default: the model's)\n"
        "  --embd-normalize N          -1 none, 2 euclidean (L2; default)\n"
        "  --embd-output-format F      plain (default: one line of floats per text) or json\n"
        "  -c, --ctx-size N            longest text in tokens (default 0 = the model's training context)\n"
        "  -b, --batch-size N          tokens per forward pass (default 2048)\n"
        "  -np, --parallel N           texts per batch (sequence slots, default 8)\n"
        "  -t, --threads N             threads (default: the usable CPUs)\n"
        "%s%s", tool::kCacheUsage, tool::kMmapUsage);
}

void read_lines(const std::string& path, std::vector<std::string>& out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) die("cannot open text file '" + path + "': " + std::strerror(errno));
    std::string line;
    int c;
    while ((c = std::fgetc(f)) != EOF) {
        if (c == '\n') {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (!line.empty()) out.push_back(line);
            line.clear();
        } else {
            line.push_back((char)c);
        }
    }
    if (!line.empty()) out.push_back(line);
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) die("cannot read text file '" + path + "'");
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
        else if (f == "-p" || f == "--prompt") a.texts.push_back(next());
        else if (f == "-f" || f == "--file") read_lines(next(), a.texts);
        else if (f == "-c" || f == "--ctx-size") a.n_ctx = (int)parse_int(f, next());
        else if (f == "-b" || f == "--batch-size") a.n_batch = (int)parse_int(f, next());
        else if (f == "-t" || f == "--threads") a.n_threads = (int)parse_int(f, next());
        else if (f == "-np" || f == "--parallel") a.n_parallel = (int)parse_int(f, next());
        else if (f == "--pooling") {
            const std::string v = next();
            const char* names[] = {"none", "mean", "cls", "last"};
            a.pooling = -2;
            for (int k = 0; k < 4; ++k)
                if (v == names[k]) a.pooling = k;
            if (a.pooling < 1)
                die("invalid value '" + v + "' for --pooling: expected mean, cls or last");
        } else if (f == "--embd-normalize") {
            a.normalize = (int)parse_int(f, next());
            if (a.normalize != -1 && a.normalize != 2)
                die("--embd-normalize " + std::to_string(a.normalize) +
                    " is not supported: use -1 (none) or 2 (euclidean)");
        } else if (f == "--embd-output-format") {
            const std::string v = next();
            if (v != "plain" && v != "json")
                die("invalid value '" + v + "' for --embd-output-format: expected plain or json");
            a.json = v == "json";
        }
        else if (tool::parse_cache_flag(f, next, a.cache)) {}
        else if (tool::parse_mmap_flag(f, a.use_mmap)) {}
        else die("unknown argument '" + f + "' (see bitnet-embedding --help)");
    }
    if (a.model.empty()) die("no model given: use -m MODEL.gguf (see bitnet-embedding --help)");
    if (a.texts.empty()) die("no text given: use -p TEXT or -f FILE (see bitnet-embedding --help)");
    if (a.n_ctx < 0) die("-c must be >= 0");
    if (a.n_batch <= 0) die("-b must be > 0");
    if (a.n_parallel <= 0) die("-np must be > 0");
    tool::check_threads(a.n_threads);
    return a;
}

std::vector<bitnet_token> tokenize(const bitnet_model* m, const std::string& text) {
    std::vector<bitnet_token> toks(text.size() + 2);
    int32_t n = bitnet_tokenize(m, text.data(), (int32_t)text.size(), toks.data(),
                                (int32_t)toks.size(), 0, 1);
    if (n < 0 && n != INT32_MIN) {
        toks.resize((size_t)-n);
        n = bitnet_tokenize(m, text.data(), (int32_t)text.size(), toks.data(), (int32_t)toks.size(), 0, 1);
    }
    if (n < 0) die(bitnet_last_error());
    toks.resize((size_t)n);
    return toks;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse_args(argc, argv);
    bitnet_model* model = tool::load_model(a.model, a.use_mmap);
    const int pooling = a.pooling > 0 ? a.pooling : bitnet_model_pooling_type(model);
    if (pooling == 0)
        die(a.model + " is not an embedding model (it names no pooling): use --pooling mean|cls|last "
            "to pool its hidden states anyway");

    std::vector<bitnet_token> tokens;
    std::vector<int32_t> lens;
    int32_t longest = 0;
    for (const std::string& t : a.texts) {
        std::vector<bitnet_token> ids = tokenize(model, t);
        const bitnet_token eos = bitnet_token_eos(model);
        if (pooling == 3 && eos >= 0 && (ids.empty() || ids.back() != eos)) ids.push_back(eos);
        tokens.insert(tokens.end(), ids.begin(), ids.end());
        lens.push_back((int32_t)ids.size());
        longest = std::max(longest, (int32_t)ids.size());
    }

    bitnet_context_params cp = bitnet_context_default_params();
    cp.n_ctx = a.n_ctx;
    cp.n_batch = a.n_batch;
    cp.n_threads = a.n_threads;
    cp.n_seq_max = std::min<int>(a.n_parallel, (int)lens.size());
    a.cache.apply(cp);
    bitnet_context* ctx = bitnet_context_new(model, cp);
    if (!ctx) die(bitnet_last_error());

    const int32_t d = bitnet_model_n_embd(model);
    std::vector<float> out(lens.size() * (size_t)d);
    const double t0 = tool::now_s();
    if (bitnet_embed(ctx, tokens.data(), lens.data(), (int32_t)lens.size(), a.pooling > 0 ? a.pooling : -1,
                     a.normalize == 2, out.data()) != 0)
        die(bitnet_last_error());
    const double dt = tool::now_s() - t0;
    std::fprintf(stderr, "%s: %zu text(s), %zu tokens (longest %d), %.1f tokens/s\n",
                 bitnet_model_desc(model), lens.size(), tokens.size(), longest,
                 dt > 0 ? tokens.size() / dt : 0.0);

    if (a.json) std::printf("{\"object\":\"list\",\"data\":[");
    for (size_t t = 0; t < lens.size(); ++t) {
        const float* e = out.data() + t * d;
        if (a.json) std::printf("%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":[", t ? "," : "", t);
        for (int32_t j = 0; j < d; ++j)
            // %.9g: every float32 round-trips through its decimal text.
            std::printf("%s%.9g", j ? (a.json ? "," : " ") : "", (double)e[j]);
        std::printf(a.json ? "]}" : "\n");
    }
    if (a.json) std::printf("],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}\n",
                            bitnet_model_desc(model), tokens.size(), tokens.size());
    bitnet_context_free(ctx);
    bitnet_model_free(model);
    return 0;
}
