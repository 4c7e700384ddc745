// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Packs an shm::Identity into glibc's struct passwd / struct group, every string copied into the
// caller's buffer (reentrant APIs: nothing may point into our memory). A buffer that is too small
// gives -ERANGE and leaves both the buffer and the struct untouched; glibc then retries with a
// larger one.

#pragma once

#include <grp.h>
#include <pwd.h>

#include <cstddef>

#include "shm/identity.hpp"

namespace transient::nss {

inline constexpr char kPasswordSeeShadow[] = "x";  // systemd's PASSWORD_SEE_SHADOW
inline constexpr char kHomeDirectory[] = "/";
inline constexpr char kNologinShell[] = "/usr/sbin/nologin";

// Bytes pack_passwd() needs. Does not depend on the buffer's address.
std::size_t passwd_size(const shm::Identity& id) noexcept;
// Bytes pack_group() needs in `buffer`, which depends on its alignment (gr_mem is a char* array).
std::size_t group_size(const shm::Identity& id, const char* buffer) noexcept;

// Returns 0 or -ERANGE.
int pack_passwd(const shm::Identity& id, passwd* ret, char* buffer, std::size_t buflen) noexcept;
int pack_group(const shm::Identity& id, group* ret, char* buffer, std::size_t buflen) noexcept;

}  // namespace transient::nss
