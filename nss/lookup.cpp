// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Lookups by ID and by name: borrow the table, find the range, let shm/identity.hpp name the ID
// (the naming rules live there only, shared with transient-userdbd) straight into the caller's
// buffer. No heap (but for growing the caller's list in initgroups_dyn, as glibc's own modules
// do), no locks held (acquire_table() never waits), no logging.

#include "nss/lookup.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "nss/answer_cache.hpp"
#include "nss/environment.hpp"
#include "nss/records.hpp"
#include "nss/table_cache.hpp"
#include "shm/identity.hpp"

namespace transient::nss {
namespace {

// An ID resolved: what its name is made of, and where that came from.
struct Resolved {
    shm::RangeRecord range;  // the IdName points into it
    shm::IdName name;
    // The cached table and latch value the answer was read at; null for an answer that may not
    // be cached (the foreign range, a private mapping).
    const shm::TableView* view = nullptr;
    std::uint64_t seq = 0;
};

int resolve_id(std::uint32_t id, shm::IdKind kind, Resolved* ret) noexcept {
    if (nss_bypassed())
        return -ESRCH;
    // The foreign range needs no table.
    if (shm::is_foreign_id(id)) {
        ret->name = shm::foreign_id_name(id - shm::kForeignBase, kind);
        return 0;
    }
    TableLease lease;
    // No usable table: NOTFOUND if missing (-ENOENT), UNAVAIL if corrupt.
    if (int r = acquire_table(&lease); r < 0)
        return r;
    std::size_t name_length;
    if (int r = shm::find_by_id(*lease.view(), id, &ret->range, &ret->seq, &name_length); r < 0)
        return r;
    if (!shm::range_has_kind(ret->range, kind))
        return -ESRCH;
    ret->name = shm::ranged_id_name(ret->range, id - ret->range.start, kind, name_length);
    if (lease.cached())
        ret->view = lease.view();  // never unmapped: a valid cache key beyond the lease
    return 0;
}

int resolve_name(const char* name, shm::IdKind kind, shm::Identity* ret) noexcept {
    if (nss_bypassed() || name == nullptr)
        return -ESRCH;
    TableLease lease;
    const int r = acquire_table(&lease);
    if (r < 0)
        return shm::lookup_name(nullptr, name, kind, ret) == 0 ? 0 : r;
    return shm::lookup_name(lease.view(), name, kind, ret);
}

}  // namespace

int get_passwd_by_uid(uid_t uid, passwd* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr)
        return -ESRCH;  // invalid input is "not found", not an error (nss-systemd)
    Resolved id;
    if (int r = resolve_id(uid, shm::IdKind::kUser, &id); r < 0)
        return r;
    if (int r = pack_passwd(id.name, uid, ret, buffer, buflen); r < 0)
        return r;
    if (id.view != nullptr)
        remember_answer(AnswerKind::kPasswd, uid, id.view, id.seq, packed_passwd(*ret));
    return 0;
}

int get_passwd_by_name(const char* name, passwd* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr)
        return -ESRCH;
    shm::Identity id;
    if (int r = resolve_name(name, shm::IdKind::kUser, &id); r < 0)
        return r;
    return pack_passwd(id_name_of(id, shm::IdKind::kUser), id.id, ret, buffer, buflen);
}

int get_group_by_gid(gid_t gid, group* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr)
        return -ESRCH;
    Resolved id;
    if (int r = resolve_id(gid, shm::IdKind::kGroup, &id); r < 0)
        return r;
    if (int r = pack_group(id.name, gid, ret, buffer, buflen); r < 0)
        return r;
    if (id.view != nullptr)
        remember_answer(AnswerKind::kGroup, gid, id.view, id.seq, packed_group(*ret));
    return 0;
}

int get_group_by_name(const char* name, group* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr)
        return -ESRCH;
    shm::Identity id;
    if (int r = resolve_name(name, shm::IdKind::kGroup, &id); r < 0)
        return r;
    return pack_group(id_name_of(id, shm::IdKind::kGroup), id.id, ret, buffer, buflen);
}

}  // namespace transient::nss

namespace transient::nss {

// initgroups_dyn semantics. glibc's initgroups()/getgrouplist() ask every "group:" source for
// the groups `user` is a *supplementary* member of, passing the primary GID `group` that glibc
// puts into the list itself. Our groups have no members: the only group of ours a user belongs
// to is its own primary group vg-<range>-<n> (GID = its UID; foreign-N likewise). So:
//   - `user` is not ours, or its own GID equals `group`: nothing to add, -ESRCH (NOTFOUND);
//   - otherwise (a caller passed another primary GID): its own GID is added to the list, unless
//     already there or the list is at `limit`, and the answer is 0 (SUCCESS).
// The list is grown like glibc's own modules do (nss_files initgroups): when full, double
// *size, capped at `limit` when limit > 0, with realloc() of the caller's *groupsp; on ENOMEM
// the list is left as it was.
int add_supplementary_groups(const char* user, gid_t group, long* start, long* size,
                             gid_t** groupsp, long limit) noexcept {
    if (start == nullptr || size == nullptr || groupsp == nullptr)
        return -ESRCH;
    shm::Identity id;
    if (int r = resolve_name(user, shm::IdKind::kUser, &id); r < 0)
        return r;
    if (id.id == group)
        return -ESRCH;
    for (long i = 0; i < *start; i++)
        if ((*groupsp)[i] == id.id)
            return 0;
    if (*start >= *size) {
        if (limit > 0 && *size >= limit)
            return 0;  // the caller's maximum is reached: nothing more may be added
        long new_size = *size > 0 ? 2 * *size : 1;
        if (limit > 0 && new_size > limit)
            new_size = limit;
        auto* grown = static_cast<gid_t*>(
                std::realloc(*groupsp, static_cast<std::size_t>(new_size) * sizeof(gid_t)));
        if (grown == nullptr)
            return -ENOMEM;
        *groupsp = grown;
        *size = new_size;
    }
    (*groupsp)[(*start)++] = id.id;
    return 0;
}

}  // namespace transient::nss
