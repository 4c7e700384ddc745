// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The one writer of the range table (used by transient-allocd only). It owns the file, holds an
// exclusive flock() on it so that a second allocator cannot write concurrently, recovers the
// ranges a previous (possibly SIGKILLed) writer left behind, and publishes a new set of ranges
// with the seqcount latch described in layout.hpp.

#pragma once

#include <cstdint>
#include <span>
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

private:
    TableWriter() = default;

    std::string path_;
    UniqueFd lock_;  // flock()ed for the writer's lifetime
    UniqueFd fd_;
    boost::interprocess::mapped_region mapping_;  // MAP_SHARED, read-write
    std::uint32_t capacity_ = 0;
    // Whether this writer completed copy 1 itself; until then it may be torn (see publish()).
    bool copy1_written_ = false;
    Recovery recovery_;
};

}  // namespace transient::shm
