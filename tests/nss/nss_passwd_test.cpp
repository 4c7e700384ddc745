// SPDX-License-Identifier: LGPL-2.1-or-later
//
// getpwuid_r / getpwnam_r through the dlopen()ed module: record contents, range edges, odd
// names, the foreign range, the buffer protocol (every short size is ERANGE) and errno.

#include <memory>
#include <string>

#include "tests/nss/nss_test_util.hpp"

namespace transient::nss::testing {
namespace {

class NssPasswdTest : public NssTest {
protected:
    void SetUp() override {
        NssTest::SetUp();
        publish(default_ranges());
    }
};

TEST_F(NssPasswdTest, ResolvesTheFirstUidOfARange) {
    passwd pw{};
    char buf[256];
    int err;
    ASSERT_EQ(getpwuid(kWeb, &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_STREQ(pw.pw_name, "vu-web-0");
    EXPECT_STREQ(pw.pw_passwd, "x");
    EXPECT_EQ(pw.pw_uid, kWeb);
    EXPECT_EQ(pw.pw_gid, kWeb);
    EXPECT_STREQ(pw.pw_gecos, "UID 0 of transient range web");
    EXPECT_STREQ(pw.pw_dir, "/");
    EXPECT_STREQ(pw.pw_shell, "/usr/sbin/nologin");
    EXPECT_EQ(err, -1) << "*errnop must be left alone on success";
}

TEST_F(NssPasswdTest, ResolvesEveryEdgeOfARange) {
    EXPECT_EQ(user_name(kWeb + 1), "vu-web-1");
    EXPECT_EQ(user_name(kWeb + 65535), "vu-web-65535");
    EXPECT_EQ(user_name(kWeb - 1), "");
    EXPECT_EQ(user_name(kWeb + 65536), "");
    EXPECT_EQ(user_name(kDb1 + 65535), "vu-db-1-65535");
    EXPECT_EQ(user_name(kDb1 + 65536), "");
    EXPECT_EQ(user_name(kLong + 65535), std::string("vu-") + kLongName + "-65535");
}

TEST_F(NssPasswdTest, ReturnsNotFoundWithEnoentForAnUnknownUid) {
    for (uid_t uid : {0U, 1000U, 65534U, 65535U, 0xFFFFFFFEU, 0xFFFFFFFFU}) {
        passwd pw{};
        char buf[256];
        int err;
        EXPECT_EQ(getpwuid(uid, &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND) << uid;
        EXPECT_EQ(err, ENOENT);
    }
}

TEST_F(NssPasswdTest, ResolvesASingleUidRangeAndNothingNextToIt) {
    EXPECT_EQ(user_name(kSingle), "vu-one-0");
    EXPECT_EQ(user_name(kSingle + 1), "");
    EXPECT_EQ(user_name(kSingle - 1), "");
    passwd pw{};
    char buf[256];
    int err;
    ASSERT_EQ(getpwnam("vu-one-0", &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(pw.pw_uid, kSingle);
    EXPECT_EQ(getpwnam("vu-one-1", &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
}

TEST_F(NssPasswdTest, ResolvesNamesWhoseRangeNameContainsDashes) {
    passwd pw{};
    char buf[256];
    int err;
    ASSERT_EQ(getpwnam("vu-db-1-7", &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(pw.pw_uid, kDb1 + 7);
    EXPECT_STREQ(pw.pw_gecos, "UID 7 of transient range db-1");
    ASSERT_EQ(getpwnam("vu-db-1-65535", &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(pw.pw_uid, kDb1 + 65535);
    const std::string longest = std::string("vu-") + kLongName + "-65535";
    ASSERT_EQ(getpwnam(longest.c_str(), &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(pw.pw_uid, kLong + 65535);
}

TEST_F(NssPasswdTest, RejectsNonCanonicalAndMalformedNames) {
    const std::string huge(100000, 'a');
    const std::string huge_valid = "vu-web-" + std::string(5000, '1');
    for (const char* name :
         {"vu-web-01", "vu-web-00", "vu-web-+1", "vu-web--1", "vu-web- 1", "vu-web-1 ", "vu-web-",
          "vu-web", "vu-", "vu--0", "vu", "v", "VU-web-0", "vg-web-0", "vu-web-65536",
          "vu-web-4294967296", "vu-web-99999999999", "vu-db-0", "vu-nope-0", "vu-web-0x1",
          "vu-web-1\n", " vu-web-1", "vu-web-1-1", "web-1", "foreign-", "foreign-00",
          "foreign-65535", "foreign--1", "root", "nobody", "", huge.c_str(), huge_valid.c_str()}) {
        passwd pw{};
        char buf[256];
        int err;
        EXPECT_EQ(getpwnam(name, &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND)
                << '"' << std::string(name).substr(0, 40) << '"';
        EXPECT_EQ(err, ENOENT);
    }
}

TEST_F(NssPasswdTest, TreatsANullNameOrResultAsNotFound) {
    passwd pw{};
    char buf[256];
    int err;
    EXPECT_EQ(getpwnam(nullptr, &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(getpwnam("vu-web-1", nullptr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(getpwuid(kWeb, nullptr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(getpwuid(kWeb, &pw, nullptr, 4096, &err), NSS_STATUS_TRYAGAIN);
    EXPECT_EQ(err, ERANGE);
}

TEST_F(NssPasswdTest, ServesTheForeignRangeLikeSystemd) {
    passwd pw{};
    char buf[256];
    int err;
    ASSERT_EQ(getpwuid(shm::kForeignBase, &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_STREQ(pw.pw_name, "foreign-0");
    EXPECT_STREQ(pw.pw_gecos, "Foreign System Image UID 0");
    EXPECT_EQ(pw.pw_gid, shm::kForeignBase);
    ASSERT_EQ(getpwuid(shm::kForeignBase + 65534, &pw, buf, sizeof buf, &err),
              NSS_STATUS_SUCCESS);
    EXPECT_STREQ(pw.pw_name, "foreign-65534");
    EXPECT_EQ(getpwuid(shm::kForeignBase + 65535, &pw, buf, sizeof buf, &err),
              NSS_STATUS_NOTFOUND);
    EXPECT_EQ(getpwuid(shm::kForeignBase - 1, &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    ASSERT_EQ(getpwnam("foreign-65534", &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(pw.pw_uid, shm::kForeignBase + 65534);
    ASSERT_EQ(getpwnam("foreign-0", &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(pw.pw_uid, shm::kForeignBase);
}

TEST_F(NssPasswdTest, ServesTheForeignRangeWithoutATable) {
    ASSERT_EQ(user_name(kWeb), "vu-web-0");
    writer_.reset();
    remove_table();
    EXPECT_EQ(user_name(shm::kForeignBase + 42), "foreign-42");
    EXPECT_EQ(user_name(kWeb), "");
}

// Every size below the needed one is TRYAGAIN/ERANGE with nothing touched; the needed size
// succeeds with every string inside the buffer. Heap buffers of the exact size, so that an
// overrun trips ASan and valgrind.
void expect_exact_buffer_protocol(const Module& m, uid_t uid, const char* name,
                                  std::size_t expected_size) {
    passwd sentinel;
    std::memset(&sentinel, 0xA5, sizeof sentinel);
    for (std::size_t len = 0; len < expected_size; len++) {
        auto buf = std::make_unique<char[]>(len);
        passwd pw = sentinel;
        int err = -1;
        errno = kErrnoSentinel;
        const nss_status s = name != nullptr ? m.getpwnam_r(name, &pw, buf.get(), len, &err)
                                             : m.getpwuid_r(uid, &pw, buf.get(), len, &err);
        ASSERT_EQ(s, NSS_STATUS_TRYAGAIN) << "buffer of " << len;
        EXPECT_EQ(err, ERANGE);
        EXPECT_EQ(errno, kErrnoSentinel) << "errno is restored, the code goes to *errnop";
        EXPECT_EQ(std::memcmp(&pw, &sentinel, sizeof pw), 0) << "out-param clobbered at " << len;
    }
    auto buf = std::make_unique<char[]>(expected_size);
    passwd pw{};
    int err = -1;
    const nss_status s = name != nullptr ? m.getpwnam_r(name, &pw, buf.get(), expected_size, &err)
                                         : m.getpwuid_r(uid, &pw, buf.get(), expected_size, &err);
    ASSERT_EQ(s, NSS_STATUS_SUCCESS) << "buffer of exactly " << expected_size;
    for (const char* p : {pw.pw_name, pw.pw_passwd, pw.pw_gecos, pw.pw_dir, pw.pw_shell})
        EXPECT_TRUE(inside(p, buf.get(), expected_size));
}

std::size_t passwd_bytes(const std::string& name, const std::string& gecos) {
    return name.size() + 1 + 2 + gecos.size() + 1 + 2 + sizeof "/usr/sbin/nologin";
}

TEST_F(NssPasswdTest, ReturnsTryAgainWithErangeForEveryBufferShorterThanTheRecord) {
    const std::string long_user = std::string("vu-") + kLongName + "-65535";
    const std::string long_gecos = std::string("UID 65535 of transient range ") + kLongName;
    expect_exact_buffer_protocol(nss(), kWeb, nullptr,
                                 passwd_bytes("vu-web-0", "UID 0 of transient range web"));
    expect_exact_buffer_protocol(nss(), kLong + 65535, nullptr,
                                 passwd_bytes(long_user, long_gecos));
    expect_exact_buffer_protocol(nss(), 0, long_user.c_str(),
                                 passwd_bytes(long_user, long_gecos));
    expect_exact_buffer_protocol(nss(), shm::kForeignBase + 65534, nullptr,
                                 passwd_bytes("foreign-65534", "Foreign System Image UID 65534"));
}

TEST_F(NssPasswdTest, KeepsErrnoOnSuccessAndNotFound) {
    // The wrappers check errno == kErrnoSentinel after every call; this covers the paths.
    passwd pw{};
    char buf[256];
    int err;
    EXPECT_EQ(getpwuid(kWeb + 5, &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(getpwuid(1, &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(getpwnam("vu-web-5", &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(getpwnam("nope", &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    errno = 0;
    EXPECT_EQ(nss().getpwuid_r(kWeb, &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(errno, 0);
}

// glibc passes &errno as errnop: a failure's code must survive the errno restore.
TEST_F(NssPasswdTest, LeavesErangeInErrnoWhenErrnopIsErrno) {
    passwd pw{};
    char buf[4];
    errno = kErrnoSentinel;
    EXPECT_EQ(nss().getpwuid_r(kWeb, &pw, buf, sizeof buf, &errno), NSS_STATUS_TRYAGAIN);
    EXPECT_EQ(errno, ERANGE);
}

// TRANSIENT_NSS_BYPASS is read once per process: see nss_environment_test.cpp.

}  // namespace
}  // namespace transient::nss::testing
