// Timing helper shared by the --bench modes of the C++ test programs (header-only: each test is
// its own executable, built from one .cpp by the tests/cpp/*.cpp glob).
#pragma once

#include <algorithm>
#include <chrono>

// Best-of time of one call, repeated until at least `budget_s` seconds and 3 calls have run.
template <typename F>
double time_best(F&& f, double budget_s) {
    using clock = std::chrono::steady_clock;
    f();  // warm-up: page faults, caches
    double best = 1e30, total = 0;
    for (int reps = 0; reps < 3 || total < budget_s; ++reps) {
        const auto t0 = clock::now();
        f();
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        best = std::min(best, dt);
        total += dt;
    }
    return best;
}
