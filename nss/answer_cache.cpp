// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The answer cache (answer_cache.hpp): a direct-mapped array of seqlocked entries.

#include "nss/answer_cache.hpp"

#include <atomic>
#include <cstring>

#include "nss/environment.hpp"
#include "nss/table_cache.hpp"

namespace transient::nss {
namespace {

// Enough for the IDs a process works with at a time (the owners and groups of a directory's
// files); 12 KiB of zero pages until used.
constexpr std::size_t kEntries = 64;
// The longest passwd answer is 111 bytes: a 31-byte name, "x", a 56-byte gecos, "/", the shell.
constexpr std::size_t kTextWords = 14;
constexpr std::size_t kTextBytes = kTextWords * 8;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

struct alignas(64) Entry {
    // Odd while a writer fills the entry; bumped by 2 per fill.
    std::atomic<std::uint64_t> version{0};
    // (kind << 32) | id; 0 (no kind) is an empty entry.
    std::atomic<std::uint64_t> key{0};
    // The shm::TableView the answer came from and the latch value it was read at.
    std::atomic<std::uint64_t> view{0};
    std::atomic<std::uint64_t> seq{0};
    // PackedAnswer::size | name_length << 32.
    std::atomic<std::uint64_t> sizes{0};
    // The key of the last answer offered for this entry. An answer is stored when it is offered
    // the second time in a row, so that lookups that never repeat (a scan over many IDs) cost
    // one store here instead of a fill each.
    std::atomic<std::uint64_t> candidate{0};
    std::atomic<std::uint64_t> text[kTextWords] = {};
};

constinit Entry entries[kEntries];

std::uint64_t key_of(AnswerKind kind, std::uint32_t id) noexcept {
    return std::uint64_t{static_cast<std::uint32_t>(kind)} << 32 | id;
}

Entry& entry_for(std::uint64_t key) noexcept {
    // Fibonacci hashing: neighbouring IDs (one range's UIDs) land on different entries.
    return entries[(key * 0x9E3779B97F4A7C15ULL) >> 58];
}
static_assert(kEntries == 64, "entry_for() keeps the top 6 bits");

// Copies a current answer for `key` to `dst` (kTextBytes writable bytes). Returns its sizes word,
// or 0 for a miss.
[[gnu::always_inline]] inline std::uint64_t load_answer(std::uint64_t key, char* dst) noexcept {
    if (nss_bypassed())
        return 0;
    const shm::TableView* view = peek_table();
    if (view == nullptr)
        return 0;
    const std::uint64_t seq = shm::table_seq(*view);
    const Entry& e = entry_for(key);
    // Acquire: pairs with the release store that completed the fill; rule 2 of STYLE.md §2.
    const std::uint64_t version = e.version.load(std::memory_order_acquire);
    if ((version & 1) != 0 || e.key.load(std::memory_order_relaxed) != key ||
        e.view.load(std::memory_order_relaxed) != reinterpret_cast<std::uintptr_t>(view) ||
        e.seq.load(std::memory_order_relaxed) != seq)
        return 0;
    const std::uint64_t sizes = e.sizes.load(std::memory_order_relaxed);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < kTextWords; i++) {
        const std::uint64_t w = e.text[i].load(std::memory_order_relaxed);
        std::memcpy(dst + i * 8, &w, 8);
    }
    // Keeps the loads above before the re-check (Boehm 2012; an acquire load would not).
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e.version.load(std::memory_order_relaxed) != version)
        return 0;
    return sizes;
}

}  // namespace

void remember_answer(AnswerKind kind, std::uint32_t id, const shm::TableView* view,
                     std::uint64_t seq, const PackedAnswer& answer) noexcept {
    if (answer.size > kTextBytes || answer.name_length >= answer.size)
        return;
    const std::uint64_t key = key_of(kind, id);
    Entry& e = entry_for(key);
    // Relaxed: a heuristic; racing threads merely fill once more or once less.
    if (e.candidate.load(std::memory_order_relaxed) != key) {
        e.candidate.store(key, std::memory_order_relaxed);
        return;
    }
    std::uint64_t version = e.version.load(std::memory_order_relaxed);
    // Claim the entry, or leave it to the thread filling it. Relaxed: the fence below orders.
    if ((version & 1) != 0 ||
        !e.version.compare_exchange_strong(version, version + 1, std::memory_order_relaxed))
        return;
    // The odd version before the payload stores: a reader that loads any of them sees the
    // version move in its re-check (rule 3 of STYLE.md §2).
    std::atomic_thread_fence(std::memory_order_release);
    e.key.store(key, std::memory_order_relaxed);
    e.view.store(reinterpret_cast<std::uintptr_t>(view), std::memory_order_relaxed);
    e.seq.store(seq, std::memory_order_relaxed);
    e.sizes.store(answer.size | std::uint64_t{answer.name_length} << 32,
                  std::memory_order_relaxed);
    char text[kTextBytes] = {};
    std::memcpy(text, answer.text, answer.size);
    for (std::size_t i = 0; i < kTextWords; i++) {
        std::uint64_t w;
        std::memcpy(&w, text + i * 8, 8);
        e.text[i].store(w, std::memory_order_relaxed);
    }
    // Release: the payload before the even version readers check against.
    e.version.store(version + 2, std::memory_order_release);
}

bool cached_passwd(uid_t uid, passwd* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr || buffer == nullptr || buflen < kTextBytes)
        return false;
    const std::uint64_t sizes = load_answer(key_of(AnswerKind::kPasswd, uid), buffer);
    const std::size_t size = sizes & 0xFFFFFFFF, name_length = sizes >> 32;
    // name\0 x\0 gecos\0 /\0 /usr/sbin/nologin\0: 24 bytes besides the two variable strings.
    if (sizes == 0 || size < name_length + 24)
        return false;
    char* gecos = buffer + name_length + 3;
    char* dir = buffer + size - 20;
    ret->pw_name = buffer;
    ret->pw_passwd = buffer + name_length + 1;
    ret->pw_uid = uid;
    ret->pw_gid = uid;
    ret->pw_gecos = gecos;
    ret->pw_dir = dir;
    ret->pw_shell = dir + 2;
    return true;
}

bool cached_group(gid_t gid, group* ret, char* buffer, std::size_t buflen) noexcept {
    if (ret == nullptr || buffer == nullptr)
        return false;
    const auto a = reinterpret_cast<std::uintptr_t>(buffer);
    const std::size_t padding = (alignof(char*) - a % alignof(char*)) % alignof(char*);
    if (buflen < padding + sizeof(char*) + kTextBytes)
        return false;
    auto** members = reinterpret_cast<char**>(buffer + padding);
    char* text = reinterpret_cast<char*>(members + 1);
    const std::uint64_t sizes = load_answer(key_of(AnswerKind::kGroup, gid), text);
    const std::size_t size = sizes & 0xFFFFFFFF, name_length = sizes >> 32;
    // name\0 x\0
    if (sizes == 0 || size != name_length + 3)
        return false;
    members[0] = nullptr;
    ret->gr_name = text;
    ret->gr_passwd = text + name_length + 1;
    ret->gr_gid = gid;
    ret->gr_mem = members;
    return true;
}

}  // namespace transient::nss
