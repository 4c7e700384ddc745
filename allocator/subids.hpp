// SPDX-License-Identifier: LGPL-2.1-or-later
//
// /etc/subuid and /etc/subgid as read-only ranges of the table (DESIGN.md "Subordinate IDs").
// Parsing and naming are pure functions here; the allocator merges the result with its live
// ranges (Allocator::set_imported()), and main.cpp re-reads the files when they change.
//
// Names: owner alice's first entry is range sub-alice, her later ones sub-alice-2, sub-alice-3,
// … (numbered in file order, /etc/subuid first, then entries only in /etc/subgid); numeric owners
// give sub-1000. A name that would not be a valid range name, or whose users would break
// systemd's 31-byte limit (vu-<name>-<n> with n up to size - 1, so larger ranges leave less
// room), gets the short form sub-<owner'>_<hash>: owner' is the owner with every character
// outside [A-Za-z0-9_-] replaced by '_', cut to what fits, and <hash> the 6 lowercase hex digits
// of the low 24 bits of the 32-bit FNV-1a hash of the long name (sub-<owner>[-k]). The '_'
// before the hash keeps a short form from ever equalling a long one of another entry.

#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/writer.hpp"

namespace transient::allocator {

inline constexpr char kImportedPrefix[] = "sub-";

// One owner:start:count line.
struct SubidLine {
    std::string owner;
    std::uint32_t start = 0;
    std::uint32_t count = 0;
    unsigned line = 0;  // 1-based, for log lines
};

// The lines of a subuid-format file, in file order. Comments ('#'), empty and malformed lines
// (no owner, not numbers, count 0, past 2^32) are left out: they claim nothing.
std::vector<SubidLine> parse_subid_file(std::string_view text);

// Whether [start, start + size) overlaps a line of `lines`; the first such line.
std::optional<SubidLine> subid_overlap(const std::vector<SubidLine>& lines, std::uint32_t start,
                                       std::uint32_t size);

// The range name of the `nth` (1-based) entry of `owner`, for an entry of `size` IDs.
std::string imported_range_name(std::string_view owner, unsigned nth, std::uint32_t size);

// Whether `name` is reserved for imported ranges (cannot be allocated).
bool is_imported_name(std::string_view name);

// The UID of an owner as the files name it (a user name, or a UID in decimal); nothing if unknown.
using OwnerResolver = std::function<std::optional<std::uint32_t>(const std::string&)>;

// The owner resolver of the system: getpwnam_r(), or the number itself.
std::optional<std::uint32_t> resolve_owner_uid(const std::string& owner);

// The table entries of the two files' lines: a line in both files is one range; a line in only
// one is UID-only (kEntryFlagNoGid) or GID-only (kEntryFlagNoUid). Entries overlapping an earlier
// one, or of a shape the table cannot hold, are left out with a line in *skipped. Unknown owners
// get owner (uid_t) -1. Sorted by start.
std::vector<shm::RangeEntry> imported_entries(const std::vector<SubidLine>& subuid,
                                              const std::vector<SubidLine>& subgid,
                                              const OwnerResolver& resolve,
                                              std::vector<std::string>* skipped);

}  // namespace transient::allocator

struct sd_event;

namespace transient::allocator {

class Allocator;

// Imports the files into `a` now and then whenever they change (a stat() of both every
// `interval` on the event loop: cheap, and it sees edits, replacements and removals alike).
// With `enabled` false it only drops imported ranges a previous run left in the table. The
// timer lives as long as the event loop. Returns false (after logging) if it cannot be set up.
bool start_subid_import(sd_event* event, Allocator& a, bool enabled,
                        std::chrono::milliseconds interval = std::chrono::milliseconds(1000),
                        std::string subuid = "/etc/subuid", std::string subgid = "/etc/subgid");

}  // namespace transient::allocator
