// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module's answer cache: the packed strings of recent getpwuid_r()/getgrgid_r() answers,
// process-wide, so that asking for the same ID again (a process that keeps resolving the owners
// of its files or processes) costs a copy instead of a search, a validation and formatting.
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
// miss. Nothing is allocated; the array is constant-initialized. A fork() child of a process
// that was filling an entry at that instant finds it odd for good: one entry less, no harm.

#pragma once

#include <grp.h>
#include <pwd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "nss/environment.hpp"
#include "nss/records.hpp"
#include "nss/table_cache.hpp"
#include "shm/reader.hpp"

namespace transient::nss {

enum class AnswerKind : std::uint32_t { kPasswd = 1, kGroup = 2 };

namespace detail {

// Enough for the IDs a process works with at a time (the owners and groups of a directory's
// files); 12 KiB of zero pages until used.
inline constexpr std::size_t kAnswerEntries = 64;
// Room for the longest passwd answer (nss/records.hpp): 111 bytes, 14 words.
inline constexpr std::size_t kAnswerWords = (kMaxPasswdText + 7) / 8;
inline constexpr std::size_t kAnswerBytes = kAnswerWords * 8;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

struct alignas(64) AnswerEntry {
    // Odd while a writer fills the entry; bumped by 2 per fill.
    std::atomic<std::uint64_t> version{0};
    // (kind << 32) | id; 0 (no kind) is an empty entry.
    std::atomic<std::uint64_t> key{0};
    // The shm::TableView the answer came from and the latch value it was read at.
    std::atomic<std::uint64_t> view{0};
    std::atomic<std::uint64_t> seq{0};
    // PackedRecord::size | name_length << 32.
    std::atomic<std::uint64_t> sizes{0};
    // The key of the last answer offered for this entry. An answer is stored when it is offered
    // the second time in a row, so that lookups that never repeat (a scan over many IDs) cost
    // one store here instead of a fill each.
    std::atomic<std::uint64_t> candidate{0};
    std::atomic<std::uint64_t> text[kAnswerWords] = {};
};

extern constinit AnswerEntry answer_entries[kAnswerEntries];

inline std::uint64_t answer_key(AnswerKind kind, std::uint32_t id) noexcept {
    return std::uint64_t{static_cast<std::uint32_t>(kind)} << 32 | id;
}

inline AnswerEntry& answer_entry(std::uint64_t key) noexcept {
    // Fibonacci hashing: neighbouring IDs (one range's UIDs) land on different entries.
    static_assert(kAnswerEntries == 64, "keeps the top 6 bits");
    return answer_entries[(key * 0x9E3779B97F4A7C15ULL) >> 58];
}

// Fills `e` with `answer` (remember_answer()'s second offer).
void fill_answer(AnswerEntry& e, std::uint64_t key, const shm::TableView* view,
                 std::uint64_t seq, const PackedRecord& answer) noexcept;

// Copies a current answer for `key` to `dst` (kAnswerBytes writable bytes). Returns its sizes
// word, or 0 for a miss. On a miss *ret_view is the table peek_table() gave, with the module not
// bypassed: the full lookup that follows starts from it instead of checking both again.
[[gnu::always_inline]] inline std::uint64_t load_answer(std::uint64_t key, char* dst,
                                                        const shm::TableView** ret_view) noexcept {
    if (nss_bypassed())
        return 0;
    const shm::TableView* view = peek_table();
    if (view == nullptr)
        return 0;
    *ret_view = view;
    const std::uint64_t seq = shm::table_seq(*view);
    const AnswerEntry& e = answer_entry(key);
    // Acquire: pairs with the release store that completed the fill (STYLE.md §2, rule 2).
    const std::uint64_t version = e.version.load(std::memory_order_acquire);
    if ((version & 1) != 0 || e.key.load(std::memory_order_relaxed) != key ||
        e.view.load(std::memory_order_relaxed) != reinterpret_cast<std::uintptr_t>(view) ||
        e.seq.load(std::memory_order_relaxed) != seq)
        return 0;
    const std::uint64_t sizes = e.sizes.load(std::memory_order_relaxed);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < kAnswerWords; i++) {
        const std::uint64_t w = e.text[i].load(std::memory_order_relaxed);
        std::memcpy(dst + i * 8, &w, 8);
    }
    // Keeps the loads above before the re-check (Boehm 2012; an acquire load would not).
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e.version.load(std::memory_order_relaxed) != version)
        return 0;
    return sizes;
}

}  // namespace detail

// Offers `answer` for `id`, read from `view` at latch value `seq`. It is remembered if it was
// the last one offered for its entry too (so one-off lookups do not churn the cache), fits an
// entry, and no other thread is writing the entry. Inline: the first offer, which is all that
// lookups that never repeat ever make, is one compare and one store.
inline void remember_answer(AnswerKind kind, std::uint32_t id, const shm::TableView* view,
                            std::uint64_t seq, const PackedRecord& answer) noexcept {
    const std::uint64_t key = detail::answer_key(kind, id);
    detail::AnswerEntry& e = detail::answer_entry(key);
    // Relaxed: a heuristic; racing threads merely fill once more or once less.
    if (e.candidate.load(std::memory_order_relaxed) != key) {
        e.candidate.store(key, std::memory_order_relaxed);
        return;
    }
    detail::fill_answer(e, key, view, seq, answer);
}

// The cached answer for `uid`/`gid` packed into the caller's buffer, if there is one that is
// still current and the buffer has room; false otherwise (then do the full lookup, passing it
// *ret_view: the table the probe found usable, or null). Touches neither errno nor the caller's
// struct when it returns false (it may have written to `buffer`).
// Inline: this is the whole of a repeated lookup.
[[gnu::always_inline]] inline bool cached_passwd(uid_t uid, passwd* ret, char* buffer,
                                                 std::size_t buflen,
                                                 const shm::TableView** ret_view) noexcept {
    if (ret == nullptr || buffer == nullptr || buflen < detail::kAnswerBytes)
        return false;
    const std::uint64_t sizes =
            detail::load_answer(detail::answer_key(AnswerKind::kPasswd, uid), buffer, ret_view);
    return sizes != 0 && unpack_passwd(buffer, sizes & 0xFFFFFFFF, sizes >> 32, uid, ret);
}

[[gnu::always_inline]] inline bool cached_group(gid_t gid, group* ret, char* buffer,
                                                std::size_t buflen,
                                                const shm::TableView** ret_view) noexcept {
    if (ret == nullptr || buffer == nullptr)
        return false;
    const std::size_t text = group_text_offset(buffer);
    if (buflen < text + detail::kAnswerBytes)
        return false;
    const std::uint64_t sizes = detail::load_answer(detail::answer_key(AnswerKind::kGroup, gid),
                                                    buffer + text, ret_view);
    return sizes != 0 && unpack_group(buffer, sizes & 0xFFFFFFFF, sizes >> 32, gid, ret);
}

}  // namespace transient::nss
