// A persistent pool of worker threads for data-parallel loops.
//
// A job is a number of chunks that the threads (the caller among them) claim one at a time from an
// atomic counter, so the work of a thread that the OS has descheduled (a busy machine, or more
// threads than cores) is done by the others instead of holding every one of them at the end of the
// job. The caller returns once every chunk has run; a worker that wakes up late finds the job
// closed and does nothing. Idle workers poll briefly (a forward pass issues hundreds of jobs back
// to back, and waking a sleeping thread costs tens of microseconds), then yield the core, then
// sleep on a condition variable, so an idle or oversubscribed pool burns little CPU.
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
    // Chunks per thread a range is cut into: enough that the share of a late thread is picked up
    // by the others in small pieces, few enough that claiming (one atomic add, ~50 ns contended)
    // stays far below the work of a chunk.
    static constexpr int kChunksPerThread = 8;
    // The most chunks of one job (they are counted in 16 bits of the claim word).
    static constexpr int64_t kMaxChunks = 65535;

    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Calls fn(chunk, ith) exactly once for every chunk in [0, n_chunks) (at most kMaxChunks) and
    // returns when all have returned. ith in [0, size()) names the thread running the chunk (the
    // caller is 0): no two chunks run at the same time with the same ith, so it can index
    // per-thread scratch.
    void run_chunks(int64_t n_chunks, const std::function<void(int64_t chunk, int ith)>& fn);

    // Calls fn(ith, nth) once for each ith in [0, nth), nth = size(), each call run by whichever
    // thread claims it: a job that claims its own work (an atomic counter) or splits by ith.
    void run(const std::function<void(int ith, int nth)>& fn);

    // Calls fn(begin, end, ith) over pieces of [0, n) that cover it exactly once: each piece starts
    // at a multiple of `align`, and has at least `grain` elements unless it is the last. The whole
    // range runs on the caller when it is a single piece (n <= grain, or one thread): waking the
    // workers for a few microseconds of work costs more than the work.
    template <typename F>
    void for_range(int64_t n, int64_t align, int64_t grain, F&& fn) {
        const int64_t chunks = range_chunks(n, align, grain);
        if (chunks <= 1) {
            if (n > 0) fn((int64_t)0, n, 0);
            return;
        }
        const int64_t units = (n + align - 1) / align;
        run_chunks(chunks, [&](int64_t c, int ith) {
            const int64_t b = units * c / chunks * align, e = units * (c + 1) / chunks * align;
            fn(b, e < n ? e : n, ith);
        });
    }

    // Calls fn(i) for every i in [0, n), in pieces of at least `grain` rows. A single row runs on
    // the caller alone: decode quantizes and normalizes one token at a time.
    template <typename F>
    void for_each_row(int64_t n, F&& fn, int64_t grain = 1) {
        for_range(n, 1, grain, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) fn(i);
        });
    }

    // How many pieces for_range cuts [0, n) into: up to kChunksPerThread per thread, each at least
    // `grain` elements and a whole number of `align` units.
    int64_t range_chunks(int64_t n, int64_t align, int64_t grain) const;

    // Splits [0, n) into nth contiguous ranges, each a multiple of `align` except the last.
    static void split(int64_t n, int ith, int nth, int64_t align, int64_t* begin, int64_t* end);

private:
    using ChunkFn = std::function<void(int64_t, int)>;
    void worker(int ith);
    // Claims and runs chunks of the job whose claim word is `w` until none are left.
    void work(uint64_t w, int ith);

    int n_threads_;
    std::vector<std::thread> threads_;
    std::mutex mu_;  // guards sleeping: cv_ waits and the claim_ bumps that end them
    std::condition_variable cv_;
    std::atomic<int> sleepers_{0};  // workers in (or about to enter) cv_.wait
    std::atomic<bool> stop_{false};
    // Job g's function lives in slot g % 2: stored before the claim word announces g, and not
    // overwritten before job g+2, by which time no claim of g can succeed.
    std::atomic<const ChunkFn*> job_[2] = {};
    // The claim word: job number (32 bits) | chunk count (16) | next chunk to claim (16). One CAS
    // both checks the job and claims a chunk, so a worker late by a whole job cannot claim a chunk
    // of the next one with the previous one's function. Workers also poll it for the next job.
    alignas(64) std::atomic<uint64_t> claim_{0};
    // Chunks of the current job that have returned. The class's size rounds up to its 64-byte
    // alignment, so the rest of this line is padding, not a neighbour's data.
    alignas(64) std::atomic<int64_t> done_{0};
};

// The CPUs this process may run on at once: those in its affinity mask (sched_getaffinity), capped
// by its cgroup's CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us) rounded up;
// at least 1. The default thread count.
int usable_cpus();

// The most threads a pool may be asked for: 4 x usable_cpus(), and never above 1024. More only
// queue behind each other for the same cores.
int max_pool_threads();

}  // namespace bitnet
