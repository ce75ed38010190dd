#include "util/threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BITNET_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define BITNET_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define BITNET_CPU_RELAX() ((void)0)
#endif

namespace bitnet {

// About 50-100 microseconds of spinning: long enough to bridge the gap between the matmuls of one
// forward pass, short enough that a pool left idle goes to sleep almost at once.
static constexpr int kSpinIterations = 20000;

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    if (n_threads_ == 1) {
        fn(0, 1);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        pending_.store(n_threads_ - 1);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    fn(0, n_threads_);
    // Spin, then yield: with more runnable threads than cores (a busy machine) a worker may be
    // waiting for this very core, and pure spinning would starve it for a whole time slice.
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
        if (spin < kSpinIterations) BITNET_CPU_RELAX();
        else std::this_thread::yield();
    }
}

void ThreadPool::worker(int ith) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = generation_.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
            BITNET_CPU_RELAX();
            gen = generation_.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return generation_.load() != seen; });
            gen = generation_.load();
        }
        seen = gen;
        if (stop_.load()) return;
        const std::function<void(int, int)>* job;
        {
            std::lock_guard<std::mutex> lock(mu_);
            job = job_;
        }
        (*job)(ith, n_threads_);
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
