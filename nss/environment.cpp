// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The one-time capture of the module's environment (see environment.hpp).

#include "nss/environment.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/runtime_dir.hpp"
#include "shm/layout.hpp"

namespace transient::nss {
namespace detail {

constinit std::atomic<int> environment_state{kNotCaptured};
constinit Environment environment;

bool read_bypass() noexcept {
    const char* v = ::secure_getenv("TRANSIENT_NSS_BYPASS");
    if (v == nullptr)
        return false;
    return std::strcmp(v, "1") == 0 || std::strcmp(v, "yes") == 0 ||
           std::strcmp(v, "true") == 0 || std::strcmp(v, "on") == 0;
}

int read_table_path(char (&out)[PATH_MAX]) noexcept {
    // Unset or empty: the default, as for every other binary.
    const char* dir = base::secure_runtime_dir();
    const std::size_t n = std::strlen(dir);
    if (n + 1 + sizeof shm::kTableFileName > sizeof out) {
        out[0] = '\0';
        return -ENAMETOOLONG;
    }
    std::memcpy(out, dir, n);
    out[n] = '/';
    std::memcpy(out + n + 1, shm::kTableFileName, sizeof shm::kTableFileName);
    return 0;
}

void read_environment(Environment* ret) noexcept {
    ret->bypass = read_bypass();
    ret->path_error = read_table_path(ret->table_path);
}

const Environment* capture_environment() noexcept {
    int expected = kNotCaptured;
    // Relaxed on success: nothing is published yet, the release store below does that. Acquire
    // on failure: if the snapshot was published meanwhile, we read it.
    if (!environment_state.compare_exchange_strong(expected, kCapturing,
                                                   std::memory_order_relaxed,
                                                   std::memory_order_acquire))
        return expected == kCaptured ? &environment : nullptr;
    read_environment(&environment);
    // Release: a thread that loads kCaptured (acquire) sees the snapshot complete.
    environment_state.store(kCaptured, std::memory_order_release);
    return &environment;
}

}  // namespace detail

int table_path(char (&scratch)[PATH_MAX], const char** ret) noexcept {
    if (const Environment* e = environment()) {
        *ret = e->table_path;
        return e->path_error;
    }
    // Another thread is capturing the snapshot: read the variable ourselves, this once.
    *ret = scratch;
    return detail::read_table_path(scratch);
}

}  // namespace transient::nss
