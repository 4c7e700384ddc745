// SPDX-License-Identifier: LGPL-2.1-or-later
//
// setpwent/getpwent_r/endpwent, the group triple, and initgroups_dyn.

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/nss/nss_test_util.hpp"

namespace transient::nss::testing {
namespace {

class NssEnumerateTest : public NssTest {
protected:
    std::vector<std::string> all_users() {
        std::vector<std::string> names;
        EXPECT_EQ(nss().setpwent(0), NSS_STATUS_SUCCESS);
        for (int i = 0; i < 1000; i++) {
            passwd pw{};
            char buf[256];
            int err = -1;
            errno = kErrnoSentinel;
            const nss_status s = nss().getpwent_r(&pw, buf, sizeof buf, &err);
            EXPECT_EQ(errno, kErrnoSentinel);
            if (s != NSS_STATUS_SUCCESS) {
                EXPECT_EQ(s, NSS_STATUS_NOTFOUND);
                EXPECT_EQ(err, ENOENT);
                break;
            }
            names.push_back(pw.pw_name);
        }
        EXPECT_EQ(nss().endpwent(), NSS_STATUS_SUCCESS);
        return names;
    }

    std::vector<std::string> all_groups() {
        std::vector<std::string> names;
        EXPECT_EQ(nss().setgrent(0), NSS_STATUS_SUCCESS);
        for (int i = 0; i < 1000; i++) {
            group gr{};
            alignas(char*) char buf[256];
            int err = -1;
            if (nss().getgrent_r(&gr, buf, sizeof buf, &err) != NSS_STATUS_SUCCESS)
                break;
            EXPECT_EQ(gr.gr_mem[0], nullptr);
            names.push_back(gr.gr_name);
        }
        EXPECT_EQ(nss().endgrent(), NSS_STATUS_SUCCESS);
        return names;
    }
};

TEST_F(NssEnumerateTest, ListsOneUserPerRangeInUidOrderWithoutForeign) {
    publish(default_ranges());
    EXPECT_EQ(all_users(), (std::vector<std::string>{"vu-one-0", "vu-web-0", "vu-db-1-0",
                                                     std::string("vu-") + kLongName + "-0"}));
    EXPECT_EQ(all_groups(), (std::vector<std::string>{"vg-one-0", "vg-web-0", "vg-db-1-0",
                                                      std::string("vg-") + kLongName + "-0"}));
}

TEST_F(NssEnumerateTest, ListsNothingWithoutATableOrRanges) {
    EXPECT_TRUE(all_users().empty());
    EXPECT_TRUE(all_groups().empty());
    publish({});
    EXPECT_TRUE(all_users().empty());
    EXPECT_TRUE(all_groups().empty());
}

TEST_F(NssEnumerateTest, ShortBufferReturnsErangeAndDoesNotAdvance) {
    publish(default_ranges());
    ASSERT_EQ(nss().setpwent(1), NSS_STATUS_SUCCESS);
    passwd pw{};
    char small[8];
    int err = -1;
    errno = kErrnoSentinel;
    EXPECT_EQ(nss().getpwent_r(&pw, small, sizeof small, &err), NSS_STATUS_TRYAGAIN);
    EXPECT_EQ(err, ERANGE);
    EXPECT_EQ(errno, kErrnoSentinel);
    char buf[256];
    ASSERT_EQ(nss().getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_STREQ(pw.pw_name, "vu-one-0");
    EXPECT_TRUE(inside(pw.pw_shell, buf, sizeof buf));

    ASSERT_EQ(nss().setgrent(1), NSS_STATUS_SUCCESS);
    group gr{};
    alignas(char*) char gsmall[12];
    EXPECT_EQ(nss().getgrent_r(&gr, gsmall, sizeof gsmall, &err), NSS_STATUS_TRYAGAIN);
    EXPECT_EQ(err, ERANGE);
    alignas(char*) char gbuf[256];
    ASSERT_EQ(nss().getgrent_r(&gr, gbuf, sizeof gbuf, &err), NSS_STATUS_SUCCESS);
    EXPECT_STREQ(gr.gr_name, "vg-one-0");
    nss().endpwent();
    nss().endgrent();
}

TEST_F(NssEnumerateTest, StaysInOrderWhileRangesComeAndGo) {
    publish({container("a", kWeb), container("b", kWeb + 0x10000), container("c", kWeb + 0x20000),
             container("d", kWeb + 0x30000)});
    ASSERT_EQ(nss().setpwent(0), NSS_STATUS_SUCCESS);
    std::vector<std::string> seen;
    passwd pw{};
    char buf[256];
    int err;
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(nss().getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
        seen.push_back(pw.pw_name);
    }
    // "c" is released, "x" appears before the cursor (not listed), "z" after it (listed).
    publish({single("x", kSingle), container("a", kWeb), container("b", kWeb + 0x10000),
             container("d", kWeb + 0x30000), container("z", kWeb + 0x50000)});
    while (nss().getpwent_r(&pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS)
        seen.push_back(pw.pw_name);
    EXPECT_EQ(seen, (std::vector<std::string>{"vu-a-0", "vu-b-0", "vu-d-0", "vu-z-0"}));
    // The end is sticky until the next setpwent().
    EXPECT_EQ(nss().getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    ASSERT_EQ(nss().setpwent(0), NSS_STATUS_SUCCESS);
    ASSERT_EQ(nss().getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_STREQ(pw.pw_name, "vu-x-0");
    nss().endpwent();
}

TEST_F(NssEnumerateTest, ListsManyRanges) {
    std::vector<shm::RangeEntry> ranges;
    for (std::uint32_t i = 0; i < 500; i++)
        ranges.push_back(container("r" + std::to_string(i), kWeb + i * 0x10000));
    publish(ranges);
    const auto users = all_users();
    ASSERT_EQ(users.size(), 500U);
    EXPECT_EQ(users.front(), "vu-r0-0");
    EXPECT_EQ(users.back(), "vu-r499-0");
}

// initgroups_dyn: our groups have no members, so nothing is ever added, whatever the primary GID
// (as nss-systemd answers for the same users through transient-userdbd).
class NssInitgroupsTest : public NssTest {
protected:
    void SetUp() override {
        NssTest::SetUp();
        publish(default_ranges());
        groups_ = static_cast<gid_t*>(std::malloc(sizeof(gid_t)));
        groups_[0] = 100;
    }
    void TearDown() override {
        std::free(groups_);
        NssTest::TearDown();
    }

    nss_status initgroups(const char* user, gid_t group, long limit, int* err) {
        *err = -1;
        errno = kErrnoSentinel;
        const nss_status s =
                nss().initgroups_dyn(user, group, &start_, &size_, &groups_, limit, err);
        EXPECT_EQ(errno, kErrnoSentinel);
        return s;
    }

    long start_ = 1, size_ = 1;
    gid_t* groups_ = nullptr;
};

TEST_F(NssInitgroupsTest, AddsNothingWhenThePrimaryIsAnother) {
    int err;
    for (const char* user : {"vu-web-3", "vu-one-0", "foreign-9"}) {
        EXPECT_EQ(initgroups(user, 100, -1, &err), NSS_STATUS_NOTFOUND) << user;
        EXPECT_EQ(err, ENOENT);
        EXPECT_EQ(start_, 1);
        EXPECT_EQ(size_, 1) << "the list was not grown";
        EXPECT_EQ(groups_[0], 100U);
    }
}

TEST_F(NssInitgroupsTest, AddsNothingForTheUsersOwnPrimaryGroup) {
    int err;
    EXPECT_EQ(initgroups("vu-web-3", kWeb + 3, -1, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(err, ENOENT);
    EXPECT_EQ(start_, 1);
    EXPECT_EQ(size_, 1);
}

TEST_F(NssInitgroupsTest, ReturnsNotFoundForOtherUsers) {
    int err;
    for (const char* user : {"root", "vu-web-65536", "vg-web-3", "vu-nope-0", ""}) {
        EXPECT_EQ(initgroups(user, 100, -1, &err), NSS_STATUS_NOTFOUND) << user;
        EXPECT_EQ(err, ENOENT);
    }
    EXPECT_EQ(initgroups(nullptr, 100, -1, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(start_, 1);
}

}  // namespace
}  // namespace transient::nss::testing
