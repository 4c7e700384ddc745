// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Packs an ID into glibc's struct passwd / struct group, formatting the name and description
// (shm/identity.hpp's rules) straight into the caller's buffer: reentrant APIs, so nothing may
// point into our memory. A buffer that is too small gives -ERANGE and leaves both the buffer
// and the struct untouched; glibc then retries with a larger one. On success the record is at
// the start of the buffer and bytes after it may have been overwritten (the buffer is ours to
// use in full, glibc manual, "NSS Module Function Internals").

#pragma once

#include <grp.h>
#include <pwd.h>

#include <cstddef>
#include <cstdint>

#include "shm/identity.hpp"

namespace transient::nss {

inline constexpr char kPasswordSeeShadow[] = "x";  // systemd's PASSWORD_SEE_SHADOW
inline constexpr char kHomeDirectory[] = "/";
inline constexpr char kNologinShell[] = "/usr/sbin/nologin";

// Bytes pack_passwd() needs. Does not depend on the buffer's address.
std::size_t passwd_size(const shm::IdName& name) noexcept;
// Bytes pack_group() needs in `buffer`, which depends on its alignment (gr_mem is a char* array).
std::size_t group_size(const shm::IdName& name, const char* buffer) noexcept;

// The user/group `id`, named `name`. Returns 0 or -ERANGE.
int pack_passwd(const shm::IdName& name, std::uint32_t id, passwd* ret, char* buffer,
                std::size_t buflen) noexcept;
int pack_group(const shm::IdName& name, std::uint32_t id, group* ret, char* buffer,
               std::size_t buflen) noexcept;

// The IdName of an Identity that shm::lookup_name() resolved (its range stays in *id).
shm::IdName id_name_of(const shm::Identity& id, shm::IdKind kind) noexcept;

}  // namespace transient::nss
