// Helpers shared by the libFuzzer harnesses: a GGUF given as bytes is loaded through the public
// API's path argument by writing it to an anonymous in-memory file (memfd), so no harness touches
// the disk and the loader runs exactly as it does for a user's file.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "bitnet.h"

namespace fuzz {

// The model held in data[0..size), or NULL when the engine refuses it (the expected outcome for
// most inputs). Aborts when the memfd cannot be made: that is the machine, not a finding.
inline bitnet_model* load_model_bytes(const uint8_t* data, size_t size) {
    const int fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) {
        std::perror("memfd_create");
        std::abort();
    }
    for (size_t done = 0; done < size;) {
        const ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            std::perror("write");
            std::abort();
        }
        done += (size_t)n;
    }
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    bitnet_model* m = bitnet_model_load(path);
    // The model keeps what it needs (a mapping or a copy); the descriptor is ours to close.
    close(fd);
    return m;
}

// A broken promise of the API: print it and abort, so libFuzzer saves the input as a crash.
[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
}

}  // namespace fuzz
