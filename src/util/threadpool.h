// A persistent pool of worker threads for data-parallel loops.
//
// run(fn) calls fn(ith, nth) once on each of the nth threads (the caller is thread 0) and returns
// when all are done. Workers spin for a bounded time after a job (a forward pass issues hundreds
// of jobs back to back, and waking a sleeping thread costs tens of microseconds), then sleep on a
// condition variable, so an idle pool burns no CPU. The counters the workers poll and the one they
// decrement live on separate cache lines, so spinning threads do not steal the line a finishing
// thread writes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bitnet {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    void run(const std::function<void(int ith, int nth)>& fn);

    // Calls fn(i) for every i in [0, n), rows split across the threads. A single row runs on the
    // caller alone: decode quantizes and normalizes one token at a time, and waking the workers
    // for it would cost more than the work.
    template <typename F>
    void for_each_row(int64_t n, F&& fn) {
        if (n == 1 || n_threads_ == 1) {
            for (int64_t i = 0; i < n; ++i) fn(i);
            return;
        }
        run([&](int ith, int nth) {
            int64_t b, e;
            split(n, ith, nth, 1, &b, &e);
            for (int64_t i = b; i < e; ++i) fn(i);
        });
    }

    // Splits [0, n) into nth contiguous ranges, each a multiple of `align` except the last.
    static void split(int64_t n, int ith, int nth, int64_t align, int64_t* begin, int64_t* end);

private:
    void worker(int ith);

    int n_threads_;
    std::vector<std::thread> threads_;
    std::mutex mu_;  // guards sleeping: cv_ waits and the generation_ bumps that end them
    std::condition_variable cv_;
    // Published by run() before its release increment of generation_, read by workers after
    // their acquire load of it.
    const std::function<void(int, int)>* job_ = nullptr;
    bool stop_ = false;  // same publication as job_
    alignas(64) std::atomic<uint64_t> generation_{0};  // one increment per job: workers poll it
    // Workers still running the current job. The class's size rounds up to its 64-byte
    // alignment, so the rest of this line is padding, not a neighbour's data.
    alignas(64) std::atomic<int> pending_{0};
};

}  // namespace bitnet
