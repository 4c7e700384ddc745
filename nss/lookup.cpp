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
// the groups `user` is a *supplementary* member of, and put the primary GID `group` into the
// list themselves. Our groups have no members: getgrgid() lists none, and transient-userdbd
// answers GetMemberships with none, so nss-systemd adds nothing for the same user. A user's only
// group of ours is its primary group vg-<range>-<n> (none at all for a range imported from
// /etc/subuid only), which is no membership: nss_files does not add a user's own group either.
// So there is never anything to add, whoever asks: -ESRCH (NOTFOUND), as nss-systemd answers.
int add_supplementary_groups(const char*, gid_t, long*, long*, gid_t**, long) noexcept {
    return -ESRCH;
}

}  // namespace transient::nss
