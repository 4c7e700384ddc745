// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The answer cache (answer_cache.hpp): the write side; reads are inline in the header.

#include "nss/answer_cache.hpp"

#include <atomic>
#include <cstring>

namespace transient::nss {

namespace detail {

constinit AnswerEntry answer_entries[kAnswerEntries];

void fill_answer(AnswerEntry& e, std::uint64_t key, const shm::TableView* view,
                 std::uint64_t seq, const PackedRecord& answer) noexcept {
    if (answer.size > kAnswerBytes || answer.name_length >= answer.size)
        return;
    std::uint64_t version = e.version.load(std::memory_order_relaxed);
    // Claim the entry, or leave it to the thread filling it. Relaxed: the fence below orders.
    if ((version & 1) != 0 ||
        !e.version.compare_exchange_strong(version, version + 1, std::memory_order_relaxed))
        return;
    // The odd version before the payload stores: a reader that loads any of them sees the
    // version move in its re-check (STYLE.md §2, rule 3).
    std::atomic_thread_fence(std::memory_order_release);
    e.key.store(key, std::memory_order_relaxed);
    e.view.store(reinterpret_cast<std::uintptr_t>(view), std::memory_order_relaxed);
    e.seq.store(seq, std::memory_order_relaxed);
    e.sizes.store(answer.size | std::uint64_t{answer.name_length} << 32,
                  std::memory_order_relaxed);
    char text[kAnswerBytes] = {};
    std::memcpy(text, answer.text, answer.size);
    for (std::size_t i = 0; i < kAnswerWords; i++) {
        std::uint64_t w;
        std::memcpy(&w, text + i * 8, 8);
        e.text[i].store(w, std::memory_order_relaxed);
    }
    // Release: the payload before the even version readers check against.
    e.version.store(version + 2, std::memory_order_release);
}

}  // namespace detail
}  // namespace transient::nss
