// Shared error handling for the engine.
//
// Two kinds of failure, kept apart on purpose:
//  - bad input (a corrupt file, an unknown architecture, a wrong flag) throws bitnet::Error with a
//    one-line message that names what was found, what was expected and the way out; the C API
//    turns it into a NULL/negative return plus bitnet_last_error(), the tools into one line on
//    stderr and exit code 1;
//  - a broken internal invariant (a bug) aborts through BITNET_ASSERT with file:line.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace bitnet {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// printf-style formatting into a std::string.
std::string strfmt(const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

[[noreturn]] void fail(const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

}  // namespace bitnet

#define BITNET_ASSERT(cond)                                                                  \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            std::fprintf(stderr, "%s:%d: internal error: assertion failed: %s\n", __FILE__,  \
                         __LINE__, #cond);                                                   \
            std::abort();                                                                    \
        }                                                                                    \
    } while (0)
