// Thread pool (see threadpool.h): jobs as chunks claimed through one CAS'd claim word; waiting is
// a bounded spin, then yields, then (workers) sleep.
#include "util/threadpool.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#if defined(__linux__)
#include <sched.h>
#endif

#include "util/common.h"
#include "util/profile.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BITNET_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define BITNET_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define BITNET_CPU_RELAX() ((void)0)
#endif

namespace bitnet {

namespace {

// How long a waiting thread polls with PAUSE: longer than the serial gaps between the jobs of one
// forward pass (residual adds, RoPE, a few microseconds each). Then it polls with sched_yield for
// kYieldTime, which costs nothing when the core is free and hands it over at once when another
// thread (a descheduled worker holding a chunk, or another process) wants it. Only then does a
// worker sleep. Times, not iteration counts: PAUSE takes ~10 cycles on older Intel cores and ~140
// on Skylake and later.
constexpr auto kSpinTime = std::chrono::microseconds(50);
constexpr auto kYieldTime = std::chrono::microseconds(1000);

// Field layout of the claim word (see threadpool.h).
constexpr int kNextBits = 16, kCountBits = 16;
constexpr uint64_t kFieldMask = 0xffff;
uint64_t claim_job(uint64_t w) { return w >> (kNextBits + kCountBits); }
int64_t claim_count(uint64_t w) { return (int64_t)((w >> kNextBits) & kFieldMask); }
int64_t claim_next(uint64_t w) { return (int64_t)(w & kFieldMask); }

// Polls done() with PAUSE for kSpinTime, then with yields up to `yield_time` (reading the clock
// only every 64 polls: a clock read costs about as much as a PAUSE); true when done() became true.
template <typename F>
bool wait_until(F&& done, std::chrono::microseconds yield_time) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (done()) return true;
            BITNET_CPU_RELAX();
        }
        if (std::chrono::steady_clock::now() - start > kSpinTime) break;
    }
    const auto deadline = start + kSpinTime + yield_time;
    for (;;) {
        for (int i = 0; i < 16; ++i) {
            if (done()) return true;
            std::this_thread::yield();
        }
        if (std::chrono::steady_clock::now() > deadline) return done();
    }
}

#if defined(__linux__)
// The CPUs a quota of `quota` per `period` (both as read from the files) allows, rounded up;
// 0 for no limit or unreadable values.
int quota_cpus(const std::string& quota, const std::string& period) {
    char* end = nullptr;
    const double q = std::strtod(quota.c_str(), &end);
    if (end == quota.c_str() || !(q > 0)) return 0;  // "max" or -1: no quota
    const double p = std::strtod(period.c_str(), &end);
    if (end == period.c_str() || !(p > 0)) return 0;
    const double cpus = std::ceil(q / p);
    return cpus >= 1 ? (cpus < 1e6 ? (int)cpus : 0) : 1;
}

std::string read_text(const std::string& path) {
    std::ifstream f(path);
    std::string s;
    std::getline(f, s);
    return s;
}

// The smallest cgroup CPU quota over this process's cgroup and its parents, v2 then v1; 0: none.
int cgroup_cpus() {
    int best = 0;
    const auto take = [&](int c) {
        if (c > 0 && (best == 0 || c < best)) best = c;
    };
    std::ifstream f("/proc/self/cgroup");
    std::string line;
    while (std::getline(f, line)) {
        // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1)
        const size_t a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        const std::string ctrl = line.substr(a + 1, b - a - 1);
        std::string path = line.substr(b + 1);
        const bool v2 = ctrl.empty();
        bool v1 = false;
        std::stringstream cs(ctrl);
        for (std::string c; std::getline(cs, c, ',');) v1 = v1 || c == "cpu";
        if (!v2 && !v1) continue;
        for (;;) {
            // The cgroup's own directory, then each parent up to the mount root.
            if (v2) {
                std::stringstream qs(read_text("/sys/fs/cgroup" + path + "/cpu.max"));
                std::string q, p;
                qs >> q >> p;
                take(quota_cpus(q, p));
            } else {
                for (const char* mount : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
                    const std::string dir = std::string(mount) + path;
                    take(quota_cpus(read_text(dir + "/cpu.cfs_quota_us"), read_text(dir + "/cpu.cfs_period_us")));
                }
            }
            if (path.empty() || path == "/") break;
            const size_t slash = path.find_last_of('/');
            path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
        }
    }
    return best;
}
#endif

}  // namespace

int usable_cpus() {
    static const int n = [] {
        int cpus = (int)std::thread::hardware_concurrency();
#if defined(__linux__)
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
        const int quota = cgroup_cpus();
        if (quota > 0 && quota < cpus) cpus = quota;
#endif
        return cpus < 1 ? 1 : cpus;
    }();
    return n;
}

int max_pool_threads() {
    const int n = 4 * usable_cpus();
    return n < 1024 ? n : 1024;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true, std::memory_order_relaxed);
        // A new job number with no chunks: wakes every worker, which then sees stop_.
        const uint64_t job = claim_job(claim_.load(std::memory_order_relaxed)) + 1;
        claim_.store(job << (kNextBits + kCountBits), std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

int64_t ThreadPool::range_chunks(int64_t n, int64_t align, int64_t grain) const {
    if (n <= 0 || n_threads_ == 1) return 1;
    const int64_t units = (n + align - 1) / align;
    const int64_t g = grain < 1 ? 1 : grain;
    int64_t chunks = (int64_t)n_threads_ * kChunksPerThread;
    if (chunks > units) chunks = units;
    if (chunks > n / g) chunks = n / g;
    if (chunks > kMaxChunks) chunks = kMaxChunks;
    return chunks < 1 ? 1 : chunks;
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    const int nth = n_threads_;
    if (nth == 1) {
        fn(0, 1);
        return;
    }
    run_chunks(nth, [&](int64_t c, int) { fn((int)c, nth); });
}

void ThreadPool::run_chunks(int64_t n_chunks, const ChunkFn& fn) {
    BITNET_ASSERT(n_chunks >= 0 && n_chunks <= kMaxChunks);
    if (n_chunks == 0) return;
    if (n_threads_ == 1 || n_chunks == 1) {
        for (int64_t c = 0; c < n_chunks; ++c) fn(c, 0);
        return;
    }
    // Only this thread writes claim_'s job field, so a relaxed read of it is current.
    const uint64_t job = claim_job(claim_.load(std::memory_order_relaxed)) + 1;
    job_[job & 1].store(&fn, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint64_t w = job << (kNextBits + kCountBits) | (uint64_t)n_chunks << kNextBits;
    // Publishes job_ and done_. seq_cst, with the worker's seq_cst increment of sleepers_ before
    // its seq_cst poll: either this load sees the sleeper or that poll sees this job.
    claim_.store(w, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        // Under the lock, so a worker between its last poll and cv_.wait cannot miss the bump.
        { std::lock_guard<std::mutex> lock(mu_); }
        cv_.notify_all();
    }
    work(w, 0);
    // The chunks still running belong to other threads: spin, then yield (a descheduled worker
    // holding one may be waiting for this very core).
    const auto all_done = [&] { return done_.load(std::memory_order_acquire) == n_chunks; };
    while (!wait_until(all_done, kYieldTime)) {
    }
}

void ThreadPool::work(uint64_t w, int ith) {
    const uint64_t job = claim_job(w);
    const ChunkFn* fn = job_[job & 1].load(std::memory_order_acquire);
    for (;;) {
        if (claim_job(w) != job || claim_next(w) >= claim_count(w)) return;
        // On success the chunk is ours and job `job` is still open, so fn is its function: the
        // caller stores job+2's only after every chunk of job+1, hence after this claim.
        if (claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
            (*fn)(claim_next(w), ith);
            done_.fetch_add(1, std::memory_order_acq_rel);
            w = claim_.load(std::memory_order_acquire);
        }
    }
}

void ThreadPool::worker(int ith) {
    profile_mark_worker_thread();
    uint64_t seen = 0;
    for (;;) {
        uint64_t w = 0;
        const auto changed = [&] {
            w = claim_.load(std::memory_order_seq_cst);
            return claim_job(w) != seen;
        };
        if (!wait_until(changed, kYieldTime)) {
            std::unique_lock<std::mutex> lock(mu_);
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            cv_.wait(lock, changed);
            sleepers_.fetch_sub(1, std::memory_order_relaxed);
        }
        seen = claim_job(w);
        if (stop_.load(std::memory_order_relaxed)) return;
        work(w, ith);
    }
}

void ThreadPool::split(int64_t n, int ith, int nth, int64_t align, int64_t* begin, int64_t* end) {
    const int64_t units = (n + align - 1) / align;
    const int64_t per = units / nth, rem = units % nth;
    const int64_t ub = ith * per + (ith < rem ? ith : rem);
    const int64_t ue = ub + per + (ith < rem ? 1 : 0);
    *begin = ub * align < n ? ub * align : n;
    *end = ue * align < n ? ue * align : n;
}

}  // namespace bitnet
