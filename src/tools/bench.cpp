// bitnet-bench: prompt-processing and generation speed of GGUF models, in the manner of
// llama-bench: one table row per (model, threads, test) with tokens/s mean ± std over repetitions.
//
//   ppN      N random tokens evaluated in real batches of -b tokens (one bitnet_decode call, which
//            runs forward passes of up to n_batch tokens), on an empty KV cache.
//   tgN      N tokens generated one at a time with the KV cache (each decode keeps its logits),
//            starting from an empty cache.
//   ppN+tgM  both, one after the other; t/s counts all N+M tokens over the total time.
//   ... @ dD  (-d D, llama-bench's depth) the same test after a prompt of D tokens, already in the
//            KV cache when the clock starts (evaluated once, untimed; each run keeps it and drops
//            what the previous run added); -gp D,N is tgN @ dD: generation after a D-token prompt.
//
// -ctk/-ctv/-fa (lists, as llama-bench takes them) pick the KV cache types and attention path of
// each context; the "kv" column names them.
//
// Every test runs once unrecorded first (the prompt batch if any, then one generated token:
// page faults, caches, thread wake-up), then -r times recorded. Progress goes to stderr, the table
// to stdout. --profile adds, per test, the forward pass's per-operation wall time (the
// BITNET_PROFILE_SCOPE entries of src/util/profile.h; the rest of the measured time is "other").
// --membw measures the read bandwidth of a plain loop over a 1 GiB buffer with each thread count,
// the ceiling of generation speed: a tg test reads every weight once per token, and footnotes
// under the table give that as GB/s and as a share of the plain loop.
//
// Model loading and decoding go through the public C API (include/bitnet.h); tensor types for the
// "type" column come from the GGUF reader, the profile from util/profile.h.
#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "bitnet.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "tools/bench_spec.h"
#include "tools/tool_common.h"
#include "util/common.h"
#include "util/profile.h"

namespace {

using tool::die;
using tool::now_s;

struct Test {
    int n_prompt = 0, n_gen = 0, depth = 0;
    std::string name() const {
        std::string s = n_gen == 0     ? "pp" + std::to_string(n_prompt)
                        : n_prompt == 0 ? "tg" + std::to_string(n_gen)
                                        : "pp" + std::to_string(n_prompt) + "+tg" + std::to_string(n_gen);
        return depth > 0 ? s + " @ d" + std::to_string(depth) : s;
    }
};

// One KV cache setting of the -ctk/-ctv/-fa lists.
struct CacheCfg {
    int type_k, type_v, flash_attn;
    std::string name() const {
        auto tn = [](int t) { return std::string(t == BITNET_KV_F32 ? "f32" : t == BITNET_KV_F16 ? "f16" : "q8_0"); };
        std::string s = type_k == type_v ? tn(type_k) : tn(type_k) + "/" + tn(type_v);
        return flash_attn ? s : s + " exact";
    }
};

struct Args {
    std::vector<std::string> models;
    std::vector<int> n_prompt = {512};
    std::vector<int> n_gen = {128};
    std::vector<Test> pg, gp;
    std::vector<int> depths = {0};
    std::vector<int> types_k = {BITNET_KV_F32}, types_v = {BITNET_KV_F32}, flash = {1};
    std::vector<int> threads;
    int reps = 5;
    int n_batch = 512;
    std::string output = "md";
    bool profile = false;
    bool membw = false;
    bool use_mmap = true;
};

void usage(FILE* out) {
    std::fprintf(out,
        "usage: bitnet-bench -m MODEL.gguf [-m MODEL2.gguf ...] [options]\n"
        "  -m, --model FILE[,FILE]   GGUF model(s); repeatable\n"
        "  -p, --n-prompt N[,N]      prompt sizes to test (default 512; 0 = no pp test)\n"
        "  -n, --n-gen N[,N]         generation lengths to test (default 128; 0 = no tg test)\n"
        "  -pg PP,TG                 a prompt of PP tokens then TG generated ones; repeatable\n"
        "  -d, --n-depth D[,D]       run each test after a prompt of D tokens already in the cache\n"
        "                            (default 0)\n"
        "  -gp D,TG                  TG tokens generated after a D-token prompt (tgTG @ dD); repeatable\n"
        "  -ctk, --cache-type-k T[,T] KV cache type of the keys: f32 (default), f16, q8_0\n"
        "  -ctv, --cache-type-v T[,T] ... of the values\n"
        "  -fa, --flash-attn on|off[,..] on (default): tiled attention; off: the exact attention\n"
        "                            (torch's order; needs f32 K and V)\n"
        "  -t, --threads N[,N]       thread counts (default: the CPUs this process may use)\n"
        "  -r, --repetitions N       recorded runs per test (default 5)\n"
        "  -b, --batch-size N        tokens per forward pass for prompts (default 512)\n"
        "  -o, --output md|json|csv  table format (default md)\n"
        "      --profile             per-operation time of the forward pass, per test\n"
        "      --membw               also measure plain-loop read bandwidth per thread count\n"
        "      --mmap, --no-mmap     map the model files (default) or read them into memory;\n"
        "                            -mmp 1|0 (llama-bench's spelling) is the same\n"
        "      --spec-curve          speculative decoding: time of one forward over k = 1..16 tokens\n"
        "                            after a -p token prompt, relative to k = 1 (own table)\n"
        "      --spec-replay E[,E]   speculative decoding: tg of -n tokens plain and with a drafter\n"
        "                            replaying the greedy output with a fraction E of wrong tokens\n"
        "                            (own table; with -m, -t, -r, -p, -n, --draft-max)\n"
        "  -h, --help                this help\n"
        "The table goes to stdout, progress to stderr.\n");
}

std::vector<std::string> split_commas(const std::string& flag, const std::string& v) {
    std::vector<std::string> out;
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.empty()) die("empty item in '" + v + "' for " + flag + ": expected a comma-separated list");
        out.push_back(item);
    }
    if (out.empty()) die("missing value for " + flag);
    return out;
}

std::vector<int> parse_int_list(const std::string& flag, const std::string& v, int min) {
    std::vector<int> out;
    for (const std::string& s : split_commas(flag, v)) {
        const long long x = tool::parse_int(flag, s.c_str());
        if (x < min) die(flag + " " + s + " is out of range: expected an integer >= " + std::to_string(min));
        out.push_back((int)x);
    }
    return out;
}

Args parse_args(int argc, char** argv) {
    Args a;
    bool p_given = false, n_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string f = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value for " + f + " (see --help)");
            return argv[++i];
        };
        if (f == "-h" || f == "--help") {
            usage(stdout);
            std::exit(0);
        } else if (f == "-m" || f == "--model") {
            for (const std::string& m : split_commas(f, value())) a.models.push_back(m);
        } else if (f == "-p" || f == "--n-prompt") {
            a.n_prompt = parse_int_list(f, value(), 0);
            p_given = true;
        } else if (f == "-n" || f == "--n-gen") {
            a.n_gen = parse_int_list(f, value(), 0);
            n_given = true;
        } else if (f == "-pg") {
            const std::vector<int> v = parse_int_list(f, value(), 1);
            if (v.size() != 2) die("-pg takes two numbers PP,TG (e.g. -pg 512,128)");
            a.pg.push_back({v[0], v[1]});
        } else if (f == "-gp") {
            const std::vector<int> v = parse_int_list(f, value(), 1);
            if (v.size() != 2) die("-gp takes two numbers D,TG (e.g. -gp 2048,128)");
            a.gp.push_back({0, v[1], v[0]});
        } else if (f == "-d" || f == "--n-depth") {
            a.depths = parse_int_list(f, value(), 0);
        } else if (f == "-ctk" || f == "--cache-type-k" || f == "-ctv" || f == "--cache-type-v") {
            std::vector<int>& dst = (f == "-ctk" || f == "--cache-type-k") ? a.types_k : a.types_v;
            dst.clear();
            for (const std::string& t : split_commas(f, value())) dst.push_back(tool::parse_kv_type(f, t.c_str()));
        } else if (f == "-fa" || f == "--flash-attn") {
            a.flash.clear();
            for (const std::string& t : split_commas(f, value())) {
                if (t == "on" || t == "1") a.flash.push_back(1);
                else if (t == "off" || t == "0") a.flash.push_back(0);
                else die("invalid value '" + t + "' for " + f + ": expected on or off");
            }
        } else if (f == "-t" || f == "--threads") {
            a.threads = parse_int_list(f, value(), 1);
        } else if (f == "-r" || f == "--repetitions") {
            a.reps = parse_int_list(f, value(), 1).at(0);
        } else if (f == "-b" || f == "--batch-size") {
            a.n_batch = parse_int_list(f, value(), 1).at(0);
        } else if (f == "-o" || f == "--output") {
            a.output = value();
            if (a.output != "md" && a.output != "json" && a.output != "csv")
                die("unknown output format '" + a.output + "' for " + f + ": use md, json or csv");
        } else if (f == "--profile") {
            a.profile = true;
        } else if (f == "--membw") {
            a.membw = true;
        } else if (tool::parse_mmap_flag(f, a.use_mmap)) {
        } else if (f == "-mmp") {
            const std::string v = value();
            if (v != "0" && v != "1") die("invalid value '" + v + "' for " + f + ": expected 0 or 1");
            a.use_mmap = v == "1";
        } else {
            die("unknown argument '" + f + "' (see --help)");
        }
    }
    // -pg without -p / -n runs just the -pg tests, not the default pp512 and tg128 beside them.
    if ((!a.pg.empty() || !a.gp.empty()) && !p_given) a.n_prompt.clear();
    if ((!a.pg.empty() || !a.gp.empty()) && !n_given) a.n_gen.clear();
    if (a.models.empty() && !a.membw) die("no model given: pass -m MODEL.gguf (see --help)");
    if (a.threads.empty()) a.threads = {bitnet_default_n_threads()};
    for (int t : a.threads) tool::check_threads(t);
    return a;
}

std::vector<Test> tests_of(const Args& a) {
    std::vector<Test> tests;
    for (int d : a.depths) {
        for (int p : a.n_prompt)
            if (p > 0) tests.push_back({p, 0, d});
        for (int n : a.n_gen)
            if (n > 0) tests.push_back({0, n, d});
        for (const Test& t : a.pg) tests.push_back({t.n_prompt, t.n_gen, d});
    }
    for (const Test& t : a.gp) tests.push_back(t);
    return tests;
}

std::vector<CacheCfg> caches_of(const Args& a) {
    std::vector<CacheCfg> out;
    for (int fa : a.flash)
        for (int k : a.types_k)
            for (int v : a.types_v) out.push_back({k, v, fa});
    return out;
}

// ---- model facts for the table ----------------------------------------------------------------

struct ModelInfo {
    std::string path, name, desc, type;  // type: "I2_S / F16" (ternary weights / output layer)
    uint64_t size = 0, n_params = 0;
    uint64_t bytes_per_token = 0;  // weight bytes one generated token reads
};

// The table's label of each -m file: the shortest end of its path that no other file's path ends
// with (setup_env.py names every file ggml-model-<type>.gguf, so the file name alone often tells
// nothing apart). The same file given twice keeps one label. utils/e2e_benchmark.py's
// model_labels follows the same rule.
std::vector<std::string> model_labels(const std::vector<std::string>& paths) {
    std::vector<std::vector<std::string>> parts;
    for (const std::string& p : paths) {
        char* real = realpath(p.c_str(), nullptr);
        std::stringstream ss(real ? std::string(real) : p);
        std::free(real);
        std::vector<std::string> comps;
        for (std::string c; std::getline(ss, c, '/');)
            if (!c.empty()) comps.push_back(c);
        parts.push_back(comps);
    }
    auto same_end = [](const std::vector<std::string>& a, const std::vector<std::string>& b, size_t n) {
        return a.size() >= n && b.size() >= n && std::equal(a.end() - (long)n, a.end(), b.end() - (long)n);
    };
    std::vector<std::string> labels;
    for (const std::vector<std::string>& mine : parts) {
        auto clashes = [&](size_t n) {
            for (const std::vector<std::string>& other : parts)
                if (other != mine && same_end(mine, other, n)) return true;
            return false;
        };
        size_t n = 1;
        while (n < mine.size() && clashes(n)) ++n;
        std::string label;
        for (size_t i = mine.size() - std::min(n, mine.size()); i < mine.size(); ++i)
            label += (label.empty() ? "" : "/") + mine[i];
        labels.push_back(label);
    }
    return labels;
}

ModelInfo model_info(const std::string& path, const std::string& label, const bitnet_model* model) {
    ModelInfo mi;
    mi.path = path;
    mi.name = label;
    mi.desc = bitnet_model_desc(model);
    mi.size = bitnet_model_size(model);
    mi.n_params = bitnet_model_n_params(model);
    const std::unique_ptr<bitnet::GGUFFile> f = bitnet::GGUFFile::open(path);
    const bitnet::GGUFTensor* wq = f->find_tensor("blk.0.attn_q.weight");
    const bitnet::GGUFTensor* out = f->find_tensor("output.weight");
    const bitnet::GGUFTensor* embd = f->find_tensor("token_embd.weight");
    if (out == nullptr) out = embd;  // tied
    mi.type = (wq ? bitnet::type_name(wq->type) : "?") + " / " + (out ? bitnet::type_name(out->type) : "?");
    // A generated token reads every tensor once, except the embedding table, of which it reads one
    // row, unless the table is also the (tied) output matrix.
    for (const bitnet::GGUFTensor& t : f->tensors()) {
        if (&t == embd && embd != out) mi.bytes_per_token += t.nbytes / std::max<int64_t>(t.ne[1], 1);
        else mi.bytes_per_token += t.nbytes;
    }
    return mi;
}

// ---- measurement --------------------------------------------------------------------------------

struct Result {
    const ModelInfo* model;
    std::string kv;
    int n_threads, n_batch;
    Test test;
    std::vector<double> ts;                  // tokens/s per recorded run
    std::vector<bitnet::ProfileEntry> prof;  // summed over the recorded runs
    double seconds = 0;                      // total recorded wall time
    double mean() const {
        double s = 0;
        for (double v : ts) s += v;
        return s / (double)ts.size();
    }
    double stddev() const {  // sample standard deviation, 0 for one run
        if (ts.size() < 2) return 0;
        const double m = mean();
        double s = 0;
        for (double v : ts) s += (v - m) * (v - m);
        return std::sqrt(s / (double)(ts.size() - 1));
    }
};

void check(int rc, const char* what) {
    if (rc != 0) die(std::string(what) + " failed: " + bitnet_last_error());
}

// Makes the cache hold a random prompt of `depth` tokens (untimed): kept when it already does.
void set_depth(bitnet_context* ctx, int n_vocab, int depth, int* cached_depth, std::mt19937& rng) {
    if (*cached_depth == depth) return;
    std::uniform_int_distribution<int> tok(0, n_vocab - 1);
    bitnet_context_truncate(ctx, 0);
    std::vector<bitnet_token> prompt((size_t)depth);
    for (auto& x : prompt) x = tok(rng);
    if (depth > 0) check(bitnet_decode(ctx, prompt.data(), depth, 0), "depth prompt decode");
    *cached_depth = depth;
}

// One run of `t` on a cache holding exactly its depth prompt; returns its wall time. gen_tokens
// overrides t.n_gen (the warm-up generates one token).
double run_once(bitnet_context* ctx, int n_vocab, const Test& t, int gen_tokens, std::mt19937& rng) {
    std::uniform_int_distribution<int> tok(0, n_vocab - 1);
    bitnet_context_truncate(ctx, t.depth);
    std::vector<bitnet_token> prompt((size_t)t.n_prompt);
    for (auto& x : prompt) x = tok(rng);
    const double t0 = now_s();
    if (t.n_prompt > 0) check(bitnet_decode(ctx, prompt.data(), t.n_prompt, 0), "prompt decode");
    for (int i = 0; i < gen_tokens; ++i) {
        const bitnet_token x = tok(rng);
        check(bitnet_decode(ctx, &x, 1, 0), "generation decode");
    }
    return now_s() - t0;
}

void progress(const std::string& msg) {
    static const bool tty = isatty(2);
    if (tty) std::fprintf(stderr, "\r\033[K%s", msg.c_str());
    else std::fprintf(stderr, "%s\n", msg.c_str());
    std::fflush(stderr);
}

// ---- read bandwidth -----------------------------------------------------------------------------

// Best of 5 passes of n_threads threads each summing its share of a 1 GiB buffer of 64-bit words:
// a plain read loop (8 independent sums, no SIMD needed to outrun memory), in GB/s.
double measure_membw(int n_threads) {
    const size_t words = (size_t)1 << 27;  // 1 GiB
    std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
    for (size_t i = 0; i < words; ++i) buf[i] = i;  // touch every page before timing
    std::atomic<uint64_t> sink{0};
    double best = 1e30;
    for (int pass = 0; pass < 5; ++pass) {
        const double t0 = now_s();
        std::vector<std::thread> th;
        for (int i = 0; i < n_threads; ++i) {
            th.emplace_back([&, i] {
                const size_t b = words * i / n_threads, e = words * (i + 1) / n_threads;
                uint64_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                size_t k = b;
                for (; k + 8 <= e; k += 8)
                    for (int j = 0; j < 8; ++j) s[j] += buf[k + j];
                for (; k < e; ++k) s[0] += buf[k];
                sink += s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
            });
        }
        for (auto& t : th) t.join();
        best = std::min(best, now_s() - t0);
    }
    return (double)words * 8 / best / 1e9;
}

// ---- output ---------------------------------------------------------------------------------------

// As llama-bench: GiB and billions, with MiB and millions for the small models.
std::string fmt_size(uint64_t bytes) {
    return bytes >= (1ull << 30) ? bitnet::strfmt("%.2f GiB", (double)bytes / (1ull << 30))
                                 : bitnet::strfmt("%.2f MiB", (double)bytes / (1ull << 20));
}
std::string fmt_params(uint64_t n) {
    return n >= 1000000000ull ? bitnet::strfmt("%.2f B", (double)n / 1e9) : bitnet::strfmt("%.2f M", (double)n / 1e6);
}

std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += c;
        else if ((unsigned char)c < 0x20) o += bitnet::strfmt("\\u%04x", c);
        else o += c;
    }
    return o + "\"";
}

// Share of the recorded time per operation, with the unprofiled rest as "other".
std::vector<std::pair<std::string, double>> profile_rows(const Result& r) {
    std::vector<std::pair<std::string, double>> rows;
    double sum = 0;
    for (const auto& e : r.prof) {
        rows.push_back({e.name, e.seconds});
        sum += e.seconds;
    }
    rows.push_back({"other", std::max(0.0, r.seconds - sum)});
    return rows;
}

void print_md(const std::vector<Result>& results, const std::vector<std::pair<int, double>>& membw,
              bool profile) {
    if (!results.empty()) {
        std::printf("| model | size | params | type | isa | kv | threads | test | t/s |\n");
        std::printf("| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: |\n");
        for (const Result& r : results)
            std::printf("| %s | %s | %s | %s | %s | %s | %d | %s | %.2f ± %.2f |\n", r.model->name.c_str(),
                        fmt_size(r.model->size).c_str(), fmt_params(r.model->n_params).c_str(),
                        r.model->type.c_str(), bitnet_isa(), r.kv.c_str(), r.n_threads, r.test.name().c_str(),
                        r.mean(), r.stddev());
    }
    for (const auto& [t, gbs] : membw) std::printf("\nplain read loop, %d thread(s): %.2f GB/s\n", t, gbs);
    // The weight bandwidth of generation, set against the plain loop: only with --membw, which
    // gives the yardstick that makes the number mean something.
    for (const Result& r : results) {
        if (membw.empty() || r.test.n_prompt != 0 || r.test.n_gen == 0 || r.test.depth != 0) continue;
        const double gbs = (double)r.model->bytes_per_token * r.mean() / 1e9;
        std::string share;
        for (const auto& [t, bw] : membw)
            if (t == r.n_threads) share = bitnet::strfmt(" = %.0f%% of the plain read loop", 100 * gbs / bw);
        std::printf("\n%s %s, %d thread(s): %.2f GB/s of weights (%.3f GB per token)%s\n", r.model->name.c_str(),
                    r.test.name().c_str(), r.n_threads, gbs, (double)r.model->bytes_per_token / 1e9, share.c_str());
    }
    if (!profile) return;
    for (const Result& r : results) {
        const int tokens = (r.test.n_prompt + r.test.n_gen) * (int)r.ts.size();
        std::printf("\nprofile: %s, %d thread(s), %s (%d recorded runs)\n\n", r.model->name.c_str(), r.n_threads,
                    r.test.name().c_str(), (int)r.ts.size());
        std::printf("| op | ms/token | share |\n| --- | ---: | ---: |\n");
        for (const auto& [name, s] : profile_rows(r))
            std::printf("| %s | %.3f | %.1f%% |\n", name.c_str(), 1e3 * s / tokens, 100 * s / r.seconds);
    }
}

void print_json(const std::vector<Result>& results, const std::vector<std::pair<int, double>>& membw) {
    std::printf("{\n  \"results\": [");
    for (size_t i = 0; i < results.size(); ++i) {
        const Result& r = results[i];
        std::string samples;
        for (double v : r.ts) samples += (samples.empty() ? "" : ", ") + bitnet::strfmt("%.4f", v);
        std::printf("%s\n    {\"model\": %s, \"path\": %s, \"desc\": %s, \"size_bytes\": %" PRIu64
                    ", \"n_params\": %" PRIu64 ", \"type\": %s, \"isa\": %s, \"kv\": %s, \"n_threads\": %d, "
                    "\"n_batch\": %d, \"test\": %s, \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, \"avg_ts\": %.4f, \"stddev_ts\": %.4f, "
                    "\"samples_ts\": [%s], \"bytes_per_token\": %" PRIu64,
                    i ? "," : "", json_str(r.model->name).c_str(), json_str(r.model->path).c_str(),
                    json_str(r.model->desc).c_str(), r.model->size, r.model->n_params, json_str(r.model->type).c_str(),
                    json_str(bitnet_isa()).c_str(), json_str(r.kv).c_str(), r.n_threads, r.n_batch,
                    json_str(r.test.name()).c_str(), r.test.n_prompt, r.test.n_gen, r.test.depth, r.mean(), r.stddev(), samples.c_str(), r.model->bytes_per_token);
        if (!r.prof.empty() || bitnet::profile_enabled()) {
            std::printf(", \"profile\": [");
            bool first = true;
            for (const auto& [name, s] : profile_rows(r)) {
                std::printf("%s{\"op\": %s, \"seconds\": %.6f, \"share\": %.4f}", first ? "" : ", ",
                            json_str(name).c_str(), s, s / r.seconds);
                first = false;
            }
            std::printf("]");
        }
        std::printf("}");
    }
    std::printf("%s],\n  \"membw\": [", results.empty() ? "" : "\n  ");
    for (size_t i = 0; i < membw.size(); ++i)
        std::printf("%s{\"n_threads\": %d, \"gb_s\": %.3f}", i ? ", " : "", membw[i].first, membw[i].second);
    std::printf("]\n}\n");
}

void print_csv(const std::vector<Result>& results, const std::vector<std::pair<int, double>>& membw) {
    std::printf("model,size_bytes,n_params,type,isa,kv,n_threads,n_batch,test,n_prompt,n_gen,n_depth,avg_ts,stddev_ts\n");
    for (const Result& r : results)
        std::printf("%s,%" PRIu64 ",%" PRIu64 ",%s,%s,%s,%d,%d,%s,%d,%d,%d,%.4f,%.4f\n", r.model->name.c_str(),
                    r.model->size, r.model->n_params, r.model->type.c_str(), bitnet_isa(), r.kv.c_str(), r.n_threads,
                    r.n_batch, r.test.name().c_str(), r.test.n_prompt, r.test.n_gen, r.test.depth, r.mean(), r.stddev());
    for (const auto& [t, gbs] : membw) std::printf("membw,,,,,,%d,,read-loop,,,,%.4f,\n", t, gbs);
}

}  // namespace

int main(int argc, char** argv) {
    if (spec_bench::wanted(argc, argv)) return spec_bench::main(argc, argv);
    const Args args = parse_args(argc, argv);
    const std::vector<Test> tests = tests_of(args);
    if (tests.empty() && !args.membw) die("no test selected: -p and -n are all 0 and no -pg given");
    int n_ctx = 1;
    for (const Test& t : tests) n_ctx = std::max(n_ctx, t.depth + t.n_prompt + t.n_gen);
    if (args.profile) bitnet::profile_enable(true);

    std::vector<std::pair<int, double>> membw;
    if (args.membw)
        for (int t : args.threads) {
            progress(bitnet::strfmt("bench: read bandwidth, %d thread(s)", t));
            membw.push_back({t, measure_membw(t)});
        }

    const std::vector<std::string> labels = model_labels(args.models);
    std::vector<std::unique_ptr<ModelInfo>> infos;
    std::vector<Result> results;
    std::mt19937 rng(1234);
    for (size_t mi = 0; mi < args.models.size() && !tests.empty(); ++mi) {
        const std::string& path = args.models[mi];
        progress(bitnet::strfmt("bench: loading %s (%zu/%zu)", path.c_str(), mi + 1, args.models.size()));
        bitnet_model* model = tool::load_model(path, args.use_mmap);
        try {
            infos.push_back(std::make_unique<ModelInfo>(model_info(path, labels[mi], model)));
        } catch (const bitnet::Error& e) {
            die(e.what());
        }
        const int n_vocab = bitnet_model_n_vocab(model);
        if (n_ctx > bitnet_model_n_ctx_train(model))
            std::fprintf(stderr, "\nwarning: tests need %d tokens of context, more than the %d %s was trained for\n",
                         n_ctx, bitnet_model_n_ctx_train(model), path.c_str());
        for (const CacheCfg& cc : caches_of(args))
        for (int nt : args.threads) {
            bitnet_context_params cp = bitnet_context_default_params();
            cp.n_ctx = n_ctx;
            cp.n_threads = nt;
            cp.n_batch = args.n_batch;
            cp.type_k = cc.type_k;
            cp.type_v = cc.type_v;
            cp.flash_attn = cc.flash_attn;
            bitnet_context* ctx = bitnet_context_new(model, cp);
            if (!ctx) die(bitnet_last_error());
            int cached_depth = -1;
            for (const Test& t : tests) {
                Result r{infos.back().get(), cc.name(), nt, std::min(args.n_batch, n_ctx), t, {}, {}, 0};
                if (t.depth > 0)
                    progress(bitnet::strfmt("bench: %s, %d thread(s), %s: the %d-token depth prompt",
                                            infos.back()->name.c_str(), nt, t.name().c_str(), t.depth));
                set_depth(ctx, n_vocab, t.depth, &cached_depth, rng);
                progress(bitnet::strfmt("bench: %s, %d thread(s), %s: warm-up", infos.back()->name.c_str(), nt,
                                        t.name().c_str()));
                // A short warm-up, as llama-bench's (pages mapped, threads started, caches
                // sized): a full pp4096 warm-up would double the cost of a long test.
                Test warm = t;
                warm.n_prompt = std::min(t.n_prompt, 32);
                run_once(ctx, n_vocab, warm, std::min(t.n_gen, 1), rng);
                bitnet::profile_reset();
                for (int rep = 0; rep < args.reps; ++rep) {
                    progress(bitnet::strfmt("bench: %s, %d thread(s), %s: run %d/%d", infos.back()->name.c_str(), nt,
                                            t.name().c_str(), rep + 1, args.reps));
                    const double dt = run_once(ctx, n_vocab, t, t.n_gen, rng);
                    r.ts.push_back((t.n_prompt + t.n_gen) / dt);
                    r.seconds += dt;
                }
                r.prof = bitnet::profile_snapshot();
                results.push_back(std::move(r));
            }
            bitnet_context_free(ctx);
        }
        // Results keep pointing at infos; the model itself is no longer needed.
        bitnet_model_free(model);
    }
    if (isatty(2)) std::fprintf(stderr, "\r\033[K");

    if (args.output == "json") print_json(results, membw);
    else if (args.output == "csv") print_csv(results, membw);
    else print_md(results, membw, args.profile);
    return 0;
}
