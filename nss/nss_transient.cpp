// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The glibc NSS entry points of libnss_transient.so.2 (nsswitch word "transient"). Each one
// keeps errno, delegates to an internal function returning 0/-errno (lookup.hpp) and maps the
// result in to_nss_status(), the only place where -errno values become NSS results. Exported
// through nss_transient.sym; everything else is hidden. Compiled -fno-exceptions -fno-rtti.

#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <sys/types.h>

#include <cerrno>
#include <cstddef>

#include "nss/answer_cache.hpp"
#include "nss/errno_guard.hpp"
#include "nss/lookup.hpp"

#define TRANSIENT_EXPORT extern "C" __attribute__((visibility("default")))

namespace transient::nss {
namespace {

// glibc manual (nss.texi, "NSS Modules Interface"): TRYAGAIN with ERANGE *must* mean the buffer
// is too small, and a module must never set *errnop to zero. errno is restored before a failure
// code is stored (errnop may be &errno) and after a NOTFOUND one (callers must see errno
// unchanged when nothing was found). `keep_errno` is null where nothing changed errno.
nss_status to_nss_status(int r, int* errnop, ErrnoGuard* keep_errno) noexcept {
    switch (r) {
    case 0:
        return NSS_STATUS_SUCCESS;
    case -ESRCH:   // no such record
    case -ENOENT:  // no table at all: nothing is allocated, so nothing is found
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
    case -ERANGE:  // buffer too small: glibc retries with a larger one
    case -EAGAIN:  // the table kept changing under us, or is being replaced
        if (keep_errno != nullptr)
            keep_errno->restore_now();
        *errnop = -r;
        return NSS_STATUS_TRYAGAIN;
    default:  // corrupt table, other version, open()/mmap() failure
        if (keep_errno != nullptr)
            keep_errno->restore_now();
        *errnop = r < 0 ? -r : EIO;
        return NSS_STATUS_UNAVAIL;
    }
}

}  // namespace
}  // namespace transient::nss

using transient::nss::ErrnoGuard;
using transient::nss::to_nss_status;

namespace {

// The full lookups behind the cached ones, out of line so that a cache hit runs without their
// stack frame. No ErrnoGuard: the lookups by ID leave errno alone (lookup.hpp), so what the
// guard would restore is what errno already holds.
[[gnu::noinline]] nss_status getpwuid_full(uid_t uid, passwd* pwd, char* buffer, size_t buflen,
                                           int* errnop,
                                           const transient::shm::TableView* peeked) noexcept {
    return to_nss_status(transient::nss::get_passwd_by_uid(uid, pwd, buffer, buflen, peeked),
                         errnop, nullptr);
}

[[gnu::noinline]] nss_status getgrgid_full(gid_t gid, group* grp, char* buffer, size_t buflen,
                                           int* errnop,
                                           const transient::shm::TableView* peeked) noexcept {
    return to_nss_status(transient::nss::get_group_by_gid(gid, grp, buffer, buflen, peeked),
                         errnop, nullptr);
}

}  // namespace

TRANSIENT_EXPORT nss_status _nss_transient_getpwuid_r(uid_t uid, passwd* pwd, char* buffer,
                                                      size_t buflen, int* errnop) noexcept {
    // A cached answer is a copy out of process memory: no errno to protect (answer_cache.hpp).
    const transient::shm::TableView* peeked = nullptr;
    if (transient::nss::cached_passwd(uid, pwd, buffer, buflen, &peeked))
        return NSS_STATUS_SUCCESS;
    return getpwuid_full(uid, pwd, buffer, buflen, errnop, peeked);
}

TRANSIENT_EXPORT nss_status _nss_transient_getpwnam_r(const char* name, passwd* pwd, char* buffer,
                                                      size_t buflen, int* errnop) noexcept {
    ErrnoGuard keep_errno;
    return to_nss_status(transient::nss::get_passwd_by_name(name, pwd, buffer, buflen), errnop,
                         &keep_errno);
}

TRANSIENT_EXPORT nss_status _nss_transient_getgrgid_r(gid_t gid, group* grp, char* buffer,
                                                      size_t buflen, int* errnop) noexcept {
    const transient::shm::TableView* peeked = nullptr;
    if (transient::nss::cached_group(gid, grp, buffer, buflen, &peeked))
        return NSS_STATUS_SUCCESS;
    return getgrgid_full(gid, grp, buffer, buflen, errnop, peeked);
}

TRANSIENT_EXPORT nss_status _nss_transient_getgrnam_r(const char* name, group* grp, char* buffer,
                                                      size_t buflen, int* errnop) noexcept {
    ErrnoGuard keep_errno;
    return to_nss_status(transient::nss::get_group_by_name(name, grp, buffer, buflen), errnop,
                         &keep_errno);
}

// `stayopen` has no meaning here: the table stays mapped anyway.
TRANSIENT_EXPORT nss_status _nss_transient_setpwent(int /*stayopen*/) noexcept {
    ErrnoGuard keep_errno;
    int ignored;
    return to_nss_status(transient::nss::passwd_enum_reset(), &ignored, &keep_errno);
}

TRANSIENT_EXPORT nss_status _nss_transient_getpwent_r(passwd* pwd, char* buffer, size_t buflen,
                                                      int* errnop) noexcept {
    ErrnoGuard keep_errno;
    return to_nss_status(transient::nss::passwd_enum_next(pwd, buffer, buflen), errnop,
                         &keep_errno);
}

TRANSIENT_EXPORT nss_status _nss_transient_endpwent() noexcept {
    ErrnoGuard keep_errno;
    int ignored;
    return to_nss_status(transient::nss::passwd_enum_reset(), &ignored, &keep_errno);
}

TRANSIENT_EXPORT nss_status _nss_transient_setgrent(int /*stayopen*/) noexcept {
    ErrnoGuard keep_errno;
    int ignored;
    return to_nss_status(transient::nss::group_enum_reset(), &ignored, &keep_errno);
}

TRANSIENT_EXPORT nss_status _nss_transient_getgrent_r(group* grp, char* buffer, size_t buflen,
                                                      int* errnop) noexcept {
    ErrnoGuard keep_errno;
    return to_nss_status(transient::nss::group_enum_next(grp, buffer, buflen), errnop,
                         &keep_errno);
}

TRANSIENT_EXPORT nss_status _nss_transient_endgrent() noexcept {
    ErrnoGuard keep_errno;
    int ignored;
    return to_nss_status(transient::nss::group_enum_reset(), &ignored, &keep_errno);
}

// See add_supplementary_groups() for what "the groups of a transient user" are.
TRANSIENT_EXPORT nss_status _nss_transient_initgroups_dyn(const char* user, gid_t group,
                                                          long* start, long* size,
                                                          gid_t** groupsp, long limit,
                                                          int* errnop) noexcept {
    ErrnoGuard keep_errno;
    return to_nss_status(
            transient::nss::add_supplementary_groups(user, group, start, size, groupsp, limit),
            errnop, &keep_errno);
}
