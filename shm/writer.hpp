// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The one writer of the range table (used by transient-allocd only). It owns the file, holds an
// exclusive flock() on it so that a second allocator cannot write concurrently, recovers the
// ranges a previous (possibly SIGKILLed) writer left behind, and publishes a new set of ranges
// with the seqcount latch described in layout.hpp.

#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include <boost/interprocess/mapped_region.hpp>

#include "shm/layout.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace transient::shm {

struct RangeEntry {
    std::string name;
    std::uint32_t start = 0;
    std::uint32_t size = 0;
    std::uint32_t owner = 0;
    std::uint32_t flags = 0;
    std::uint64_t created_usec = 0;
    std::uint64_t userns_id = 0;
    std::uint64_t userns_ino = 0;

    std::uint64_t end() const { return std::uint64_t{start} + size; }  // one past the last ID
    friend bool operator==(const RangeEntry&, const RangeEntry&) = default;
};

struct Recovery {
    std::vector<RangeEntry> ranges;  // sorted by start, valid, non-overlapping, unique names
    std::size_t dropped = 0;         // entries that were invalid, overlapping or duplicated
    bool created = false;            // no usable table existed: a new, empty one was created
    bool replaced = false;           // an incompatible or corrupt file was retired and replaced
    bool migrated = false;           // a table of an older layout was rewritten, ranges kept
};

class TableWriter {
public:
    // Opens the table at `path`, creating it (mode 0644) if it does not exist. A table of an
    // older layout that readers still read (versions 1 to 4) is rewritten in this one with its
    // ranges (`recovery().migrated`). Any other file that is not a usable table is retired (if
    // it is a table) and replaced by an empty table; `recovery().replaced` says so. Fails with EBUSY if
    // another writer holds it.
    static Result<TableWriter> open(const std::string& path,
                                    std::uint32_t capacity = kDefaultCapacity);

    const Recovery& recovery() const { return recovery_; }
    std::uint32_t capacity() const { return capacity_; }
    const std::string& path() const { return path_; }

    // Publishes `ranges` as the complete table. REQUIRES: sorted by start, non-overlapping,
    // valid and unique names, valid shapes (checked; EINVAL otherwise), at most capacity()
    // entries (ENOSPC). The IDs of systemd's dynamic pool that no range covers are held by
    // removed entries without a name, as many as the capacity leaves room for (lowest first),
    // so that a single ID takes its place in start order without moving the entries after it.
    Result<void> publish(std::span<const RangeEntry> ranges);

    // Validates what publish() requires. Exposed for tests and for the allocator's own checks.
    static Result<void> check(std::span<const RangeEntry> ranges, std::uint32_t capacity);

    // Adds one range to the published table, or removes the one starting at `start`: the same
    // latch as publish(), but each copy gets only the change, not a rewrite, and nothing is
    // sorted. erase() marks the entry removed (kEntryFlagRemoved: one word of each copy, O(log n)
    // in all); insert() moves the entries after the new one by one (none for an append or a
    // reuse of a removed entry in place; a few name index words either way), after dropping
    // the removed entries its blocks or name collide with. When removed entries outnumber the
    // live ones (and at least kCompactAt), or take the room an insert needs, the table is
    // compacted (publish() of the live ranges; an insert that still finds no room drops one
    // entry holding a dynamic-pool ID). A single ID of the dynamic pool revives the removed
    // entry holding its place (publish()), and its release marks it removed again: neither
    // moves an entry nor counts towards compaction. insert() requires what publish() does of the
    // table that results (EINVAL, ENOSPC otherwise); erase() fails with ENOENT if no live range
    // starts there. Both leave the table unchanged when they fail.
    Result<void> insert(const RangeEntry& entry);
    Result<void> erase(std::uint32_t start);

    // The start of the published range called `name`, in O(1) expected.
    std::optional<std::uint32_t> find_name(std::string_view name) const;
    // Live ranges; removed entries waiting for compaction are not counted.
    std::size_t size() const { return slots_.size() - removed_; }
    // Removed entries waiting for compaction (for tests); those holding dynamic-pool IDs, which
    // compaction keeps, are not counted.
    std::size_t removed() const { return removed_ - held_; }
    // The seed of the name index (layout.hpp's name_home_slot()) in both copies (for tests).
    std::uint64_t name_seed() const { return name_seed_; }
    // Re-seeds and rebuilds the name index, one copy at a time under the latch: what an insert
    // of names crafted to collide does (for tests).
    void reseed() { rehash(); }

    static constexpr std::size_t kCompactAt = 4096;
    // An insert whose name lands more slots than this from its home slot re-seeds the name
    // index (or more, if the best of a few seeds already has longer runs: see rehash()).
    static constexpr std::uint32_t kMaxProbe = 32;

private:
    TableWriter() = default;

    // What the writer keeps of the published table, in start order, to change it by a delta:
    // starts and sizes (for the overlap checks) and padded names (for the name index).
    struct Slot {
        std::uint32_t start = 0;
        std::uint32_t size = 0;
        std::array<char, kNameWords * 8> name{};
        bool removed = false;  // kEntryFlagRemoved
        // Its slot in the name index: an entry that moves in start order changes number, and
        // the slot holding it is found here, not by a pass over every slot. kNameSlotEmpty for
        // a removed entry whose name was taken by another (unname(): its name is all zeros).
        std::uint32_t name_slot = 0;
    };
    enum class Change { kInsert, kDrop, kMarkRemoved, kReplace, kUnname, kRehash };
    // A change of one entry at `pos` (start order). The name index words it changed are in
    // changed_slots_; `renumber`: the entries from `pos` on moved, and so did their numbers in
    // their name index slots.
    struct Delta {
        Change change = Change::kInsert;
        std::size_t pos = 0;
        const RangeEntry* entry = nullptr;  // insert and replace only
        std::uint32_t start = 0;
        bool renumber = false;
    };
    void remember(std::span<const RangeEntry> ranges);
    void drop(std::size_t pos);     // a removed entry, out of the table for good
    void replace(std::size_t pos, const RangeEntry& entry);  // a removed entry, by a new one
    // A removed entry's name leaves the name index and the entry (its name words zeroed), for a
    // new range of that name elsewhere; the entry keeps its place, so no entry moves.
    void unname(std::size_t pos);
    Result<void> compact();
    // Whether the entry at `pos` is removed and holds an ID of the dynamic pool: publish() puts
    // it back, so compaction neither counts nor drops it.
    bool holds_pool_id(std::size_t pos) const;
    // The last entry holding a dynamic-pool ID (REQUIRES: held_ > 0).
    std::size_t last_held() const;
    void apply(const Delta& d);
    void apply_to_copy(int copy, const Delta& d);
    // The name index mirror (names_): the slot holding the entry named `name`, if any.
    std::optional<std::uint32_t> find_slot(const std::array<char, kNameWords * 8>& name) const;
    // Adds entry `e` (slots_[e]) to names_; returns how far from its home slot it landed.
    std::uint32_t index_insert(std::uint32_t e);
    // Empties slot `s` of names_ and shifts back the entries after it (Knuth's algorithm R).
    void index_erase(std::uint32_t s);
    // Rebuilds names_ from slots_ under a new seed (crafted collisions) and publishes it.
    void rehash();
    // Points every entry's name_slot at its slot in names_.
    void locate_names();
    // Entries slots_[from …] moved by one: their numbers in names_ follow.
    void renumber_names(std::size_t from);

    std::string path_;
    UniqueFd lock_;  // flock()ed for the writer's lifetime
    UniqueFd fd_;
    boost::interprocess::mapped_region mapping_;  // MAP_SHARED, read-write
    std::uint32_t capacity_ = 0;
    // Whether this writer completed copy 1 itself; until then it may be torn (see publish()).
    bool copy1_written_ = false;
    Recovery recovery_;
    std::vector<Slot> slots_;               // the published entries, in start order
    std::size_t removed_ = 0;               // slots_ marked removed
    std::size_t held_ = 0;                  // of which hold a dynamic-pool ID (holds_pool_id())
    std::vector<std::uint32_t> names_;      // the published name index (both copies' slots)
    std::uint64_t name_seed_ = 0;           // and its seed
    std::uint32_t probe_limit_ = kMaxProbe;  // an insert landing farther re-seeds
    std::vector<std::uint32_t> changed_slots_;  // the slots of names_ the current change set
    // The block of the last entry: block index words above it hold kPastTheTop (writer.cpp).
    std::uint32_t top_block_ = 0;
};

}  // namespace transient::shm
