// SPDX-License-Identifier: LGPL-2.1-or-later
//
// /etc/subuid and /etc/subgid as ranges: the parser, the names and the merging of both files.

#include <gtest/gtest.h>

#include "allocator/subids.hpp"
#include "shm/identity.hpp"
#include "shm/layout.hpp"

namespace transient::allocator {
namespace {

std::optional<std::uint32_t> fake_owner(const std::string& owner) {
    if (owner == "alice")
        return 1000;
    if (owner == "1001")
        return 1001;
    return std::nullopt;
}

TEST(SubidsTest, ParsesLinesAndSkipsWhatClaimsNothing) {
    auto lines = parse_subid_file("# comment\n"
                                  "alice:100000:65536\n"
                                  "\n"
                                  "bob:165536:65536\r\n"
                                  ":1:2\n"
                                  "carol:x:5\n"
                                  "dave:10:0\n"
                                  "erin:4294967295:2\n"
                                  "frank:200000:10");
    ASSERT_EQ(lines.size(), 3U);
    EXPECT_EQ(lines[0].owner, "alice");
    EXPECT_EQ(lines[0].start, 100000U);
    EXPECT_EQ(lines[0].count, 65536U);
    EXPECT_EQ(lines[0].line, 2U);
    EXPECT_EQ(lines[1].owner, "bob");
    EXPECT_EQ(lines[1].line, 4U);
    EXPECT_EQ(lines[2].owner, "frank");
    EXPECT_EQ(lines[2].count, 10U);
}

TEST(SubidsTest, NamesEntriesByOwnerAndNumber) {
    EXPECT_EQ(imported_range_name("alice", 1, 65536), "sub-alice");
    EXPECT_EQ(imported_range_name("alice", 2, 65536), "sub-alice-2");
    EXPECT_EQ(imported_range_name("1000", 1, 65536), "sub-1000");
}

TEST(SubidsTest, ShortFormKeepsEveryUserNameWithin31Bytes) {
    // Invalid characters, too long an owner, and a range so large that n needs 10 digits.
    const struct {
        const char* owner;
        unsigned nth;
        std::uint32_t size;
    } cases[] = {{"john.doe", 1, 65536},
                 {"averyveryverylongusername", 1, 65536},
                 {"alice", 3, 0xF0000000U},
                 {"machine$", 1, 1}};
    for (const auto& c : cases) {
        const std::string n = imported_range_name(c.owner, c.nth, c.size);
        SCOPED_TRACE(n);
        EXPECT_TRUE(n.starts_with("sub-"));
        EXPECT_TRUE(shm::is_valid_range_name(n.data(), n.size()));
        EXPECT_LE(("vu-" + n + "-" + std::to_string(c.size - 1)).size(), 31U);
        // Deterministic, and distinct for distinct entries.
        EXPECT_EQ(n, imported_range_name(c.owner, c.nth, c.size));
        EXPECT_NE(n, imported_range_name(c.owner, c.nth + 1, c.size));
    }
    EXPECT_EQ(imported_range_name("john.doe", 1, 65536).substr(0, 13), "sub-john_doe_");
}

TEST(SubidsTest, MergesBothFilesIntoUidOnlyAndGidOnlyRanges) {
    auto uid = parse_subid_file("alice:100000:65536\nalice:300000:65536\n1001:400000:10\n");
    auto gid = parse_subid_file("alice:100000:65536\nbob:500000:65536\n");
    std::vector<std::string> skipped;
    auto e = imported_entries(uid, gid, fake_owner, &skipped);
    EXPECT_TRUE(skipped.empty());
    ASSERT_EQ(e.size(), 4U);
    EXPECT_EQ(e[0].name, "sub-alice");
    EXPECT_EQ(e[0].owner, 1000U);
    EXPECT_EQ(e[0].flags, shm::kEntryFlagImported);
    EXPECT_EQ(e[1].name, "sub-alice-2");
    EXPECT_EQ(e[1].flags, shm::kEntryFlagImported | shm::kEntryFlagNoGid);
    EXPECT_EQ(e[2].name, "sub-1001");
    EXPECT_EQ(e[2].owner, 1001U);
    EXPECT_EQ(e[2].size, 10U);
    EXPECT_EQ(e[3].name, "sub-bob");
    EXPECT_EQ(e[3].owner, 0xFFFFFFFFU);  // unknown user
    EXPECT_EQ(e[3].flags, shm::kEntryFlagImported | shm::kEntryFlagNoUid);
    EXPECT_TRUE(shm::TableWriter::check(e, 100));
}

TEST(SubidsTest, SkipsOverlappingAndUnservableEntriesWithAReason) {
    auto uid = parse_subid_file("alice:100000:65536\nbob:150000:65536\nroot:0:10\n"
                                "x:2147352576:5\n");
    auto gid = parse_subid_file("carol:100000:5\n");
    std::vector<std::string> skipped;
    auto e = imported_entries(uid, gid, fake_owner, &skipped);
    ASSERT_EQ(e.size(), 1U);
    EXPECT_EQ(e[0].name, "sub-alice");
    ASSERT_EQ(skipped.size(), 4U);
    EXPECT_NE(skipped[0].find("/etc/subuid:2"), std::string::npos) << skipped[0];
    EXPECT_NE(skipped[0].find("sub-alice"), std::string::npos) << skipped[0];
    EXPECT_NE(skipped[3].find("/etc/subgid:1"), std::string::npos) << skipped[3];
}

TEST(SubidsTest, OverlapCheckOfTheCollisionCheckerUsesTheSameLines) {
    auto lines = parse_subid_file("alice:100000:65536\n");
    EXPECT_TRUE(subid_overlap(lines, 165535, 1));
    EXPECT_FALSE(subid_overlap(lines, 165536, 65536));
    EXPECT_FALSE(subid_overlap(lines, 34464, 65536));
}

}  // namespace
}  // namespace transient::allocator
