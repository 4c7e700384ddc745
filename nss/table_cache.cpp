// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The mapping cache behind acquire_table(). Fast path (table mapped, unchanged): load the
// current slot, check the header's retired word, count the call. Every kRecheckEvery-th call of
// a thread also reads the coarse monotonic clock and, at most once per second, stat()s the path
// to notice a file renamed over ours without being retired, or removed. Anything else goes to
// refresh(), which opens the file and, if it can take the remap mutex *without waiting*, maps it
// into a new slot and publishes it.
//
// What that guarantees: a table the allocator retires (it always retires a file before
// replacing it) is left at the very next lookup; a table replaced or removed behind the
// allocator's back is noticed within a second plus at most kRecheckEvery lookups per thread, and
// at once by any process that starts afterwards.
//
// Memory reclamation is the simplest possible: a published slot is immutable and its mapping is
// kept for the lifetime of the process, so a reader holding a view can never see it unmapped
// (STYLE.md: the NSS module never munmaps a mapping another thread may still read). The number
// of slots is bounded; when they run out, every call maps the table privately (correct, slower).

#include "nss/table_cache.hpp"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "nss/environment.hpp"
#include "nss/errno_guard.hpp"
#include "shm/layout.hpp"
#include "base/unique_fd.hpp"

namespace transient::nss {
namespace {

// Each table replacement (allocator upgrade, corrupt file) takes one slot. That is rare in a
// real process.
constexpr std::size_t kSlots = 16;
// A valid table is never larger (file_size_for(kMaxCapacity) ≈ 145 MiB); we never map more, so
// a huge or sparse file cannot eat the address space of every process that looks up a user.
constexpr std::uint64_t kMaxMapSize = shm::file_size_for(shm::kMaxCapacity);

// A mapped, validated table. Filled by the one thread holding remap_mutex *before* it is
// published through detail::current_view (a pointer to its first member), never written again
// and never unmapped.
struct Slot {
    shm::TableView view;
    dev_t dev = 0;
    ino_t ino = 0;
};
static_assert(std::is_standard_layout_v<Slot> && offsetof(Slot, view) == 0);

const Slot* slot_of(const shm::TableView* v) noexcept {
    return reinterpret_cast<const Slot*>(v);  // pointer-interconvertible: view is the first member
}

// Everything here is constant-initialized: the module has no static constructors.
constinit Slot slots[kSlots];
// How many slots are filled. Read and written only with remap_mutex held.
constinit std::size_t slots_used = 0;
// CLOCK_MONOTONIC_COARSE second at or after which the next recheck stat()s the table's path.
constinit std::atomic<std::int64_t> next_stat_check{0};
// Serializes filling and publishing slots. Only ever taken with trylock: a thread that finds it
// busy maps privately instead of waiting, so a fork() child that inherited it locked (from a
// thread that no longer exists there) still answers every lookup.
constinit pthread_mutex_t remap_mutex = PTHREAD_MUTEX_INITIALIZER;

std::int64_t coarse_seconds() noexcept {
    struct timespec ts;
    // The coarse clock is served from the vDSO without a syscall and a 1-4 ms resolution is
    // plenty for a once-a-second check.
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec;
}

// The stat() check: false when the path now names another file, or nothing.
bool still_current(const Slot& s, const char* path) noexcept {
    const std::int64_t now = coarse_seconds();
    // Relaxed: a scheduling hint only. Threads racing past it merely stat() more than once.
    if (now < next_stat_check.load(std::memory_order_relaxed))
        return true;
    next_stat_check.store(now + 1, std::memory_order_relaxed);
    struct stat st;
    if (::stat(path, &st) < 0)
        return false;
    return st.st_dev == s.dev && st.st_ino == s.ino;
}

// Opens the table and checks it is a regular file that holds at least a header.
int open_table(const char* path, shm::UniqueFd* ret_fd, struct stat* ret_st) noexcept {
    // O_NONBLOCK: a FIFO planted under the name must not hang the caller in open().
    shm::UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK));
    if (!fd)
        return -errno;
    struct stat st;
    if (::fstat(fd.get(), &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(sizeof(shm::FileHeader)))
        return -EBADMSG;
    *ret_fd = std::move(fd);
    *ret_st = st;
    return 0;
}

// Maps and validates the table. The fd may be closed afterwards: the mapping stays.
int map_table(int fd, const struct stat& st, void** ret_p, std::size_t* ret_size,
              shm::TableView* ret_view) noexcept {
    const auto size = static_cast<std::size_t>(
            std::min<std::uint64_t>(static_cast<std::uint64_t>(st.st_size), kMaxMapSize));
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    shm::TableView v;
    int r = shm::view_table(p, size, &v);
    if (r < 0) {
        ::munmap(p, size);  // nobody else has seen this mapping
        // A retired file still under the table's name: the allocator is between retiring it and
        // renaming the new table into place (or died there and is being restarted).
        return r == -ESTALE ? -EAGAIN : r;
    }
    *ret_p = p;
    *ret_size = size;
    *ret_view = v;
    return 0;
}

int map_uncached(int fd, const struct stat& st, TableLease* ret) noexcept {
    void* p;
    std::size_t size;
    shm::TableView v;
    if (int r = map_table(fd, st, &p, &size, &v); r < 0)
        return r;
    ret->adopt(p, size, v);
    return 0;
}

void publish(const Slot* s) noexcept {
    next_stat_check.store(coarse_seconds() + 1, std::memory_order_relaxed);
    // Release: pairs with the acquire load in peek_table() and acquire_table(), so a reader that
    // sees `s` sees the slot's view, dev and ino as written before this store.
    detail::current_view.store(&s->view, std::memory_order_release);
}

// REQUIRES: remap_mutex held.
int publish_locked(int fd, const struct stat& st, TableLease* ret) noexcept {
    // The same file mapped before (a false alarm): reuse its slot. The inode cannot have been
    // recycled for another file, because our mapping keeps it alive.
    for (std::size_t i = 0; i < slots_used; i++) {
        const Slot& s = slots[i];
        if (s.dev == st.st_dev && s.ino == st.st_ino && !shm::table_retired(s.view)) {
            publish(&s);
            ret->borrow(&s.view);
            return 0;
        }
    }
    if (slots_used == kSlots)
        return map_uncached(fd, st, ret);
    Slot& s = slots[slots_used];
    void* p;
    std::size_t size;
    if (int r = map_table(fd, st, &p, &size, &s.view); r < 0)
        return r;  // the slot stays unused; it was not published
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    slots_used++;
    publish(&s);
    ret->borrow(&s.view);
    return 0;
}

// The file vanished: stop serving the current mapping, so that the next lookups fail fast with
// -ENOENT instead of reading a table nobody updates any more.
void forget() noexcept {
    if (detail::current_view.load(std::memory_order_relaxed) == nullptr)
        return;
    if (::pthread_mutex_trylock(&remap_mutex) != 0)
        return;  // whoever holds it is about to publish a fresh slot anyway
    detail::current_view.store(nullptr, std::memory_order_release);
    ::pthread_mutex_unlock(&remap_mutex);
}

int refresh(const char* path, TableLease* ret) noexcept {
    shm::UniqueFd fd;
    struct stat st;
    if (int r = open_table(path, &fd, &st); r < 0) {
        if (r == -ENOENT)
            forget();
        return r;
    }
    if (::pthread_mutex_trylock(&remap_mutex) != 0)
        return map_uncached(fd.get(), st, ret);
    const int r = publish_locked(fd.get(), st, ret);
    ::pthread_mutex_unlock(&remap_mutex);
    return r;
}

// Everything but the fast path: no slot yet, a retired one, or a recheck is due. The only part
// that makes system calls, so errno is kept here: the fast paths need no guard of their own.
[[gnu::noinline]] int acquire_slow(const Slot* s, bool recheck, TableLease* ret) noexcept {
    ErrnoGuard keep_errno;
    char scratch[PATH_MAX];
    const char* path;
    if (int r = table_path(scratch, &path); r < 0)
        return r;
    if (recheck && still_current(*s, path)) {
        ret->borrow(&s->view);
        return 0;
    }
    return refresh(path, ret);
}

}  // namespace

void TableLease::release() noexcept {
    ErrnoGuard keep_errno;  // the lookups by ID leave errno alone (lookup.hpp)
    ::munmap(owned_, owned_size_);
}

void TableLease::adopt(void* p, std::size_t size, const shm::TableView& v) noexcept {
    owned_ = p;
    owned_size_ = size;
    private_view_ = v;
    view_ = &private_view_;
}

int acquire_table(TableLease* ret) noexcept {
    // Acquire: pairs with the release store in publish(); the slot's contents are complete.
    const shm::TableView* v = detail::current_view.load(std::memory_order_acquire);
    if (v == nullptr || shm::table_retired(*v))
        return acquire_slow(nullptr, false, ret);
    if (detail::count_call(true)) [[unlikely]]
        return acquire_slow(slot_of(v), true, ret);
    ret->borrow(v);
    return 0;
}

namespace detail {

constinit std::atomic<const shm::TableView*> current_view{nullptr};
constinit CallCounter call_counters[kCallCounters];

std::size_t cache_slots_used() noexcept {
    if (::pthread_mutex_trylock(&remap_mutex) != 0)
        return kSlots;
    const std::size_t n = slots_used;
    ::pthread_mutex_unlock(&remap_mutex);
    return n;
}

bool try_lock_remap_for_testing() noexcept { return ::pthread_mutex_trylock(&remap_mutex) == 0; }

void unlock_remap_for_testing() noexcept { ::pthread_mutex_unlock(&remap_mutex); }

}  // namespace detail
}  // namespace transient::nss
