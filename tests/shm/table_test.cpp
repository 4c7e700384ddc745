// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The table format: writer round trips, reader validation against corrupt and truncated files,
// lookups by UID and by name, recovery after a writer died mid-update.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/identity.hpp"
#include "shm/reader.hpp"
#include "shm/table_reader.hpp"
#include "shm/writer.hpp"
#include "tests/lib/temp_dir.hpp"
#include "tests/lib/thread_cpu_clock.hpp"
#include "tests/shm/writer_freezer.hpp"

namespace transient::shm {
namespace {

class TableTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = tmp_.path();
        path_ = dir_ + "/" + kTableFileName;
    }

    static RangeEntry container(std::string name, std::uint32_t start) {
        return RangeEntry{std::move(name), start, kContainerRangeSize, 0, 0, 1, 0, 0};
    }

    // n 64K ranges side by side from the start of the container pool, named r0, r1, …
    static std::vector<RangeEntry> numbered(std::uint32_t n) {
        std::vector<RangeEntry> ranges;
        for (std::uint32_t i = 0; i < n; i++)
            ranges.push_back(container("r" + std::to_string(i),
                                       kContainerPoolFirst + i * kContainerRangeSize));
        return ranges;
    }

    transient::testing::TempDir tmp_{"transient-shm-test"};
    std::string dir_, path_;
};

TEST_F(TableTest, CreatesAnEmptyTableOfTheFullPoolCapacity) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w) << w.error().message();
    EXPECT_TRUE(w->recovery().created);
    EXPECT_TRUE(w->recovery().ranges.empty());
    EXPECT_EQ(w->capacity(), 28664U + 4336U);
    struct stat st;
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644U);
    EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), file_size_for(w->capacity()));
}

TEST_F(TableTest, FindsRangesByIdAndByName) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    std::vector<RangeEntry> ranges{
            RangeEntry{"single", 61184, 1, 1000, 0, 5, 0, 0},
            container("web", 524288),
            container("db-1", 524288 + 3 * 65536),
    };
    ASSERT_TRUE(w->publish(ranges));

    TableReader reader(path_);
    auto v = reader.view();
    ASSERT_TRUE(v) << v.error().message();
    RangeRecord r;
    ASSERT_EQ(find_by_id(**v, 524288 + 65535, &r), 0);
    EXPECT_STREQ(r.name, "web");
    EXPECT_EQ(find_by_id(**v, 524288 + 65536, &r), -ESRCH);
    EXPECT_EQ(find_by_id(**v, 61183, &r), -ESRCH);
    ASSERT_EQ(find_by_id(**v, 61184, &r), 0);
    EXPECT_EQ(r.owner, 1000U);
    ASSERT_EQ(find_by_name(**v, "db-1", &r), 0);
    EXPECT_EQ(r.start, 524288U + 3 * 65536);
    EXPECT_EQ(find_by_name(**v, "db", &r), -ESRCH);
    EXPECT_EQ(find_by_name(**v, "", &r), -ESRCH);

    Identity id;
    ASSERT_EQ(lookup_name(*v, "vu-db-1-65535", IdKind::kUser, &id), 0);
    EXPECT_EQ(id.id, 524288U + 3 * 65536 + 65535);
    EXPECT_STREQ(id.description, "UID 65535 of transient range db-1");
    EXPECT_EQ(lookup_name(*v, "vu-db-1-65536", IdKind::kUser, &id), -ESRCH);
    EXPECT_EQ(lookup_name(*v, "vu-db-1-007", IdKind::kUser, &id), -ESRCH);
    EXPECT_EQ(lookup_name(*v, "vg-web-3", IdKind::kUser, &id), -ESRCH);
    ASSERT_EQ(lookup_name(*v, "vg-web-3", IdKind::kGroup, &id), 0);
    EXPECT_EQ(id.id, 524291U);
    ASSERT_EQ(lookup_id(*v, 524291, IdKind::kGroup, &id), 0);
    EXPECT_STREQ(id.name, "vg-web-3");
    ASSERT_EQ(lookup_id(*v, kForeignBase + 65534, IdKind::kUser, &id), 0);
    EXPECT_STREQ(id.name, "foreign-65534");
    EXPECT_EQ(lookup_id(*v, kForeignBase + 65535, IdKind::kUser, &id), -ESRCH);
    EXPECT_EQ(lookup_name(nullptr, "foreign-65535", IdKind::kUser, &id), -ESRCH);
}

// Counted names are all of their bytes: a NUL inside does not cut the name short there (issue
// 8: userdb answered vu-web-1 for "vu-web-1\0x").
TEST_F(TableTest, CountedNamesWithANulInsideNameNothing) {
    using namespace std::string_literals;
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->publish(std::vector{container("web", 524288), container("db-1", 589824)}));
    TableReader reader(path_);
    auto v = reader.view();
    ASSERT_TRUE(v);
    RangeRecord r;
    for (const std::string& name : {"web\0"s, "web\0x"s, "\0web"s, "db-1\0"s})
        EXPECT_EQ(find_by_name(**v, name.data(), name.size(), &r), -ESRCH) << name.size();
    EXPECT_EQ(find_by_name(**v, "webx", 3, &r), 0) << "only the counted bytes";
    EXPECT_STREQ(r.name, "web");
    Identity id;
    for (const std::string& name : {"vu-web-1\0x"s, "vu-web-1\0"s, "vu-web\0-1"s,
                                    "vu-web-\0001"s, "vu-\0web-1"s, "foreign-1\0x"s,
                                    "foreign-\0001"s, "vu-db-1-1\0"s})
        for (IdKind kind : {IdKind::kUser, IdKind::kGroup}) {
            const std::string n = kind == IdKind::kGroup && name[0] == 'v' ? "vg" + name.substr(2)
                                                                           : name;
            EXPECT_EQ(lookup_name(*v, n.data(), n.size(), kind, &id), -ESRCH) << n.size();
        }
    ASSERT_EQ(lookup_name(*v, "vu-web-12", 8, IdKind::kUser, &id), 0);
    EXPECT_STREQ(id.name, "vu-web-1");
    ASSERT_EQ(lookup_name(*v, "foreign-7", 9, IdKind::kGroup, &id), 0);
    EXPECT_STREQ(id.name, "foreign-7");
    // The NUL-terminated forms read up to the NUL, as C strings do.
    ASSERT_EQ(lookup_name(*v, "vu-web-1\0x", IdKind::kUser, &id), 0);
    EXPECT_EQ(find_by_name(**v, "web\0x", &r), 0);
}

TEST_F(TableTest, EnumeratesInUidOrder) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    std::vector<RangeEntry> ranges;
    for (std::uint32_t i = 0; i < 100; i++)
        ranges.push_back(container("r" + std::to_string(99 - i), 524288 + i * 65536));
    ASSERT_TRUE(w->publish(ranges));
    TableReader reader(path_);
    auto v = reader.view();
    ASSERT_TRUE(v);
    std::uint64_t next = 0;
    std::vector<std::string> seen;
    RangeRecord r;
    while (find_next(**v, next, &r) == 0) {
        seen.push_back(r.name);
        next = std::uint64_t{r.start} + 1;
    }
    ASSERT_EQ(seen.size(), 100U);
    EXPECT_EQ(seen.front(), "r99");
    EXPECT_EQ(seen.back(), "r0");
    for (const auto& e : ranges) {
        ASSERT_EQ(find_by_name(**v, e.name.c_str(), &r), 0) << e.name;
        EXPECT_EQ(r.start, e.start);
    }
}

TEST_F(TableTest, RecoversRangesFromAPreviousWriter) {
    {
        auto w = TableWriter::open(path_);
        ASSERT_TRUE(w);
        ASSERT_TRUE(w->publish(std::vector{container("a", 524288), container("b", 655360)}));
    }
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    EXPECT_FALSE(w->recovery().created);
    ASSERT_EQ(w->recovery().ranges.size(), 2U);
    EXPECT_EQ(w->recovery().ranges[1].name, "b");
}

// The writer maps through Boost.Interprocess, which throws: a failed mapping must still be the
// writer's declared error, leave no temporary file behind and keep the table it could not open.
TEST_F(TableTest, AFailedMappingIsAnErrorThatLosesNothing) {
    const std::size_t size = file_size_for(kDefaultCapacity);
    testing::fail_next_mapping(size, ENOMEM);
    auto w = TableWriter::open(path_);
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().value(), ENOMEM);
    EXPECT_FALSE(std::filesystem::exists(path_ + ".new")) << "the temporary file was left behind";
    EXPECT_FALSE(std::filesystem::exists(path_));
    {
        auto created = TableWriter::open(path_);
        ASSERT_TRUE(created) << created.error().message();
        EXPECT_TRUE(created->recovery().created);
        ASSERT_TRUE(created->publish(std::vector{container("a", 524288)}));
    }
    testing::fail_next_mapping(size, ENOMEM);
    auto failed = TableWriter::open(path_);
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().value(), ENOMEM);
    auto reopened = TableWriter::open(path_);
    ASSERT_TRUE(reopened) << reopened.error().message();
    EXPECT_FALSE(reopened->recovery().created);
    EXPECT_FALSE(reopened->recovery().replaced);
    ASSERT_EQ(reopened->recovery().ranges.size(), 1U);
    EXPECT_EQ(reopened->recovery().ranges[0].name, "a");
}

TEST_F(TableTest, RefusesASecondWriter) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    auto w2 = TableWriter::open(path_);
    ASSERT_FALSE(w2);
    EXPECT_EQ(w2.error().value(), EBUSY);
}

TEST_F(TableTest, PublishRejectsOverlapsAndBadNames) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    EXPECT_FALSE(w->publish(std::vector{container("a", 524288), container("b", 524288)}));
    EXPECT_FALSE(w->publish(std::vector{container("1a", 524288)}));
    EXPECT_FALSE(w->publish(std::vector{container("a", 524289)}));
    EXPECT_FALSE(w->publish(std::vector{container(std::string(23, 'x'), 524288)}));
    EXPECT_TRUE(w->publish(std::vector{container(std::string(22, 'x'), 524288)}));
}

// Recovery keeps one range per name (a name must resolve to one vu-<name>-n), so a publish
// with a name twice would be acknowledged and then lose a range at the next restart.
TEST_F(TableTest, PublishRejectsDuplicateNames) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    const std::vector twice{container("a", 524288), container("b", 589824),
                            container("a", 655360)};
    EXPECT_FALSE(TableWriter::check(twice, w->capacity()));
    auto r = w->publish(twice);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().value(), EINVAL);
}

TEST_F(TableTest, RestartedWriterRecoversEveryAcknowledgedRange) {
    const std::vector ranges{RangeEntry{"a", 61184, 1, 0, 0, 1, 0, 0}, container("a-1", 524288),
                             container("b", 589824)};
    {
        auto w = TableWriter::open(path_);
        ASSERT_TRUE(w);
        ASSERT_TRUE(w->publish(ranges));
    }
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->recovery().dropped, 0U);
    EXPECT_EQ(w->recovery().ranges, ranges);
}

// What a reader answers of `path`: every range (read_all), and the answers to find_by_name(),
// find_by_id() and find_next() about each range of `universe`, as text.
std::string readers_see(const std::string& path, const std::vector<RangeEntry>& universe) {
    TableReader reader(path);
    auto t = reader.view();
    EXPECT_TRUE(t);
    const TableView& v = **t;
    std::string out;
    auto record = [&](int r, const RangeRecord& rec) {
        out += std::to_string(r);
        if (r == 0)
            out += std::string(" ") + rec.name + " " + std::to_string(rec.start) + " " +
                   std::to_string(rec.size) + " " + std::to_string(rec.owner) + " " +
                   std::to_string(rec.flags);
        out += "\n";
    };
    std::vector<RangeRecord> all(universe.size() + 1);
    std::size_t count = 0;
    EXPECT_EQ(read_all(v, all.data(), all.size(), &count), 0);
    for (std::size_t i = 0; i < count; i++)
        record(0, all[i]);
    for (const RangeEntry& e : universe) {
        RangeRecord rec{};
        record(find_by_name(v, e.name.c_str(), &rec), rec);
        record(find_by_id(v, e.start, &rec), rec);
        record(find_by_id(v, static_cast<std::uint32_t>(e.end() - 1), &rec), rec);
        record(find_by_id(v, e.start - 1, &rec), rec);
        record(find_next(v, e.start, &rec), rec);
        record(find_next(v, std::uint64_t{e.start} + 1, &rec), rec);
    }
    return out;
}

// The bytes readers use of both copies of the table at `path`: count, name seed, entries, name
// index and block index (what lies past the count is stale and differs).
std::vector<std::byte> published_bytes(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    const std::uint64_t size = file_size_for(kDefaultCapacity);
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    EXPECT_NE(m, MAP_FAILED);
    std::vector<std::byte> out;
    const auto* base = static_cast<const std::byte*>(m);
    for (int i = 0; i < 2; i++) {
        const std::byte* copy = base + sizeof(FileHeader) + i * copy_size_for(kDefaultCapacity);
        std::uint64_t count;
        std::memcpy(&count, copy, sizeof count);
        auto take = [&](std::uint64_t offset, std::uint64_t n) {
            out.insert(out.end(), copy + offset, copy + offset + n);
        };
        take(0, sizeof count + 8);
        take(entries_offset(), count * sizeof(EntryWords));
        take(name_index_offset(kDefaultCapacity), std::uint64_t{name_slots(kDefaultCapacity)} * 4);
        take(block_index_offset(kDefaultCapacity), std::uint64_t{kBlockIndexSize} * 4);
    }
    ::munmap(m, size);
    return out;
}

// What is wrong with the name index (version 5) of both copies of the table at `path`, or "":
// every entry is in exactly one slot, reachable from its home slot without an empty one in
// between, and no slot names anything else. *ret_longest (if not null) receives the farthest
// an entry sits from its home slot.
std::string name_index_problems(const std::string& path, std::uint32_t* ret_longest = nullptr) {
    TableReader reader(path);
    auto t = reader.view();
    if (!t)
        return "no table";
    const TableView& v = **t;
    const std::uint32_t slots = name_slots(v.capacity);
    std::uint32_t longest = 0;
    for (int c = 0; c < 2; c++) {
        const std::byte* copy = v.base + v.copy_offset[c];
        const std::uint64_t count = detail::entry_count(copy, v.capacity);
        const std::uint64_t seed = detail::copy_header(copy).name_seed.load();
        std::vector<int> seen(count);
        for (std::uint32_t s = 0; s < slots; s++) {
            const std::uint32_t e = detail::name_index(copy, v.capacity, s);
            if (e == kNameSlotEmpty)
                continue;
            if (e >= count)
                return "slot " + std::to_string(s) + " names entry " + std::to_string(e);
            seen[e]++;
            std::uint64_t words[kNameWords];
            for (std::size_t w = 0; w < kNameWords; w++)
                words[w] = detail::entry(copy, e).name[w].load();
            const std::uint32_t home = name_home_slot(words, seed, slots);
            for (std::uint32_t k = home; k != s; k = (k + 1) & (slots - 1))
                if (detail::name_index(copy, v.capacity, k) == kNameSlotEmpty)
                    return "entry " + std::to_string(e) + " is past an empty slot";
            longest = std::max(longest, (s - home) & (slots - 1));
        }
        // Every entry is in one slot, but a removed one whose name another range took: its
        // name is all zeros, and it is in none (TableWriter::unname()).
        for (std::uint64_t e = 0; e < count; e++) {
            const EntryWords& entry = detail::entry(copy, e);
            const bool unnamed = entry.name[0].load() == 0;
            if (unnamed && !detail::entry_removed(entry))
                return "entry " + std::to_string(e) + " is live and has no name";
            if (seen[e] != (unnamed ? 0 : 1))
                return "entry " + std::to_string(e) + " in " + std::to_string(seen[e]) + " slots";
        }
    }
    if (ret_longest != nullptr)
        *ret_longest = longest;
    return "";
}

TEST_F(TableTest, SingleChangesLeaveTheSameTableAsAWholePublish) {
    // Ranges of every shape, in and between blocks, names in another order than starts.
    std::vector<RangeEntry> universe;
    for (std::uint32_t i = 0; i < 120; i++) {
        std::string name = "r" + std::to_string((i * 37) % 120);
        if (i % 10 == 3)
            universe.push_back(RangeEntry{name, 61184 + i, 1, 0, 0, 1, 0, 0});
        else
            universe.push_back(RangeEntry{name, kContainerPoolFirst + i * 3 * kContainerRangeSize,
                                          (i % 4 == 1 ? 2 : 1) * kContainerRangeSize, i, 0, i,
                                          0, 0});
    }
    std::sort(universe.begin(), universe.end(),
              [](const RangeEntry& a, const RangeEntry& b) { return a.start < b.start; });
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    std::filesystem::create_directory(dir_ + "/whole");
    const std::string whole_path = dir_ + "/whole/" + kTableFileName;
    auto whole = TableWriter::open(whole_path);
    ASSERT_TRUE(whole);

    std::mt19937 rng(7);
    std::vector<bool> present(universe.size());
    for (int step = 0; step < 600; step++) {
        const std::size_t i = rng() % universe.size();
        const RangeEntry& e = universe[i];
        if (present[i]) {
            ASSERT_TRUE(w->erase(e.start)) << step;
            EXPECT_FALSE(w->find_name(e.name)) << step;
        } else {
            ASSERT_TRUE(w->insert(e)) << step;
        }
        present[i] = !present[i];
        std::vector<RangeEntry> expected;
        for (std::size_t k = 0; k < universe.size(); k++)
            if (present[k])
                expected.push_back(universe[k]);
        ASSERT_TRUE(whole->publish(expected));
        // Released entries stay in place (kEntryFlagRemoved), so the bytes differ from a whole
        // publish; what every reader call answers may not, and both copies hold the same bytes.
        ASSERT_EQ(readers_see(path_, universe), readers_see(whole_path, universe))
                << "step " << step;
        const auto bytes = published_bytes(path_);
        ASSERT_TRUE(std::equal(bytes.begin(), bytes.begin() + bytes.size() / 2,
                               bytes.begin() + bytes.size() / 2, bytes.end()))
                << "step " << step;
        ASSERT_EQ(name_index_problems(path_), "") << "step " << step;
        ASSERT_EQ(w->size(), expected.size());
        for (std::size_t k = 0; k < expected.size(); k++)
            ASSERT_EQ(w->find_name(expected[k].name), expected[k].start) << expected[k].name;
    }
}

TEST_F(TableTest, ANewRangeInARemovedOnesPlaceUnderAnotherNameIsFoundByEveryName) {
    // A block taken again replaces the removed entry in place; its new name sorts elsewhere,
    // before or after the old one, and only the name index words between the two move.
    std::vector<RangeEntry> ranges;
    for (std::uint32_t i = 0; i < 60; i++)
        ranges.push_back(container("a" + std::to_string(100 + i),
                                   kContainerPoolFirst + i * kContainerRangeSize));
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->publish(ranges));
    std::filesystem::create_directory(dir_ + "/whole");
    const std::string whole_path = dir_ + "/whole/" + kTableFileName;
    auto whole = TableWriter::open(whole_path);
    ASSERT_TRUE(whole);
    std::vector<RangeEntry> universe = ranges;
    std::mt19937 rng(11);
    for (int step = 0; step < 120; step++) {
        const std::size_t i = rng() % ranges.size();
        ASSERT_TRUE(w->erase(ranges[i].start)) << step;
        // Names from "a000" to "a299": before, among or after the others.
        std::string name;
        do
            name = "a" + std::to_string(rng() % 300 + 1000).substr(1);
        while (w->find_name(name) || name == ranges[i].name);
        ranges[i].name = name;
        ASSERT_TRUE(w->insert(ranges[i])) << step;
        universe.push_back(ranges[i]);
        ASSERT_TRUE(whole->publish(ranges));
        ASSERT_EQ(readers_see(path_, universe), readers_see(whole_path, universe))
                << "step " << step;
        for (const RangeEntry& r : ranges)
            ASSERT_EQ(w->find_name(r.name), r.start) << r.name;
    }
}

TEST_F(TableTest, ANewRangeOverARemovedOneIsFoundFromEveryBlock) {
    // A released range stays in the table, marked removed. A longer range over its blocks, or
    // one taking its name, must replace it: left in place, it would start inside the new range
    // and find_by_id() would take it for the candidate of the IDs above its start.
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    const std::uint32_t b4 = kContainerPoolFirst + 4 * kContainerRangeSize;
    ASSERT_TRUE(w->insert(container("one", b4 + kContainerRangeSize)));
    ASSERT_TRUE(w->insert(container("two", b4 + 3 * kContainerRangeSize)));
    ASSERT_TRUE(w->erase(b4 + kContainerRangeSize));
    ASSERT_TRUE(w->erase(b4 + 3 * kContainerRangeSize));
    EXPECT_EQ(w->removed(), 2U);
    auto wide = container("wide", b4);
    wide.size = 4 * kContainerRangeSize;
    ASSERT_TRUE(w->insert(wide));
    ASSERT_TRUE(w->insert(container("one", kContainerPoolFirst)));  // a removed entry's name
    EXPECT_EQ(w->removed(), 0U);
    TableReader reader(path_);
    auto t = reader.view();
    ASSERT_TRUE(t);
    RangeRecord r;
    for (std::uint32_t id = b4; id < b4 + wide.size; id += 0x4000) {
        ASSERT_EQ(find_by_id(**t, id, &r), 0) << id;
        EXPECT_STREQ(r.name, "wide");
    }
    ASSERT_EQ(find_by_name(**t, "one", &r), 0);
    EXPECT_EQ(r.start, kContainerPoolFirst);
    EXPECT_EQ(find_by_name(**t, "two", &r), -ESRCH);
}

TEST_F(TableTest, ANameReleasedAndTakenElsewhereMovesNoEntry) {
    // A name released and allocated again in another block (bench_alloc.sh's cycle): the removed
    // namesake gives up only its name and keeps its place, where dropping it moved every entry
    // after it in both copies. Readers find the new range by name and nothing in the old block.
    std::vector<RangeEntry> ranges = numbered(8);
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->publish(ranges));
    ASSERT_TRUE(w->erase(ranges[2].start));
    const RangeEntry again = container("r2", kContainerPoolFirst + 20 * kContainerRangeSize);
    ASSERT_TRUE(w->insert(again));
    EXPECT_EQ(w->size(), 8U);
    EXPECT_EQ(w->removed(), 1U) << "the removed entry stays";
    ASSERT_EQ(name_index_problems(path_), "");
    TableReader reader(path_);
    auto t = reader.view();
    ASSERT_TRUE(t);
    RangeRecord r;
    ASSERT_EQ(find_by_name(**t, "r2", &r), 0);
    EXPECT_EQ(r.start, again.start);
    EXPECT_EQ(find_by_id(**t, ranges[2].start + 5, &r), -ESRCH);
    for (std::size_t i = 0; i < ranges.size(); i++) {
        if (i != 2) {
            ASSERT_EQ(find_by_id(**t, ranges[i].start, &r), 0) << i;
        }
    }
    // The old block taken again, under another name, and the name released again: all found.
    ASSERT_TRUE(w->insert(container("back", ranges[2].start)));
    EXPECT_EQ(w->removed(), 0U);
    ASSERT_TRUE(w->erase(again.start));
    ASSERT_TRUE(w->insert(container("r2", ranges[3].start + 30 * kContainerRangeSize)));
    ASSERT_EQ(name_index_problems(path_), "");
    ASSERT_EQ(find_by_name(**t, "back", &r), 0);
    EXPECT_EQ(r.start, ranges[2].start);
    ASSERT_EQ(find_by_name(**t, "r2", &r), 0);
    EXPECT_EQ(r.start, ranges[3].start + 30 * kContainerRangeSize);
    std::vector<RangeEntry> live = ranges;
    live[2] = container("back", ranges[2].start);
    live.push_back(container("r2", ranges[3].start + 30 * kContainerRangeSize));
    std::vector<RangeRecord> all(16);
    std::size_t count = 0;
    ASSERT_EQ(read_all(**t, all.data(), all.size(), &count), 0);
    EXPECT_EQ(count, live.size()) << "enumeration skips the unnamed removed entry";
}

// The entry number of the first entry at or above block b in both copies (block index word b,
// clamped to the count as readers do).
std::vector<std::uint64_t> first_entry_of_block(const std::string& path, std::uint32_t b) {
    TableReader reader(path);
    auto t = reader.view();
    std::vector<std::uint64_t> out;
    if (!t)
        return out;
    for (int c = 0; c < 2; c++) {
        const std::byte* copy = (*t)->base + (*t)->copy_offset[c];
        out.push_back(std::min<std::uint64_t>(detail::block_index(**t, copy, b),
                                              detail::entry_count(copy, (*t)->capacity)));
    }
    return out;
}

TEST_F(TableTest, ASingleIdMovesNoEntry) {
    // A single ID (the dynamic pool, in 64K block 0) sorts before every container range: it was
    // inserted at the front, and every entry after it moved in both copies (bench_alloc.sh:
    // single IDs at 0.49x their rate once 20,000 64K ranges were live). The pool's IDs now hold
    // their places as removed entries without a name, so a single ID revives one in place, and
    // its release marks it removed again: the container ranges keep their entry numbers.
    std::vector<RangeEntry> ranges = numbered(50);
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->publish(ranges));
    const std::uint32_t pool_block = kContainerPoolFirst >> 16;
    const auto before = first_entry_of_block(path_, pool_block);
    ASSERT_EQ(before.size(), 2U);
    std::vector<RangeEntry> singles;
    for (std::uint32_t id : {kDynamicPoolLast, kDynamicPoolFirst, 62000U, 62001U, 65000U})
        singles.push_back(RangeEntry{"one-" + std::to_string(id), id, 1, 1000, 0, 2, 0, 0});
    for (const RangeEntry& e : singles) {
        ASSERT_TRUE(w->insert(e)) << e.start;
        ASSERT_EQ(first_entry_of_block(path_, pool_block), before) << "inserting " << e.start;
    }
    ASSERT_TRUE(w->erase(62000));
    ASSERT_TRUE(w->insert(RangeEntry{"again", 62000, 1, 1000, 0, 3, 0, 0}));
    ASSERT_TRUE(w->erase(kDynamicPoolFirst));
    EXPECT_EQ(first_entry_of_block(path_, pool_block), before);
    EXPECT_EQ(w->size(), ranges.size() + singles.size() - 1);
    EXPECT_EQ(w->removed(), 0U) << "a released single ID waits for no compaction";
    ASSERT_EQ(name_index_problems(path_), "");

    TableReader reader(path_);
    auto t = reader.view();
    ASSERT_TRUE(t);
    RangeRecord r;
    ASSERT_EQ(find_by_id(**t, 62000, &r), 0);
    EXPECT_STREQ(r.name, "again");
    EXPECT_EQ(find_by_name(**t, "one-62000", &r), -ESRCH);
    EXPECT_EQ(find_by_id(**t, kDynamicPoolFirst, &r), -ESRCH);
    EXPECT_EQ(find_by_name(**t, ("one-" + std::to_string(kDynamicPoolFirst)).c_str(), &r), -ESRCH);
    ASSERT_EQ(find_by_name(**t, "one-65519", &r), 0);
    EXPECT_EQ(r.start, kDynamicPoolLast);
    for (std::uint32_t id = kDynamicPoolFirst - 2; id <= kDynamicPoolLast + 2; id++) {
        const bool live = id == 62000 || id == 62001 || id == 65000 || id == kDynamicPoolLast;
        ASSERT_EQ(find_by_id(**t, id, &r), live ? 0 : -ESRCH) << id;
    }
    for (const RangeEntry& e : ranges)
        ASSERT_EQ(find_by_id(**t, e.start + 9, &r), 0) << e.name;
    // Enumeration, by both calls, gives the live ranges only, in start order.
    std::vector<RangeRecord> all(100);
    std::size_t count = 0;
    ASSERT_EQ(read_all(**t, all.data(), all.size(), &count), 0);
    ASSERT_EQ(count, ranges.size() + 4);
    std::uint64_t next = 0;
    std::size_t enumerated = 0;
    while (find_next(**t, next, &r) == 0) {
        ASSERT_EQ(r.start, all[enumerated].start);
        next = std::uint64_t{r.start} + 1;
        enumerated++;
    }
    EXPECT_EQ(enumerated, count);
    // A restarted writer recovers the live single IDs and holds the other places again.
    w = std::unexpected(std::error_code());
    w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->size(), count);
    EXPECT_EQ(first_entry_of_block(path_, pool_block), before);
    ASSERT_TRUE(w->insert(RangeEntry{"late", 63000, 1, 0, 0, 4, 0, 0}));
    EXPECT_EQ(first_entry_of_block(path_, pool_block), before);
}

TEST_F(TableTest, AFullTableMakesRoomFromTheHeldPlaces) {
    // Every container slot taken and every free ID of the dynamic pool held fills the default
    // capacity exactly. A range that is neither (an imported one) finds room by compaction if
    // a removed entry is waiting for it, else by giving up one held place; a single ID whose
    // place went so is inserted as before. Every live range is found throughout.
    std::vector<RangeEntry> ranges = numbered(kContainerSlots);
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->publish(ranges));
    ASSERT_EQ(first_entry_of_block(path_, kContainerPoolFirst >> 16)[0], kDynamicSlots);
    ASSERT_TRUE(w->erase(ranges[7].start));
    const RangeEntry imported{"subuid-a", 100000, 65536, 1000, kEntryFlagImported, 1, 0, 0};
    ASSERT_TRUE(w->insert(imported));
    EXPECT_EQ(w->removed(), 0U) << "compacted to make room";
    const RangeEntry imported2{"subuid-b", 200000, 1000, 1000, kEntryFlagImported, 1, 0, 0};
    ASSERT_TRUE(w->insert(imported2));
    const RangeEntry last{"one-last", kDynamicPoolLast, 1, 0, 0, 1, 0, 0};
    ASSERT_TRUE(w->insert(last)) << "its place was given up for subuid-b: inserted";
    const RangeEntry first{"one-first", kDynamicPoolFirst, 1, 0, 0, 1, 0, 0};
    ASSERT_TRUE(w->insert(first));
    EXPECT_EQ(w->size(), kContainerSlots + 3);
    auto full = w->insert(RangeEntry{"one-more", kDynamicPoolFirst + 1, 1, 0, 0, 1, 0, 0});
    EXPECT_TRUE(full) << "a held place is revived without room";
    ASSERT_EQ(name_index_problems(path_), "");
    TableReader reader(path_);
    auto t = reader.view();
    ASSERT_TRUE(t);
    RangeRecord r;
    for (const RangeEntry& e : {imported, imported2, last, first}) {
        ASSERT_EQ(find_by_id(**t, e.start + e.size - 1, &r), 0) << e.name;
        ASSERT_EQ(find_by_name(**t, e.name.c_str(), &r), 0) << e.name;
    }
    for (std::size_t i = 0; i < ranges.size(); i++)
        ASSERT_EQ(find_by_id(**t, ranges[i].start, &r), i == 7 ? -ESRCH : 0) << i;
    for (std::uint32_t id = kDynamicPoolFirst + 2; id < kDynamicPoolLast; id++)
        ASSERT_EQ(find_by_id(**t, id, &r), -ESRCH) << id;
    EXPECT_EQ(w->size(), kContainerSlots + 4);
    // A restarted writer recovers every live range; the places no longer all fit beside them.
    w = std::unexpected(std::error_code());
    w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->recovery().ranges.size(), kContainerSlots + 4);
    EXPECT_EQ(w->recovery().dropped, 0U);
    ASSERT_TRUE(w->insert(RangeEntry{"one-over", kDynamicPoolFirst + 2, 1, 0, 0, 1, 0, 0}));
    EXPECT_EQ(find_by_id(**t, kDynamicPoolFirst + 2, &r), 0);
}

TEST_F(TableTest, HeldDynamicPoolPlacesCostReadersLittle) {
    // The dynamic pool's free IDs are held by removed entries (ASingleIdMovesNoEntry): 4,336
    // entries in block 0 that a lookup there binary-searches over and an enumeration skips.
    // The same ranges (2,000 64K ranges and 10 single IDs) in a table that holds them (the
    // default capacity) and in one too small to (6,000: no places are held, as before), in
    // thread CPU time, the best of five rounds: a lookup by ID in block 0 (a UID below the
    // pool, a free pool ID, a live single ID), one of a container range, and a whole
    // enumeration by find_next() and by read_all().
    std::vector<RangeEntry> ranges;
    for (std::uint32_t i = 0; i < 10; i++)
        ranges.push_back(RangeEntry{"one-" + std::to_string(i), kDynamicPoolFirst + 400 * i, 1, 0,
                                    0, 1, 0, 0});
    for (const RangeEntry& e : numbered(2000))
        ranges.push_back(e);
    std::filesystem::create_directory(dir_ + "/small");
    const std::string small_path = dir_ + "/small/" + kTableFileName;
    auto held = TableWriter::open(path_);
    auto plain = TableWriter::open(small_path, 6000);
    ASSERT_TRUE(held && plain);
    ASSERT_TRUE(held->publish(ranges));
    ASSERT_TRUE(plain->publish(ranges));
    ASSERT_EQ(first_entry_of_block(path_, 1)[0], kDynamicSlots) << "the places are held";
    ASSERT_EQ(first_entry_of_block(small_path, 1)[0], 10U) << "too small to hold them";
    using Clock = transient::testing::ThreadCpuClock;
    struct Costs {
        double below = 1e9, free_id = 1e9, single = 1e9, container = 1e9, next = 1e9, all = 1e9;
    };
    auto measure = [&](const std::string& path) {
        TableReader reader(path);
        auto v = reader.view();
        EXPECT_TRUE(v);
        Costs c;
        RangeRecord r;
        std::vector<RangeRecord> out(ranges.size());
        constexpr int kLookups = 20000;
        auto per_call = [](auto&& fn, int n) {
            const auto t0 = Clock::now();
            int ok = 0;
            for (int i = 0; i < n; i++)
                ok += fn(i);
            const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
            return std::pair(secs / n, ok);
        };
        for (int round = 0; round < 5; round++) {
            auto [below, b] = per_call([&](int i) { return find_by_id(**v, 1000 + i % 997, &r); },
                                       kLookups);
            auto [free_id, f] = per_call(
                    [&](int i) { return find_by_id(**v, kDynamicPoolFirst + 1 + i % 399, &r); },
                    kLookups);
            auto [single, s] = per_call(
                    [&](int i) { return find_by_id(**v, ranges[i % 10].start, &r); }, kLookups);
            auto [container, k] = per_call(
                    [&](int i) { return find_by_id(**v, ranges[10 + i % 2000].start + 5, &r); },
                    kLookups);
            EXPECT_EQ(b + f, -ESRCH * 2 * kLookups);
            EXPECT_EQ(s + k, 0);
            auto [next, n] = per_call([&](int) {
                std::uint64_t from = 0;
                int found = 0;
                while (find_next(**v, from, &r) == 0) {
                    from = std::uint64_t{r.start} + 1;
                    found++;
                }
                return found;
            }, 20);
            auto [all, a] = per_call([&](int) {
                std::size_t count = 0;
                EXPECT_EQ(read_all(**v, out.data(), out.size(), &count), 0);
                return static_cast<int>(count);
            }, 20);
            EXPECT_EQ(n, 20 * static_cast<int>(ranges.size()));
            EXPECT_EQ(a, 20 * static_cast<int>(ranges.size()));
            c.below = std::min(c.below, below);
            c.free_id = std::min(c.free_id, free_id);
            c.single = std::min(c.single, single);
            c.container = std::min(c.container, container);
            c.next = std::min(c.next, next);
            c.all = std::min(c.all, all);
        }
        return c;
    };
    // Measured again, up to three times, while a bound below fails: a shared machine slows one
    // of the two tables now and then (transient::testing::measure_until_passes()).
    Costs with, without;
    auto within_bounds = [&] {
        return with.container / without.container < 2.0 && with.free_id / without.free_id < 10.0 &&
               with.next / without.next < 4.0 && with.all / without.all < 4.0;
    };
    for (int attempt = 0; attempt < 3 && (attempt == 0 || !within_bounds()); attempt++) {
        with = measure(path_);
        without = measure(small_path);
    }
    auto row = [](const char* what, double w, double wo) {
        std::printf("[ timing   ] %-34s %9.3f us held, %9.3f us not (%.2fx)\n", what, w * 1e6,
                    wo * 1e6, w / wo);
    };
    row("find_by_id, a UID below the pool:", with.below, without.below);
    row("find_by_id, a free pool ID:", with.free_id, without.free_id);
    row("find_by_id, a live single ID:", with.single, without.single);
    row("find_by_id, a 64K range:", with.container, without.container);
    row("find_next over 2,010 ranges:", with.next, without.next);
    row("read_all of 2,010 ranges:", with.all, without.all);
#ifndef TRANSIENT_TESTS_SANITIZED
    // A 64K range's lookup does not see block 0; one in block 0 binary-searches 4,346 entries
    // instead of 10 (a dozen more steps, where it read none for a UID below the pool); an
    // enumeration skips 4,336 entries more. Loose bounds: a shared machine, and what matters
    // is that none of these grows with anything but the pool.
    EXPECT_LT(with.container / without.container, 2.0);
    EXPECT_LT(with.free_id / without.free_id, 10.0);
    EXPECT_LT(with.next / without.next, 4.0);
    EXPECT_LT(with.all / without.all, 4.0);
#endif
}

TEST_F(TableTest, RemovedEntriesAreCompactedWhenTheyOutnumberTheLiveOnes) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    const std::uint32_t n = 2 * TableWriter::kCompactAt;
    for (std::uint32_t i = 0; i < n; i++)
        ASSERT_TRUE(w->insert(container("r" + std::to_string(i),
                                        kContainerPoolFirst + i * kContainerRangeSize)));
    for (std::uint32_t i = 0; i + 1 < TableWriter::kCompactAt; i++)
        ASSERT_TRUE(w->erase(kContainerPoolFirst + 2 * i * kContainerRangeSize));
    EXPECT_EQ(w->removed(), TableWriter::kCompactAt - 1);
    ASSERT_TRUE(w->erase(kContainerPoolFirst + 1 * kContainerRangeSize));
    EXPECT_EQ(w->removed(), 0U) << "as many removed entries as live ones: compacted";
    EXPECT_EQ(w->size(), n - TableWriter::kCompactAt);
    TableReader reader(path_);
    auto t = reader.view();
    ASSERT_TRUE(t);
    std::vector<RangeRecord> all(n);
    std::size_t count = 0;
    ASSERT_EQ(read_all(**t, all.data(), all.size(), &count), 0);
    EXPECT_EQ(count, w->size());
    RangeRecord r;
    EXPECT_EQ(find_by_name(**t, "r7", &r), 0);
    EXPECT_EQ(find_by_name(**t, "r6", &r), -ESRCH);
    EXPECT_EQ(find_by_name(**t, "r1", &r), -ESRCH);
    // A few removed entries in a small table stay until kCompactAt.
    for (std::uint32_t i = 3; i < 40; i += 2)
        ASSERT_TRUE(w->erase(kContainerPoolFirst + i * kContainerRangeSize));
    EXPECT_EQ(w->removed(), 19U);
}

TEST_F(TableTest, AnAllocationDoesNotRewriteTheBlockIndex) {
    // Every insert added one to each block index word above the new entry's block, 65,536
    // words of both copies for a container range whatever the size of the table: most of an
    // allocation's cost in the daemon (issue 11). Now words above the last entry's block hold
    // UINT32_MAX, which readers clamp to the count, and an entry appended at the top moves none.
    // Against a baseline of the same run (a loaded machine): appending to a table of 1,000
    // ranges costs less than a quarter of copying one block index (256 KB; the old code: more
    // than the copy). The best of eight batches.
    constexpr std::uint32_t kRanges = 1000;
    constexpr int kBatch = 50;
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    const std::vector<RangeEntry> ranges = numbered(kRanges);
    ASSERT_TRUE(w->publish(ranges));
    using Clock = std::chrono::steady_clock;
    auto insert = Clock::duration::max();
    std::uint32_t next = kRanges;
    for (int batch = 0; batch < 8; batch++) {
        const auto t0 = Clock::now();
        for (int i = 0; i < kBatch; i++, next++)
            ASSERT_TRUE(w->insert(container("r" + std::to_string(next),
                                            kContainerPoolFirst + next * kContainerRangeSize)));
        insert = std::min(insert, (Clock::now() - t0) / kBatch);
    }
    std::vector<std::byte> from(std::size_t{kBlockIndexSize} * 4, std::byte{1}), to(from.size());
    auto copy = Clock::duration::max();
    volatile std::byte sink{};
    for (int run = 0; run < 8; run++) {
        from[static_cast<std::size_t>(run)] = std::byte{2};
        const auto t0 = Clock::now();
        std::memcpy(to.data(), from.data(), from.size());
        sink = to[static_cast<std::size_t>(run)];
        copy = std::min(copy, Clock::now() - t0);
    }
    (void)sink;
    const double ratio = std::chrono::duration<double>(insert).count() /
                         std::chrono::duration<double>(copy).count();
    std::printf("[ timing   ] an insert at the top of 1,000 ranges: %.2f us, copying 256 KB: "
                "%.2f us (%.3fx)\n", std::chrono::duration<double, std::micro>(insert).count(),
                std::chrono::duration<double, std::micro>(copy).count(), ratio);
#ifndef TRANSIENT_TESTS_SANITIZED
    EXPECT_LT(ratio, 0.25);
#else
    // A sanitizer instruments the insert but not memcpy(): 0.63x under ASan, which says nothing
    // of the block index. The unsanitized build checks the ratio.
#endif
    // Lookups by ID still find every range, above the old top too.
    TableReader reader(path_);
    auto v = reader.view();
    ASSERT_TRUE(v);
    RangeRecord r;
    for (std::uint32_t i = 0; i < next; i += 97)
        ASSERT_EQ(find_by_id(**v, kContainerPoolFirst + i * kContainerRangeSize + 7, &r), 0) << i;
    EXPECT_EQ(find_by_id(**v, kContainerPoolFirst + next * kContainerRangeSize, &r), -ESRCH);
}

TEST_F(TableTest, ReleaseDoesNotMoveTheTable) {
    // A release moved every entry after the released one in both copies (the table is sorted
    // by start): with 28,000 ranges as many bytes as the entries of one copy, 1.8 MB, and the
    // daemon released at 0.16x its rate with 1,000. Now it marks the entry removed, one word a
    // copy. Against a baseline of the same run (a loaded machine): a release costs less than a
    // tenth of copying those 1.8 MB once (the old code: more than the copy). The best of eight.
    constexpr std::uint32_t kRanges = 28000;
    constexpr int kBatch = 50;
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    const std::vector<RangeEntry> ranges = numbered(kRanges);
    ASSERT_TRUE(w->publish(ranges));
    std::vector<std::uint32_t> starts;
    for (const RangeEntry& r : ranges)
        starts.push_back(r.start);
    std::shuffle(starts.begin(), starts.end(), std::mt19937(11));
    using Clock = std::chrono::steady_clock;
    auto release = Clock::duration::max();
    for (int batch = 0; batch < 8; batch++) {
        const auto t0 = Clock::now();
        for (int i = batch * kBatch; i < (batch + 1) * kBatch; i++)
            ASSERT_TRUE(w->erase(starts[static_cast<std::size_t>(i)]));
        release = std::min(release, (Clock::now() - t0) / kBatch);
    }
    std::vector<std::byte> from(std::size_t{kRanges} * sizeof(EntryWords), std::byte{1}),
            to(from.size());
    auto copy = Clock::duration::max();
    volatile std::byte sink{};
    for (int run = 0; run < 8; run++) {
        from[static_cast<std::size_t>(run)] = std::byte{2};
        const auto t0 = Clock::now();
        std::memcpy(to.data(), from.data(), from.size());
        sink = to[static_cast<std::size_t>(run)];
        copy = std::min(copy, Clock::now() - t0);
    }
    (void)sink;
    const double ratio = std::chrono::duration<double>(release).count() /
                         std::chrono::duration<double>(copy).count();
    std::printf("[ timing   ] a release with 28,000 ranges: %.2f us, copying 1.8 MB: %.2f us "
                "(%.3fx)\n", std::chrono::duration<double, std::micro>(release).count(),
                std::chrono::duration<double, std::micro>(copy).count(), ratio);
    EXPECT_LT(ratio, 0.1);
}

TEST_F(TableTest, SingleChangesRefuseWhatPublishRefusesAndChangeNothing) {
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->insert(container("a", kContainerPoolFirst)));
    ASSERT_TRUE(w->insert(container("c", kContainerPoolFirst + 2 * kContainerRangeSize)));
    const auto before = published_bytes(path_);
    auto overlapping = container("b", kContainerPoolFirst + kContainerRangeSize);
    overlapping.size = 2 * kContainerRangeSize;  // into "c"
    EXPECT_EQ(w->insert(overlapping).error().value(), EINVAL);
    EXPECT_EQ(w->insert(container("b", kContainerPoolFirst + 100)).error().value(), EINVAL);
    EXPECT_EQ(w->insert(container("a", kContainerPoolFirst + kContainerRangeSize)).error().value(),
              EINVAL);  // the name is taken
    EXPECT_EQ(w->insert(container("bad name", kContainerPoolFirst + kContainerRangeSize))
                      .error()
                      .value(),
              EINVAL);
    EXPECT_EQ(w->erase(kContainerPoolFirst + kContainerRangeSize).error().value(), ENOENT);
    EXPECT_EQ(published_bytes(path_), before);
    EXPECT_EQ(w->find_name("c"), kContainerPoolFirst + 2 * kContainerRangeSize);
    EXPECT_FALSE(w->find_name("b"));
    EXPECT_FALSE(w->find_name("a-name-longer-than-any-range-name"));
    EXPECT_FALSE(w->find_name(std::string_view("c\0", 2))) << "a NUL is not padding";
}

TEST_F(TableTest, ARestartedWriterRecoversWhatSingleChangesPublished) {
    {
        auto w = TableWriter::open(path_);
        ASSERT_TRUE(w);
        for (std::uint32_t i = 0; i < 5; i++)
            ASSERT_TRUE(w->insert(container("r" + std::to_string(i),
                                            kContainerPoolFirst + i * kContainerRangeSize)));
        ASSERT_TRUE(w->erase(kContainerPoolFirst + 2 * kContainerRangeSize));
    }
    auto w = TableWriter::open(path_);
    ASSERT_TRUE(w);
    std::vector<std::string> names;
    for (const RangeEntry& r : w->recovery().ranges)
        names.push_back(r.name);
    EXPECT_EQ(names, (std::vector<std::string>{"r0", "r1", "r3", "r4"}));
    EXPECT_EQ(w->recovery().dropped, 0U);
}

// Names come from local users and the seed is readable: names crafted to share a home slot make
// a run as long as their number, and every lookup of them and of the names hashing into the run
// walks it. An insert that lands more than kMaxProbe slots from home re-seeds the index.
TEST_F(TableTest, NamesCraftedToCollideMakeTheWriterReseed) {
    constexpr std::uint32_t kCapacity = 256;
    auto w = TableWriter::open(path_, kCapacity);
    ASSERT_TRUE(w);
    const std::uint32_t slots = name_slots(kCapacity);
    const std::uint64_t seed = w->name_seed();
    auto home = [&](const std::string& name, std::uint64_t s) {
        std::uint64_t words[kNameWords] = {};
        std::memcpy(words, name.data(), name.size());
        return name_home_slot(words, s, slots);
    };
    std::vector<std::string> colliding;
    for (std::uint32_t i = 0; colliding.size() < TableWriter::kMaxProbe + 8; i++) {
        std::string name = "c" + std::to_string(i);
        if (home(name, seed) == 5)
            colliding.push_back(std::move(name));
    }
    std::vector<RangeEntry> inserted;
    for (std::size_t i = 0; i < colliding.size(); i++) {
        inserted.push_back(container(colliding[i],
                                     kContainerPoolFirst + static_cast<std::uint32_t>(i) *
                                                                   kContainerRangeSize));
        ASSERT_TRUE(w->insert(inserted.back()));
        if (i <= TableWriter::kMaxProbe) {
            ASSERT_EQ(w->name_seed(), seed) << i << ": a run of " << i << " is allowed";
        }
    }
    EXPECT_NE(w->name_seed(), seed) << "the insert that landed past kMaxProbe re-seeded";
    std::uint32_t longest = 0;
    ASSERT_EQ(name_index_problems(path_, &longest), "");
    EXPECT_LE(longest, TableWriter::kMaxProbe);
    TableReader reader(path_);
    auto v = reader.view();
    ASSERT_TRUE(v);
    RangeRecord r;
    for (const RangeEntry& e : inserted) {
        ASSERT_EQ(find_by_name(**v, e.name.c_str(), &r), 0) << e.name;
        EXPECT_EQ(r.start, e.start);
        EXPECT_EQ(w->find_name(e.name), e.start);
    }
    // Every change still works under the new seed: release, reuse in place, a name released and
    // taken elsewhere.
    ASSERT_TRUE(w->erase(inserted[3].start));
    EXPECT_EQ(find_by_name(**v, inserted[3].name.c_str(), &r), -ESRCH);
    ASSERT_TRUE(w->insert(container("reused", inserted[3].start)));
    ASSERT_TRUE(w->erase(inserted[4].start));
    ASSERT_TRUE(w->insert(container(inserted[4].name, inserted[5].start + 7 * kContainerRangeSize
                                    + kContainerRangeSize * 100)));
    ASSERT_EQ(name_index_problems(path_), "");
    EXPECT_EQ(find_by_name(**v, "reused", &r), 0);
    EXPECT_EQ(r.start, inserted[3].start);
    EXPECT_EQ(find_by_name(**v, inserted[4].name.c_str(), &r), 0);
    EXPECT_EQ(find_by_name(**v, inserted[3].name.c_str(), &r), -ESRCH);
}

TEST_F(TableTest, InsertsAndReusesCostTheSameWithAFullTableAsWithAFewRanges) {
    // Version 4 kept the name index sorted by name: an insert or a reuse in place under another
    // name moved every index word between the old and the new name's places, in both copies,
    // O(n) per allocation (71% of one with 27,000 ranges, issue 11). The hashed index of version
    // 5 changes a few words. Batches of 100 reuses (a release, then a range of another name in
    // its place) and 100 appends under names that sort before all others, in thread CPU time;
    // the best of five, with 27,000 ranges against 2,000 in the same run: 1.4-2.0x (0.7-1.6 us
    // against 1.2-2.3 us; cache misses on the larger table, load 3-4), where version 4 gave
    // 7.9-9.1x (5.5 us against 44-49 us).
    auto best_cost = [&](std::uint32_t n) {
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directory(dir_);
        auto w = TableWriter::open(path_);
        EXPECT_TRUE(w);
        const std::vector<RangeEntry> ranges = numbered(n);
        EXPECT_TRUE(w->publish(ranges));
        std::mt19937 rng(n);
        std::uint32_t next = n;
        double best = 1e9;
        for (int batch = 0; batch < 5; batch++) {
            const auto t0 = transient::testing::ThreadCpuClock::now();
            for (int i = 0; i < 100; i++, next++) {
                const std::uint32_t start = ranges[rng() % n].start;
                EXPECT_TRUE(w->erase(start));
                EXPECT_TRUE(w->insert(container("u" + std::to_string(next), start)));
                EXPECT_TRUE(w->insert(container("a" + std::to_string(next),
                                                kContainerPoolFirst + next * kContainerRangeSize)));
            }
            best = std::min(best, std::chrono::duration<double>(transient::testing::ThreadCpuClock::now() -
                                                                t0).count() / 100);
        }
        return best;
    };
    [[maybe_unused]] const double ratio = transient::testing::measure_until_passes(
            [&] {
                const double few = best_cost(2000), full = best_cost(27000);
                std::printf("[ timing   ] a reuse and an append: %.2f us with 2,000 ranges, "
                            "%.2f us with 27,000 (%.2fx)\n",
                            few * 1e6, full * 1e6, full / few);
                return full / few;
            },
            [](double r) { return r < 3.0; });
#ifndef TRANSIENT_TESTS_SANITIZED
    EXPECT_LT(ratio, 3.0);
#endif
}

}  // namespace
}  // namespace transient::shm
