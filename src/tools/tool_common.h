// Helpers shared by the command-line tools: one-line errors, strict number parsing, a clock.
// Header-only so each tool stays one source file that uses nothing but include/bitnet.h.
#pragma once

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bitnet.h"

namespace tool {

// Bad input: one line on stderr and exit code 1.
[[noreturn]] inline void die(const std::string& msg) {
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    std::exit(1);
}

inline long long parse_int(const std::string& flag, const char* v) {
    char* end = nullptr;
    errno = 0;
    long long x = std::strtoll(v, &end, 10);
    if (!*v || *end || errno || x < INT_MIN || x > INT_MAX)
        die("invalid value '" + std::string(v) + "' for " + flag + ": expected an integer");
    return x;
}

inline float parse_float(const std::string& flag, const char* v) {
    char* end = nullptr;
    float x = std::strtof(v, &end);
    if (!*v || *end) die("invalid value '" + std::string(v) + "' for " + flag + ": expected a number");
    return x;
}

// llama.cpp's cache flags, shared by every tool: -ctk / -ctv TYPE and -fa on|off.
struct CacheArgs {
    int type_k = BITNET_KV_F32, type_v = BITNET_KV_F32;
    int flash_attn = 1;
    void apply(bitnet_context_params& p) const {
        p.type_k = type_k;
        p.type_v = type_v;
        p.flash_attn = flash_attn;
    }
};

inline int parse_kv_type(const std::string& flag, const char* v) {
    const std::string s = v;
    if (s == "f32") return BITNET_KV_F32;
    if (s == "f16") return BITNET_KV_F16;
    if (s == "q8_0") return BITNET_KV_Q8_0;
    die("invalid value '" + s + "' for " + flag + ": expected f32, f16 or q8_0");
}

// Takes flag f (and its value, from next()) when it is one of the cache flags.
template <typename Next>
bool parse_cache_flag(const std::string& f, Next&& next, CacheArgs& c) {
    if (f == "-ctk" || f == "--cache-type-k") c.type_k = parse_kv_type(f, next());
    else if (f == "-ctv" || f == "--cache-type-v") c.type_v = parse_kv_type(f, next());
    else if (f == "-fa" || f == "--flash-attn") {
        const std::string v = next();
        if (v == "on" || v == "1") c.flash_attn = 1;
        else if (v == "off" || v == "0") c.flash_attn = 0;
        else die("invalid value '" + v + "' for " + f + ": expected on or off");
    } else return false;
    return true;
}

constexpr const char* kCacheUsage =
    "  -ctk, --cache-type-k T  KV cache type of the keys: f32 (default), f16, q8_0\n"
    "  -ctv, --cache-type-v T  ... of the values\n"
    "  -fa, --flash-attn on|off  on (default): tiled attention; off: the exact attention in\n"
    "                          torch's summation order (needs -ctk f32 -ctv f32)\n";

// llama.cpp's --mmap / --no-mmap, shared by every tool; true when f is one of them.
inline bool parse_mmap_flag(const std::string& f, bool& use_mmap) {
    if (f == "--mmap") use_mmap = true;
    else if (f == "--no-mmap") use_mmap = false;
    else return false;
    return true;
}

constexpr const char* kMmapUsage =
    "      --mmap, --no-mmap   map the model file (default: a fast start, but the file must not\n"
    "                          change while in use) or read it into memory at load\n";

// Loads a model (one line and exit 1 on failure).
inline bitnet_model* load_model(const std::string& path, bool use_mmap) {
    bitnet_model_params mp = bitnet_model_default_params();
    mp.use_mmap = use_mmap ? 1 : 0;
    bitnet_model* model = bitnet_model_load_with_params(path.c_str(), mp);
    if (!model) die(bitnet_last_error());
    return model;
}

// The context rule of every tool: -c 0 (the default) is the model's training context, capped at
// BITNET_DEFAULT_CTX_MAX, and said so when capped; a context longer than the training context
// works but the text past that point decays, so it is said too. One line each, on stderr.
inline void note_context(const bitnet_model* model, int requested, int n_ctx) {
    const int train = bitnet_model_n_ctx_train(model);
    if (requested == 0 && train > n_ctx)
        std::fprintf(stderr, "note: context %d tokens, capped from the model's training context of %d; "
                             "ask for more with -c\n", n_ctx, train);
    else if (train > 0 && n_ctx > train)
        std::fprintf(stderr, "warning: a context of %d tokens is longer than the %d the model was trained "
                             "on; text past %d tokens may lose coherence\n", n_ctx, train, train);
}

// A -t value: refused (one line, exit 1) above bitnet_max_n_threads(), a warning above the usable
// CPUs, where the extra threads only take turns on the same cores. 0 means the usable CPUs.
inline void check_threads(int n) {
    const int usable = bitnet_default_n_threads(), most = bitnet_max_n_threads();
    if (n < 0) die("-t must be >= 0");
    if (n > most)
        die("-t " + std::to_string(n) + " is too many threads: this process may use " + std::to_string(usable) +
            " CPU(s), and at most " + std::to_string(most) + " threads (4 per CPU, at most 1024) are accepted; "
            "use -t " + std::to_string(usable));
    if (n > usable)
        std::fprintf(stderr, "warning: -t %d is more threads than the %d CPU(s) this process may use; they will "
                             "take turns on the same cores (use -t %d)\n", n, usable, usable);
}

inline double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace tool
