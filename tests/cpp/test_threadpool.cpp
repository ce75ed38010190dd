// The thread pool's contract under oversubscription: every chunk of a job runs exactly once, for
// chunk counts below, at and above the thread count and not divisible by it, for pools of up to 16
// threads (more than the cores of a test machine, so threads are descheduled mid-job); run(fn)
// calls every ith once; for_range covers [0, n) exactly once in aligned pieces; no two chunks run
// at once with the same ith. Exits non-zero with the first failure.
#include <atomic>
#include <cstdio>
#include <vector>

#include "util/threadpool.h"

using bitnet::ThreadPool;

namespace {

// Atomic, like the flags below: workers report too, and ThreadSanitizer runs this test.
std::atomic<int> failures{0};

void check(bool ok, const char* what, int threads, long long n) {
    if (ok) return;
    if (failures++ < 10) std::printf("FAIL: %s (threads %d, n %lld)\n", what, threads, n);
}

void test_pool(int threads) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> busy(threads);
    for (int64_t n : {1, 2, 3, 7, 15, 16, 17, 31, 64, 100, 129, 1000, 65535}) {
        for (int rep = 0; rep < (n > 1000 ? 3 : 40); ++rep) {
            std::vector<std::atomic<int>> hits(n);
            std::atomic<bool> same_ith{false};
            pool.run_chunks(n, [&](int64_t c, int ith) {
                if (busy[ith].fetch_add(1) != 0) same_ith = true;
                hits[c].fetch_add(1, std::memory_order_relaxed);
                busy[ith].fetch_sub(1);
            });
            bool once = true;
            for (auto& h : hits) once = once && h.load() == 1;
            check(once, "run_chunks: a chunk ran other than exactly once", threads, n);
            check(!same_ith, "run_chunks: two chunks ran at once with one ith", threads, n);
        }
    }
    std::vector<std::atomic<int>> ith_hits(threads);
    pool.run([&](int ith, int nth) {
        check(nth == threads, "run: nth is not the pool size", threads, nth);
        ith_hits[ith].fetch_add(1);
    });
    for (auto& h : ith_hits) check(h.load() == 1, "run: an ith ran other than once", threads, 0);
    for (int64_t n : {0, 1, 5, 16, 17, 250, 2560, 6913}) {
        for (int64_t align : {1, 16, 160}) {
            for (int64_t grain : {1, 16, 1000}) {
                std::vector<std::atomic<int>> hits(n);
                std::atomic<bool> aligned{true};
                pool.for_range(n, align, grain, [&](int64_t b, int64_t e, int) {
                    if (!(b % align == 0 && b < e && e <= n)) aligned = false;
                    for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
                });
                bool once = true;
                for (auto& h : hits) once = once && h.load() == 1;
                check(once && aligned, "for_range: [0, n) not covered once in aligned pieces", threads, n);
            }
        }
    }
}

}  // namespace

int main() {
    for (int threads : {1, 2, 3, 5, 8, 16}) test_pool(threads);
    const int cpus = bitnet::usable_cpus();
    check(cpus >= 1 && bitnet::max_pool_threads() == (4 * cpus < 1024 ? 4 * cpus : 1024),
          "usable_cpus / max_pool_threads", cpus, 0);
    if (failures) {
        std::printf("%d failure(s)\n", failures.load());
        return 1;
    }
    std::printf("threadpool: all checks passed (%d usable CPUs)\n", cpus);
    return 0;
}
