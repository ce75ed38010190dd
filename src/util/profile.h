// A low-overhead per-operation wall-clock profile of the forward pass, off unless asked for.
//
//   BITNET_PROFILE_SCOPE("attention");   // times the rest of the enclosing block
//
// Each scope adds its wall time and one call to the named operation (scopes with the same name
// anywhere in the engine add to the same entry). Only the thread that drives the forward pass
// records: scopes reached inside ThreadPool jobs on worker threads are ignored, so a job's time
// is counted once, as the caller waits for it. Scopes must not nest (the breakdown would count
// the inner time twice); put them around leaf operations.
//
// Cost: disabled, one relaxed atomic load and a branch per scope; enabled, two steady_clock reads
// (about 20-40 ns each) and two relaxed atomic adds, a few hundred times per token.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace bitnet {

struct ProfileEntry {
    std::string name;
    double seconds = 0;  // total wall time
    uint64_t calls = 0;
};

// Turns recording on or off for the whole process (off at start).
void profile_enable(bool on);
bool profile_enabled();
// Zeroes every entry (names stay registered).
void profile_reset();
// Every operation that recorded at least one call, in order of first registration.
std::vector<ProfileEntry> profile_snapshot();

// Marks the calling thread as a pool worker, whose scopes are ignored (ThreadPool calls this).
void profile_mark_worker_thread();

namespace profile_detail {

extern std::atomic<bool> g_enabled;
extern thread_local bool t_worker;

// Slot of `name` (a string with static storage, e.g. a literal); the same name gives the same
// slot. Past a fixed number of distinct names (a programming error) it aborts with file:line.
int register_op(const char* name);
void add(int slot, int64_t ns);

class Scope {
public:
    explicit Scope(int slot) {
        if (g_enabled.load(std::memory_order_relaxed) && !t_worker) {
            slot_ = slot;
            t0_ = std::chrono::steady_clock::now();
        }
    }
    ~Scope() {
        if (slot_ >= 0)
            add(slot_, std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count());
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

private:
    int slot_ = -1;
    std::chrono::steady_clock::time_point t0_;
};

}  // namespace profile_detail

}  // namespace bitnet

#define BITNET_PROFILE_CAT2(a, b) a##b
#define BITNET_PROFILE_CAT(a, b) BITNET_PROFILE_CAT2(a, b)
// The slot is looked up once per call site (a function-local static), not per call.
#define BITNET_PROFILE_SCOPE(name)                                                                  \
    static const int BITNET_PROFILE_CAT(bitnet_profile_slot_, __LINE__) =                            \
        ::bitnet::profile_detail::register_op(name);                                                 \
    ::bitnet::profile_detail::Scope BITNET_PROFILE_CAT(bitnet_profile_scope_, __LINE__)(            \
        BITNET_PROFILE_CAT(bitnet_profile_slot_, __LINE__))
