// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Stops the table writer at an exact instant, deterministically: at its first store into a
// chosen page of its mapping. The page is write-protected; the store faults; a SIGSEGV handler
// parks the writer's thread until the test releases it, then unprotects the page and returns,
// so the store is retried and the writer carries on as if nothing happened.
//
// While the writer is parked the test can run readers against the half-updated file, and copy
// the file: the copy is exactly what a writer killed at that instant would have left behind.
//
// The writer's mapping is found by wrapping mmap() at link time (-Wl,--wrap=mmap, see
// CMakeLists.txt): the next read-write shared mapping of the armed size is captured.
// One WriterFreezer may exist at a time.

#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <thread>

namespace transient::shm::testing {

// The mmap() wrapper on its own: captures the next read-write MAP_SHARED mapping of `size`
// bytes (the writer's), without protecting anything. captured_mapping() returns its address,
// or null. Used to let readers share the writer's very addresses, which is what TSan needs to
// see both sides of the latch.
void capture_next_mapping(std::size_t size);
std::byte* captured_mapping();

// Makes the next read-write MAP_SHARED mapping of `size` bytes fail with `error` instead, as
// mmap() does when the address space or the memory limit runs out.
void fail_next_mapping(std::size_t size, int error);

class WriterFreezer {
public:
    WriterFreezer();
    ~WriterFreezer();
    WriterFreezer(const WriterFreezer&) = delete;
    WriterFreezer& operator=(const WriterFreezer&) = delete;

    // Captures the next read-write MAP_SHARED mapping of `size` bytes, and write-protects its
    // page `page` at once if given (to stop a writer inside TableWriter::open()).
    void arm_mapping(std::size_t size, std::optional<std::size_t> page = std::nullopt);
    bool captured() const;
    std::size_t pages() const;

    // Write-protects page `page` of the captured mapping.
    void protect(std::size_t page);

    // Runs `fn` on a new thread until it either stores into the protected page (returns true:
    // the thread is parked, call release()) or returns without doing so (returns false; the
    // page is unprotected again).
    bool run_until_frozen(std::function<void()> fn);

    // Lets the parked thread continue and waits for `fn` to return.
    void release();

private:
    void finish();

    std::thread thread_;
};

}  // namespace transient::shm::testing
