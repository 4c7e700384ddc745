// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module's two environment switches. Both are read with secure_getenv() on every call, so a
// setuid/setgid program (AT_SECURE) can never be pointed at an attacker's table or have the
// module switched off by its caller, and a test or the allocator can change them at run time.

#pragma once

#include <cstdlib>
#include <cstring>

#include "shm/layout.hpp"

namespace transient::nss {

// TRANSIENT_NSS_BYPASS=1 (or yes/true/on): answer NOTFOUND for everything. The allocator sets it
// for its own collision checks, as systemd's allocators set SYSTEMD_NSS_DYNAMIC_BYPASS.
inline bool nss_bypassed() noexcept {
    const char* v = ::secure_getenv("TRANSIENT_NSS_BYPASS");
    if (v == nullptr)
        return false;
    return std::strcmp(v, "1") == 0 || std::strcmp(v, "yes") == 0 ||
           std::strcmp(v, "true") == 0 || std::strcmp(v, "on") == 0;
}

// $TRANSIENT_RUNTIME_DIR if set and non-empty (as shm::runtime_dir()), else /run/transient.
inline const char* runtime_dir() noexcept {
    const char* d = ::secure_getenv("TRANSIENT_RUNTIME_DIR");
    return d != nullptr && d[0] != '\0' ? d : shm::kDefaultRuntimeDir;
}

}  // namespace transient::nss
