// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module's process-wide mapping of the range table: the allocation-free, lock-free-on-the-
// fast-path counterpart of shm::TableReader. A lookup borrows the current mapping through a
// TableLease; when the cache cannot be used (another thread is remapping, or every slot is
// taken), the lease holds a private mapping made for this one call and unmaps it when it goes
// out of scope. Either way the lookup reads a validated
// shm::TableView and never blocks.

#pragma once

#include <cstddef>

#include "shm/reader.hpp"

namespace transient::nss {

class TableLease {
public:
    TableLease() noexcept = default;
    TableLease(const TableLease&) = delete;
    TableLease& operator=(const TableLease&) = delete;
    ~TableLease();

    // Valid while the lease lives. REQUIRES: acquire_table() returned 0.
    const shm::TableView* view() const noexcept { return view_; }
    // False when this call had to map the table privately (the slow, uncached path).
    bool cached() const noexcept { return owned_ == nullptr; }

    // A view of the process-wide cache: never unmapped, nothing to release.
    void borrow(const shm::TableView* v) noexcept { view_ = v; }
    // A private mapping of `size` bytes at `p`, viewed as `v`: unmapped by the destructor.
    void adopt(void* p, std::size_t size, const shm::TableView& v) noexcept;

private:
    const shm::TableView* view_ = nullptr;
    shm::TableView private_view_;
    void* owned_ = nullptr;
    std::size_t owned_size_ = 0;
};

// Lets *ret read the table (environment.hpp: table_path()), mapping or remapping it as needed. Returns 0,
// -ENOENT (no table: one failed open()), -EAGAIN (the table is being replaced), -EBADMSG (not a
// table, or corrupt), -EPROTONOSUPPORT (another version), -ENAMETOOLONG, or an -errno of
// open()/fstat()/mmap(). Never blocks, never allocates, never unmaps a mapping another thread
// may read. Async-signal-safety is not a goal (neither is it glibc's for NSS).
int acquire_table(TableLease* ret) noexcept;

namespace detail {
// For white-box tests of the fallbacks (tests/nss/table_cache_test.cpp), not used by the module.
// How many of the cache's slots have been filled in this process.
std::size_t cache_slots_used() noexcept;
// Holds the remap mutex, as a concurrent remap (or a fork() from one) would.
bool try_lock_remap_for_testing() noexcept;
void unlock_remap_for_testing() noexcept;
}  // namespace detail

}  // namespace transient::nss
