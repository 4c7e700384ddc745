// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module's answer cache: the packed strings of recent getpwuid_r()/getgrgid_r() answers,
// process-wide, so that asking for the same ID again (`ls -l` asks for the owner of every file)
// costs a copy instead of a search, a validation and formatting.
//
// An answer is served only while the table it came from says nothing changed: it is stored with
// the table's view and the latch value it was read at (shm::find_by_id()'s ret_seq), and a hit
// requires the view to be the current, unretired one and the latch to still read that value.
// The writer moves the latch before it touches the copy an answer was read from and never reuses
// a value, so a hit returns exactly what a fresh lookup would; any publish() invalidates every
// cached answer at once.
//
// The cache is process memory: a direct-mapped array of entries, each a seqlock of its own
// (STYLE.md §2; a writer claims an entry with a compare-and-swap, which the PROT_READ table
// could not allow but private memory does). Readers never wait: an entry being written is a
// miss. Nothing is allocated; the array is constant-initialized.

#pragma once

#include <grp.h>
#include <pwd.h>

#include <cstddef>
#include <cstdint>

#include "shm/reader.hpp"

namespace transient::nss {

enum class AnswerKind : std::uint32_t { kPasswd = 1, kGroup = 2 };

// The packed strings of an answer, as pack_passwd()/pack_group() wrote them.
struct PackedAnswer {
    const char* text;         // passwd: name\0x\0gecos\0/\0shell\0; group: name\0x\0
    std::size_t size;         // bytes of `text`, all NULs included
    std::size_t name_length;  // strlen of the name, the first string
};

// Offers `answer` for `id`, read from `view` at latch value `seq`. It is remembered if it was
// the last one offered for its entry too (so one-off lookups do not churn the cache), fits an
// entry, and no other thread is writing the entry.
void remember_answer(AnswerKind kind, std::uint32_t id, const shm::TableView* view,
                     std::uint64_t seq, const PackedAnswer& answer) noexcept;

// The cached answer for `uid`/`gid` packed into the caller's buffer, if there is one that is
// still current and the buffer has room; false otherwise (then do the full lookup). Touches
// neither errno nor the caller's struct when it returns false (it may have written to `buffer`).
bool cached_passwd(uid_t uid, passwd* ret, char* buffer, std::size_t buflen) noexcept;
bool cached_group(gid_t gid, group* ret, char* buffer, std::size_t buflen) noexcept;

}  // namespace transient::nss
