// SPDX-License-Identifier: LGPL-2.1-or-later
//
// setpwent/getpwent_r/endpwent and the group triple. The cursor is not an index but "the next
// start UID to look for": each call finds the first live range at or above it (shm::find_next),
// so ranges allocated or released between two calls neither repeat nor shift the enumeration.
// One record per range (its offset 0), in UID order; the foreign range is never enumerated
// ("just 64K of noise", as systemd says).
//
// The cursor is process-wide, as getpwent(3)'s position is: glibc serializes its own callers,
// and the mutex below keeps direct callers (tests, other libcs' shims) consistent as well, the
// way nss-systemd's GetentData.mutex does. It is held for one find_next() and a pack, never
// while waiting for anything else.

#include <pthread.h>

#include <cerrno>
#include <cstdint>

#include "nss/environment.hpp"
#include "nss/lookup.hpp"
#include "nss/records.hpp"
#include "nss/table_cache.hpp"
#include "shm/identity.hpp"

namespace transient::nss {
namespace {

struct Cursor {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    std::uint64_t next_start = 0;  // guarded by mutex
};

constinit Cursor passwd_cursor;
constinit Cursor group_cursor;

class CursorLock {
public:
    explicit CursorLock(Cursor& c) noexcept : c_(c) { ::pthread_mutex_lock(&c_.mutex); }
    CursorLock(const CursorLock&) = delete;
    CursorLock& operator=(const CursorLock&) = delete;
    ~CursorLock() { ::pthread_mutex_unlock(&c_.mutex); }

private:
    Cursor& c_;
};

int reset(Cursor& c) noexcept {
    CursorLock lock(c);
    c.next_start = 0;
    return 0;
}

// Finds the next range, lets `pack` write its record and advances only if that succeeded.
template <typename Pack>
int next(Cursor& c, shm::IdKind kind, Pack&& pack) noexcept {
    if (nss_bypassed())
        return -ESRCH;
    CursorLock lock(c);
    TableLease lease;
    if (int r = acquire_table(&lease); r < 0)
        return r;  // -ENOENT: no table, nothing to list (NOTFOUND)
    shm::RangeRecord range;
    // Skips the ranges without records of this kind (UID-only or GID-only imported ranges).
    do {
        if (int r = shm::find_next(*lease.view(), c.next_start, &range); r < 0)
            return r;  // -ESRCH: past the last range
        if (!shm::range_has_kind(range, kind))
            c.next_start = std::uint64_t{range.start} + range.size;
    } while (!shm::range_has_kind(range, kind));
    if (int r = pack(shm::ranged_id_name(range, 0, kind), range.start); r < 0)
        return r;  // -ERANGE: the same range again with the caller's larger buffer
    c.next_start = std::uint64_t{range.start} + range.size;
    return 0;
}

}  // namespace

int passwd_enum_reset() noexcept { return reset(passwd_cursor); }

int passwd_enum_next(passwd* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr)
        return -ESRCH;
    return next(passwd_cursor, shm::IdKind::kUser,
                [&](const shm::IdName& name, std::uint32_t id) noexcept {
                    return pack_passwd(name, id, ret, buffer, buflen);
                });
}

int group_enum_reset() noexcept { return reset(group_cursor); }

int group_enum_next(group* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr)
        return -ESRCH;
    return next(group_cursor, shm::IdKind::kGroup,
                [&](const shm::IdName& name, std::uint32_t id) noexcept {
                    return pack_group(name, id, ret, buffer, buflen);
                });
}

}  // namespace transient::nss
