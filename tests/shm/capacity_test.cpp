// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The table at its default capacity, completely full: every one of the 28664 container slots
// and 4336 dynamic UIDs of systemd's pools published at once, found by ID and by name, in
// logarithmic time, and recovered in full (and quickly) by a restarted writer.

#include <algorithm>
#include <chrono>
#include <string>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "shm/identity.hpp"
#include "shm/reader.hpp"
#include "shm/table_reader.hpp"
#include "shm/writer.hpp"
#include "tests/lib/thread_cpu_clock.hpp"
#include "tests/shm/shm_test_util.hpp"

namespace transient::shm {
namespace {

// CPU time of the thread: the ratios below must not depend on how often a loaded machine
// preempts the test.
using Clock = transient::testing::ThreadCpuClock;

class TableCapacityTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        full_ = new std::vector<RangeEntry>;
        for (std::uint32_t i = 0; i < kDefaultCapacity; i++)
            full_->push_back(testing::slot_range(i));
    }
    static void TearDownTestSuite() {
        delete full_;
        full_ = nullptr;
    }

    static std::vector<RangeEntry>* full_;
    testing::TempDir dir_;
};

std::vector<RangeEntry>* TableCapacityTest::full_ = nullptr;

TEST_F(TableCapacityTest, DefaultCapacityCoversBothPoolsExactly) {
    EXPECT_EQ(kContainerSlots, 28664U);
    EXPECT_EQ(kDynamicSlots, 4336U);
    EXPECT_EQ(kDefaultCapacity, 33000U);
    EXPECT_EQ(full_->front().start, kDynamicPoolFirst);
    EXPECT_EQ(full_->back().start, kContainerPoolLast + 1 - kContainerRangeSize);
    EXPECT_TRUE(TableWriter::check(*full_, kDefaultCapacity));
}

TEST_F(TableCapacityTest, FindsEveryRangeOfAFullTableByIdAndByName) {
    auto w = TableWriter::open(dir_.table());
    ASSERT_TRUE(w) << w.error().message();
    ASSERT_EQ(w->capacity(), kDefaultCapacity);
    ASSERT_TRUE(w->publish(*full_));

    TableReader reader(dir_.table());
    auto v = reader.view();
    ASSERT_TRUE(v) << v.error().message();
    RangeRecord r;
    for (const RangeEntry& e : *full_) {
        ASSERT_EQ(find_by_id(**v, e.start, &r), 0) << e.name;
        ASSERT_EQ(testing::to_entry(r), e);
        ASSERT_EQ(find_by_id(**v, e.start + e.size - 1, &r), 0) << e.name;
        ASSERT_EQ(r.start, e.start);
        ASSERT_EQ(find_by_name(**v, e.name.c_str(), &r), 0) << e.name;
        ASSERT_EQ(r.start, e.start);
    }
    // The gaps between and around the pools stay unanswered.
    for (const std::uint32_t id : {kDynamicPoolFirst - 1, kDynamicPoolLast + 1,
                                   kContainerPoolFirst - 1, kContainerPoolLast + 1, 0U,
                                   0xFFFFFFFFU})
        EXPECT_EQ(find_by_id(**v, id, &r), -ESRCH) << id;

    std::vector<RangeRecord> all(kDefaultCapacity + 1);
    std::size_t count = 0;
    ASSERT_EQ(read_all(**v, all.data(), all.size(), &count), 0);
    ASSERT_EQ(count, kDefaultCapacity);
    std::uint64_t next = 0;
    std::size_t enumerated = 0;
    while (find_next(**v, next, &r) == 0) {
        ASSERT_EQ(r.start, (*full_)[enumerated].start);
        next = std::uint64_t{r.start} + 1;
        enumerated++;
    }
    EXPECT_EQ(enumerated, kDefaultCapacity);

    Identity ident;
    ASSERT_EQ(lookup_name(*v, "vu-r6fff0000-65535", IdKind::kUser, &ident), 0);
    EXPECT_EQ(ident.id, kContainerPoolLast);
    ASSERT_EQ(lookup_id(*v, kDynamicPoolLast, IdKind::kGroup, &ident), 0);
    EXPECT_STREQ(ident.name, "vg-rffef-0");
}

TEST_F(TableCapacityTest, RefusesOneRangeMoreThanTheCapacity) {
    auto w = TableWriter::open(dir_.table(), 4);
    ASSERT_TRUE(w);
    std::vector<RangeEntry> five(full_->begin(), full_->begin() + 5);
    auto r = w->publish(five);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().value(), ENOSPC);
    five.pop_back();
    EXPECT_TRUE(w->publish(five));
}

// The time of 2 x `lookups` lookups (by ID and by name) of random members of `ranges`, published
// alone in a table at `path`. Complexity is judged by ratios between two sizes measured in the
// same run: absolute times mean nothing on a shared, loaded machine.
Clock::duration time_lookups(const std::string& path, const std::vector<RangeEntry>& ranges,
                             int lookups) {
    auto w = TableWriter::open(path);
    EXPECT_TRUE(w);
    EXPECT_TRUE(w->publish(ranges));
    TableReader reader(path);
    auto v = reader.view();
    EXPECT_TRUE(v);
    std::mt19937 rng(5);
    std::vector<std::uint32_t> ids(lookups);
    for (auto& id : ids) {
        const RangeEntry& e = ranges[rng() % ranges.size()];
        id = e.start + rng() % e.size;
    }
    int found = 0;
    RangeRecord r;
    const auto t0 = Clock::now();
    for (const std::uint32_t id : ids)
        found += find_by_id(**v, id, &r) == 0;
    for (int i = 0; i < lookups; i++)
        found += find_by_name(**v, ranges[ids[i] % ranges.size()].name.c_str(), &r) == 0;
    const auto elapsed = Clock::now() - t0;
    EXPECT_EQ(found, 2 * lookups);
    return elapsed;
}

double ratio(Clock::duration a, Clock::duration b) {
    return static_cast<double>(a.count()) / static_cast<double>(std::max<Clock::rep>(b.count(), 1));
}

TEST_F(TableCapacityTest, LookupsInAFullTableAreLogarithmic) {
    constexpr int kLookups = 100000;
    const std::vector<RangeEntry> small(full_->begin(), full_->begin() + full_->size() / 32);
    testing::TempDir small_dir;
    // Best of three each, alternating, against scheduling noise.
    Clock::duration t_small = Clock::duration::max(), t_full = Clock::duration::max();
    for (int round = 0; round < 3; round++) {
        t_small = std::min(t_small, time_lookups(small_dir.table(), small, kLookups));
        t_full = std::min(t_full, time_lookups(dir_.table(), *full_, kLookups));
    }
    // 32 times the ranges: a linear scan would take ~32 times as long, a binary search and the
    // block index a few probes more.
    EXPECT_LT(ratio(t_full, t_small), 8.0)
            << "full: " << std::chrono::duration_cast<std::chrono::microseconds>(t_full).count()
            << " us, 1/32: "
            << std::chrono::duration_cast<std::chrono::microseconds>(t_small).count() << " us";
}

TEST_F(TableCapacityTest, RestartedWriterRecoversAFullTableQuickly) {
    const std::vector<RangeEntry> small(full_->begin(), full_->begin() + full_->size() / 8);
    testing::TempDir small_dir;
    auto time_recovery = [](const std::string& path, const std::vector<RangeEntry>& ranges) {
        {
            auto w = TableWriter::open(path);
            EXPECT_TRUE(w);
            EXPECT_TRUE(w->publish(ranges));
        }
        const auto t0 = Clock::now();
        auto w = TableWriter::open(path);
        const auto elapsed = Clock::now() - t0;
        EXPECT_TRUE(w);
        if (w) {
            EXPECT_EQ(w->recovery().dropped, 0U);
            EXPECT_EQ(w->recovery().ranges, ranges);
        }
        return elapsed;
    };
    Clock::duration t_small = Clock::duration::max(), t_full = Clock::duration::max();
    for (int round = 0; round < 5; round++) {
        t_small = std::min(t_small, time_recovery(small_dir.table(), small));
        t_full = std::min(t_full, time_recovery(dir_.table(), *full_));
    }
    // Startup of the allocator must not be quadratic in the number of ranges: 8 times the ranges
    // may cost 8 times as long (plus the fixed cost of the file), not 64 times.
    EXPECT_LT(ratio(t_full, t_small), 24.0)
            << "full: " << std::chrono::duration_cast<std::chrono::microseconds>(t_full).count()
            << " us, 1/8: "
            << std::chrono::duration_cast<std::chrono::microseconds>(t_small).count() << " us";
}

}  // namespace
}  // namespace transient::shm
