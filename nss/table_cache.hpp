// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module's process-wide mapping of the range table: the allocation-free, lock-free-on-the-
// fast-path counterpart of shm::TableReader. A lookup borrows the current mapping through a
// TableLease; when the cache cannot be used (another thread is remapping, or every slot is
// taken), the lease holds a private mapping made for this one call and unmaps it when it goes
// out of scope. Either way the lookup reads a validated
// shm::TableView and never blocks.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "shm/reader.hpp"

namespace transient::nss {

class TableLease {
public:
    TableLease() noexcept = default;
    TableLease(const TableLease&) = delete;
    TableLease& operator=(const TableLease&) = delete;
    // Inline: the common lease borrows the cache's view and has nothing to release.
    ~TableLease() {
        if (owned_ != nullptr)
            release();
    }

    // Valid while the lease lives. REQUIRES: acquire_table() returned 0.
    const shm::TableView* view() const noexcept { return view_; }
    // False when this call had to map the table privately (the slow, uncached path).
    bool cached() const noexcept { return owned_ == nullptr; }

    // A view of the process-wide cache: never unmapped, nothing to release.
    void borrow(const shm::TableView* v) noexcept { view_ = v; }
    // A private mapping of `size` bytes at `p`, viewed as `v`: unmapped by the destructor.
    void adopt(void* p, std::size_t size, const shm::TableView& v) noexcept;

private:
    void release() noexcept;  // unmaps the private mapping

    const shm::TableView* view_ = nullptr;
    shm::TableView private_view_;
    void* owned_ = nullptr;
    std::size_t owned_size_ = 0;
};

// Lets *ret read the table (environment.hpp: table_path()), mapping or remapping it as needed.
// Returns 0, -ENOENT (no table: one failed open()), -EAGAIN (the table is being replaced),
// -EBADMSG (not a table, or corrupt), -EPROTONOSUPPORT (another version), -ENAMETOOLONG, or an
// -errno of open()/fstat()/mmap(). Never blocks, never allocates, never unmaps a mapping another
// thread may read, keeps errno. Async-signal-safety is not a goal (neither is it glibc's for NSS).
int acquire_table(TableLease* ret) noexcept;

namespace detail {

// How often a thread's lookups look at the clock (a power of two).
inline constexpr std::uint32_t kRecheckEvery = 64;
// Call counters, one cache line each, spread over threads (counter_index()): one shared counter
// would bounce its cache line between the cores of a process that resolves users on many threads.
inline constexpr std::size_t kCallCounters = 16;

struct alignas(64) CallCounter {
    std::atomic<std::uint32_t> calls{0};
};

// The view of the current slot, null if there is none. Release-stored once the slot is filled.
extern constinit std::atomic<const shm::TableView*> current_view;
extern constinit CallCounter call_counters[kCallCounters];

// Which counter this thread uses: a hash of its stack address. Threads have disjoint stacks, so
// they mostly get different counters; one thread keeps its counter while its stack depth stays
// within the same 64 KiB. Free (no call, unlike sched_getcpu(), which would also tie the module
// to ld.so for glibc's rseq area).
inline std::size_t counter_index() noexcept {
    const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    return static_cast<std::size_t>(((sp >> 16) * 0x9E3779B97F4A7C15ULL) >> 60) % kCallCounters;
}

// Counts a call; true on every kRecheckEvery-th call of this thread (of the threads sharing its
// counter). With `consume` false a due recheck is not counted, so that the acquire_table() that
// follows a failed peek_table() finds it due again and does it.
inline bool count_call(bool consume) noexcept {
    CallCounter& c = call_counters[counter_index()];
    // Relaxed load and store, not an atomic increment: threads racing on one counter lose a
    // count at worst, and the call stays free of locked instructions.
    const std::uint32_t n = c.calls.load(std::memory_order_relaxed) + 1;
    const bool due = n % kRecheckEvery == 0;
    if (!due || consume)
        c.calls.store(n, std::memory_order_relaxed);
    return due;
}

}  // namespace detail

// The cached table if it can be used as it is: mapped, not retired, no recheck due. Makes no
// system call and never touches errno; null means "call acquire_table()". The view stays valid
// for the life of the process.
inline const shm::TableView* peek_table() noexcept {
    // Acquire: pairs with the release store that published the slot; its view is complete.
    const shm::TableView* v = detail::current_view.load(std::memory_order_acquire);
    if (v == nullptr || shm::table_retired(*v) || detail::count_call(false))
        return nullptr;
    return v;
}

namespace detail {
// For white-box tests of the fallbacks (tests/nss/table_cache_test.cpp), not used by the module.
// How many of the cache's slots have been filled in this process.
std::size_t cache_slots_used() noexcept;
// Holds the remap mutex, as a concurrent remap (or a fork() from one) would.
bool try_lock_remap_for_testing() noexcept;
void unlock_remap_for_testing() noexcept;
}  // namespace detail

}  // namespace transient::nss
