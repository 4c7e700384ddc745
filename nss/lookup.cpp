// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Lookups by ID and by name: borrow the table, find the range, let shm/identity.hpp name the ID
// (the naming rules live there only, shared with transient-userdbd) straight into the caller's
// buffer. No heap (but for growing the caller's list in initgroups_dyn, as glibc's own modules
// do), no locks held (acquire_table() never waits), no logging.

#include "nss/lookup.hpp"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

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

// The last range a lookup by ID found and validated, process-wide: a lookup of another ID of
// the same range (a scan over one container's files or processes) reuses it instead of searching,
// copying and validating the entry again. Like an answer in the answer cache it is used only
// while the table's latch still reads the value it was read at (the writer moves the latch before
// it touches the copy, and never reuses a value), and only for a view of the process-wide table
// cache (never unmapped; a private mapping's view dies with its lease). The memo is our own
// memory with a seqlock of its own (STYLE.md §2): a reader never waits, a memo being written is a
// miss, and what it holds passed validate_record() when it was stored. The containment check is
// repeated for every ID.
struct alignas(64) RangeMemo {
    static constexpr std::size_t kWords = sizeof(shm::RangeRecord) / 8;
    static_assert(sizeof(shm::RangeRecord) % 8 == 0);
    std::atomic<std::uint64_t> version{0};  // odd while a writer fills it
    std::atomic<std::uint64_t> view{0};
    std::atomic<std::uint64_t> seq{0};
    std::atomic<std::uint64_t> name_length{0};
    // The start of the last range offered: a range is memorized when it is found twice in a
    // row, so that lookups that hop from range to range cost one store here, not a fill.
    std::atomic<std::uint64_t> candidate{~0ULL};
    std::atomic<std::uint64_t> record[kWords] = {};
};
// The word of a RangeRecord holding start and size, checked before the rest is copied.
inline constexpr std::size_t kStartSizeWord = offsetof(shm::RangeRecord, start) / 8;
static_assert(offsetof(shm::RangeRecord, start) % 8 == 0 &&
              offsetof(shm::RangeRecord, size) == offsetof(shm::RangeRecord, start) + 4);

constinit RangeMemo range_memo;

bool recall_range(const shm::TableView* view, std::uint32_t id, Resolved* ret,
                  std::size_t* name_length) noexcept {
    const std::uint64_t seq = shm::table_seq(*view);
    // Acquire: pairs with the release store that completed the fill.
    const std::uint64_t version = range_memo.version.load(std::memory_order_acquire);
    if ((version & 1) != 0 ||
        range_memo.view.load(std::memory_order_relaxed) !=
                reinterpret_cast<std::uintptr_t>(view) ||
        range_memo.seq.load(std::memory_order_relaxed) != seq)
        return false;
    // Another range: a miss before copying anything (a torn word is caught by the re-check).
    const std::uint64_t ss = range_memo.record[kStartSizeWord].load(std::memory_order_relaxed);
    const auto start = static_cast<std::uint32_t>(ss);
    if (id < start || std::uint64_t{id} >= std::uint64_t{start} + (ss >> 32))
        return false;
    // Straight into *ret, which a miss leaves to find_by_id() to overwrite. Unrolled: the loop
    // cost more than the copy.
    std::uint64_t words[RangeMemo::kWords];
#pragma GCC unroll 8
    for (std::size_t i = 0; i < RangeMemo::kWords; i++)
        words[i] = range_memo.record[i].load(std::memory_order_relaxed);
    const std::size_t n = range_memo.name_length.load(std::memory_order_relaxed);
    // Keeps the loads above before the re-check (Boehm 2012).
    std::atomic_thread_fence(std::memory_order_acquire);
    if (range_memo.version.load(std::memory_order_relaxed) != version)
        return false;
    std::memcpy(&ret->range, words, sizeof ret->range);
    const shm::RangeRecord& r = ret->range;
    if (id < r.start || std::uint64_t{id} >= std::uint64_t{r.start} + r.size)
        return false;
    ret->seq = seq;
    *name_length = n;
    return true;
}

void memo_range(const shm::TableView* view, const Resolved& found,
                std::size_t name_length) noexcept {
    // Relaxed: a heuristic; racing threads merely fill once more or once less.
    if (range_memo.candidate.load(std::memory_order_relaxed) != found.range.start) {
        range_memo.candidate.store(found.range.start, std::memory_order_relaxed);
        return;
    }
    std::uint64_t version = range_memo.version.load(std::memory_order_relaxed);
    // Claim it, or leave it to the thread filling it. Relaxed: the fence below orders.
    if ((version & 1) != 0 || !range_memo.version.compare_exchange_strong(
                                      version, version + 1, std::memory_order_relaxed))
        return;
    // The odd version before the payload stores (STYLE.md §2, rule 3).
    std::atomic_thread_fence(std::memory_order_release);
    range_memo.view.store(reinterpret_cast<std::uintptr_t>(view), std::memory_order_relaxed);
    range_memo.seq.store(found.seq, std::memory_order_relaxed);
    range_memo.name_length.store(name_length, std::memory_order_relaxed);
    std::uint64_t words[RangeMemo::kWords];
    std::memcpy(words, &found.range, sizeof words);
    for (std::size_t i = 0; i < RangeMemo::kWords; i++)
        range_memo.record[i].store(words[i], std::memory_order_relaxed);
    range_memo.version.store(version + 2, std::memory_order_release);
}

int resolve_id(std::uint32_t id, shm::IdKind kind, const shm::TableView* peeked,
               Resolved* ret) noexcept {
    if (peeked == nullptr && nss_bypassed())
        return -ESRCH;
    // The foreign range needs no table.
    if (shm::is_foreign_id(id)) {
        ret->name = shm::foreign_id_name(id - shm::kForeignBase, kind);
        return 0;
    }
    TableLease lease;
    if (peeked != nullptr)
        lease.borrow(peeked);  // a view of the process-wide cache, checked just now
    else if (int r = acquire_table(&lease); r < 0)
        return r;  // no usable table: NOTFOUND if missing (-ENOENT), UNAVAIL if corrupt
    std::size_t name_length;
    if (!lease.cached() || !recall_range(lease.view(), id, ret, &name_length)) {
        if (int r = shm::find_by_id(*lease.view(), id, &ret->range, &ret->seq, &name_length);
            r < 0)
            return r;
        if (lease.cached())
            memo_range(lease.view(), *ret, name_length);
    }
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

int get_passwd_by_uid(uid_t uid, passwd* ret, char* buffer, std::size_t buflen,
                      const shm::TableView* peeked) noexcept {
    if (ret == nullptr)
        return -ESRCH;  // invalid input is "not found", not an error (nss-systemd)
    Resolved id;
    if (int r = resolve_id(uid, shm::IdKind::kUser, peeked, &id); r < 0)
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

int get_group_by_gid(gid_t gid, group* ret, char* buffer, std::size_t buflen,
                     const shm::TableView* peeked) noexcept {
    if (ret == nullptr)
        return -ESRCH;
    Resolved id;
    if (int r = resolve_id(gid, shm::IdKind::kGroup, peeked, &id); r < 0)
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
