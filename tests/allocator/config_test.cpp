// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The allocd.conf parser: defaults, every key, and errors that name the file and the line.

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "allocator/config.hpp"
#include "tests/lib/temp_dir.hpp"

namespace transient::allocator {
namespace {

std::string error_of(std::string_view text) {
    auto c = parse_config(text, "allocd.conf");
    return c ? std::string("(parsed)") : c.error().message;
}

TEST(ConfigTest, EmptyTextGivesTheDefaults) {
    auto c = parse_config("", "allocd.conf");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->policy.pools.container_first, 524288U);
    EXPECT_EQ(c->policy.pools.container_last, 1879048191U);
    EXPECT_EQ(c->policy.pools.dynamic_first, 61184U);
    EXPECT_EQ(c->policy.pools.dynamic_last, 65519U);
    EXPECT_EQ(c->policy.max_ranges_per_user, 16U);
    EXPECT_TRUE(c->policy.allow_single);
    EXPECT_TRUE(c->policy.allow_container);
    EXPECT_EQ(c->userns_check_interval, std::chrono::milliseconds(2000));
    EXPECT_EQ(c->probe, ProbeMode::kAuto);
    EXPECT_TRUE(c->import_subordinate_ids);
}

TEST(ConfigTest, ReadsEveryKey) {
    auto c = parse_config("# comment\n"
                          "; another\n"
                          "\n"
                          "[Allocator]\n"
                          "  ContainerRange = 1048576-1114111  \n"
                          "DynamicRange=62000-62009\r\n"
                          "AllowedSizes=65536\n"
                          "MaxRangesPerUser=3\n"
                          "UserNamespaceCheckSec=0.25\n"
                          "UserNamespaceProbe=scan\n"
                          "ImportSubordinateIDs=no\n",
                          "allocd.conf");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->policy.pools.container_first, 1048576U);
    EXPECT_EQ(c->policy.pools.container_last, 1114111U);
    EXPECT_EQ(c->policy.pools.dynamic_first, 62000U);
    EXPECT_EQ(c->policy.pools.dynamic_last, 62009U);
    EXPECT_FALSE(c->policy.allow_single);
    EXPECT_TRUE(c->policy.allow_container);
    EXPECT_EQ(c->policy.max_ranges_per_user, 3U);
    EXPECT_EQ(c->userns_check_interval, std::chrono::milliseconds(250));
    EXPECT_EQ(c->probe, ProbeMode::kScan);
    EXPECT_FALSE(c->import_subordinate_ids);
}

TEST(ConfigTest, LaterKeysWinLikeSystemds) {
    auto c = parse_config("[Allocator]\nMaxRangesPerUser=3\nMaxRangesPerUser=4\n", "f");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->policy.max_ranges_per_user, 4U);
}

TEST(ConfigTest, NamesTheFileAndLineOfEveryError) {
    EXPECT_EQ(error_of("[Allocator]\n\nMaxRangesPerUsr=3\n"),
              "allocd.conf:3: unknown key 'MaxRangesPerUsr'");
    EXPECT_EQ(error_of("[Allocater]\n"),
              "allocd.conf:1: unknown section [Allocater] (the only section is [Allocator])");
    EXPECT_EQ(error_of("MaxRangesPerUser=3\n"),
              "allocd.conf:1: 'MaxRangesPerUser=' outside of the [Allocator] section");
    EXPECT_EQ(error_of("[Allocator]\nwhat is this\n"),
              "allocd.conf:2: expected Key=Value, got 'what is this'");
    EXPECT_EQ(error_of("[Allocator]\nMaxRangesPerUser=-1\n"),
              "allocd.conf:2: MaxRangesPerUser= wants a number from 0 to 1048576, got '-1'");
    EXPECT_EQ(error_of("[Allocator]\nAllowedSizes=1 2\n"),
              "allocd.conf:2: AllowedSizes= takes 1 and/or 65536, got '2'");
    EXPECT_EQ(error_of("[Allocator]\nAllowedSizes=\n"),
              "allocd.conf:2: AllowedSizes= must name at least one of 1 and 65536");
    EXPECT_EQ(error_of("[Allocator]\nUserNamespaceProbe=bpf\n"),
              "allocd.conf:2: UserNamespaceProbe= takes auto, file-handle or scan, got 'bpf'");
    EXPECT_EQ(error_of("[Allocator]\nImportSubordinateIDs=1\n"),
              "allocd.conf:2: ImportSubordinateIDs= takes yes or no, got '1'");
}

// As in systemd's own files (systemd.syntax(7)), '#' and ';' start a comment only at the
// beginning of a line; after a value they are part of it. Such a line stays refused, with an
// error that says why.
TEST(ConfigTest, RefusesInlineCommentsSayingWhereACommentMayStart) {
    const std::string hint =
            " ('#' and ';' start a comment only at the beginning of a line, as in systemd's)";
    EXPECT_EQ(error_of("[Allocator]\n\nMaxRangesPerUser=4   # per user\n"),
              "allocd.conf:3: MaxRangesPerUser= wants a number from 0 to 1048576, got '4   # "
              "per user'" + hint);
    EXPECT_EQ(error_of("[Allocator]\nUserNamespaceProbe=scan ; slow but sure\n"),
              "allocd.conf:2: UserNamespaceProbe= takes auto, file-handle or scan, got 'scan ; "
              "slow but sure'" + hint);
    EXPECT_EQ(error_of("[Allocator]  # the only section\n"),
              "allocd.conf:1: unknown section [Allocator]  # the only section (the only section "
              "is [Allocator])" + hint);
    EXPECT_EQ(error_of("[Allocator]\nMaxRangesPerUsr=4 # typo\n"),
              "allocd.conf:2: unknown key 'MaxRangesPerUsr'" + hint);
    // Without either character, no hint.
    EXPECT_EQ(error_of("[Allocator]\nMaxRangesPerUser=4 per user\n"),
              "allocd.conf:2: MaxRangesPerUser= wants a number from 0 to 1048576, got '4 per "
              "user'");
    // A comment line is a comment wherever its indentation puts the '#'.
    auto c = parse_config("[Allocator]\n   # MaxRangesPerUser=4\nMaxRangesPerUser=5\n", "f");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->policy.max_ranges_per_user, 5U);
}

TEST(ConfigTest, RefusesPoolsOutsideSystemdsRanges) {
    // Widening would hand out regular users' UIDs (1000…60000) or the foreign range.
    EXPECT_EQ(error_of("[Allocator]\nContainerRange=65536-1879048191\n"),
              "allocd.conf:2: ContainerRange= must lie within 524288-1879048191");
    EXPECT_EQ(error_of("[Allocator]\nContainerRange=524288-2147483647\n"),
              "allocd.conf:2: ContainerRange= must lie within 524288-1879048191");
    EXPECT_EQ(error_of("[Allocator]\nDynamicRange=1000-65519\n"),
              "allocd.conf:2: DynamicRange= must lie within 61184-65519");
    EXPECT_EQ(error_of("[Allocator]\nContainerRange=524289-589825\n"),
              "allocd.conf:2: ContainerRange= holds no 64K-aligned range of 65536 UIDs");
    EXPECT_EQ(error_of("[Allocator]\nDynamicRange=62000-61999\n"),
              "allocd.conf:2: DynamicRange= wants FIRST-LAST, got '62000-61999'");
    EXPECT_EQ(error_of("[Allocator]\nDynamicRange=62000\n"),
              "allocd.conf:2: DynamicRange= wants FIRST-LAST, got '62000'");
}

TEST(ConfigTest, RefusesCheckIntervalsOutOfBounds) {
    EXPECT_NE(error_of("[Allocator]\nUserNamespaceCheckSec=0\n").find("allocd.conf:2:"),
              std::string::npos);
    EXPECT_NE(error_of("[Allocator]\nUserNamespaceCheckSec=nan\n").find("allocd.conf:2:"),
              std::string::npos);
    EXPECT_NE(error_of("[Allocator]\nUserNamespaceCheckSec=2s\n").find("allocd.conf:2:"),
              std::string::npos);
}

TEST(ConfigTest, RefusesNulBytes) {
    EXPECT_EQ(error_of(std::string_view("[Allocator]\nMaxRanges\0=1\n", 25)),
              "allocd.conf:2: NUL byte in line");
}

TEST(ConfigTest, TheExampleFileParsesToTheDefaults) {
    auto c = load_config(TRANSIENT_EXAMPLE_CONFIG, true);
    ASSERT_TRUE(c) << c.error().message;
    const Config d;
    EXPECT_EQ(c->policy.pools.container_first, d.policy.pools.container_first);
    EXPECT_EQ(c->policy.max_ranges_per_user, d.policy.max_ranges_per_user);
    // Uncommented, every key must still parse and give the same defaults.
    std::ifstream in(TRANSIENT_EXAMPLE_CONFIG);
    std::string text, line;
    while (std::getline(in, line))
        text += (line.rfind("#", 0) == 0 && line.find('=') != std::string::npos &&
                                 line.find(' ') > line.find('=')
                         ? line.substr(1)
                         : line) +
                "\n";
    auto u = parse_config(text, "allocd.conf.example (uncommented)");
    ASSERT_TRUE(u) << u.error().message;
    EXPECT_EQ(u->policy.pools.container_last, d.policy.pools.container_last);
    EXPECT_EQ(u->policy.pools.dynamic_first, d.policy.pools.dynamic_first);
    EXPECT_EQ(u->policy.pools.dynamic_last, d.policy.pools.dynamic_last);
    EXPECT_EQ(u->policy.max_ranges_per_user, d.policy.max_ranges_per_user);
    EXPECT_EQ(u->userns_check_interval, d.userns_check_interval);
    EXPECT_EQ(u->probe, d.probe);
    EXPECT_NE(text.find("\nMaxRangesPerUser=16\n"), std::string::npos) << "uncommenting worked";
}

class ConfigFileTest : public ::testing::Test {
protected:
    transient::testing::TempDir tmp_{"transient-config-test"};
    std::string dir_ = tmp_.path();
};

TEST_F(ConfigFileTest, AMissingDefaultFileMeansDefaults) {
    auto c = load_config(dir_ + "/allocd.conf", false);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->policy.max_ranges_per_user, 16U);
}

TEST_F(ConfigFileTest, AMissingNamedFileIsAnError) {
    auto c = load_config(dir_ + "/allocd.conf", true);
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find(dir_ + "/allocd.conf"), std::string::npos);
}

TEST_F(ConfigFileTest, ErrorsNameThePath) {
    std::ofstream(dir_ + "/allocd.conf") << "[Allocator]\nMaxRangesPerUser=x\n";
    auto c = load_config(dir_ + "/allocd.conf", false);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().message.rfind(dir_ + "/allocd.conf:2: ", 0), 0U) << c.error().message;
}

TEST_F(ConfigFileTest, RefusesHugeFilesWithoutReadingThemWhole) {
    auto c = load_config("/dev/zero", true);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().message, "/dev/zero: file is larger than 1 MiB");
}

}  // namespace
}  // namespace transient::allocator
