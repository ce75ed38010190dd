// Thread pool (see threadpool.h): job publication through one generation counter, bounded spin,
// then sleep.
#include "util/threadpool.h"

#include <chrono>

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

// How long a worker keeps polling for the next job before it sleeps: longer than the serial gaps
// between the jobs of one forward pass (residual adds, RoPE, a few microseconds each), short
// enough that a pool left idle is asleep almost at once. A time, not an iteration count: PAUSE
// takes ~10 cycles on older Intel cores and ~140 on Skylake and later.
constexpr auto kSpinTime = std::chrono::microseconds(200);

// Polls `done` with PAUSE, reading the clock only every 64 polls (a clock read costs about as
// much as the PAUSE itself); true when done() became true within kSpinTime.
template <typename F>
bool spin_until(F&& done) {
    const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (done()) return true;
            BITNET_CPU_RELAX();
        }
        if (std::chrono::steady_clock::now() > deadline) return done();
    }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    if (n_threads_ == 1) {
        fn(0, 1);
        return;
    }
    job_ = &fn;
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    {
        // Under the lock, so a worker between its last poll and cv_.wait cannot miss the bump.
        std::lock_guard<std::mutex> lock(mu_);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    fn(0, n_threads_);
    // Spin, then yield: with more runnable threads than cores (a busy machine) a worker may be
    // waiting for this very core, and pure spinning would starve it for a whole time slice.
    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; }))
        while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
}

void ThreadPool::worker(int ith) {
    profile_mark_worker_thread();
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = 0;
        const auto changed = [&] {
            gen = generation_.load(std::memory_order_acquire);
            return gen != seen;
        };
        if (!spin_until(changed)) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, changed);
        }
        seen = gen;
        if (stop_) return;
        (*job_)(ith, n_threads_);
        pending_.fetch_sub(1, std::memory_order_release);
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
