// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The lock-free reader of the range table. Header-only, freestanding (no heap, no exceptions,
// no locks), because it runs inside libnss_transient.so.2, i.e. inside every process on a host,
// setuid programs included.
//
// The reader treats the mapping as untrusted bytes: the geometry is validated once and copied
// into a private TableView, every index and count read afterwards is clamped or checked before
// it is used, every loop is bounded by the (validated) capacity, and a record is handed out only
// after the latch counter proved it consistent and its fields passed validation. No content of
// the file can make a reader touch memory outside the mapping, loop without bound or crash.

#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "shm/layout.hpp"

namespace transient::shm {

// How often a reader retries when the writer changed the table under it. Each retry costs a
// lookup (< 1 µs) while a table update takes far longer, so two flips in a row are rare; and a
// dead writer never causes retries, because the latch always leaves one copy readable.
inline constexpr int kMaxReadAttempts = 16;

// A range as a reader hands it out: a private copy, validated.
struct RangeRecord {
    char name[kNameWords * 8];  // NUL-terminated, at most kMaxRangeNameLength characters
    std::uint32_t start;
    std::uint32_t size;
    std::uint32_t owner;
    std::uint32_t flags;
    std::uint64_t created_usec;
    std::uint64_t userns_id;
    std::uint64_t userns_ino;
};

// The validated geometry of a mapped table. Values are private copies: a reader never re-reads
// them from the (writable, untrusted) header.
struct TableView {
    const std::byte* base = nullptr;
    std::size_t size = 0;
    std::uint32_t capacity = 0;
    std::uint32_t version = 0;  // kVersion … kVersionWithoutBlockIndex
    std::uint64_t copy_offset[2] = {0, 0};
};

inline bool is_range_name_char(char c, bool first) noexcept {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_')
        return true;
    return !first && ((c >= '0' && c <= '9') || c == '-');
}

// [A-Za-z_][A-Za-z0-9_-]*, 1 … kMaxRangeNameLength bytes.
inline bool is_valid_range_name(const char* s, std::size_t n) noexcept {
    if (n == 0 || n > kMaxRangeNameLength)
        return false;
    for (std::size_t i = 0; i < n; i++)
        if (!is_range_name_char(s[i], i == 0))
            return false;
    return true;
}

// 1 ID, or 1 … kMaxRangeSize / 65536 whole, aligned 64K blocks.
inline bool is_valid_range_shape(std::uint32_t start, std::uint32_t size) noexcept {
    if (size == 1)
        return start != 0xFFFFU && start != 0xFFFFFFFFU;
    if (size == 0 || size % kContainerRangeSize != 0 || size > kMaxRangeSize ||
        (start & 0xFFFFU) != 0 || start == 0)
        return false;
    // Never the foreign range and never anything that would wrap or reach (uid_t) -1: the last
    // block a range may cover is 0xFFFE0000's. 64-bit sums, so nothing wraps here either.
    const std::uint64_t end = std::uint64_t{start} + size;
    return end <= 0xFFFF0000ULL && (end <= kForeignBase || start > kForeignBase);
}

// The longest range name whose user names ("vu-<name>-<size - 1>") stay within systemd's
// 31 bytes: 22 up to 65536 IDs, 20 for 8388608 (7-digit offsets).
inline std::size_t max_range_name_length(std::uint32_t size) noexcept {
    std::size_t digits = 1;
    for (std::uint32_t n = size > 0 ? size - 1 : 0; n >= 10; n /= 10)
        digits++;
    const std::size_t room = kMaxUserNameBytes - 4 - digits;  // "vu-", "-"
    return room < kMaxRangeNameLength ? room : kMaxRangeNameLength;
}

// An entry imported from /etc/subuid or /etc/subgid (kEntryFlagImported) has whatever start and
// size the file gave, and may span several 64K blocks. It must still never cover UID 0, the
// 16-bit and 32-bit (uid_t) -1, or the foreign range, whose names come from elsewhere.
inline bool is_valid_imported_shape(std::uint32_t start, std::uint32_t size) noexcept {
    const std::uint64_t end = std::uint64_t{start} + size;  // one past the last ID
    if (size == 0 || start == 0 || end > 0xFFFFFFFFULL)
        return false;
    if (start <= 0xFFFFU && end > 0xFFFFU)
        return false;
    return end <= kForeignBase || start >= std::uint64_t{kForeignBase} + kContainerRangeSize;
}

inline bool is_valid_entry_shape(std::uint32_t start, std::uint32_t size,
                                 std::uint32_t flags) noexcept {
    if ((flags & kEntryFlagImported) != 0)
        return is_valid_imported_shape(start, size);
    return is_valid_range_shape(start, size);
}

namespace detail {

inline const FileHeader& header(const TableView& v) noexcept {
    return *reinterpret_cast<const FileHeader*>(v.base);
}

inline const CopyHeader& copy_header(const std::byte* copy) noexcept {
    return *reinterpret_cast<const CopyHeader*>(copy);
}

// REQUIRES: i < capacity of the view the copy belongs to.
inline const EntryWords& entry(const std::byte* copy, std::uint64_t i) noexcept {
    return reinterpret_cast<const EntryWords*>(copy + entries_offset())[i];
}

// REQUIRES: i < name_index_words(capacity, version).
inline std::uint32_t name_index(const std::byte* copy, std::uint32_t capacity,
                                std::uint64_t i) noexcept {
    const auto* idx =
            reinterpret_cast<const std::atomic<std::uint32_t>*>(copy + name_index_offset(capacity));
    return idx[i].load(std::memory_order_relaxed);  // validated by the latch re-check
}

// REQUIRES: b < kBlockIndexSize, a copy of version 2 or later.
inline std::uint32_t block_index(const TableView& v, const std::byte* copy,
                                 std::uint32_t b) noexcept {
    const auto* idx = reinterpret_cast<const std::atomic<std::uint32_t>*>(
            copy + block_index_offset(v.capacity, v.version));
    return idx[b].load(std::memory_order_relaxed);  // validated by the latch re-check, clamped
}

inline std::uint64_t entry_count(const std::byte* copy, std::uint32_t capacity) noexcept {
    // Clamped so that a torn or corrupt count cannot index past the copy.
    return std::min<std::uint64_t>(copy_header(copy).count.load(std::memory_order_relaxed),
                                   capacity);
}

inline std::uint32_t entry_start(const EntryWords& e) noexcept {
    return static_cast<std::uint32_t>(e.start_size.load(std::memory_order_relaxed));
}

// A released entry (version 4) that still holds its place: readers treat it as absent.
inline bool entry_removed(const EntryWords& e) noexcept {
    const std::uint64_t of = e.owner_flags.load(std::memory_order_relaxed);
    return ((of >> 32) & kEntryFlagRemoved) != 0;
}

inline bool is_removed(const RangeRecord& r) noexcept {
    return (r.flags & kEntryFlagRemoved) != 0;
}

inline void load_name(const EntryWords& e, char (&out)[kNameWords * 8]) noexcept {
    for (std::size_t w = 0; w < kNameWords; w++) {
        const std::uint64_t word = e.name[w].load(std::memory_order_relaxed);
        std::memcpy(out + w * 8, &word, 8);
    }
}

inline void load_entry(const EntryWords& e, RangeRecord& r) noexcept {
    const std::uint64_t ss = e.start_size.load(std::memory_order_relaxed);
    const std::uint64_t of = e.owner_flags.load(std::memory_order_relaxed);
    r.start = static_cast<std::uint32_t>(ss);
    r.size = static_cast<std::uint32_t>(ss >> 32);
    r.owner = static_cast<std::uint32_t>(of);
    r.flags = static_cast<std::uint32_t>(of >> 32);
    r.created_usec = e.created_usec.load(std::memory_order_relaxed);
    load_name(e, r.name);
    r.userns_id = e.userns_id.load(std::memory_order_relaxed);
    r.userns_ino = e.userns_ino.load(std::memory_order_relaxed);
}

// Runs `read(copy)` against the copy the latch points at until a run was not overlapped by a
// writer flip. `read` must only load from the mapping and write to private memory; its result
// counts only once the re-check passed. *ret_seq (if not null) receives the latch value the
// successful run read at.
template <typename Read>
int read_consistent(const TableView& v, Read&& read, std::uint64_t* ret_seq = nullptr) noexcept {
    const FileHeader& h = header(v);
    for (int attempt = 0; attempt < kMaxReadAttempts; attempt++) {
        // Acquire: pairs with the writer's release fence around its counter stores, so the copy
        // selected by this value is complete before we read it.
        const std::uint64_t seq = h.seq.load(std::memory_order_acquire);
        const int r = read(v.base + v.copy_offset[seq & 1]);
        // Keeps the payload loads above the re-check: an acquire *load* of seq would not
        // (Boehm, "Can seqlocks get along with programming language memory models?", 2012).
        std::atomic_thread_fence(std::memory_order_acquire);
        if (h.seq.load(std::memory_order_relaxed) == seq) {
            if (ret_seq != nullptr)
                *ret_seq = seq;
            return r;
        }
    }
    return -EAGAIN;
}

// Length of a NUL-padded name: the index of its first NUL, or kNameWords * 8 if it has none.
inline std::size_t padded_name_length(const char (&name)[kNameWords * 8]) noexcept {
    for (std::size_t w = 0; w < kNameWords; w++) {
        std::uint64_t v;
        std::memcpy(&v, name + w * 8, 8);
        // The high bit of every zero byte, exactly (no borrow crosses bytes: each byte's low
        // seven bits plus 0x7F stay below 0x100).
        constexpr std::uint64_t kLow7 = 0x7F7F7F7F7F7F7F7FULL;
        const std::uint64_t z = ~(((v & kLow7) + kLow7) | v | kLow7);
        if (z != 0) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return w * 8 + static_cast<std::size_t>(__builtin_ctzll(z)) / 8;
#else
            return w * 8 + static_cast<std::size_t>(__builtin_clzll(z)) / 8;
#endif
        }
    }
    return kNameWords * 8;
}

// is_valid_range_name(name, n), sixteen bytes at a time (GCC vector extensions: SSE2 on
// x86-64, NEON on arm64, plain code elsewhere). Every lookup validates the name it hands out, and
// the per-byte loop was the most expensive part of a lookup. REQUIRES: n = padded_name_length().
inline bool is_valid_padded_name(const char (&name)[kNameWords * 8], std::size_t n) noexcept {
    static_assert(kNameWords * 8 == 24 && kMaxRangeNameLength < 24);
    using Unsigned = unsigned char __attribute__((vector_size(16)));
    using Signed = signed char __attribute__((vector_size(16)));
    if (n == 0 || n > kMaxRangeNameLength)
        return false;
    // c in [lo, lo + len) <=> (c - lo) < len unsigned <=> (c - lo + 128) < len - 128 signed:
    // SSE2 has only signed byte compares.
    auto in_range = [](Unsigned c, unsigned char lo, signed char len) noexcept {
        return reinterpret_cast<Signed>(c + static_cast<unsigned char>(128 - lo)) <
               static_cast<signed char>(len - 128);
    };
    // Lanes [0, 16) and [8, 24): two overlapping loads cover the 24 bytes.
    static constexpr Signed kLanes[2] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                         {8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                          22, 23}};
    Signed bad = {};
    for (int half = 0; half < 2; half++) {
        Unsigned c;
        std::memcpy(&c, name + 8 * half, sizeof c);
        // c | 0x20 maps A-Z onto a-z and nothing else into a-z.
        const Signed valid = in_range(c, '0', 10) | in_range(c | 0x20, 'a', 26) |
                             (c == '_') | (c == '-');
        bad |= (kLanes[half] < static_cast<signed char>(n)) & ~valid;
    }
    std::uint64_t w[2];
    std::memcpy(w, &bad, sizeof w);
    // The first character is a letter or '_' (the rest were checked above).
    return (w[0] | w[1]) == 0 && !(name[0] >= '0' && name[0] <= '9') && name[0] != '-';
}

// *ret_name_length (if not null) receives the name's length, which callers formatting the name
// need too: measured once per lookup, not once per use.
inline int validate_record(const RangeRecord& r, std::size_t* ret_name_length = nullptr) noexcept {
    const std::size_t n = padded_name_length(r.name);
    if (!is_valid_padded_name(r.name, n))
        return -EBADMSG;
    if (!is_valid_entry_shape(r.start, r.size, r.flags))
        return -EBADMSG;
    // A name too long for its range's offsets would give user names no lookup finds.
    if (r.size > kContainerRangeSize && n > max_range_name_length(r.size))
        return -EBADMSG;
    if (ret_name_length != nullptr)
        *ret_name_length = n;
    return 0;
}

// Zero-padded fixed-width key, compared bytewise: the writer sorts by the same comparison.
struct NameKey {
    char bytes[kNameWords * 8] = {};
};

inline int compare_name(const EntryWords& e, const NameKey& key) noexcept {
    char name[kNameWords * 8];
    load_name(e, name);
    return std::memcmp(name, key.bytes, sizeof name);
}

// Version 1-4: binary search of the name index, sorted by name. Returns 0 (the entry loaded
// into *rec), -ESRCH or -EBADMSG.
inline int find_name_sorted(const TableView& v, const std::byte* copy, const NameKey& key,
                            RangeRecord& rec) noexcept {
    const std::uint64_t count = entry_count(copy, v.capacity);
    std::uint64_t lo = 0, hi = count;
    while (lo < hi) {
        const std::uint64_t mid = lo + (hi - lo) / 2;
        const std::uint32_t i = name_index(copy, v.capacity, mid);
        if (i >= count)
            return -EBADMSG;  // torn, or corrupt if the re-check passes
        const int c = compare_name(entry(copy, i), key);
        if (c == 0) {
            load_entry(entry(copy, i), rec);
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ESRCH;
}

// Version 5: linear probing from the name's home slot (layout.hpp). At most name_slots probes,
// whatever the slots hold (all taken, or naming one entry over and over); entry numbers at or
// above the count are skipped, and only an entry whose name matches is answered.
inline int find_name_hashed(const TableView& v, const std::byte* copy, const NameKey& key,
                            RangeRecord& rec) noexcept {
    const std::uint64_t count = entry_count(copy, v.capacity);
    const std::uint32_t slots = name_slots(v.capacity);
    std::uint64_t words[kNameWords];
    std::memcpy(words, key.bytes, sizeof words);
    const std::uint64_t seed = copy_header(copy).name_seed.load(std::memory_order_relaxed);
    std::uint32_t s = name_home_slot(words, seed, slots);
    for (std::uint32_t probe = 0; probe < slots; probe++, s = (s + 1) & (slots - 1)) {
        const std::uint32_t i = name_index(copy, v.capacity, s);
        if (i == kNameSlotEmpty)
            return -ESRCH;
        if (i >= count)
            continue;  // torn, or corrupt: never an entry to read
        const EntryWords& e = entry(copy, i);
        // Word by word: most probes fail on the first word.
        bool same = true;
        for (std::size_t w = 0; w < kNameWords && same; w++)
            same = e.name[w].load(std::memory_order_relaxed) == words[w];
        if (same) {
            load_entry(e, rec);
            return 0;
        }
    }
    return -ESRCH;
}

}  // namespace detail

// Validates the geometry of a mapping of `size` bytes at `p` and fills `*ret`. Returns 0,
// -EBADMSG (not a table, or corrupt), -EPROTONOSUPPORT (another version), or -ESTALE (retired).
// Tables of versions kVersion, kVersionSortedNames, kVersionMultiBlock, kVersionSingleBlock and
// kVersionWithoutBlockIndex are read.
inline int view_table(const void* p, std::size_t size, TableView* ret) noexcept {
    if (p == nullptr || size < sizeof(FileHeader))
        return -EBADMSG;
    const auto& h = *static_cast<const FileHeader*>(p);
    if (h.magic.load(std::memory_order_relaxed) != kMagic)
        return -EBADMSG;
    if (h.state.load(std::memory_order_relaxed) != static_cast<std::uint64_t>(TableState::kLive))
        return -ESTALE;
    const std::uint64_t vh = h.version_header_size.load(std::memory_order_relaxed);
    const auto version = static_cast<std::uint32_t>(vh);
    if (version != kVersion && version != kVersionSortedNames && version != kVersionMultiBlock &&
        version != kVersionSingleBlock && version != kVersionWithoutBlockIndex)
        return -EPROTONOSUPPORT;
    if ((vh >> 32) != sizeof(FileHeader))
        return -EBADMSG;
    const std::uint64_t ce = h.capacity_entry_size.load(std::memory_order_relaxed);
    const auto capacity = static_cast<std::uint32_t>(ce);
    if ((ce >> 32) != sizeof(EntryWords) || capacity == 0 || capacity > kMaxCapacity)
        return -EBADMSG;
    const std::uint64_t copy_size = copy_size_for(capacity, version);
    if (h.copy_size.load(std::memory_order_relaxed) != copy_size)
        return -EBADMSG;
    TableView v;
    v.base = static_cast<const std::byte*>(p);
    v.size = size;
    v.capacity = capacity;
    v.version = version;
    for (int i = 0; i < 2; i++) {
        const std::uint64_t off = h.copy_offset[i].load(std::memory_order_relaxed);
        // Both terms are bounded (off checked first, copy_size < 2^37), so no overflow.
        if (off < sizeof(FileHeader) || off % kCacheLine != 0 || off > size ||
            copy_size > size - off)
            return -EBADMSG;
        v.copy_offset[i] = off;
    }
    // The latch needs two distinct copies: a writer updating a copy that overlaps the other
    // would tear the one readers are on.
    if (std::max(v.copy_offset[0], v.copy_offset[1]) -
                std::min(v.copy_offset[0], v.copy_offset[1]) <
        copy_size)
        return -EBADMSG;
    *ret = v;
    return 0;
}

// The latch counter. A record read at latch value s (find_by_id()'s *ret_seq) is still what the
// table holds while the counter still reads s: the writer moves the counter off s before it
// touches the copy read at s, and never gives it the same value again.
inline std::uint64_t table_seq(const TableView& v) noexcept {
    // Acquire: orders this load before whatever the caller does with the answer it vouches for,
    // as read_consistent()'s first load does.
    return detail::header(v).seq.load(std::memory_order_acquire);
}

inline bool table_retired(const TableView& v) noexcept {
    return detail::header(v).state.load(std::memory_order_relaxed) !=
           static_cast<std::uint64_t>(TableState::kLive);
}

// The range containing `id`. Returns 0, -ESRCH, -EAGAIN or -EBADMSG. O(1) (the block index), or
// O(log n) in a version-1 table or among the single IDs of one 64K block. A range of several
// blocks is found from any of them: when no entry of id's block starts at or below id, the
// candidate is the last entry starting before that block. *ret_seq (if not null) receives the
// latch value the answer was read at (see table_seq()), *ret_name_length (if not null) the
// length of the range's name.
inline int find_by_id(const TableView& v, std::uint32_t id, RangeRecord* ret,
                      std::uint64_t* ret_seq = nullptr,
                      std::size_t* ret_name_length = nullptr) noexcept {
    RangeRecord rec;
    int r = detail::read_consistent(v, [&](const std::byte* copy) noexcept {
        const std::uint64_t count = detail::entry_count(copy, v.capacity);
        // The entries to search: those starting in id's 64K block, or all of them. Index words
        // are clamped to the count, so a corrupt index can only make a range unfindable, and
        // the containment check below rejects whatever else it points at.
        std::uint64_t lo = 0, hi = count;
        if (v.version >= 2) {
            const std::uint32_t b = id >> 16;
            lo = std::min<std::uint64_t>(detail::block_index(v, copy, b), count);
            hi = std::min<std::uint64_t>(detail::block_index(v, copy, b + 1), count);
            hi = std::max(lo, hi);  // a corrupt index must not turn the search around
        }
        // Binary search for the last entry with start <= id.
        while (lo < hi) {
            const std::uint64_t mid = lo + (hi - lo) / 2;
            if (detail::entry_start(detail::entry(copy, mid)) <= id)
                lo = mid + 1;
            else
                hi = mid;
        }
        // lo - 1 is the last entry starting at or below id: within the block, or (lo at the
        // block's first entry) the last one before it, which may be a multi-block range.
        if (lo == 0)
            return -ESRCH;
        detail::load_entry(detail::entry(copy, lo - 1), rec);
        return 0;
    }, ret_seq);
    if (r < 0)
        return r;
    // A removed entry is no range, and no live one contains id: the writer drops removed
    // entries that a new range overlaps, so the candidate is the only entry that could.
    if (detail::is_removed(rec))
        return -ESRCH;
    if ((r = detail::validate_record(rec, ret_name_length)) < 0)
        return r;
    // Both bounds: with a corrupt block index or unsorted entries, the candidate before the
    // block may start above id.
    if (id < rec.start || std::uint64_t{id} >= std::uint64_t{rec.start} + rec.size)
        return -ESRCH;
    *ret = rec;
    return 0;
}

// The range named by the `n` bytes at `name`. Every byte counts: a name with a NUL in it names
// no range (it is not cut short there). Returns 0, -ESRCH, -EAGAIN or -EBADMSG. O(1) expected
// (version 5), O(log n) in older tables.
inline int find_by_name(const TableView& v, const char* name, std::size_t n,
                        RangeRecord* ret) noexcept {
    if (!is_valid_range_name(name, n))
        return -ESRCH;
    detail::NameKey key;
    std::memcpy(key.bytes, name, n);
    RangeRecord rec;
    int r = detail::read_consistent(v, [&](const std::byte* copy) noexcept {
        return v.version >= 5 ? detail::find_name_hashed(v, copy, key, rec)
                              : detail::find_name_sorted(v, copy, key, rec);
    });
    if (r < 0)
        return r;
    if (detail::is_removed(rec))
        return -ESRCH;
    if ((r = detail::validate_record(rec)) < 0)
        return r;
    if (std::memcmp(rec.name, key.bytes, sizeof key.bytes) != 0)
        return -EBADMSG;
    *ret = rec;
    return 0;
}

// The same for a NUL-terminated name.
inline int find_by_name(const TableView& v, const char* name, RangeRecord* ret) noexcept {
    return find_by_name(v, name, strnlen(name, kMaxRangeNameLength + 1), ret);
}

// The range with the lowest start >= `min_start`: enumeration in UID order, one call per range,
// that stays correct while ranges come and go between calls. Returns 0, -ESRCH (no more),
// -EAGAIN or -EBADMSG. O(log n).
inline int find_next(const TableView& v, std::uint64_t min_start, RangeRecord* ret) noexcept {
    if (min_start > 0xFFFFFFFFULL)
        return -ESRCH;
    RangeRecord rec;
    int r = detail::read_consistent(v, [&](const std::byte* copy) noexcept {
        const std::uint64_t count = detail::entry_count(copy, v.capacity);
        std::uint64_t lo = 0, hi = count;
        while (lo < hi) {
            const std::uint64_t mid = lo + (hi - lo) / 2;
            if (detail::entry_start(detail::entry(copy, mid)) < min_start)
                lo = mid + 1;
            else
                hi = mid;
        }
        // Past removed entries: bounded by the count, and the writer keeps them fewer than
        // the live ones (or a few thousand), so a whole enumeration stays linear.
        while (lo < count && detail::entry_removed(detail::entry(copy, lo)))
            lo++;
        if (lo == count)
            return -ESRCH;
        detail::load_entry(detail::entry(copy, lo), rec);
        return 0;
    });
    if (r < 0)
        return r;
    if ((r = detail::validate_record(rec)) < 0)
        return r;
    if (rec.start < min_start || detail::is_removed(rec))
        return -EBADMSG;
    *ret = rec;
    return 0;
}

// Copies every range, in start order, into out[0 … cap) and sets *ret_count to the number of
// live ranges (which may exceed cap). Removed entries are skipped; entries that fail validation
// are left out and counted in *ret_invalid when it is non-null. Returns 0, -EAGAIN.
inline int read_all(const TableView& v, RangeRecord* out, std::size_t cap, std::size_t* ret_count,
                    std::size_t* ret_invalid = nullptr) noexcept {
    std::size_t count = 0;
    int r = detail::read_consistent(v, [&](const std::byte* copy) noexcept {
        const std::uint64_t n = detail::entry_count(copy, v.capacity);
        count = 0;
        for (std::size_t i = 0; i < n; i++) {
            if (detail::entry_removed(detail::entry(copy, i)))
                continue;
            if (count < cap)
                detail::load_entry(detail::entry(copy, i), out[count]);
            count++;
        }
        return 0;
    });
    if (r < 0)
        return r;
    std::size_t kept = 0, invalid = 0;
    for (std::size_t i = 0; i < count && i < cap; i++) {
        if (detail::validate_record(out[i]) < 0) {
            invalid++;
            continue;
        }
        out[kept++] = out[i];
    }
    *ret_count = count - invalid;
    if (ret_invalid != nullptr)
        *ret_invalid = invalid;
    return 0;
}

}  // namespace transient::shm
