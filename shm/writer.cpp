// SPDX-License-Identifier: LGPL-2.1-or-later

#include "shm/writer.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <string_view>
#include <unordered_set>

#include <boost/interprocess/exceptions.hpp>

#include "shm/reader.hpp"

namespace transient::shm {
namespace {

namespace ipc = boost::interprocess;

FileHeader& header_of(void* base) { return *static_cast<FileHeader*>(base); }

std::byte* copy_of(void* base, int i) {
    return static_cast<std::byte*>(base) +
           header_of(base).copy_offset[i].load(std::memory_order_relaxed);
}

using PaddedName = std::array<char, kNameWords * 8>;

PaddedName pad_name(const std::string& name) {
    PaddedName p{};
    std::memcpy(p.data(), name.data(), std::min(name.size(), p.size() - 1));
    return p;
}

void write_copy(std::byte* copy, std::uint32_t capacity, std::span<const RangeEntry> ranges,
                const std::vector<std::uint32_t>& names, std::uint64_t seed);

std::uint32_t home_slot(const PaddedName& name, std::uint64_t seed, std::uint32_t slots) {
    std::uint64_t words[kNameWords];
    std::memcpy(words, name.data(), sizeof words);
    return name_home_slot(words, seed, slots);
}

// A seed for the name hash. Names come from local users and the seed is readable, so it only
// has to be one they could not choose their names for in advance.
std::uint64_t random_seed() {
    std::uint64_t seed = 0;
    if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof seed))
        seed = static_cast<std::uint64_t>(
                std::chrono::steady_clock::now().time_since_epoch().count()) *
               0x9E3779B97F4A7C15ULL;
    return seed;
}

// A version-5 name index (layout.hpp) of `n` entries named name_of(0 … n): linear probing
// under `seed`. *ret_longest receives the farthest any entry landed from its home slot.
template <typename NameOf>
std::vector<std::uint32_t> build_name_index(std::size_t n, NameOf&& name_of,
                                            std::uint32_t capacity, std::uint64_t seed,
                                            std::uint32_t* ret_longest) {
    const std::uint32_t slots = name_slots(capacity);
    std::vector<std::uint32_t> names(slots, kNameSlotEmpty);
    std::uint32_t longest = 0;
    for (std::size_t e = 0; e < n; e++) {
        if (name_of(e)[0] == '\0')
            continue;  // a removed entry whose name another took (TableWriter::unname())
        std::uint32_t s = home_slot(name_of(e), seed, slots), d = 0;
        for (; names[s] != kNameSlotEmpty; d++)
            s = (s + 1) & (slots - 1);
        names[s] = static_cast<std::uint32_t>(e);
        longest = std::max(longest, d);
    }
    *ret_longest = longest;
    return names;
}

// The name index of `n` entries under `*seed`, or under the best of a few new seeds if some
// entry lands more than TableWriter::kMaxProbe slots from home (names crafted to collide under
// the current seed). *ret_limit receives the run length above which an insert re-seeds again:
// kMaxProbe, or twice what the best seed gave, so that a table whose runs are long anyway
// (a huge capacity, nearly full) is not rebuilt at every insert.
template <typename NameOf>
std::vector<std::uint32_t> choose_name_index(std::size_t n, NameOf&& name_of,
                                             std::uint32_t capacity, std::uint64_t* seed,
                                             std::uint32_t* ret_limit, bool reseed) {
    constexpr int kSeedsTried = 4;
    std::uint32_t longest = 0;
    if (!reseed) {
        auto names = build_name_index(n, name_of, capacity, *seed, &longest);
        if (longest <= TableWriter::kMaxProbe) {
            *ret_limit = TableWriter::kMaxProbe;
            return names;
        }
    }
    std::vector<std::uint32_t> best;
    std::uint32_t best_longest = UINT32_MAX;
    for (int attempt = 0; attempt < kSeedsTried && best_longest > TableWriter::kMaxProbe;
         attempt++) {
        const std::uint64_t candidate = random_seed();
        auto names = build_name_index(n, name_of, capacity, candidate, &longest);
        if (longest < best_longest) {
            best = std::move(names);
            best_longest = longest;
            *seed = candidate;
        }
    }
    *ret_limit = std::max(TableWriter::kMaxProbe, 2 * best_longest);
    return best;
}

// Gives the file its blocks now. A table is written through a shared mapping, and a store to a
// page that the file system has no room for is SIGBUS, not an error: on a full tmpfs a sparse
// (ftruncate()d) table killed the allocator at its next publish, and again after every restart.
// With every block reserved up front, running out of space is ENOSPC here instead.
Result<void> reserve_blocks(int fd, std::uint64_t size) {
    // posix_fallocate() returns the error rather than setting errno.
    if (const int e = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); e != 0)
        return errno_error(e);
    return {};
}

// What mapped_region maps: a descriptor the writer opened itself. ipc::file_mapping would open
// the path once more, with a plain open(path, O_RDWR): without O_NOFOLLOW and O_CLOEXEC, unable
// to create the file exclusively, and not necessarily the file whose type was just checked and
// whose blocks were just reserved.
class OpenFile {
public:
    explicit OpenFile(int fd) : fd_(fd) {}
    ipc::mapping_handle_t get_mapping_handle() const { return {fd_, false}; }
    ipc::mode_t get_mode() const { return ipc::read_write; }

private:
    int fd_;
};

// Maps `size` bytes of `fd` read-write and shared (MAP_SHARED: readers see every store). The one
// place where Boost.Interprocess's exceptions become the writer's errors.
Result<ipc::mapped_region> map_rw(int fd, std::size_t size) {
    try {
        return ipc::mapped_region(OpenFile(fd), ipc::read_write, 0, size);
    } catch (const ipc::interprocess_exception& e) {
        // The errno of a failed system call; 0 for a check of Boost's own (bad mode or size).
        const int native = e.get_native_error();
        return errno_error(native > 0 ? native : EINVAL);
    }
}

void init_header(void* base, std::uint32_t capacity, std::uint64_t size) {
    FileHeader& h = header_of(base);
    // Nobody can see this file yet, so plain relaxed stores suffice; rename() publishes it.
    h.magic.store(kMagic, std::memory_order_relaxed);
    h.state.store(static_cast<std::uint64_t>(TableState::kLive), std::memory_order_relaxed);
    h.version_header_size.store(kVersion | (std::uint64_t{sizeof(FileHeader)} << 32),
                                std::memory_order_relaxed);
    h.capacity_entry_size.store(capacity | (std::uint64_t{sizeof(EntryWords)} << 32),
                                std::memory_order_relaxed);
    h.copy_offset[0].store(sizeof(FileHeader), std::memory_order_relaxed);
    h.copy_offset[1].store(sizeof(FileHeader) + copy_size_for(capacity),
                           std::memory_order_relaxed);
    h.copy_size.store(copy_size_for(capacity), std::memory_order_relaxed);
    h.file_size.store(size, std::memory_order_relaxed);
    h.seq.store(0, std::memory_order_relaxed);
}

// Writes a complete table holding `ranges` into the new file `tmp`.
Result<void> write_new_table(const std::string& tmp, std::uint32_t capacity,
                             std::span<const RangeEntry> ranges) {
    UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd)
        return errno_error(errno);
    const std::uint64_t size = file_size_for(capacity);
    if (::fchmod(fd.get(), 0644) < 0 || ::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
        return errno_error(errno);
    if (auto r = reserve_blocks(fd.get(), size); !r)
        return r;
    auto m = map_rw(fd.get(), size);
    if (!m)
        return std::unexpected(m.error());
    init_header(m->get_address(), capacity, size);
    // Even when empty: the block index words past the top are kPastTheTop, and the name index
    // slots kNameSlotEmpty, not zero.
    std::uint64_t seed = random_seed();
    std::uint32_t limit = 0;
    const std::vector<std::uint32_t> names = choose_name_index(
            ranges.size(), [&](std::size_t e) { return pad_name(ranges[e].name); }, capacity,
            &seed, &limit, false);
    for (int i = 0; i < 2; i++)
        write_copy(copy_of(m->get_address(), i), capacity, ranges, names, seed);
    return {};
}

// Creates a fresh table holding `ranges` (valid, sorted: recovered ones) next to `path` and
// renames it into place, so that readers see either the old file or the complete new one.
Result<void> create_table(const std::string& path, std::uint32_t capacity,
                          std::span<const RangeEntry> ranges = {}) {
    const std::string tmp = path + ".new";
    ::unlink(tmp.c_str());
    Result<void> r = write_new_table(tmp, capacity, ranges);
    if (r && ::rename(tmp.c_str(), path.c_str()) < 0)
        r = errno_error(errno);
    if (!r)
        ::unlink(tmp.c_str());  // whichever step failed, no half-made table is left behind
    return r;
}

void retire(void* base) {
    header_of(base).state.store(static_cast<std::uint64_t>(TableState::kRetired),
                                std::memory_order_release);
}

// Keeps the first of overlapping or same-named entries and drops invalid ones.
Recovery sanitize(std::vector<RangeEntry> in, std::size_t invalid) {
    Recovery rec;
    rec.dropped = invalid;
    std::sort(in.begin(), in.end(),
              [](const RangeEntry& a, const RangeEntry& b) { return a.start < b.start; });
    // A set, not a list: a full table has 33000 names, and a quadratic scan took a second.
    std::unordered_set<std::string> names;
    for (auto& r : in) {
        const bool overlaps = !rec.ranges.empty() && rec.ranges.back().end() > r.start;
        if (overlaps || !names.insert(r.name).second) {
            rec.dropped++;
            continue;
        }
        rec.ranges.push_back(std::move(r));
    }
    return rec;
}

Result<Recovery> recover(const ipc::mapped_region& m) {
    TableView v;
    if (int r = view_table(m.get_address(), m.get_size(), &v); r < 0)
        return errno_error(r);
    std::vector<RangeRecord> raw(v.capacity);
    std::size_t count = 0, invalid = 0;
    // No writer is alive (we hold the lock), so the latch cannot move: one attempt succeeds.
    if (int r = read_all(v, raw.data(), raw.size(), &count, &invalid); r < 0)
        return errno_error(r);
    std::vector<RangeEntry> entries;
    for (std::size_t i = 0; i < std::min(count, raw.size()); i++) {
        const RangeRecord& r = raw[i];
        entries.push_back(RangeEntry{r.name, r.start, r.size, r.owner, r.flags, r.created_usec,
                                     r.userns_id, r.userns_ino});
    }
    return sanitize(std::move(entries), invalid);
}

void write_entry(EntryWords& e, const RangeEntry& r) {
    // Relaxed: the latch counter stores around a copy's update order these (see publish()).
    e.start_size.store(r.start | (std::uint64_t{r.size} << 32), std::memory_order_relaxed);
    e.owner_flags.store(r.owner | (std::uint64_t{r.flags} << 32), std::memory_order_relaxed);
    e.created_usec.store(r.created_usec, std::memory_order_relaxed);
    const PaddedName name = pad_name(r.name);
    for (std::size_t w = 0; w < kNameWords; w++) {
        std::uint64_t word;
        std::memcpy(&word, name.data() + w * 8, 8);
        e.name[w].store(word, std::memory_order_relaxed);
    }
    e.userns_id.store(r.userns_id, std::memory_order_relaxed);
    e.userns_ino.store(r.userns_ino, std::memory_order_relaxed);
}

// Word by word, relaxed, as write_entry(): the writer reads back what it stored itself.
void copy_entry(EntryWords& to, const EntryWords& from) {
    auto* t = reinterpret_cast<std::atomic<std::uint64_t>*>(&to);
    const auto* f = reinterpret_cast<const std::atomic<std::uint64_t>*>(&from);
    for (std::size_t w = 0; w < sizeof(EntryWords) / 8; w++)
        t[w].store(f[w].load(std::memory_order_relaxed), std::memory_order_relaxed);
}

std::atomic<std::uint32_t>* name_index_of(std::byte* copy, std::uint32_t capacity) {
    return reinterpret_cast<std::atomic<std::uint32_t>*>(copy + name_index_offset(capacity));
}

std::atomic<std::uint32_t>* block_index_of(std::byte* copy, std::uint32_t capacity) {
    return reinterpret_cast<std::atomic<std::uint32_t>*>(copy + block_index_offset(capacity));
}

// Block index words above the block of the last entry hold this instead of the count: every
// reader clamps index words to the count (reader.hpp's find_by_id(), since version 2), so both
// mean "past the last entry", and a change below the top then moves only the words up to the
// top, where keeping every word exact moved up to 65,536 words a copy per change (most of an
// allocation's cost in the daemon, issue 11).
constexpr std::uint32_t kPastTheTop = UINT32_MAX;

std::uint32_t top_block(std::span<const RangeEntry> ranges) {
    return ranges.empty() ? 0 : ranges.back().start >> 16;
}

void write_copy(std::byte* copy, std::uint32_t capacity, std::span<const RangeEntry> ranges,
                const std::vector<std::uint32_t>& names, std::uint64_t seed) {
    auto* entries = reinterpret_cast<EntryWords*>(copy + entries_offset());
    for (std::size_t i = 0; i < ranges.size(); i++)
        write_entry(entries[i], ranges[i]);
    auto* idx = name_index_of(copy, capacity);
    for (std::size_t i = 0; i < names.size(); i++)
        idx[i].store(names[i], std::memory_order_relaxed);  // ordered by the latch, as above
    reinterpret_cast<CopyHeader*>(copy)->name_seed.store(seed, std::memory_order_relaxed);
    // block[b]: the first entry starting at or above b << 16 (ranges are sorted by start), up
    // to the block of the last entry; kPastTheTop above it (see top_block()).
    auto* block = block_index_of(copy, capacity);
    const std::uint32_t top = top_block(ranges);
    std::size_t e = 0;
    for (std::uint32_t b = 0; b < kBlockIndexSize; b++) {
        while (e < ranges.size() && (ranges[e].start >> 16) < b)
            e++;
        block[b].store(b <= top ? static_cast<std::uint32_t>(e) : kPastTheTop,
                       std::memory_order_relaxed);  // as above
    }
    reinterpret_cast<CopyHeader*>(copy)->count.store(ranges.size(), std::memory_order_relaxed);
}

// Stores a new latch value. The release fence before it orders the preceding copy's writes
// before the new value; the one after it orders the new value before the next copy's writes
// (the kernel's raw_write_seqcount_latch: smp_wmb(); seq++; smp_wmb();).
void store_latch(FileHeader& h, std::uint64_t seq) {
    std::atomic_thread_fence(std::memory_order_release);
    h.seq.store(seq, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
}

bool in_dynamic_pool(std::uint32_t start, std::uint32_t size) {
    return size == 1 && start >= kDynamicPoolFirst && start <= kDynamicPoolLast;
}

// What publish() writes: `ranges` and, in each ID of systemd's dynamic pool that none of them
// covers, a removed entry without a name (no name index slot, as unname() leaves one), if the
// capacity holds them all beside the ranges (the default capacity is both pools exactly; a
// smaller table holds none, and its single IDs are inserted as before). Every single ID sorts
// before every container range (block 0), so inserting one moved every container entry in both
// copies and the block index words above block 0 (bench_alloc.sh: single IDs at 0.49x their
// rate at 20,000 live 64K ranges against 2,000); with its place held, insert() revives the entry
// where it is. Readers of version 5 already skip removed entries everywhere: no format change.
// No placeholder starts inside a live range (find_by_id() would take it for the candidate).
std::vector<RangeEntry> with_pool_places(std::span<const RangeEntry> ranges,
                                         std::uint32_t capacity) {
    std::vector<RangeEntry> out;
    auto it = ranges.begin();
    std::uint64_t covered = 0;  // one past the last ID of the ranges copied so far
    std::size_t places = kDynamicSlots;
    for (; it != ranges.end() && it->start <= kDynamicPoolLast; ++it) {
        // The pool's IDs it covers (ranges do not overlap, so these add up to at most all).
        const std::uint64_t lo = std::max(it->start, kDynamicPoolFirst);
        const std::uint64_t hi = std::min<std::uint64_t>(it->end(), kDynamicPoolLast + 1);
        places -= lo < hi ? hi - lo : 0;
    }
    if (ranges.size() + places > capacity)
        return {ranges.begin(), ranges.end()};
    out.reserve(ranges.size() + places);
    it = ranges.begin();
    for (std::uint32_t id = kDynamicPoolFirst; id <= kDynamicPoolLast; id++) {
        for (; it != ranges.end() && it->start <= id; ++it) {
            covered = std::max(covered, it->end());
            out.push_back(*it);
        }
        if (id < covered)
            continue;
        out.push_back(RangeEntry{"", id, 1, 0, kEntryFlagRemoved, 0, 0, 0});
    }
    out.insert(out.end(), it, ranges.end());
    return out;
}

bool is_valid_entry(const RangeEntry& r) {
    return is_valid_range_name(r.name.data(), r.name.size()) &&
           is_valid_entry_shape(r.start, r.size, r.flags) &&
           !(r.size > kContainerRangeSize && r.name.size() > max_range_name_length(r.size));
}

}  // namespace

Result<void> TableWriter::check(std::span<const RangeEntry> ranges, std::uint32_t capacity) {
    if (ranges.size() > capacity)
        return errno_error(ENOSPC);
    // Names are unique: a name resolves to one range, and recovery keeps one range per name.
    std::unordered_set<std::string_view> names;
    for (std::size_t i = 0; i < ranges.size(); i++) {
        const RangeEntry& r = ranges[i];
        if (!is_valid_entry(r))
            return errno_error(EINVAL);
        if (i > 0 && ranges[i - 1].end() > r.start)
            return errno_error(EINVAL);
        if (!names.insert(r.name).second)
            return errno_error(EINVAL);
    }
    return {};
}

namespace {

// One writer at a time: the lock file is never removed, so two allocators can never hold locks
// on two different inodes.
Result<UniqueFd> lock_writer(const std::string& path) {
    const std::string lock_path = path + ".lock";
    UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!lock)
        return errno_error(errno);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) < 0)
        return errno_error(errno == EWOULDBLOCK ? EBUSY : errno);
    return lock;
}

// The file at the table's path, mapped read-write; `region` stays empty if the file is too
// short to hold a header.
struct MappedFile {
    UniqueFd fd;
    ipc::mapped_region region;
};

// Maps the file at `path`; nullopt if there is none.
Result<std::optional<MappedFile>> map_existing(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!fd && errno == ENOENT)
        return std::nullopt;
    if (!fd)
        return errno_error(errno);
    struct stat st;
    if (::fstat(fd.get(), &st) < 0)
        return errno_error(errno);
    if (!S_ISREG(st.st_mode))
        return errno_error(EINVAL);
    MappedFile file{std::move(fd), {}};
    if (st.st_size >= static_cast<off_t>(sizeof(FileHeader))) {
        // A table written before blocks were reserved, or copied sparsely, may have holes, and
        // on tmpfs even a read fault on a hole needs a new page: reserve before mapping.
        const auto size = static_cast<std::uint64_t>(st.st_size);
        if (auto r = reserve_blocks(file.fd.get(), size); !r)
            return std::unexpected(r.error());
        auto m = map_rw(file.fd.get(), static_cast<std::size_t>(size));
        if (!m)
            return std::unexpected(m.error());
        file.region = std::move(*m);
    }
    return file;
}

// Not a usable table: retires it if it is one (readers then map the new file), and puts an
// empty one in its place. Its size is never reduced: readers may map it.
Result<void> replace_table(const std::string& path, std::uint32_t capacity,
                           const ipc::mapped_region& old) {
    void* base = old.get_address();
    if (base != nullptr && header_of(base).magic.load(std::memory_order_relaxed) == kMagic)
        retire(base);
    return create_table(path, capacity);
}

// A table of an older layout: writes its ranges into a new file of this one, renames that over
// it and retires it, so that readers move over. Nothing is lost at any instant: until the rename
// the old file is the table, afterwards the new one.
Result<void> migrate_table(const std::string& path, std::uint32_t capacity,
                           std::span<const RangeEntry> ranges, const ipc::mapped_region& old) {
    if (auto r = create_table(path, capacity, ranges); !r)
        return r;
    retire(old.get_address());
    return {};
}

// What the opened table held, with what open() did before it got there.
Recovery merge_recovery(Recovery found, const Recovery& before) {
    found.created = before.created;
    found.replaced = before.replaced;
    found.migrated = before.migrated;
    found.dropped += before.dropped;
    return found;
}

}  // namespace

Result<TableWriter> TableWriter::open(const std::string& path, std::uint32_t capacity) {
    if (capacity == 0 || capacity > kMaxCapacity)
        return errno_error(EINVAL);
    auto lock = lock_writer(path);
    if (!lock)
        return std::unexpected(lock.error());
    TableWriter w;
    w.path_ = path;
    w.name_seed_ = random_seed();
    // At most one step creates, replaces or migrates the file; the next one opens its result.
    for (int attempt = 0; attempt < 2; attempt++) {
        auto file = map_existing(path);
        if (!file)
            return std::unexpected(file.error());
        if (!*file) {
            if (auto r = create_table(path, capacity); !r)
                return std::unexpected(r.error());
            w.recovery_.created = true;
            continue;
        }
        const ipc::mapped_region& region = (*file)->region;
        Result<Recovery> rec =
                region.get_address() != nullptr ? recover(region) : errno_error(EBADMSG);
        if (!rec) {
            if (auto r = replace_table(path, capacity, region); !r)
                return std::unexpected(r.error());
            w.recovery_.replaced = true;
            continue;
        }
        TableView v;
        (void)view_table(region.get_address(), region.get_size(), &v);
        if (v.version != kVersion) {
            if (auto r = migrate_table(path, v.capacity, rec->ranges, region); !r)
                return std::unexpected(r.error());
            w.recovery_.migrated = true;
            w.recovery_.dropped = rec->dropped;
            continue;
        }
        w.capacity_ = v.capacity;
        w.recovery_ = merge_recovery(std::move(*rec), w.recovery_);
        w.fd_ = std::move((*file)->fd);
        w.mapping_ = std::move((*file)->region);
        // Both copies consistent again, whatever instant the previous writer died at.
        if (auto r = w.publish(w.recovery_.ranges); !r)
            return std::unexpected(r.error());
        w.lock_ = std::move(*lock);
        return w;
    }
    return errno_error(EAGAIN);
}

Result<void> TableWriter::publish(std::span<const RangeEntry> live) {
    if (auto r = check(live, capacity_); !r)
        return r;
    const std::vector<RangeEntry> table = with_pool_places(live, capacity_);
    const std::span<const RangeEntry> ranges = table;
    std::vector<std::uint32_t> names = choose_name_index(
            ranges.size(), [&](std::size_t e) { return pad_name(ranges[e].name); }, capacity_,
            &name_seed_, &probe_limit_, false);

    FileHeader& h = header_of(mapping_.get_address());
    std::uint64_t seq = h.seq.load(std::memory_order_relaxed);  // we are the only writer
    if ((seq & 1) == 0) {
        // Copy 1 is complete only if we wrote it. A previous writer may have died while writing
        // it (the counter stays even then), so fill it while readers are still on copy 0,
        // instead of steering them, and a restart after our own death, to a torn copy.
        if (!copy1_written_)
            write_copy(copy_of(mapping_.get_address(), 1), capacity_, ranges, names, name_seed_);
        store_latch(h, ++seq);  // odd: readers move to copy 1
    }
    write_copy(copy_of(mapping_.get_address(), 0), capacity_, ranges, names, name_seed_);
    store_latch(h, ++seq);  // even: readers move to the updated copy 0
    write_copy(copy_of(mapping_.get_address(), 1), capacity_, ranges, names, name_seed_);
    copy1_written_ = true;
    remember(ranges);
    names_ = std::move(names);
    locate_names();
    return {};
}

void TableWriter::remember(std::span<const RangeEntry> ranges) {
    slots_.clear();
    slots_.reserve(ranges.size());
    removed_ = held_ = 0;
    for (const RangeEntry& r : ranges) {
        const bool removed = (r.flags & kEntryFlagRemoved) != 0;  // the pool's placeholders
        slots_.push_back(Slot{r.start, r.size, pad_name(r.name), removed});
        removed_ += removed;
        held_ += removed;
    }
    top_block_ = top_block(ranges);
}

bool TableWriter::holds_pool_id(std::size_t pos) const {
    return slots_[pos].removed && in_dynamic_pool(slots_[pos].start, slots_[pos].size);
}

std::size_t TableWriter::last_held() const {
    auto it = std::upper_bound(slots_.begin(), slots_.end(), kDynamicPoolLast,
                               [](std::uint32_t v, const Slot& s) { return v < s.start; });
    auto pos = static_cast<std::size_t>(it - slots_.begin());
    while (pos > 0 && !holds_pool_id(pos - 1))
        pos--;
    return pos - 1;
}

std::optional<std::uint32_t> TableWriter::find_slot(const PaddedName& name) const {
    // The index is at most half full, so the probe meets an empty slot.
    const auto slots = static_cast<std::uint32_t>(names_.size());
    for (std::uint32_t s = home_slot(name, name_seed_, slots); names_[s] != kNameSlotEmpty;
         s = (s + 1) & (slots - 1))
        if (slots_[names_[s]].name == name)
            return s;
    return std::nullopt;
}

std::uint32_t TableWriter::index_insert(std::uint32_t e) {
    const auto slots = static_cast<std::uint32_t>(names_.size());
    std::uint32_t s = home_slot(slots_[e].name, name_seed_, slots), d = 0;
    for (; names_[s] != kNameSlotEmpty; d++)
        s = (s + 1) & (slots - 1);
    names_[s] = e;
    slots_[e].name_slot = s;
    changed_slots_.push_back(s);
    return d;
}

void TableWriter::renumber_names(std::size_t from) {
    // A store per entry moved, scattered over the slots: a pass over every slot in order cost
    // more even with 8,000 moved of 131,072 slots (1.0-1.6 ms against 0.4-0.75 ms per insert).
    for (std::size_t e = from; e < slots_.size(); e++)
        if (slots_[e].name_slot != kNameSlotEmpty)
            names_[slots_[e].name_slot] = static_cast<std::uint32_t>(e);
}

void TableWriter::locate_names() {
    for (Slot& slot : slots_)
        slot.name_slot = kNameSlotEmpty;
    for (std::uint32_t s = 0; s < names_.size(); s++)
        if (names_[s] != kNameSlotEmpty)
            slots_[names_[s]].name_slot = s;
}

void TableWriter::index_erase(std::uint32_t s) {
    // Knuth's algorithm R (TAOCP 6.4): no tombstones, so that probe runs never grow with churn.
    // An entry after the hole moves into it unless its home lies cyclically in (hole, its slot].
    const auto slots = static_cast<std::uint32_t>(names_.size());
    names_[s] = kNameSlotEmpty;
    changed_slots_.push_back(s);
    for (std::uint32_t j = (s + 1) & (slots - 1); names_[j] != kNameSlotEmpty;
         j = (j + 1) & (slots - 1)) {
        const std::uint32_t k = home_slot(slots_[names_[j]].name, name_seed_, slots);
        const bool stays = s <= j ? (s < k && k <= j) : (s < k || k <= j);
        if (stays)
            continue;
        names_[s] = names_[j];
        slots_[names_[s]].name_slot = s;
        names_[j] = kNameSlotEmpty;
        changed_slots_.push_back(j);
        s = j;
    }
}

void TableWriter::rehash() {
    names_ = choose_name_index(
            slots_.size(), [&](std::size_t e) { return slots_[e].name; }, capacity_, &name_seed_,
            &probe_limit_, true);
    locate_names();
    apply(Delta{Change::kRehash, 0, nullptr, 0, false});
}

std::optional<std::uint32_t> TableWriter::find_name(std::string_view name) const {
    // A NUL would vanish in the zero padding: "web\0" must not find "web".
    if (name.size() >= sizeof(PaddedName) || name.find('\0') != std::string_view::npos)
        return std::nullopt;
    PaddedName padded{};
    std::memcpy(padded.data(), name.data(), name.size());
    const std::optional<std::uint32_t> s = find_slot(padded);
    if (!s)
        return std::nullopt;
    const Slot& slot = slots_[names_[*s]];
    if (slot.removed)
        return std::nullopt;
    return slot.start;
}

Result<void> TableWriter::compact() {
    TableView v;
    if (int r = view_table(mapping_.get_address(), mapping_.get_size(), &v); r < 0)
        return errno_error(r);
    std::vector<RangeRecord> raw(size());
    std::size_t count = 0;
    // Our own table, which only we change: one attempt succeeds, and holds size() ranges.
    if (int r = read_all(v, raw.data(), raw.size(), &count); r < 0)
        return errno_error(r);
    if (count != raw.size())
        return errno_error(EBADMSG);
    std::vector<RangeEntry> live;
    live.reserve(count);
    for (const RangeRecord& r : raw)
        live.push_back(RangeEntry{r.name, r.start, r.size, r.owner, r.flags, r.created_usec,
                                  r.userns_id, r.userns_ino});
    return publish(live);
}

void TableWriter::drop(std::size_t pos) {
    if (slots_[pos].name_slot != kNameSlotEmpty)  // every entry but those unname() took out
        index_erase(slots_[pos].name_slot);
    held_ -= holds_pool_id(pos);
    const std::uint32_t start = slots_[pos].start;
    slots_.erase(slots_.begin() + static_cast<std::ptrdiff_t>(pos));
    removed_--;
    // The entries after it move down one: so do their numbers in the index.
    const bool renumber = pos < slots_.size();
    renumber_names(pos);
    apply(Delta{Change::kDrop, pos, nullptr, start, renumber});
}

Result<void> TableWriter::insert(const RangeEntry& entry) {
    if (!is_valid_entry(entry))
        return errno_error(EINVAL);
    if (size() >= capacity_)
        return errno_error(ENOSPC);
    auto by_start = [](const Slot& s, std::uint32_t v) { return s.start < v; };
    // The entries the new one overlaps: the one before it (if it reaches into it) and those
    // starting inside it. A live one is an error; removed ones are dropped, so that no removed
    // entry starts inside a live range (where find_by_id() would take it for the candidate) and
    // names stay unique.
    std::size_t first = static_cast<std::size_t>(
            std::lower_bound(slots_.begin(), slots_.end(), entry.start, by_start) -
            slots_.begin());
    if (first > 0 && std::uint64_t{slots_[first - 1].start} + slots_[first - 1].size > entry.start)
        first--;
    std::size_t last = first;
    while (last < slots_.size() && slots_[last].start < entry.end())
        last++;
    const PaddedName name = pad_name(entry.name);
    const std::optional<std::uint32_t> taken = find_slot(name);
    for (std::size_t i = first; i < last; i++)
        if (!slots_[i].removed)
            return errno_error(EINVAL);
    if (taken && !slots_[names_[*taken]].removed)
        return errno_error(EINVAL);
    // A block released before and taken again (every allocation, once the pool has been used
    // up): the removed entry is replaced where it is, so no entry moves and the block index
    // stays, where a drop and an insert moved every entry after it twice in both copies.
    const bool in_place = last == first + 1 && slots_[first].start == entry.start;
    // A removed range of the same name elsewhere (a name released and allocated again) gives
    // up only its name: dropping it moved every entry after it, in both copies, on most of
    // bench_alloc.sh's allocations (AllocatorTest.AllocatesReleasedNamesAgainAsFastWithAFullTable).
    if (taken && !(in_place && names_[*taken] == first))
        unname(names_[*taken]);
    if (in_place) {
        replace(first, entry);
        return {};
    }
    // Each drop is a change of its own; a reader between two sees the removed entries gone,
    // which is what they meant anyway.
    for (std::size_t i = last; i > first; i--)
        drop(i - 1);
    if (slots_.size() >= capacity_) {
        // Compaction keeps the places held in the dynamic pool and fills the room left with
        // them, so the entry may have one now: start over (once: no removed entry is left to
        // compact). Without removed entries to compact, one held place makes the room.
        if (removed() > 0) {
            if (auto r = compact(); !r)
                return r;
            return insert(entry);
        }
        drop(last_held());
    }
    const auto after = std::upper_bound(
            slots_.begin(), slots_.end(), entry.start,
            [](std::uint32_t start, const Slot& s) { return start < s.start; });
    const auto pos = static_cast<std::size_t>(after - slots_.begin());
    slots_.insert(after, Slot{entry.start, entry.size, name});
    // An append (every allocation while never-used blocks last) moves no entry: no number in
    // the name index is at or above it, and a pass over all of them cost most of an insert
    // with 27,000 entries (AllocatorTest.AllocatesAsFastWithAFullTableAsWithAFewRanges).
    const bool renumber = pos + 1 < slots_.size();
    renumber_names(pos + 1);
    const std::uint32_t distance = index_insert(static_cast<std::uint32_t>(pos));
    apply(Delta{Change::kInsert, pos, &entry, entry.start, renumber});
    if (distance > probe_limit_)
        rehash();
    return {};
}

void TableWriter::replace(std::size_t pos, const RangeEntry& entry) {
    // The old name leaves the name index and the new one enters it: a few slots each (the
    // sorted index of version 4 moved every word between the two names' places); the entries
    // keep their positions.
    if (slots_[pos].name_slot != kNameSlotEmpty)  // every entry but those unname() took out
        index_erase(slots_[pos].name_slot);
    held_ -= holds_pool_id(pos);
    slots_[pos] = Slot{entry.start, entry.size, pad_name(entry.name)};
    removed_--;
    const std::uint32_t distance = index_insert(static_cast<std::uint32_t>(pos));
    apply(Delta{Change::kReplace, pos, &entry, entry.start, false});
    if (distance > probe_limit_)
        rehash();
}

void TableWriter::unname(std::size_t pos) {
    Slot& slot = slots_[pos];
    if (slot.name_slot != kNameSlotEmpty)
        index_erase(slot.name_slot);
    slot.name = {};
    slot.name_slot = kNameSlotEmpty;
    apply(Delta{Change::kUnname, pos, nullptr, slot.start, false});
}

Result<void> TableWriter::erase(std::uint32_t start) {
    const auto it = std::lower_bound(slots_.begin(), slots_.end(), start,
                                     [](const Slot& s, std::uint32_t v) { return s.start < v; });
    if (it == slots_.end() || it->start != start || it->removed)
        return errno_error(ENOENT);
    it->removed = true;
    removed_++;
    const auto pos = static_cast<std::size_t>(it - slots_.begin());
    held_ += holds_pool_id(pos);
    apply(Delta{Change::kMarkRemoved, pos, nullptr, start, false});
    // Bounds what readers skip: an enumeration passes each removed entry once, and a table
    // mostly of removed entries would make it pay for ranges long gone.
    // The release itself is published; a compaction that failed (it only reads back our own
    // table) is tried again at the next release.
    if (removed() >= kCompactAt && removed() >= size())
        (void)compact();
    return {};
}

// The latch of publish(), with the change instead of the whole table. Between two publishes
// both copies hold the same table and the counter is even (publish() and open() end so): the
// odd counter sends readers to copy 1, still the old table, while copy 0 changes; the even one
// sends them back to copy 0, the new table, while copy 1 gets the same change. A writer killed
// at any instant leaves copies[seq & 1] complete, either the old table or the new one; a
// restarted writer rewrites both copies from that one (open()).
void TableWriter::apply(const Delta& d) {
    FileHeader& h = header_of(mapping_.get_address());
    std::uint64_t seq = h.seq.load(std::memory_order_relaxed);  // even, see above
    store_latch(h, ++seq);
    apply_to_copy(0, d);
    store_latch(h, ++seq);
    apply_to_copy(1, d);
    if (d.change == Change::kInsert)
        top_block_ = std::max(top_block_, d.start >> 16);
    changed_slots_.clear();
}

void TableWriter::apply_to_copy(int i, const Delta& d) {
    std::byte* copy = copy_of(mapping_.get_address(), i);
    auto* entries = reinterpret_cast<EntryWords*>(copy + entries_offset());
    const std::size_t count = slots_.size();  // after the change
    if (d.change == Change::kMarkRemoved) {
        // One word; the indexes keep pointing at the entry, and readers skip it.
        auto& of = entries[d.pos].owner_flags;
        of.store(of.load(std::memory_order_relaxed) | (std::uint64_t{kEntryFlagRemoved} << 32),
                 std::memory_order_relaxed);
        return;
    }
    auto* idx = name_index_of(copy, capacity_);
    if (d.change == Change::kRehash) {
        // This copy only: readers are on the other one, with its own seed.
        for (std::size_t s = 0; s < names_.size(); s++)
            idx[s].store(names_[s], std::memory_order_relaxed);
        reinterpret_cast<CopyHeader*>(copy)->name_seed.store(name_seed_,
                                                             std::memory_order_relaxed);
        return;
    }
    // The slots the change set, in any order: readers are on the other copy.
    for (const std::uint32_t s : changed_slots_)
        idx[s].store(names_[s], std::memory_order_relaxed);
    if (d.change == Change::kReplace) {
        write_entry(entries[d.pos], *d.entry);
        return;
    }
    if (d.change == Change::kUnname) {
        for (auto& word : entries[d.pos].name)
            word.store(0, std::memory_order_relaxed);
        return;
    }
    if (d.change == Change::kInsert) {
        for (std::size_t e = count - 1; e > d.pos; e--)
            copy_entry(entries[e], entries[e - 1]);
        write_entry(entries[d.pos], *d.entry);
    } else {
        for (std::size_t e = d.pos; e < count; e++)
            copy_entry(entries[e], entries[e + 1]);
    }
    // Every entry at or after the change moved by one, and so did its number in its slot: one
    // word per entry moved (a pass over the slots cost 131,072 words a copy whatever the table
    // held). An append renumbers nothing.
    if (d.renumber) {
        for (std::size_t e = d.pos; e < count; e++)
            if (slots_[e].name_slot != kNameSlotEmpty)
                idx[slots_[e].name_slot].store(static_cast<std::uint32_t>(e),
                                               std::memory_order_relaxed);
    }
    // block[b] counts the entries starting below b << 16: one more or less for the blocks
    // above the one the entry starts in.
    // This loop is most of the cost of a change (up to 65,536 words a copy, whatever the size of
    // the table): the step is a local, or the compiler reloads d.insert after every store.
    // Above top_block_ the words are kPastTheTop and stay so; an entry starting above the top
    // makes the words from the old top to its block exact (every other entry is below them).
    auto* block = block_index_of(copy, capacity_);
    const std::uint32_t at = d.start >> 16;
    const std::uint32_t step = d.change == Change::kInsert ? 1U : ~0U;  // +1 or -1, mod 2^32
    for (std::uint32_t b = at + 1; b <= top_block_; b++)
        block[b].store(block[b].load(std::memory_order_relaxed) + step,
                       std::memory_order_relaxed);
    for (std::uint32_t b = top_block_ + 1; b <= at; b++)
        block[b].store(static_cast<std::uint32_t>(count - 1), std::memory_order_relaxed);
    reinterpret_cast<CopyHeader*>(copy)->count.store(count, std::memory_order_relaxed);
}

}  // namespace transient::shm
