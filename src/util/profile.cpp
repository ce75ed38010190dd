// Storage of the per-operation profile (see profile.h): a fixed table of named slots whose
// counters are relaxed atomics, so recording never takes a lock; only registering a new name
// (once per call site) does.
#include "util/profile.h"

#include <cstring>
#include <mutex>

#include "util/common.h"

namespace bitnet {

namespace profile_detail {

std::atomic<bool> g_enabled{false};
thread_local bool t_worker = false;

namespace {

constexpr int kMaxOps = 64;

struct Slot {
    const char* name = nullptr;
    std::atomic<int64_t> ns{0};
    std::atomic<uint64_t> calls{0};
};

Slot g_slots[kMaxOps];
std::atomic<int> g_n_slots{0};
std::mutex g_register_mu;

}  // namespace

int register_op(const char* name) {
    std::lock_guard<std::mutex> lock(g_register_mu);
    const int n = g_n_slots.load(std::memory_order_relaxed);
    for (int i = 0; i < n; ++i)
        if (std::strcmp(g_slots[i].name, name) == 0) return i;
    BITNET_ASSERT(n < kMaxOps && "too many distinct BITNET_PROFILE_SCOPE names");
    g_slots[n].name = name;
    g_n_slots.store(n + 1, std::memory_order_release);
    return n;
}

void add(int slot, int64_t ns) {
    g_slots[slot].ns.fetch_add(ns, std::memory_order_relaxed);
    g_slots[slot].calls.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace profile_detail

void profile_enable(bool on) { profile_detail::g_enabled.store(on, std::memory_order_relaxed); }
bool profile_enabled() { return profile_detail::g_enabled.load(std::memory_order_relaxed); }
void profile_mark_worker_thread() { profile_detail::t_worker = true; }

void profile_reset() {
    const int n = profile_detail::g_n_slots.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
        profile_detail::g_slots[i].ns.store(0, std::memory_order_relaxed);
        profile_detail::g_slots[i].calls.store(0, std::memory_order_relaxed);
    }
}

std::vector<ProfileEntry> profile_snapshot() {
    std::vector<ProfileEntry> out;
    const int n = profile_detail::g_n_slots.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
        const auto& s = profile_detail::g_slots[i];
        const uint64_t calls = s.calls.load(std::memory_order_relaxed);
        if (calls == 0) continue;
        out.push_back({s.name, (double)s.ns.load(std::memory_order_relaxed) * 1e-9, calls});
    }
    return out;
}

}  // namespace bitnet
