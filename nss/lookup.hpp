// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module's internal API, one function per NSS entry point, systemd style: each returns 0 or
// a negative errno, fills its ret_ out-parameter only on success, and is turned into an NSS
// status in exactly one place (to_nss_status() in nss_transient.cpp):
//   -ESRCH   no such record (also: invalid input, TRANSIENT_NSS_BYPASS, end of enumeration)
//   -ENOENT  no table (the foreign range still resolves)
//   -ERANGE  the caller's buffer is too small
//   -EAGAIN  the table changed under us too often, or is being replaced
//   other    corrupt table (-EBADMSG), other version (-EPROTONOSUPPORT), open/mmap failures

#pragma once

#include <grp.h>
#include <pwd.h>
#include <sys/types.h>

#include <cstddef>

#include "shm/reader.hpp"

namespace transient::nss {

// `peeked`: null, or the view the answer cache's probe got from peek_table() with the module not
// bypassed (answer_cache.hpp), which the lookup then uses as it is. The lookups by ID never
// change errno (the one part that makes system calls keeps it itself), so that the entry points
// need no ErrnoGuard for them.
int get_passwd_by_uid(uid_t uid, passwd* ret, char* buffer, std::size_t buflen,
                      const shm::TableView* peeked = nullptr) noexcept;
int get_passwd_by_name(const char* name, passwd* ret, char* buffer, std::size_t buflen) noexcept;
int get_group_by_gid(gid_t gid, group* ret, char* buffer, std::size_t buflen,
                     const shm::TableView* peeked = nullptr) noexcept;
int get_group_by_name(const char* name, group* ret, char* buffer, std::size_t buflen) noexcept;

// Enumeration: one record per live range (its offset 0), in UID order; the foreign range is
// never enumerated. A short buffer gives -ERANGE and does not advance the cursor.
int passwd_enum_reset() noexcept;
int passwd_enum_next(passwd* ret, char* buffer, std::size_t buflen) noexcept;
int group_enum_reset() noexcept;
int group_enum_next(group* ret, char* buffer, std::size_t buflen) noexcept;

// initgroups_dyn: see the comment at the definition (lookup.cpp).
int add_supplementary_groups(const char* user, gid_t group, long* start, long* size,
                             gid_t** groupsp, long limit) noexcept;

}  // namespace transient::nss
