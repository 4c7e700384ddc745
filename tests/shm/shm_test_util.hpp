// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Helpers shared by the range-table tests: temporary directories, guarded read-only mappings
// (an out-of-bounds read faults instead of passing silently), self-describing ranges whose
// every field is derived from the start so that a torn record is recognisable, and an
// independent record validator (it deliberately does not call the reader's own checks).

#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/layout.hpp"
#include "shm/reader.hpp"
#include "shm/writer.hpp"
#include "tests/lib/temp_dir.hpp"

namespace transient::shm::testing {

inline std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

inline std::size_t round_up_page(std::size_t n) {
    return (n + page_size() - 1) / page_size() * page_size();
}

// A private directory under /dev/shm (tmpfs, like /run/transient), removed with its contents.
class TempDir : public transient::testing::TempDir {
public:
    TempDir() : transient::testing::TempDir("transient-shm-test", "/dev/shm") {}
    std::string table() const { return path() + "/" + kTableFileName; }
};

// A read-only view of `size` bytes followed by a PROT_NONE page, so that a reader that reads
// past `size` faults. Two flavours:
//  * of_file() maps the file itself over the start of a PROT_NONE reservation (MAP_FIXED). The
//    tail of the last file page (past EOF) reads as zeros, so only reads beyond that page fault.
//  * of_bytes() copies bytes so that they *end* exactly at the guard page: every byte past
//    `size` faults. REQUIRES: size % 8 == 0, so that the start stays 8-byte aligned.
class GuardedMapping {
public:
    GuardedMapping() = default;
    GuardedMapping(GuardedMapping&& o) noexcept { *this = std::move(o); }
    GuardedMapping& operator=(GuardedMapping&& o) noexcept {
        std::swap(region_, o.region_);
        std::swap(region_size_, o.region_size_);
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
        return *this;
    }
    ~GuardedMapping() {
        if (region_ != nullptr)
            ::munmap(region_, region_size_);
    }

    static GuardedMapping of_file(int fd, std::size_t size) {
        GuardedMapping g;
        g.reserve(round_up_page(size) + page_size());
        if (size > 0 && ::mmap(g.region_, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) ==
                                MAP_FAILED) {
            std::perror("mmap MAP_FIXED");
            std::abort();
        }
        g.data_ = static_cast<const std::byte*>(g.region_);
        g.size_ = size;
        return g;
    }

    static GuardedMapping of_bytes(std::span<const std::byte> bytes) {
        GuardedMapping g;
        g.reserve(round_up_page(bytes.size()) + page_size());
        g.assign(bytes);
        return g;
    }

    // Replaces the contents with `bytes` (at most the size the mapping was created with).
    void assign(std::span<const std::byte> bytes) {
        const std::size_t body = region_size_ - page_size();
        if (bytes.size() % 8 != 0 || bytes.size() > body)
            std::abort();
        auto* start = static_cast<std::byte*>(region_) + body - bytes.size();
        if (::mprotect(region_, body, PROT_READ | PROT_WRITE) < 0)
            std::abort();
        if (!bytes.empty())
            std::memcpy(start, bytes.data(), bytes.size());
        // Readers map the table PROT_READ: an accidental store or RMW faults here as well.
        if (::mprotect(region_, body, PROT_READ) < 0)
            std::abort();
        data_ = start;
        size_ = bytes.size();
    }

    const std::byte* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    void reserve(std::size_t n) {
        void* p = ::mmap(nullptr, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            std::perror("mmap PROT_NONE");
            std::abort();
        }
        region_ = p;
        region_size_ = n;
    }

    void* region_ = nullptr;
    std::size_t region_size_ = 0;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

inline std::vector<std::byte> read_file(const std::string& path) {
    std::vector<std::byte> out(std::filesystem::file_size(path));
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::pread(fd, out.data(), out.size(), 0) != static_cast<ssize_t>(out.size()))
        std::abort();
    ::close(fd);
    return out;
}

inline void write_file(const std::string& path, std::span<const std::byte> bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ::pwrite(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()))
        std::abort();
    ::close(fd);
}

// Slot i of the full pool, in start order: the 4336 dynamic UIDs, then the 28664 container
// ranges. REQUIRES: i < kDefaultCapacity.
inline std::uint32_t slot_start(std::uint32_t i) {
    return i < kDynamicSlots ? kDynamicPoolFirst + i
                             : kContainerPoolFirst + (i - kDynamicSlots) * kContainerRangeSize;
}

inline std::uint32_t slot_size(std::uint32_t i) {
    return i < kDynamicSlots ? 1 : kContainerRangeSize;
}

// A range that describes itself: the name is "r<hex start>" and every other field is a function
// of the start, so a record mixing two entries (a torn read) fails self_consistent().
inline RangeEntry self_describing(std::uint32_t start, std::uint32_t size) {
    char name[16];
    std::snprintf(name, sizeof name, "r%" PRIx32, start);
    const bool userns = start % 3 == 0;
    return RangeEntry{name,
                      start,
                      size,
                      start ^ 0x5a5a5a5aU,
                      userns ? kEntryFlagUserns : 0U,
                      std::uint64_t{start} * 1000003ULL,
                      userns ? ~std::uint64_t{start} : 0,
                      userns ? std::uint64_t{start} << 20 : 0};
}

inline RangeEntry slot_range(std::uint32_t i) {
    return self_describing(slot_start(i), slot_size(i));
}

// Validates a record independently of the reader's validate_record(): NUL-terminated name of
// 1…22 characters from [A-Za-z_][A-Za-z0-9_-]*, size 1 or 64K-aligned whole blocks (at most
// kMaxRangeSize) that do not cover the foreign range or reach (uid_t) -1.
inline ::testing::AssertionResult valid_record(const RangeRecord& r) {
    const void* nul = std::memchr(r.name, '\0', sizeof r.name);
    if (nul == nullptr)
        return ::testing::AssertionFailure() << "name is not NUL-terminated";
    const std::size_t n = static_cast<std::size_t>(static_cast<const char*>(nul) - r.name);
    if (n == 0 || n > kMaxRangeNameLength)
        return ::testing::AssertionFailure() << "name length " << n;
    for (std::size_t i = 0; i < n; i++) {
        const char c = r.name[i];
        const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        const bool rest = (c >= '0' && c <= '9') || c == '-';
        if (!alpha && (i == 0 || !rest))
            return ::testing::AssertionFailure() << "bad character " << int(c) << " at " << i;
    }
    if (r.size == 1) {
        if (r.start == 0xFFFFU || r.start == 0xFFFFFFFFU)
            return ::testing::AssertionFailure() << "reserved single UID " << r.start;
    } else if (r.size % kContainerRangeSize == 0 && r.size != 0 && r.size <= kMaxRangeSize) {
        const std::uint64_t end = std::uint64_t{r.start} + r.size;
        if (r.start == 0 || (r.start & 0xFFFFU) != 0 || end > 0xFFFF0000ULL ||
            (r.start <= kForeignBase && kForeignBase < end))
            return ::testing::AssertionFailure() << "bad container start " << r.start;
        // "vu-<name>-<size - 1>" within 31 bytes.
        if (4 + n + std::to_string(r.size - 1).size() > 31)
            return ::testing::AssertionFailure() << "name too long for size " << r.size;
    } else {
        return ::testing::AssertionFailure() << "bad size " << r.size;
    }
    return ::testing::AssertionSuccess();
}

// True if every field of `r` is what self_describing() derives from the start its name encodes.
inline ::testing::AssertionResult self_consistent(const RangeRecord& r) {
    if (auto v = valid_record(r); !v)
        return v;
    char* end = nullptr;
    if (r.name[0] != 'r')
        return ::testing::AssertionFailure() << "name " << r.name << " is not r<hex>";
    const unsigned long named = std::strtoul(r.name + 1, &end, 16);
    if (*end != '\0' || named != r.start) {
        char start[16];
        std::snprintf(start, sizeof start, "%" PRIx32, r.start);
        return ::testing::AssertionFailure()
               << "torn record: name " << r.name << " but start 0x" << start;
    }
    const RangeEntry want = self_describing(r.start, r.start < kContainerPoolFirst
                                                             ? 1U
                                                             : kContainerRangeSize);
    if (r.size != want.size || r.owner != want.owner || r.flags != want.flags ||
        r.created_usec != want.created_usec || r.userns_id != want.userns_id ||
        r.userns_ino != want.userns_ino)
        return ::testing::AssertionFailure() << "torn record: fields of " << r.name
                                             << " do not match its start";
    return ::testing::AssertionSuccess();
}

inline RangeEntry to_entry(const RangeRecord& r) {
    return RangeEntry{r.name, r.start, r.size, r.owner, r.flags, r.created_usec, r.userns_id,
                      r.userns_ino};
}

// Everything a reader sees through read_all(), as writer entries (for comparisons).
inline std::vector<RangeEntry> read_entries(const TableView& v, int* ret_error = nullptr) {
    std::vector<RangeRecord> recs(v.capacity);
    std::size_t count = 0;
    const int r = read_all(v, recs.data(), recs.size(), &count);
    if (ret_error != nullptr)
        *ret_error = r;
    std::vector<RangeEntry> out;
    if (r < 0)
        return out;
    for (std::size_t i = 0; i < std::min(count, recs.size()); i++)
        out.push_back(to_entry(recs[i]));
    return out;
}

}  // namespace transient::shm::testing
