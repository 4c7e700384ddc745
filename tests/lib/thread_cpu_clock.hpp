// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A std::chrono clock that reads the calling thread's CPU time. Timing tests and benchmarks on a
// machine shared with other builds use it instead of the wall clock: a batch is preempted for
// whole time slices, which the wall clock would charge to whichever batch was running (at load
// 10 the medians of wall-clock batches varied 20-fold). What other processes do to the caches
// still shows; that is part of what the code costs.

#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>

namespace transient::testing {

struct ThreadCpuClock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<ThreadCpuClock, duration>;
    static constexpr bool is_steady = true;
    static time_point now() noexcept {
        struct timespec ts;
        ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return time_point(duration(std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec));
    }
};

// A timing ratio on a shared machine: measure() again, up to `attempts` times in all, while
// passes(ratio) says no, and the last ratio. Other processes only ever slow a measurement down,
// and the larger of two tables more (its cache misses), so a dip passes at the next attempt,
// while something that grows with the table fails every one.
template <typename Measure, typename Passes>
double measure_until_passes(Measure&& measure, Passes&& passes, int attempts = 3) {
    double ratio = measure();
    for (int i = 1; i < attempts && !passes(ratio); i++)
        ratio = measure();
    return ratio;
}

// rate(few) and rate(full), calls per second with `few` and with `full` ranges in the table,
// printed as a "[ timing ]" line about `what`, measured again while passes(ratio) says no (as
// measure_until_passes()); the ratio rate(full) / rate(few).
template <typename Rate, typename Passes>
double rate_ratio(const char* what, Rate&& rate, std::uint32_t few, std::uint32_t full,
                  Passes&& passes) {
    return measure_until_passes(
            [&] {
                const double at_few = rate(few), at_full = rate(full);
                std::printf("[ timing   ] %s: %.0f/s with %u ranges, %.0f/s with %u (%.2fx)\n",
                            what, at_few, few, at_full, full, at_full / at_few);
                return at_full / at_few;
            },
            passes);
}

}  // namespace transient::testing
