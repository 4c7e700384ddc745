// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module's two environment switches, read once per process: at the first lookup (of any
// kind) the module reads TRANSIENT_NSS_BYPASS and TRANSIENT_RUNTIME_DIR with secure_getenv() and
// keeps the answer for the life of the process, fork() children included. Changing either
// variable afterwards has no effect; set them before the first lookup, as transient-allocd does
// in main(). secure_getenv() means a setuid/setgid program (AT_SECURE) can never be pointed at
// another table or have the module switched off by its caller.
//
// Why once: two secure_getenv() calls are linear scans of environ and cost more than the rest of
// a lookup. glibc itself reads its own switches (LOCALDOMAIN, NSS configuration paths) at first
// use for the same reason.
//
// The capture never blocks: a thread that finds another one capturing (or a fork() child of a
// process that was capturing at that instant) reads the variables itself for that call.

#pragma once

#include <limits.h>

#include <atomic>

namespace transient::nss {

// A snapshot of the two variables. Immutable once published.
struct Environment {
    bool bypass = false;
    // 0, or -ENAMETOOLONG when "<runtime dir>/ranges.table" does not fit table_path.
    int path_error = 0;
    char table_path[PATH_MAX] = {};
};

namespace detail {
enum CaptureState : int { kNotCaptured = 0, kCapturing = 1, kCaptured = 2 };
extern constinit std::atomic<int> environment_state;
extern constinit Environment environment;
// Read the variables now: TRANSIENT_NSS_BYPASS=1, yes, true or on is a bypass; an unset or
// empty TRANSIENT_RUNTIME_DIR means /run/transient.
bool read_bypass() noexcept;
int read_table_path(char (&out)[PATH_MAX]) noexcept;
void read_environment(Environment* ret) noexcept;
// Captures the environment if nobody has yet. Returns the snapshot, or null while another
// thread is capturing it.
const Environment* capture_environment() noexcept;
}  // namespace detail

// The process's snapshot, or null while another thread is capturing it (see above): then the
// caller reads what it needs itself (nss_bypassed() and table_path() do). After the first call
// this is one load.
inline const Environment* environment() noexcept {
    // Acquire: pairs with the release store that publishes the snapshot's contents.
    if (detail::environment_state.load(std::memory_order_acquire) == detail::kCaptured)
        return &detail::environment;
    return detail::capture_environment();
}

// TRANSIENT_NSS_BYPASS: answer NOTFOUND for everything. The allocator sets it for its own
// collision checks, as systemd's allocators set SYSTEMD_NSS_DYNAMIC_BYPASS.
inline bool nss_bypassed() noexcept {
    if (const Environment* e = environment())
        return e->bypass;
    return detail::read_bypass();
}

// "<runtime dir>/ranges.table": the snapshot's, or read into `scratch` when there is none.
// Returns 0 or -ENAMETOOLONG.
int table_path(char (&scratch)[PATH_MAX], const char** ret) noexcept;

}  // namespace transient::nss
