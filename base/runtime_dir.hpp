// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The runtime directory (range table, allocator socket): $TRANSIENT_RUNTIME_DIR, or the default
// CMake compiles in (TRANSIENT_RUNTIME_DIR, also written into the units and tmpfiles.d). This is
// the one place that decides it, for every binary.
//
// Header-only, noexcept and freestanding (libc only, no allocation): the NSS module and the
// subid provider use it inside every process, setuid ones included. They read the variable with
// secure_getenv(), so a setuid caller cannot point them at another table. The daemons and
// transientctl keep plain getenv(), as they always had: none of them is installed setuid or
// with file capabilities (the units give the allocator ambient capabilities, which do not set
// AT_SECURE), so their caller is the one who chose their environment anyway.
// base/paths.hpp builds the daemons' std::string paths on top of this.

#pragma once

#include <stdlib.h>

namespace transient::base {

inline constexpr char kDefaultRuntimeDir[] = TRANSIENT_DEFAULT_RUNTIME_DIR;  // set by CMake
inline constexpr char kRuntimeDirVariable[] = "TRANSIENT_RUNTIME_DIR";

// `value` (the variable's value, or null when unset) if set and not empty, else the default.
inline const char* runtime_dir_or_default(const char* value) noexcept {
    return value != nullptr && value[0] != '\0' ? value : kDefaultRuntimeDir;
}

// For code loaded into other processes (NSS module, subid provider): ignores the variable in a
// setuid/setgid program (AT_SECURE). The pointer is into environ or the default, not owned.
inline const char* secure_runtime_dir() noexcept {
    return runtime_dir_or_default(::secure_getenv(kRuntimeDirVariable));
}

// For the daemons and transientctl, which honour the variable always (see above).
inline const char* runtime_dir_c() noexcept {
    return runtime_dir_or_default(::getenv(kRuntimeDirVariable));
}

}  // namespace transient::base
