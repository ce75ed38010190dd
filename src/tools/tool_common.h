// Helpers shared by the command-line tools: one-line errors, strict number parsing, a clock.
// Header-only so each tool stays one source file that uses nothing but include/bitnet.h.
#pragma once

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

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

inline double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace tool
