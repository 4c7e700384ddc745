// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The on-disk (on-tmpfs) layout of the range table, shared by its one writer (transient-allocd)
// and its lock-free readers (libnss_transient.so.2, transient-userdbd, transientctl).
//
// The file holds a fixed header and two copies of the table. The writer updates them with a
// seqcount *latch* (the Linux kernel's raw_write_seqcount_latch): it makes the counter odd, which
// steers readers to copy 1, rewrites copy 0, makes the counter even, which steers readers back
// to copy 0, then rewrites copy 1. A reader therefore always has one complete copy to read, and
// a writer killed at any instant leaves `copies[seq & 1]` consistent: readers never wait for a
// dead writer, and the restarted allocator recovers from the same copy readers use.
//
// Everything a reader loads from the mapping is a std::atomic of at most 8 bytes, loaded
// relaxed: a plain racing read would be undefined behaviour even if the result is thrown away,
// and a read-modify-write would fault, because readers map the file PROT_READ. Positions are
// offsets from the start of the file, never pointers, and readers bounds-check every one of them.
//
// The file is created at its final size and never shrinks, so a reader can never fault past the
// end of the file (SIGBUS). A new file replaces an old one only when the layout changes; the
// writer then marks the old one retired (the `state` word, at the same offset in every version)
// so readers map the new one.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace transient::shm {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the table is shared between processes and mapped read-only by readers");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint64_t>) == 8 && sizeof(std::atomic<std::uint32_t>) == 4);

// "TRNSRNG1" read as a little-endian word.
inline constexpr std::uint64_t kMagic = 0x31474e52534e5254ULL;
// Version 2 added the block index to each copy. Version 3 has the same layout but may hold
// ranges of several 64K blocks, which a version-2 reader would look for only in their first
// block (and reject there): the new number makes such readers refuse the table
// (EPROTONOSUPPORT) rather than answer "no such user" for a taken UID. Readers still read
// versions 1 and 2, and the writer migrates either to a new file.
// Version 4 has the same layout again, but a released range may stay in place as a removed
// entry (kEntryFlagRemoved) until the writer compacts the table: a version-3 reader would still
// resolve it, so it refuses the table instead. Readers read versions 1 to 3 as well (no writer
// of those set the flag), and the writer migrates them.
// Version 5 replaces the name index, `capacity` entry numbers sorted by name, by a hash table
// (name_slots() words, see CopyHeader): a change then rewrites O(1) index words, where a new or
// reused name moved every word after its place in name order, in both copies (71% of an
// allocation with 27,000 ranges, issue 11). A version-4 reader would binary-search the hash
// table and answer "no such user" for a taken name, so the new number makes it refuse the table.
// Readers still read versions 1 to 4 (sorted index, binary search); the writer migrates them.
inline constexpr std::uint32_t kVersion = 5;
inline constexpr std::uint32_t kVersionSortedNames = 4;
inline constexpr std::uint32_t kVersionMultiBlock = 3;
inline constexpr std::uint32_t kVersionSingleBlock = 2;
inline constexpr std::uint32_t kVersionWithoutBlockIndex = 1;

// The file name inside the runtime directory.
inline constexpr char kTableFileName[] = "ranges.table";

// systemd's pools (docs/UIDS-GIDS.md): 64K-aligned container ranges and single dynamic UIDs.
inline constexpr std::uint32_t kContainerPoolFirst = 0x00080000;  // 524288
inline constexpr std::uint32_t kContainerPoolLast = 0x6FFFFFFF;   // 1879048191
inline constexpr std::uint32_t kDynamicPoolFirst = 61184;
inline constexpr std::uint32_t kDynamicPoolLast = 65519;
inline constexpr std::uint32_t kContainerRangeSize = 0x10000;
inline constexpr std::uint32_t kContainerSlots =
        (kContainerPoolLast - kContainerPoolFirst + 1) / kContainerRangeSize;  // 28664
inline constexpr std::uint32_t kDynamicSlots = kDynamicPoolLast - kDynamicPoolFirst + 1;  // 4336
inline constexpr std::uint32_t kDefaultCapacity = kContainerSlots + kDynamicSlots;  // 33000
// Readers refuse tables claiming more; it bounds the mapping a corrupt header can ask for.
inline constexpr std::uint32_t kMaxCapacity = 1U << 20;

// systemd's foreign UID range (v258): served as foreign-N, never enumerated.
inline constexpr std::uint32_t kForeignBase = 0x7FFE0000;  // 2147352576
inline constexpr std::uint32_t kForeignCount = 0xFFFF;     // N = 0 … 65534

// Range names: [A-Za-z_][A-Za-z0-9_-]*, so that "vu-<name>-65535" stays within systemd's
// 31-byte user-name limit. A range of more than 65536 IDs has longer offsets, so its name must be
// shorter still (max_range_name_length() in reader.hpp).
inline constexpr std::size_t kMaxRangeNameLength = 22;
inline constexpr std::size_t kMaxUserNameBytes = 31;
// The largest range the format allows: 128 blocks (MaxRangeSize= may only lower it). It keeps
// offsets at 7 digits and a range well inside the container pool.
inline constexpr std::uint32_t kMaxRangeSize = 128 * 0x10000;
inline constexpr std::size_t kNameWords = 3;  // 24 bytes: 22 characters, NUL, padding

enum class TableState : std::uint64_t { kLive = 0, kRetired = 1 };

// One live range. Eight 8-byte words, one cache line.
struct EntryWords {
    // Low 32 bits: first UID/GID. High 32 bits: number of IDs (1, or a multiple of 65536 up to
    // kMaxRangeSize; imported entries: whatever /etc/subuid said).
    std::atomic<std::uint64_t> start_size;
    // Low 32 bits: the owner's UID. High 32 bits: flags (kEntryFlag*).
    std::atomic<std::uint64_t> owner_flags;
    // Creation time, microseconds since the epoch (CLOCK_REALTIME).
    std::atomic<std::uint64_t> created_usec;
    // NUL-padded name, kNameWords * 8 bytes, always NUL-terminated by the writer.
    std::atomic<std::uint64_t> name[kNameWords];
    // Identity of the user namespace the range is bound to (0 = none): the kernel's namespace
    // id where it has one (NS_GET_ID), and the nsfs inode number as a fallback and a check.
    std::atomic<std::uint64_t> userns_id;
    std::atomic<std::uint64_t> userns_ino;
};
static_assert(sizeof(EntryWords) == 64);

// Every flag bit of the format is defined here, whoever sets or reads it.
// Bound to a user namespace (userns_id / userns_ino are set).
inline constexpr std::uint32_t kEntryFlagUserns = 1U << 0;
// Set by the allocator for its own use: userns_id holds the fallback fingerprint (nsfs device
// << 32 | owner UID), not a kernel namespace id.
inline constexpr std::uint32_t kEntryFlagUsernsNoId = 1U << 1;
// Imported from /etc/subuid or /etc/subgid: read-only, and its start and size are whatever the
// file said (not necessarily 64K-aligned).
inline constexpr std::uint32_t kEntryFlagImported = 1U << 2;
// Not a subordinate UID range (only in /etc/subgid) or not a subordinate GID range (only in
// /etc/subuid): the subid provider leaves the entry out of answers for that ID type.
inline constexpr std::uint32_t kEntryFlagNoUid = 1U << 3;
inline constexpr std::uint32_t kEntryFlagNoGid = 1U << 4;
// Released (version 4): the entry holds its place in start order, so that a release changes one
// word of each copy instead of moving every entry after it, and a reader treats it as absent
// (no lookup answers it, enumeration skips it). The writer drops removed entries when their
// blocks are taken again (version 4: or their name; version 5 takes only the name, see
// CopyHeader) and compacts the table when they outnumber the live ones.
// The writer also holds each ID of the dynamic pool that no range covers with a removed entry
// of size 1 without a name (no name index slot), when the capacity holds them all beside the
// live ranges (the default capacity does): a single ID then takes its place without moving
// every container entry after it. Nothing for readers to know: they are removed entries.
inline constexpr std::uint32_t kEntryFlagRemoved = 1U << 5;
// Readers ignore flags they do not know, so that a newer writer can add some.

// A copy of the table: a count, `capacity` entries sorted by start (live and removed ones), then
// the name index, then (version 2) the block index: kBlockIndexSize
// 32-bit entry indexes, where block_index[b] is the index of the first entry whose start is at
// or above b << 16. The entries that start in 64K block b are [block_index[b],
// block_index[b + 1]), and a range containing ID x starts in block x >> 16 (a 64K range is
// 64K-aligned, a single ID is its own start) or, being several blocks long (version 3), is the
// last entry starting before that block, block_index[x >> 16] - 1. So a lookup by ID reads two
// index words and, but for the single IDs of block 0, one or two entries: O(1). Readers clamp
// index words to the count: above the block of the last entry the writer leaves UINT32_MAX
// (meaning the count), so that a change moves only the words up to that block.
//
// The name index, versions 1 to 4: `capacity` 32-bit entry numbers, the first `count` of them
// sorted by the entries' names (bytewise); readers binary-search it.
// Version 5: an open-addressing hash table of name_slots(capacity) 32-bit words (a power of two,
// at least twice the capacity, so at most half full), each kNameSlotEmpty or an entry number.
// The entry named N sits in the first slot from name_home_slot(N, name_seed) on (wrapping
// around) that is not taken by another name: linear probing, no tombstones (the writer deletes
// by shifting back, Knuth's algorithm R). Removed entries (kEntryFlagRemoved) keep their slot
// until the writer drops or replaces them, or a new range takes their name elsewhere: then the
// removed entry's name words are zeroed and it is in no slot, so that the entries after it need
// not move. A lookup that reaches a removed entry answers "not found"; names are unique among all
// entries whose name is not all zeros. Readers stop at an empty slot or after name_slots probes,
// ignore entry numbers at or above the count, and compare the name in the entry. The seed is
// per copy, so that the writer can re-seed (and rebuild) one copy at a time under the latch
// when crafted names collide.
struct CopyHeader {
    std::atomic<std::uint64_t> count;
    // Version 5: the seed of the name hash (name_home_slot()); unused (0) before.
    std::atomic<std::uint64_t> name_seed;
    std::atomic<std::uint64_t> reserved[6];
};
static_assert(sizeof(CopyHeader) == 64);

struct FileHeader {
    std::atomic<std::uint64_t> magic;
    // Fixed at offset 8 in every version: a reader of any version can see it was retired.
    std::atomic<std::uint64_t> state;
    // Low 32 bits: version. High 32 bits: sizeof(FileHeader).
    std::atomic<std::uint64_t> version_header_size;
    // Low 32 bits: capacity. High 32 bits: sizeof(EntryWords).
    std::atomic<std::uint64_t> capacity_entry_size;
    std::atomic<std::uint64_t> copy_offset[2];
    std::atomic<std::uint64_t> copy_size;
    std::atomic<std::uint64_t> file_size;
    // The latch counter: readers read copies[seq & 1].
    std::atomic<std::uint64_t> seq;
    std::atomic<std::uint64_t> reserved[7];
};
static_assert(sizeof(FileHeader) == 128);
static_assert(offsetof(FileHeader, state) == 8);

inline constexpr std::size_t kCacheLine = 64;

constexpr std::uint64_t round_up(std::uint64_t n, std::uint64_t to) noexcept {
    return (n + to - 1) / to * to;
}

constexpr std::uint64_t entries_offset() noexcept { return sizeof(CopyHeader); }

constexpr std::uint64_t name_index_offset(std::uint32_t capacity) noexcept {
    return entries_offset() + std::uint64_t{capacity} * sizeof(EntryWords);
}

// Version 5: the number of name index slots, the smallest power of two at least twice the
// capacity (66,000 -> 131,072 for the default capacity; at most 2^21).
constexpr std::uint32_t name_slots(std::uint32_t capacity) noexcept {
    std::uint32_t slots = 1;
    while (slots < std::uint64_t{capacity} * 2)
        slots <<= 1;
    return slots;
}

// Words of the name index of a copy.
constexpr std::uint32_t name_index_words(std::uint32_t capacity,
                                         std::uint32_t version = kVersion) noexcept {
    return version >= 5 ? name_slots(capacity) : capacity;
}

// A free name index slot (version 5).
inline constexpr std::uint32_t kNameSlotEmpty = UINT32_MAX;

// The name hash of version 5, over the name as the writer stores it in an entry: kNameWords
// 64-bit words of NUL-padded bytes, in the machine's byte order (as every word of the file).
// A multiply-xorshift per word and a final mix, so that the low bits that pick the slot depend
// on every byte. Not a secret: the seed is readable, and the writer defends against names
// crafted to collide by re-seeding (writer.cpp).
constexpr std::uint64_t name_hash(const std::uint64_t (&words)[kNameWords],
                                  std::uint64_t seed) noexcept {
    std::uint64_t h = seed ^ 0x9E3779B97F4A7C15ULL;
    for (std::uint64_t w : words) {
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 29;
    }
    h *= 0x94D049BB133111EBULL;
    return h ^ (h >> 32);
}

// The slot a name's probe sequence starts at. REQUIRES: slots a power of two.
constexpr std::uint32_t name_home_slot(const std::uint64_t (&words)[kNameWords],
                                       std::uint64_t seed, std::uint32_t slots) noexcept {
    return static_cast<std::uint32_t>(name_hash(words, seed) & (slots - 1));
}

// 65536 blocks of 64K IDs, plus the end of the last one.
inline constexpr std::uint32_t kBlockIndexSize = 0x10000 + 1;

constexpr std::uint64_t block_index_offset(std::uint32_t capacity,
                                           std::uint32_t version = kVersion) noexcept {
    return name_index_offset(capacity) + std::uint64_t{name_index_words(capacity, version)} * 4;
}

constexpr std::uint64_t copy_size_for(std::uint32_t capacity,
                                      std::uint32_t version = kVersion) noexcept {
    const std::uint64_t index = version >= 2 ? std::uint64_t{kBlockIndexSize} * 4 : 0;
    return round_up(block_index_offset(capacity, version) + index, kCacheLine);
}

constexpr std::uint64_t file_size_for(std::uint32_t capacity,
                                      std::uint32_t version = kVersion) noexcept {
    return sizeof(FileHeader) + 2 * copy_size_for(capacity, version);
}

}  // namespace transient::shm
