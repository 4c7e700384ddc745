// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The built libsubid_transient.so, dlopen()ed and called as shadow's libsubid calls it, against
// tables written with shm::TableWriter (and patched byte by byte where the writer would refuse
// the contents: multi-block and imported ranges, overlapping and corrupt entries). Owners are
// users every Debian system has: root (0), daemon (1), bin (2).

#include <dlfcn.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "shm/layout.hpp"
#include "shm/writer.hpp"
#include "subid/subid.hpp"
#include "tests/lib/table_fixture.hpp"
#include "tests/shm/shm_test_util.hpp"

#ifndef TRANSIENT_SUBID_PROVIDER_PATH
#error "TRANSIENT_SUBID_PROVIDER_PATH must name the built libsubid_transient.so"
#endif

namespace transient::subid::testing {
namespace {

// The table fixture's helpers (bind_symbol, runtime_dir, table_path, install_table, ...).
using namespace transient::testing;

constexpr std::uint32_t k64K = shm::kContainerRangeSize;
constexpr std::uint32_t kA = shm::kContainerPoolFirst;  // 524288: the first container block
constexpr std::uint32_t kRoot = 0, kDaemon = 1, kBin = 2;

struct Provider {
    decltype(&shadow_subid_has_range) has_range = nullptr;
    decltype(&shadow_subid_list_owner_ranges) list_owner_ranges = nullptr;
    decltype(&shadow_subid_find_subid_owners) find_subid_owners = nullptr;
    decltype(&shadow_subid_free) free = nullptr;

    static const Provider& get() {
        static const Provider p = load();
        return p;
    }

private:
    static Provider load() {
        Provider p;
        // As shadow's lib/nss.c: RTLD_LAZY.
        void* h = ::dlopen(TRANSIENT_SUBID_PROVIDER_PATH, RTLD_LAZY);
        if (h == nullptr) {
            ADD_FAILURE() << "dlopen: " << ::dlerror();
            return p;
        }
        bind_symbol(h, &p.has_range, "shadow_subid_has_range");
        bind_symbol(h, &p.list_owner_ranges, "shadow_subid_list_owner_ranges");
        bind_symbol(h, &p.find_subid_owners, "shadow_subid_find_subid_owners");
        bind_symbol(h, &p.free, "shadow_subid_free");
        return p;
    }
};

shm::RangeEntry range(std::string name, std::uint32_t start, std::uint32_t size,
                      std::uint32_t owner, std::uint32_t flags = 0) {
    return shm::RangeEntry{std::move(name), start, size, owner, flags, 1, 0, 0};
}

using Ranges = std::vector<std::pair<unsigned long, unsigned long>>;

// A list_owner_ranges() answer: status, then the ranges.
struct ListAnswer {
    subid_status status;
    Ranges ranges;
    bool null_when_empty;
    friend bool operator==(const ListAnswer&, const ListAnswer&) = default;
};

class SubidTest : public transient::testing::TableTest {
protected:
    void SetUp() override {
        TableTest::SetUp();
        ASSERT_NE(p().has_range, nullptr);
    }

    static const Provider& p() { return Provider::get(); }

    // Overwrites a word of the live table in both copies, where the writer would refuse it.
    // `word` is an offset within the copy.
    static void patch_copies(std::uint64_t word, std::uint64_t value) {
        const int fd = ::open(table_path().c_str(), O_RDWR | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        for (int c = 0; c < 2; c++) {
            std::uint64_t off = 0;
            ASSERT_EQ(::pread(fd, &off, 8, offsetof(shm::FileHeader, copy_offset) + 8 * c), 8);
            ASSERT_EQ(::pwrite(fd, &value, 8, static_cast<off_t>(off + word)), 8);
        }
        ::close(fd);
    }
    // The offset in a copy of live entry `i` (in start order): the writer holds the dynamic
    // pool's free IDs with removed entries in between (shm::TableWriter::publish()).
    static std::uint64_t live_entry(std::uint64_t i) {
        const int fd = ::open(table_path().c_str(), O_RDONLY | O_CLOEXEC);
        EXPECT_GE(fd, 0);
        std::uint64_t off = 0, at = shm::entries_offset();
        EXPECT_EQ(::pread(fd, &off, 8, offsetof(shm::FileHeader, copy_offset)), 8);
        for (;; at += sizeof(shm::EntryWords)) {
            std::uint64_t of = 0;
            EXPECT_EQ(::pread(fd, &of, 8,
                              static_cast<off_t>(off + at + offsetof(shm::EntryWords, owner_flags))),
                      8);
            if (((of >> 32) & shm::kEntryFlagRemoved) == 0 && i-- == 0)
                break;
        }
        ::close(fd);
        return at;
    }
    static void patch_entry(std::uint64_t i, std::uint32_t start, std::uint32_t size) {
        patch_copies(live_entry(i) + offsetof(shm::EntryWords, start_size),
                     start | std::uint64_t{size} << 32);
    }
    static void patch_owner_flags(std::uint64_t i, std::uint32_t owner, std::uint32_t flags) {
        patch_copies(live_entry(i) + offsetof(shm::EntryWords, owner_flags),
                     owner | std::uint64_t{flags} << 32);
    }

    static ListAnswer list(const char* owner, subid_type t = ID_TYPE_UID) {
        subid_range* r = reinterpret_cast<subid_range*>(&sentinel_);
        int n = -1;
        ListAnswer a{p().list_owner_ranges(owner, t, &r, &n), {}, true};
        for (int i = 0; i < n; i++)
            a.ranges.emplace_back(r[i].start, r[i].count);
        a.null_when_empty = n > 0 || r == nullptr;
        std::free(r);  // as podman does: plain free()
        return a;
    }

    // has_range(): -1 for a status other than SUCCESS, else 0 or 1.
    static int has(const char* owner, unsigned long start, unsigned long count,
                   subid_type t = ID_TYPE_UID) {
        bool result = true;
        const subid_status s = p().has_range(owner, start, count, t, &result);
        if (s != SUBID_STATUS_SUCCESS)
            return result ? -2 : -1;  // -2: an error that still said true
        return result ? 1 : 0;
    }

    // find_subid_owners(): the UIDs, or {-1} for a status other than SUCCESS.
    static std::vector<long> owners(unsigned long id, subid_type t = ID_TYPE_UID) {
        uid_t* u = nullptr;
        int n = -1;
        const subid_status s = p().find_subid_owners(id, t, &u, &n);
        std::vector<long> out;
        if (s != SUBID_STATUS_SUCCESS)
            out.push_back(-1);
        for (int i = 0; i < n; i++)
            out.push_back(u[i]);
        p().free(u);
        return out;
    }

    static inline int sentinel_ = 0;
};

const ListAnswer kNone{SUBID_STATUS_SUCCESS, {}, true};
const ListAnswer kError{SUBID_STATUS_ERROR, {}, true};

// root: a single ID, two adjacent blocks, a lone block; daemon: the block between them.
std::vector<shm::RangeEntry> mixed() {
    return {range("one", shm::kDynamicPoolFirst, 1, kRoot),
            range("two", shm::kDynamicPoolFirst + 1, 1, kRoot),
            range("a", kA, k64K, kRoot),
            range("b", kA + k64K, k64K, kDaemon),
            range("c", kA + 2 * k64K, k64K, kRoot),
            range("d", kA + 3 * k64K, k64K, kRoot),
            range("e", kA + 6 * k64K, k64K, kRoot)};
}

TEST_F(SubidTest, NoTableMeansNoRanges) {
    EXPECT_EQ(list("root"), kNone);
    EXPECT_EQ(has("root", kA, 1), 0);
    EXPECT_EQ(owners(kA), std::vector<long>{});
}

TEST_F(SubidTest, ListsOwnersRangesSortedMergedWithoutSingleIds) {
    publish(mixed());
    const ListAnswer want{SUBID_STATUS_SUCCESS,
                          {{kA, k64K}, {kA + 2 * k64K, 2 * k64K}, {kA + 6 * k64K, k64K}},
                          true};
    EXPECT_EQ(list("root"), want);
    EXPECT_EQ(list("root", ID_TYPE_GID), want) << "UID and GID answers differ";
    EXPECT_EQ(list("0"), want) << "owner as a number";
    EXPECT_EQ(list("daemon"), (ListAnswer{SUBID_STATUS_SUCCESS, {{kA + k64K, k64K}}, true}));
    EXPECT_EQ(list("bin"), kNone) << "a user without ranges: SUCCESS, NULL, 0";
}

TEST_F(SubidTest, OwnerIsNameOrCanonicalNumber) {
    publish({range("a", kA, k64K, 4242), range("b", kA + k64K, k64K, kDaemon)});
    EXPECT_EQ(list("4242"), (ListAnswer{SUBID_STATUS_SUCCESS, {{kA, k64K}}, true}))
            << "a UID without a user name";
    EXPECT_EQ(list("1"), list("daemon"));
    EXPECT_EQ(list("no-such-user-here").status, SUBID_STATUS_UNKNOWN_USER);
    EXPECT_EQ(list("04242").status, SUBID_STATUS_UNKNOWN_USER) << "not how /etc/subuid spells it";
    EXPECT_EQ(list("4294967295").status, SUBID_STATUS_UNKNOWN_USER) << "(uid_t) -1";
    EXPECT_EQ(list("99999999999").status, SUBID_STATUS_UNKNOWN_USER);
    EXPECT_EQ(list("").status, SUBID_STATUS_UNKNOWN_USER);
    EXPECT_EQ(has("no-such-user-here", kA, 1), -1);
}

TEST_F(SubidTest, HasRangeOnlyForIdsTheOwnerHolds) {
    publish(mixed());
    EXPECT_EQ(has("root", kA, k64K), 1);
    EXPECT_EQ(has("root", kA + 5, 10), 1);
    EXPECT_EQ(has("root", shm::kDynamicPoolFirst, 2), 1) << "adjacent single IDs";
    EXPECT_EQ(has("root", kA + 2 * k64K + 100, k64K), 1) << "across two adjacent blocks";
    EXPECT_EQ(has("0", kA + 2 * k64K, 2 * k64K, ID_TYPE_GID), 1);
    EXPECT_EQ(has("daemon", kA + k64K, k64K), 1);
    EXPECT_EQ(has("root", kA, 2 * k64K), 0) << "runs into daemon's block";
    EXPECT_EQ(has("root", kA + k64K, 1), 0) << "daemon's block";
    EXPECT_EQ(has("daemon", kA, 1), 0) << "root's block";
    EXPECT_EQ(has("root", kA + 3 * k64K, 2 * k64K), 0) << "runs past the end of a range";
    EXPECT_EQ(has("root", kA - 1, 2), 0) << "starts before a range";
    EXPECT_EQ(has("bin", kA, 1), 0);
    EXPECT_EQ(has("root", kA, 0), 0) << "an empty request, as the files backend";
}

TEST_F(SubidTest, HasRangeRefusesHugeAndWrappingRequests) {
    publish({range("a", kA, k64K, kRoot), range("z", 0xFFFE0000U, k64K, kRoot)});
    EXPECT_EQ(has("root", 0xFFFE0000U, k64K), 1);
    EXPECT_EQ(has("root", 0xFFFE0000U, k64K + 1), 0);
    EXPECT_EQ(has("root", kA, ULONG_MAX), 0);
    EXPECT_EQ(has("root", ULONG_MAX - 1, 4), 0) << "start + count wraps";
    EXPECT_EQ(has("root", ULONG_MAX, 1), 0);
    EXPECT_EQ(has("root", kA + (1UL << 32), 1), 0) << "beyond the 32-bit ID space";
    EXPECT_EQ(has("root", 0xFFFFFFFFUL, 1), 0);
    EXPECT_EQ(owners(kA + (1UL << 32)), std::vector<long>{});
}

TEST_F(SubidTest, ReleasedRangeIsNoLongerHeld) {
    publish(mixed());
    ASSERT_EQ(has("root", kA + 6 * k64K, k64K), 1);
    std::vector<shm::RangeEntry> rest = mixed();
    rest.pop_back();
    publish(rest);
    EXPECT_EQ(has("root", kA + 6 * k64K, k64K), 0);
    EXPECT_EQ(list("root").ranges.size(), 2U);
    EXPECT_EQ(owners(kA + 6 * k64K), std::vector<long>{});
}

TEST_F(SubidTest, FindsOwnersOfAnId) {
    publish(mixed());
    EXPECT_EQ(owners(kA + k64K + 77), std::vector<long>{kDaemon});
    EXPECT_EQ(owners(kA + 6 * k64K + 65535, ID_TYPE_GID), std::vector<long>{kRoot});
    EXPECT_EQ(owners(shm::kDynamicPoolFirst + 1), std::vector<long>{kRoot}) << "single ID";
    EXPECT_EQ(owners(kA + 4 * k64K), std::vector<long>{});
    EXPECT_EQ(owners(0), std::vector<long>{});
}

TEST_F(SubidTest, MultiBlockRangesOfAnySize) {
    // The writer takes only 1 and 65536 today: make "a" 128 blocks (8388608 IDs) by hand.
    publish({range("a", kA, k64K, kRoot), range("b", kA + 128 * k64K, k64K, kRoot)});
    patch_entry(0, kA, 128 * k64K);
    EXPECT_EQ(list("root"), (ListAnswer{SUBID_STATUS_SUCCESS, {{kA, 129UL * k64K}}, true}));
    EXPECT_EQ(has("root", kA + k64K - 1, 2), 1) << "across a block boundary inside one range";
    EXPECT_EQ(has("root", kA + 100 * k64K, 29 * k64K), 1);
    EXPECT_EQ(owners(kA + 127 * k64K + 5), std::vector<long>{kRoot});
    // Not 64K-aligned, or over the foreign range: not something the allocator hands out.
    patch_entry(0, kA + 1, 2 * k64K);
    EXPECT_EQ(has("root", kA + 1, 1), 0);
    patch_entry(0, shm::kForeignBase - k64K, 2 * k64K);
    EXPECT_EQ(has("root", shm::kForeignBase - k64K, 1), 0);
}

TEST_F(SubidTest, FlagsSayWhichIdTypeAnEntryIsFor) {
    publish({range("u", kA, k64K, kRoot), range("g", kA + k64K, k64K, kRoot),
             range("x", kA + 2 * k64K, k64K, kRoot, 1U << 30)});
    patch_owner_flags(0, kRoot, shm::kEntryFlagImported | shm::kEntryFlagNoGid);
    patch_owner_flags(1, kRoot, shm::kEntryFlagImported | shm::kEntryFlagNoUid);
    EXPECT_EQ(list("root", ID_TYPE_UID),
              (ListAnswer{SUBID_STATUS_SUCCESS, {{kA, k64K}, {kA + 2 * k64K, k64K}}, true}))
            << "an unknown flag (bit 30) is ignored";
    EXPECT_EQ(list("root", ID_TYPE_GID),
              (ListAnswer{SUBID_STATUS_SUCCESS, {{kA + k64K, 2 * k64K}}, true}));
    EXPECT_EQ(has("root", kA, 1, ID_TYPE_GID), 0);
    EXPECT_EQ(has("root", kA + k64K, 1, ID_TYPE_UID), 0);
    EXPECT_EQ(owners(kA, ID_TYPE_GID), std::vector<long>{});
    EXPECT_EQ(owners(kA + k64K, ID_TYPE_GID), std::vector<long>{kRoot});
}

TEST_F(SubidTest, ImportedRangesNeedNoAlignment) {
    // useradd's defaults: 100000 + 65536, then 165536 + 65536.
    publish({range("s1", kA, k64K, kDaemon), range("s2", kA + k64K, k64K, kDaemon)});
    patch_entry(0, 100000, 65536);
    patch_entry(1, 165536, 65536);
    patch_owner_flags(0, kDaemon, shm::kEntryFlagImported);
    patch_owner_flags(1, kBin, shm::kEntryFlagImported);
    EXPECT_EQ(list("daemon"), (ListAnswer{SUBID_STATUS_SUCCESS, {{100000, 65536}}, true}));
    EXPECT_EQ(has("bin", 165536, 65536), 1);
    EXPECT_EQ(has("daemon", 100000, 65537), 0);
    // The same shape without the flag is not something the allocator makes: ignored.
    patch_owner_flags(0, kDaemon, 0);
    EXPECT_EQ(has("daemon", 100000, 1), 0);
}

TEST_F(SubidTest, OverlappingEntriesMakeTheTableUnusable) {
    publish({range("a", kA, k64K, kRoot), range("b", kA + k64K, k64K, kDaemon)});
    ASSERT_EQ(has("root", kA, 1), 1);
    patch_entry(0, kA, 2 * k64K);  // root's "a" now also claims daemon's block
    EXPECT_EQ(has("root", kA, 1), -1);
    EXPECT_EQ(has("root", kA + k64K, 1), -1);
    EXPECT_EQ(has("daemon", kA + k64K, 1), -1);
    EXPECT_EQ(list("root"), kError);
    EXPECT_EQ(owners(kA + k64K), std::vector<long>{-1});
    // Out of order is the same thing.
    patch_entry(0, kA + 3 * k64K, k64K);
    EXPECT_EQ(has("root", kA + 3 * k64K, 1), -1);
}

TEST_F(SubidTest, InvalidEntriesAuthorizeNothing) {
    publish({range("a", kA, k64K, kRoot), range("b", kA + k64K, k64K, kRoot),
             range("c", kA + 2 * k64K, k64K, kRoot)});
    patch_entry(0, 0xFFFF0000U, 0x20000);   // start + size past 2^32
    patch_entry(1, 0, 0);                   // size 0
    patch_entry(2, 0xFFFFFFFFU, 1);         // (uid_t) -1
    EXPECT_EQ(list("root"), kNone);
    EXPECT_EQ(has("root", 0xFFFF0000U, 1), 0);
    EXPECT_EQ(has("root", 0xFFFFFFFFU, 1), 0);
    EXPECT_EQ(has("root", 0, 1), 0);
    EXPECT_EQ(owners(0xFFFF0000U), std::vector<long>{});
    // A name the writer would never write.
    publish({range("a", kA, k64K, kRoot)});
    patch_copies(live_entry(0) + offsetof(shm::EntryWords, name), 0x2F2E2E);  // "../"
    EXPECT_EQ(has("root", kA, 1), 0);
}

TEST_F(SubidTest, HugeCountIsClampedToTheCapacity) {
    publish(mixed());
    patch_copies(offsetof(shm::CopyHeader, count), ~std::uint64_t{0});
    // The entries past the published ones are zero (invalid): the answers stay the same.
    EXPECT_EQ(has("root", kA, k64K), 1);
    EXPECT_EQ(list("root").ranges.size(), 3U);
}

TEST_F(SubidTest, CorruptOrUnreadableTableDeniesEverything) {
    publish(mixed());
    ASSERT_EQ(has("root", kA, 1), 1);
    // Not a table any more (retired first, as the allocator would, so the cache lets go).
    writer_.reset();
    retire_table(table_path());
    const std::string junk = runtime_dir() + "/junk";
    std::vector<std::byte> bytes(shm::file_size_for(64), std::byte{0x5A});
    shm::testing::write_file(junk, bytes);
    install_table(junk);
    EXPECT_EQ(has("root", kA, 1), -1);
    EXPECT_EQ(list("root"), kError);
    EXPECT_EQ(owners(kA), std::vector<long>{-1});
    // Unreadable (a directory), and a FIFO that must not hang the caller.
    remove_table();
    ASSERT_EQ(::mkdir(table_path().c_str(), 0755), 0);
    EXPECT_EQ(has("root", kA, 1), -1);
    remove_table();
    ASSERT_EQ(::mkfifo(table_path().c_str(), 0644), 0);
    EXPECT_EQ(has("root", kA, 1), -1);
}

TEST_F(SubidTest, BadArgumentsAreErrors) {
    publish(mixed());
    bool result = true;
    EXPECT_EQ(p().has_range(nullptr, kA, 1, ID_TYPE_UID, &result), SUBID_STATUS_ERROR);
    EXPECT_FALSE(result);
    EXPECT_EQ(p().has_range("root", kA, 1, ID_TYPE_UID, nullptr), SUBID_STATUS_ERROR);
    result = true;
    EXPECT_EQ(p().has_range("root", kA, 1, static_cast<subid_type>(3), &result),
              SUBID_STATUS_ERROR);
    EXPECT_FALSE(result);
    EXPECT_EQ(list("root", static_cast<subid_type>(0)), kError);
    int n;
    EXPECT_EQ(p().list_owner_ranges("root", ID_TYPE_UID, nullptr, &n), SUBID_STATUS_ERROR);
    uid_t* u;
    EXPECT_EQ(p().find_subid_owners(kA, ID_TYPE_UID, &u, nullptr), SUBID_STATUS_ERROR);
    p().free(nullptr);
}

// Readers on several threads while the writer flips between two tables: every answer is one of
// the two tables' answers, never an error and never a mix.
TEST_F(SubidTest, ThreadSafeWhileTheTableChanges) {
    const std::vector<shm::RangeEntry> first = mixed();
    const std::vector<shm::RangeEntry> second = {range("b", kA + k64K, k64K, kRoot),
                                                 range("f", kA + 9 * k64K, k64K, kRoot)};
    publish(first);
    const Ranges want1 = list("root").ranges;
    publish(second);
    const Ranges want2 = list("root").ranges;
    ASSERT_NE(want1, want2);
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0}, calls{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; t++)
        readers.emplace_back([&] {
            while (!stop.load()) {
                const ListAnswer a = list("root");
                if (a.status != SUBID_STATUS_SUCCESS || (a.ranges != want1 && a.ranges != want2))
                    bad++;
                // In both tables kA + k64K + 1 has exactly one owner.
                const std::vector<long> o = owners(kA + k64K + 1);
                if (o != std::vector<long>{kDaemon} && o != std::vector<long>{kRoot})
                    bad++;
                calls++;
            }
        });
    for (int i = 0; i < 400; i++)
        publish(i % 2 == 0 ? first : second);
    stop = true;
    for (auto& t : readers)
        t.join();
    EXPECT_EQ(bad.load(), 0) << "of " << calls.load() << " calls";
}

}  // namespace
}  // namespace transient::subid::testing
