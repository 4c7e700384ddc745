// SPDX-License-Identifier: LGPL-2.1-or-later

#include "shm/writer.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <string_view>
#include <unordered_set>

#include "shm/reader.hpp"

namespace transient::shm {
namespace {

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
                const std::vector<std::uint32_t>& by_name);
std::vector<std::uint32_t> sorted_by_name(std::span<const RangeEntry> ranges);

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

Result<Mapping> map_rw(int fd, std::size_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return errno_error(errno);
    return Mapping(p, size);
}

// Creates a fresh table holding `ranges` (valid, sorted: recovered ones) next to `path` and
// renames it into place, so that readers see either the old file or the complete new one.
Result<void> create_table(const std::string& path, std::uint32_t capacity,
                          std::span<const RangeEntry> ranges = {}) {
    const std::string tmp = path + ".new";
    ::unlink(tmp.c_str());
    UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd)
        return errno_error(errno);
    const std::uint64_t size = file_size_for(capacity);
    if (::fchmod(fd.get(), 0644) < 0 || ::ftruncate(fd.get(), static_cast<off_t>(size)) < 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return errno_error(e);
    }
    if (auto r = reserve_blocks(fd.get(), size); !r) {
        ::unlink(tmp.c_str());
        return r;
    }
    auto m = map_rw(fd.get(), size);
    if (!m) {
        ::unlink(tmp.c_str());
        return std::unexpected(m.error());
    }
    FileHeader& h = header_of(m->get());
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
    if (!ranges.empty()) {
        const std::vector<std::uint32_t> by_name = sorted_by_name(ranges);
        for (int i = 0; i < 2; i++)
            write_copy(copy_of(m->get(), i), capacity, ranges, by_name);
    }
    if (::rename(tmp.c_str(), path.c_str()) < 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return errno_error(e);
    }
    return {};
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

Result<Recovery> recover(const Mapping& m) {
    TableView v;
    if (int r = view_table(m.get(), m.size(), &v); r < 0)
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

void write_copy(std::byte* copy, std::uint32_t capacity, std::span<const RangeEntry> ranges,
                const std::vector<std::uint32_t>& by_name) {
    auto* entries = reinterpret_cast<EntryWords*>(copy + entries_offset());
    for (std::size_t i = 0; i < ranges.size(); i++) {
        const RangeEntry& r = ranges[i];
        EntryWords& e = entries[i];
        // Relaxed: the latch counter stores around this copy order these (see publish()).
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
    auto* idx = reinterpret_cast<std::atomic<std::uint32_t>*>(copy + name_index_offset(capacity));
    for (std::size_t i = 0; i < by_name.size(); i++)
        idx[i].store(by_name[i], std::memory_order_relaxed);  // ordered by the latch, as above
    // block[b]: the first entry starting at or above b << 16 (ranges are sorted by start).
    auto* block =
            reinterpret_cast<std::atomic<std::uint32_t>*>(copy + block_index_offset(capacity));
    std::size_t e = 0;
    for (std::uint32_t b = 0; b < kBlockIndexSize; b++) {
        while (e < ranges.size() && (ranges[e].start >> 16) < b)
            e++;
        block[b].store(static_cast<std::uint32_t>(e), std::memory_order_relaxed);  // as above
    }
    reinterpret_cast<CopyHeader*>(copy)->count.store(ranges.size(), std::memory_order_relaxed);
}

// The name index of `ranges`: their positions, sorted by padded name.
std::vector<std::uint32_t> sorted_by_name(std::span<const RangeEntry> ranges) {
    std::vector<std::uint32_t> by_name(ranges.size());
    std::iota(by_name.begin(), by_name.end(), 0U);
    std::vector<PaddedName> names;
    names.reserve(ranges.size());
    for (const auto& r : ranges)
        names.push_back(pad_name(r.name));
    std::sort(by_name.begin(), by_name.end(), [&](std::uint32_t a, std::uint32_t b) {
        return std::memcmp(names[a].data(), names[b].data(), names[a].size()) < 0;
    });
    return by_name;
}

// Stores a new latch value. The release fence before it orders the preceding copy's writes
// before the new value; the one after it orders the new value before the next copy's writes
// (the kernel's raw_write_seqcount_latch: smp_wmb(); seq++; smp_wmb();).
void store_latch(FileHeader& h, std::uint64_t seq) {
    std::atomic_thread_fence(std::memory_order_release);
    h.seq.store(seq, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
}

}  // namespace

Result<void> TableWriter::check(std::span<const RangeEntry> ranges, std::uint32_t capacity) {
    if (ranges.size() > capacity)
        return errno_error(ENOSPC);
    // Names are unique: a name resolves to one range, and recovery keeps one range per name.
    std::unordered_set<std::string_view> names;
    for (std::size_t i = 0; i < ranges.size(); i++) {
        const RangeEntry& r = ranges[i];
        if (!is_valid_range_name(r.name.data(), r.name.size()) ||
            !is_valid_range_shape(r.start, r.size) ||
            (r.size > kContainerRangeSize && r.name.size() > max_range_name_length(r.size)))
            return errno_error(EINVAL);
        if (i > 0 && ranges[i - 1].end() > r.start)
            return errno_error(EINVAL);
        if (!names.insert(r.name).second)
            return errno_error(EINVAL);
    }
    return {};
}

Result<TableWriter> TableWriter::open(const std::string& path, std::uint32_t capacity) {
    if (capacity == 0 || capacity > kMaxCapacity)
        return errno_error(EINVAL);
    TableWriter w;
    w.path_ = path;
    // One writer at a time: the lock file is never removed, so two allocators can never hold
    // locks on two different inodes.
    const std::string lock_path = path + ".lock";
    UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!lock)
        return errno_error(errno);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) < 0)
        return errno_error(errno == EWOULDBLOCK ? EBUSY : errno);

    for (int attempt = 0; attempt < 2; attempt++) {
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
        if (!fd && errno != ENOENT)
            return errno_error(errno);
        if (!fd) {
            if (auto r = create_table(path, capacity); !r)
                return std::unexpected(r.error());
            w.recovery_.created = true;
            continue;
        }
        struct stat st;
        if (::fstat(fd.get(), &st) < 0)
            return errno_error(errno);
        if (!S_ISREG(st.st_mode))
            return errno_error(EINVAL);
        Result<Recovery> rec = errno_error(EBADMSG);
        Mapping m;
        if (st.st_size >= static_cast<off_t>(sizeof(FileHeader))) {
            // A table written before blocks were reserved, or copied sparsely, may have holes,
            // and on tmpfs even a read fault on a hole needs a new page: reserve before mapping.
            if (auto r = reserve_blocks(fd.get(), static_cast<std::uint64_t>(st.st_size)); !r)
                return std::unexpected(r.error());
            auto mapped = map_rw(fd.get(), static_cast<std::size_t>(st.st_size));
            if (!mapped)
                return std::unexpected(mapped.error());
            m = std::move(*mapped);
            rec = recover(m);
        }
        if (!rec) {
            // Not a usable table: retire it if it is one (readers then map the new file), and
            // put an empty one in its place. Its size is never reduced: readers may map it.
            if (m && header_of(m.get()).magic.load(std::memory_order_relaxed) == kMagic)
                header_of(m.get()).state.store(static_cast<std::uint64_t>(TableState::kRetired),
                                               std::memory_order_release);
            if (auto r = create_table(path, capacity); !r)
                return std::unexpected(r.error());
            w.recovery_.replaced = true;
            continue;
        }
        TableView v;
        (void)view_table(m.get(), m.size(), &v);
        if (v.version != kVersion) {
            // A table of an older layout: write its ranges into a new file of this one, rename
            // that over it and retire it, so that readers move over. Nothing is lost at any
            // instant: until the rename the old file is the table, afterwards the new one.
            if (auto r = create_table(path, v.capacity, rec->ranges); !r)
                return std::unexpected(r.error());
            header_of(m.get()).state.store(static_cast<std::uint64_t>(TableState::kRetired),
                                           std::memory_order_release);
            w.recovery_.migrated = true;
            w.recovery_.dropped = rec->dropped;
            continue;
        }
        w.capacity_ = v.capacity;
        const bool created = w.recovery_.created, replaced = w.recovery_.replaced,
                   migrated = w.recovery_.migrated;
        const std::size_t dropped = w.recovery_.dropped;
        w.recovery_ = std::move(*rec);
        w.recovery_.created = created;
        w.recovery_.replaced = replaced;
        w.recovery_.migrated = migrated;
        w.recovery_.dropped += dropped;
        w.fd_ = std::move(fd);
        w.mapping_ = std::move(m);
        // Both copies consistent again, whatever instant the previous writer died at.
        if (auto r = w.publish(w.recovery_.ranges); !r)
            return std::unexpected(r.error());
        w.lock_ = std::move(lock);
        return w;
    }
    return errno_error(EAGAIN);
}

Result<void> TableWriter::publish(std::span<const RangeEntry> ranges) {
    if (auto r = check(ranges, capacity_); !r)
        return r;
    const std::vector<std::uint32_t> by_name = sorted_by_name(ranges);

    FileHeader& h = header_of(mapping_.get());
    std::uint64_t seq = h.seq.load(std::memory_order_relaxed);  // we are the only writer
    if ((seq & 1) == 0) {
        // Copy 1 is complete only if we wrote it. A previous writer may have died while writing
        // it (the counter stays even then), so fill it while readers are still on copy 0,
        // instead of steering them, and a restart after our own death, to a torn copy.
        if (!copy1_written_)
            write_copy(copy_of(mapping_.get(), 1), capacity_, ranges, by_name);
        store_latch(h, ++seq);  // odd: readers move to copy 1
    }
    write_copy(copy_of(mapping_.get(), 0), capacity_, ranges, by_name);
    store_latch(h, ++seq);  // even: readers move to the updated copy 0
    write_copy(copy_of(mapping_.get(), 1), capacity_, ranges, by_name);
    copy1_written_ = true;
    return {};
}

}  // namespace transient::shm
