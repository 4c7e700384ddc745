// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The allocation policy, driven through a fake collision checker and a real table.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "allocator/allocator.hpp"
#include "allocator/collision.hpp"
#include "shm/table_reader.hpp"

namespace transient::allocator {
namespace {

// Claims the IDs in `taken` and the names in `names` for some other source.
class FakeChecker : public CollisionChecker {
public:
    std::set<std::uint32_t> taken;
    std::set<std::string> names;
    int range_calls = 0;

    std::optional<std::string> range_taken(std::uint32_t start, std::uint32_t size) override {
        range_calls++;
        auto it = taken.lower_bound(start);
        if (it != taken.end() && *it < std::uint64_t{start} + size)
            return "taken";
        return std::nullopt;
    }
    std::optional<std::string> name_taken(std::string_view name) override {
        if (names.count(std::string(name)))
            return "exists";
        return std::nullopt;
    }
};

class AllocatorTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/transient-alloc-test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::unique_ptr<Allocator> make(Pools pools = {}) {
        auto w = shm::TableWriter::open(dir_ + "/ranges.table");
        EXPECT_TRUE(w);
        auto checker = std::make_unique<FakeChecker>();
        checker_ = checker.get();
        return std::make_unique<Allocator>(std::move(*w), std::move(checker), pools);
    }

    std::string dir_;
    FakeChecker* checker_ = nullptr;
};

TEST_F(AllocatorTest, HandsOutAlignedContainerRangesFirstFit) {
    auto a = make();
    auto r1 = a->allocate("web", 65536, 0);
    ASSERT_TRUE(r1) << r1.error().message;
    EXPECT_EQ(r1->start, 524288U);
    EXPECT_EQ(r1->size, 65536U);
    auto r2 = a->allocate("db", 65536, 0);
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->start, 524288U + 65536);
    ASSERT_TRUE(a->release("web", 0));
    auto r3 = a->allocate("cache", 65536, 0);
    ASSERT_TRUE(r3);
    EXPECT_EQ(r3->start, 524288U);
}

TEST_F(AllocatorTest, HandsOutSingleIdsFromTheDynamicPool) {
    auto a = make();
    auto r = a->allocate("svc", 1, 0);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->start, 61184U);
    EXPECT_EQ(r->size, 1U);
    auto r2 = a->allocate("svc2", 1, 0);
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->start, 61185U);
}

TEST_F(AllocatorTest, SkipsCandidatesOtherSourcesKnow) {
    auto a = make();
    checker_->taken = {524288 + 0xFFFE, 589824 + 5};
    auto r = a->allocate("web", 65536, 0);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->start, 524288U + 2 * 65536);
    checker_->taken = {61184};
    auto s = a->allocate("one", 1, 0);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->start, 61185U);
}

TEST_F(AllocatorTest, RejectsBadNamesSizesAndDuplicates) {
    auto a = make();
    EXPECT_EQ(a->allocate("1web", 65536, 0).error().kind, ErrorKind::kInvalidName);
    EXPECT_EQ(a->allocate("", 65536, 0).error().kind, ErrorKind::kInvalidName);
    EXPECT_EQ(a->allocate(std::string(23, 'a'), 65536, 0).error().kind, ErrorKind::kInvalidName);
    EXPECT_EQ(a->allocate("we b", 65536, 0).error().kind, ErrorKind::kInvalidName);
    EXPECT_EQ(a->allocate("web", 7, 0).error().kind, ErrorKind::kInvalidSize);
    EXPECT_EQ(a->allocate("web", -1, 0).error().kind, ErrorKind::kInvalidSize);
    EXPECT_EQ(a->allocate("web", 0, 0).error().kind, ErrorKind::kInvalidSize);
    ASSERT_TRUE(a->allocate(std::string(22, 'a'), 65536, 0));
    ASSERT_TRUE(a->allocate("web", 65536, 0));
    EXPECT_EQ(a->allocate("web", 1, 0).error().kind, ErrorKind::kNameInUse);
    checker_->names = {"taken"};
    EXPECT_EQ(a->allocate("taken", 1, 0).error().kind, ErrorKind::kNameInUse);
}

TEST_F(AllocatorTest, DeniesNonRootCallersUntilPolicyExists) {
    auto a = make();
    EXPECT_EQ(a->allocate("web", 65536, 1000).error().kind, ErrorKind::kPermissionDenied);
    ASSERT_TRUE(a->allocate("web", 65536, 0));
    EXPECT_EQ(a->release("web", 1000).error().kind, ErrorKind::kPermissionDenied);
    EXPECT_EQ(a->release("nope", 0).error().kind, ErrorKind::kNoSuchRange);
}

TEST_F(AllocatorTest, ReportsPoolExhaustion) {
    Pools small;
    small.container_first = 524288;
    small.container_last = 524288 + 2 * 65536 - 1;
    small.dynamic_first = 61184;
    small.dynamic_last = 61185;
    auto a = make(small);
    ASSERT_TRUE(a->allocate("a", 65536, 0));
    ASSERT_TRUE(a->allocate("b", 65536, 0));
    EXPECT_EQ(a->allocate("c", 65536, 0).error().kind, ErrorKind::kPoolExhausted);
    ASSERT_TRUE(a->allocate("d", 1, 0));
    ASSERT_TRUE(a->allocate("e", 1, 0));
    EXPECT_EQ(a->allocate("f", 1, 0).error().kind, ErrorKind::kPoolExhausted);
}

TEST_F(AllocatorTest, FindsByNameOrIdAndRejectsDisagreement) {
    auto a = make();
    ASSERT_TRUE(a->allocate("web", 65536, 0));
    ASSERT_TRUE(a->allocate("db", 65536, 0));
    EXPECT_EQ(a->find("db", std::nullopt)->start, 589824U);
    EXPECT_EQ(a->find(std::nullopt, 589824 + 65535)->name, "db");
    EXPECT_EQ(a->find(std::nullopt, 589824 + 65536).error().kind, ErrorKind::kNoSuchRange);
    EXPECT_EQ(a->find("web", 589824).error().kind, ErrorKind::kNoSuchRange);
    EXPECT_EQ(a->find(std::nullopt, -5).error().kind, ErrorKind::kNoSuchRange);
    EXPECT_TRUE(a->find("web", 524288));
}

TEST_F(AllocatorTest, PublishesEveryChangeBeforeReturning) {
    auto a = make();
    shm::TableReader reader(dir_ + "/ranges.table");
    auto r = a->allocate("web", 65536, 0);
    ASSERT_TRUE(r);
    auto v = reader.view();
    ASSERT_TRUE(v);
    shm::RangeRecord rec;
    ASSERT_EQ(shm::find_by_name(**v, "web", &rec), 0);
    EXPECT_EQ(rec.start, r->start);
    ASSERT_TRUE(a->release("web", 0));
    EXPECT_EQ(shm::find_by_name(**v, "web", &rec), -ESRCH);
}

TEST_F(AllocatorTest, ContinuesFromTheTableAfterARestart) {
    {
        auto a = make();
        ASSERT_TRUE(a->allocate("web", 65536, 0));
        ASSERT_TRUE(a->allocate("one", 1, 0));
    }
    auto a = make();
    ASSERT_EQ(a->ranges().size(), 2U);
    auto r = a->allocate("db", 65536, 0);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->start, 589824U);
    EXPECT_EQ(a->allocate("web", 1, 0).error().kind, ErrorKind::kNameInUse);
}

TEST(SubidTest, FindsOverlappingLines) {
    char tmpl[] = "/tmp/transient-subuid.XXXXXX";
    const int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    std::ofstream(tmpl) << "# comment\nalice:100000:65536\nbroken line\nbob:655360:1\n";
    EXPECT_FALSE(subid_overlap(tmpl, 524288, 65536));
    EXPECT_EQ(subid_overlap(tmpl, 655360, 65536), std::string(tmpl) + ":4");
    EXPECT_EQ(subid_overlap(tmpl, 100000 + 65535, 1), std::string(tmpl) + ":2");
    EXPECT_FALSE(subid_overlap(tmpl, 100000 + 65536, 1));
    EXPECT_FALSE(subid_overlap("/nonexistent/subuid", 0, 65536));
    ::unlink(tmpl);
}

}  // namespace
}  // namespace transient::allocator
