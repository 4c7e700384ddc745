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
    // older layout that readers still read (versions 1 and 2) is rewritten in this one with its
    // ranges
    // (`recovery().migrated`). Any other file that is not a usable table is retired (if it is a
    // table) and replaced by an empty table; `recovery().replaced` says so. Fails with EBUSY if
    // another writer holds it.
    static Result<TableWriter> open(const std::string& path,
                                    std::uint32_t capacity = kDefaultCapacity);

    const Recovery& recovery() const { return recovery_; }
    std::uint32_t capacity() const { return capacity_; }
    const std::string& path() const { return path_; }

    // Publishes `ranges` as the complete table. REQUIRES: sorted by start, non-overlapping,
    // valid and unique names, valid shapes (checked; EINVAL otherwise), at most capacity()
    // entries (ENOSPC).
    Result<void> publish(std::span<const RangeEntry> ranges);

    // Validates what publish() requires. Exposed for tests and for the allocator's own checks.
    static Result<void> check(std::span<const RangeEntry> ranges, std::uint32_t capacity);

    // Adds one range to the published table, or removes the one starting at `start`: the same
    // latch as publish(), but each copy gets only the change, not a rewrite, and nothing is
    // sorted. erase() marks the entry removed (kEntryFlagRemoved: one word of each copy, O(log n)
    // in all); insert() moves the entries and indexes after the new one by one, after dropping
    // the removed entries its blocks or name collide with. When removed entries outnumber the
    // live ones (and at least kCompactAt), or take the room an insert needs, the table is
    // compacted (publish() of the live ranges). insert() requires what publish() does of the
    // table that results (EINVAL, ENOSPC otherwise); erase() fails with ENOENT if no live range
    // starts there. Both leave the table unchanged when they fail.
    Result<void> insert(const RangeEntry& entry);
    Result<void> erase(std::uint32_t start);

    // The start of the published range called `name`, in O(log n).
    std::optional<std::uint32_t> find_name(std::string_view name) const;
    // Live ranges; removed entries waiting for compaction are not counted.
    std::size_t size() const { return slots_.size() - removed_; }
    // Removed entries still in the table (for tests).
    std::size_t removed() const { return removed_; }

    static constexpr std::size_t kCompactAt = 4096;

private:
    TableWriter() = default;

    // What the writer keeps of the published table, in start order, to change it by a delta:
    // starts and sizes (for the overlap checks) and padded names (for the name index).
    struct Slot {
        std::uint32_t start = 0;
        std::uint32_t size = 0;
        std::array<char, kNameWords * 8> name{};
        bool removed = false;  // kEntryFlagRemoved
    };
    enum class Change { kInsert, kDrop, kMarkRemoved, kReplace };
    // A change of one entry at `pos` (start order) and `name_pos` (name order).
    struct Delta {
        Change change = Change::kInsert;
        std::size_t pos = 0;
        std::size_t name_pos = 0;
        const RangeEntry* entry = nullptr;  // insert and replace only
        std::uint32_t start = 0;
        std::size_t name_end = 0;  // replace: the name index words [name_pos, name_end) moved
    };
    void remember(std::span<const RangeEntry> ranges);
    void drop(std::size_t pos);     // a removed entry, out of the table for good
    void replace(std::size_t pos, const RangeEntry& entry);  // a removed entry, by a new one
    Result<void> compact();
    void apply(const Delta& d);
    void apply_to_copy(int copy, const Delta& d);
    std::size_t name_position(const std::array<char, kNameWords * 8>& name) const;

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
    std::vector<std::uint32_t> by_name_;    // the published name index
    // The block of the last entry: block index words above it hold kPastTheTop (writer.cpp).
    std::uint32_t top_block_ = 0;
};

}  // namespace transient::shm
