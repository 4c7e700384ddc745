// SPDX-License-Identifier: LGPL-2.1-or-later
//
// libsubid_transient.so: shadow's subid provider (`subid: transient` in /etc/nsswitch.conf),
// answering from the range table. It runs inside setuid-root newuidmap/newgidmap and inside
// multi-threaded programs (podman), so it links only libc, never talks to the daemon, reads the
// environment only through secure_getenv() (nss/environment.cpp), keeps no state of its own
// beyond the NSS module's mapping cache (nss/table_cache.cpp, compiled into this library too),
// and hands out malloc()ed arrays.
//
// Every answer comes from one consistent pass over the table (shm::detail::read_consistent):
// the entries are in start order, so the owner's extents come out sorted, adjacent ones can be
// merged on the fly and a request can be checked against them in the same pass.
//
// What an entry is worth here:
//   - entries that fail validation (name, shape) are ignored: they authorize nothing;
//   - kEntryFlagNoUid / kEntryFlagNoGid leave an entry out for that ID type;
//   - two entries that apply to the same ID type and overlap make the table corrupt: every
//     answer is then an error (has_range denies), as the owner of an ID is no longer defined.
//
// Sizes: anything the table may hold (1, a 64K-aligned multiple of 65536, and whatever an
// imported /etc/subuid entry says), which is more than shm::is_valid_range_shape() accepts
// (imported entries), so the provider walks the entries itself rather than use find_by_id().

#include "subid/subid.hpp"

#include <pwd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "nss/table_cache.hpp"
#include "shm/layout.hpp"
#include "shm/reader.hpp"

namespace transient::subid {
namespace {

// [start, end), in 64 bits so that no sum can wrap.
struct Extent {
    std::uint64_t start;
    std::uint64_t end;
};

// The highest ID plus one a range may reach: (uid_t) -1 is never anyone's.
constexpr std::uint64_t kIdLimit = 0xFFFFFFFFULL;
// The largest getpwnam_r() buffer tried: a record is far smaller in any real user database.
constexpr std::size_t kMaxPasswdBuffer = 1U << 20;

// The IDs an entry covers for ID type `t`, if it is valid and applies to `t`.
bool extent_of(const shm::RangeRecord& r, subid_type t, Extent* ret) noexcept {
    const std::uint32_t not_for = t == ID_TYPE_UID ? shm::kEntryFlagNoUid : shm::kEntryFlagNoGid;
    if ((r.flags & not_for) != 0)
        return false;
    if (!shm::is_valid_range_name(r.name, ::strnlen(r.name, sizeof r.name)))
        return false;
    const std::uint64_t start = r.start;
    const std::uint64_t end = start + r.size;
    if (r.size == 0 || start == 0 || end > kIdLimit)
        return false;
    if (r.size == 1) {
        if (!shm::is_valid_range_shape(r.start, r.size))
            return false;
    } else if ((r.flags & shm::kEntryFlagImported) == 0) {
        // Allocated: 64K-aligned blocks, never the foreign range, never its 64K block of -1.
        if (start % shm::kContainerRangeSize != 0 || r.size % shm::kContainerRangeSize != 0 ||
            end > kIdLimit + 1 - shm::kContainerRangeSize ||
            (start <= shm::kForeignBase && shm::kForeignBase < end))
            return false;
    }
    *ret = Extent{start, end};
    return true;
}

// One consistent pass over the table's entries that apply to `t`, in start order: reset() at
// the start of every attempt, then visit(extent, owner) for each; visit returns false when it
// cannot keep the answer (no memory). Returns 0 (no table counts as an empty one), -EBADMSG
// (corrupt: overlapping entries, or not a table), -ENOMEM, -EAGAIN or another -errno of
// acquire_table().
template <typename Reset, typename Visit>
int scan(subid_type t, Reset&& reset, Visit&& visit) noexcept {
    nss::TableLease lease;
    int r = nss::acquire_table(&lease);
    if (r == -ENOENT) {
        reset();
        return 0;
    }
    if (r < 0)
        return r;
    const shm::TableView& v = *lease.view();
    return shm::detail::read_consistent(v, [&](const std::byte* copy) noexcept {
        reset();
        const std::uint64_t count = shm::detail::entry_count(copy, v.capacity);
        std::uint64_t prev_end = 0;
        for (std::uint64_t i = 0; i < count; i++) {
            shm::RangeRecord rec;
            shm::detail::load_entry(shm::detail::entry(copy, i), rec);
            if (shm::detail::is_removed(rec))
                continue;
            Extent e;
            if (!extent_of(rec, t, &e))
                continue;
            // Sorted and disjoint in any table the writer made; a torn read that breaks this is
            // retried by read_consistent(), so -EBADMSG only stands for a really corrupt copy.
            if (e.start < prev_end)
                return -EBADMSG;
            prev_end = e.end;
            if (!visit(e, rec.owner))
                return -ENOMEM;
        }
        return 0;
    });
}

// The owner's UIDs: the user's, if `owner` names one (any of its names: getpwnam_r() returns the
// UID), and the number itself if `owner` is a UID in canonical decimal, as /etc/subuid lines
// match either. Returns how many (0: unknown user) or -errno.
int resolve_owner(const char* owner, std::uint32_t (&uids)[2]) noexcept {
    int n = 0;
    char stack_buf[4096];
    char* buf = stack_buf;
    std::size_t len = sizeof stack_buf;
    int err;
    for (;;) {
        passwd pw;
        passwd* found = nullptr;
        err = ::getpwnam_r(owner, &pw, buf, len, &found);
        if (err == ERANGE && len < kMaxPasswdBuffer) {
            if (buf != stack_buf)
                std::free(buf);
            len *= 2;
            buf = static_cast<char*>(std::malloc(len));
            if (buf == nullptr)
                return -ENOMEM;
            continue;
        }
        if (err == 0 && found != nullptr)
            uids[n++] = found->pw_uid;
        break;
    }
    if (buf != stack_buf)
        std::free(buf);
    // glibc reports "no such user" as 0 with a null result, some modules as ENOENT or ESRCH.
    if (err != 0 && err != ENOENT && err != ESRCH)
        return -err;

    const std::size_t digits = std::strspn(owner, "0123456789");
    if (digits > 0 && digits <= 10 && owner[digits] == '\0' && (owner[0] != '0' || digits == 1)) {
        const unsigned long long id = std::strtoull(owner, nullptr, 10);
        if (id < kIdLimit && (n == 0 || uids[0] != id))
            uids[n++] = static_cast<std::uint32_t>(id);
    }
    return n;
}

bool owned_by(std::uint32_t owner, const std::uint32_t (&uids)[2], int n) noexcept {
    for (int i = 0; i < n; i++)
        if (uids[i] == owner)
            return true;
    return false;
}

bool valid_type(subid_type t) noexcept { return t == ID_TYPE_UID || t == ID_TYPE_GID; }

// A malloc()ed array of ranges that grows as the scan finds them.
class RangeList {
public:
    RangeList() noexcept = default;
    RangeList(const RangeList&) = delete;
    RangeList& operator=(const RangeList&) = delete;
    ~RangeList() { std::free(items_); }

    void clear() noexcept { size_ = 0; }
    std::size_t size() const noexcept { return size_; }

    // Appends [e.start, e.end), merged into the last range if it ends where e starts.
    bool add(const Extent& e) noexcept {
        if (size_ > 0 && items_[size_ - 1].start + items_[size_ - 1].count == e.start) {
            items_[size_ - 1].count += e.end - e.start;
            return true;
        }
        if (size_ == capacity_) {
            const std::size_t cap = capacity_ == 0 ? 8 : capacity_ * 2;
            void* p = std::realloc(items_, cap * sizeof *items_);
            if (p == nullptr)
                return false;
            items_ = static_cast<subid_range*>(p);
            capacity_ = cap;
        }
        items_[size_++] = subid_range{e.start, e.end - e.start};
        return true;
    }

    // Hands the array to the caller (null when empty, as shadow's files backend does).
    subid_range* release() noexcept {
        subid_range* p = size_ > 0 ? items_ : nullptr;
        if (p == nullptr)
            std::free(items_);
        items_ = nullptr;
        size_ = capacity_ = 0;
        return p;
    }

private:
    subid_range* items_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

// The prologue of the entry points that take an owner: a known ID type, and an owner that
// resolves to one or two UIDs (*n of them in uids). SUBID_STATUS_SUCCESS means go on; anything
// else is the status to return at once (an unknown user: SUBID_STATUS_UNKNOWN_USER).
subid_status owner_uids(const char* owner, subid_type t, std::uint32_t (&uids)[2],
                        int* n) noexcept {
    if (owner == nullptr || !valid_type(t))
        return SUBID_STATUS_ERROR;
    *n = resolve_owner(owner, uids);
    if (*n < 0)
        return SUBID_STATUS_ERROR;
    return *n == 0 ? SUBID_STATUS_UNKNOWN_USER : SUBID_STATUS_SUCCESS;
}

// The prologue of the entry points that return an array: both out-parameters exist and say
// "nothing" until there is an answer. False if one is null.
template <typename T>
bool clear_results(T** items, int* count) noexcept {
    if (items == nullptr || count == nullptr)
        return false;
    *items = nullptr;
    *count = 0;
    return true;
}

}  // namespace
}  // namespace transient::subid

using namespace transient::subid;
namespace shm = transient::shm;

extern "C" [[gnu::visibility("default")]] subid_status shadow_subid_has_range(
        const char* owner, unsigned long start, unsigned long count, subid_type t, bool* result) {
    if (result == nullptr)
        return SUBID_STATUS_ERROR;
    *result = false;
    std::uint32_t uids[2];
    int n = 0;
    if (const subid_status s = owner_uids(owner, t, uids, &n); s != SUBID_STATUS_SUCCESS)
        return s;
    // As the files backend: an empty request holds nothing; none reaches past the ID space.
    if (count == 0 || start >= kIdLimit || count > kIdLimit - start)
        return SUBID_STATUS_SUCCESS;
    const std::uint64_t want_end = std::uint64_t{start} + count;
    std::uint64_t covered = start;  // [start, covered) lies in the owner's ranges
    const int r = scan(
            t, [&]() noexcept { covered = start; },
            [&](const Extent& e, std::uint32_t entry_owner) noexcept {
                if (owned_by(entry_owner, uids, n) && e.start <= covered && covered < e.end)
                    covered = e.end;
                return true;
            });
    if (r < 0)
        return SUBID_STATUS_ERROR;
    *result = covered >= want_end;
    return SUBID_STATUS_SUCCESS;
}

extern "C" [[gnu::visibility("default")]] subid_status shadow_subid_list_owner_ranges(
        const char* owner, subid_type t, subid_range** ranges, int* count) {
    if (!clear_results(ranges, count))
        return SUBID_STATUS_ERROR;
    std::uint32_t uids[2];
    int n = 0;
    if (const subid_status s = owner_uids(owner, t, uids, &n); s != SUBID_STATUS_SUCCESS)
        return s;
    RangeList list;
    const int r = scan(
            t, [&]() noexcept { list.clear(); },
            [&](const Extent& e, std::uint32_t entry_owner) noexcept {
                // Single IDs (and imported fragments) are of no use to a user namespace.
                if (!owned_by(entry_owner, uids, n) || e.end - e.start < shm::kContainerRangeSize)
                    return true;
                return list.add(e);
            });
    if (r < 0)
        return SUBID_STATUS_ERROR;
    *count = static_cast<int>(list.size());  // at most the table's capacity
    *ranges = list.release();
    return SUBID_STATUS_SUCCESS;
}

extern "C" [[gnu::visibility("default")]] subid_status shadow_subid_find_subid_owners(
        unsigned long id, subid_type t, uid_t** uids, int* count) {
    if (!clear_results(uids, count) || !valid_type(t))
        return SUBID_STATUS_ERROR;
    if (id >= kIdLimit)
        return SUBID_STATUS_SUCCESS;
    // Entries that apply to one ID type are disjoint, so at most one contains the ID.
    bool found = false;
    std::uint32_t owner = 0;
    const int r = scan(
            t, [&]() noexcept { found = false; },
            [&](const Extent& e, std::uint32_t entry_owner) noexcept {
                if (e.start <= id && id < e.end) {
                    found = true;
                    owner = entry_owner;
                }
                return true;
            });
    if (r < 0)
        return SUBID_STATUS_ERROR;
    if (!found)
        return SUBID_STATUS_SUCCESS;
    auto* out = static_cast<uid_t*>(std::malloc(sizeof(uid_t)));
    if (out == nullptr)
        return SUBID_STATUS_ERROR;
    out[0] = owner;
    *uids = out;
    *count = 1;
    return SUBID_STATUS_SUCCESS;
}

extern "C" [[gnu::visibility("default")]] void shadow_subid_free(void* ptr) { std::free(ptr); }
