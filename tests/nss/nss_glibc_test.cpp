// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module as glibc loads it: __nss_configure_lookup() points "passwd" and "group" at
// "transient", and glibc dlopen()s libnss_transient.so.2 by its SONAME, which CTest makes
// findable with LD_LIBRARY_PATH=<build dir of the module>. Exercises glibc's buffer-growing
// retry (getpwuid() after ERANGE), initgroups via getgrouplist() and getpwent().

#include <grp.h>
#include <link.h>
#include <nss.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/layout.hpp"
#include "shm/writer.hpp"

namespace transient::nss {
namespace {

constexpr std::uint32_t kWeb = 0x00080000;

// One runtime directory and table for the whole process: the module reads TRANSIENT_RUNTIME_DIR
// once, at the first lookup, which comes after SetUpTestSuite().
class NssGlibcTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        ASSERT_EQ(__nss_configure_lookup("passwd", "transient"), 0);
        ASSERT_EQ(__nss_configure_lookup("group", "transient"), 0);
        char tmpl[] = "/tmp/transient-nss-glibc.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = new std::string(tmpl);
        ::setenv("TRANSIENT_RUNTIME_DIR", tmpl, 1);
        ::unsetenv("TRANSIENT_NSS_BYPASS");
        auto w = shm::TableWriter::open(*dir_ + "/" + shm::kTableFileName);
        ASSERT_TRUE(w);
        ASSERT_TRUE(w->publish(std::vector{
                shm::RangeEntry{"web", kWeb, 0x10000, 0, 0, 0, 0, 0},
                shm::RangeEntry{"db-1", kWeb + 0x30000, 0x10000, 0, 0, 0, 0, 0}}));
        writer_ = new shm::TableWriter(std::move(*w));
    }

    static void TearDownTestSuite() {
        delete writer_;
        writer_ = nullptr;
        if (dir_ != nullptr)
            std::filesystem::remove_all(*dir_);
        delete dir_;
        dir_ = nullptr;
    }

    static inline std::string* dir_ = nullptr;
    static inline shm::TableWriter* writer_ = nullptr;
};

// Where glibc loaded the module from, "" if it is not loaded.
std::string loaded_module_path() {
    std::string found;
    ::dl_iterate_phdr(
            [](dl_phdr_info* info, size_t, void* data) {
                if (std::strstr(info->dlpi_name, "libnss_transient.so.2") != nullptr)
                    *static_cast<std::string*>(data) = info->dlpi_name;
                return 0;
            },
            &found);
    return found;
}

TEST_F(NssGlibcTest, GetpwuidAndGetgrnamResolveThroughGlibc) {
    passwd pw{}, *pwr = nullptr;
    char buf[1024];
    ASSERT_EQ(::getpwuid_r(kWeb + 5, &pw, buf, sizeof buf, &pwr), 0);
    ASSERT_EQ(pwr, &pw);
    EXPECT_STREQ(pw.pw_name, "vu-web-5");
    EXPECT_STREQ(pw.pw_gecos, "UID 5 of transient range web");
    EXPECT_STREQ(pw.pw_shell, "/usr/sbin/nologin");
    EXPECT_EQ(loaded_module_path(), std::string(TRANSIENT_NSS_MODULE_DIR) +
                                            "/libnss_transient.so.2");

    ASSERT_EQ(::getpwnam_r("vu-db-1-65535", &pw, buf, sizeof buf, &pwr), 0);
    ASSERT_EQ(pwr, &pw);
    EXPECT_EQ(pw.pw_uid, kWeb + 0x30000 + 65535);

    group gr{}, *grr = nullptr;
    ASSERT_EQ(::getgrnam_r("vg-web-5", &gr, buf, sizeof buf, &grr), 0);
    ASSERT_EQ(grr, &gr);
    EXPECT_EQ(gr.gr_gid, kWeb + 5);
    EXPECT_EQ(gr.gr_mem[0], nullptr);
    ASSERT_EQ(::getgrgid_r(0x7FFE0000 + 3, &gr, buf, sizeof buf, &grr), 0);
    ASSERT_EQ(grr, &gr);
    EXPECT_STREQ(gr.gr_name, "foreign-3");
}

TEST_F(NssGlibcTest, UnknownIdsAreNotFound) {
    passwd pw{}, *pwr = &pw;
    char buf[1024];
    EXPECT_EQ(::getpwuid_r(kWeb + 0x10000, &pw, buf, sizeof buf, &pwr), 0);
    EXPECT_EQ(pwr, nullptr);
    pwr = &pw;
    EXPECT_EQ(::getpwnam_r("vu-web-01", &pw, buf, sizeof buf, &pwr), 0);
    EXPECT_EQ(pwr, nullptr);
}

TEST_F(NssGlibcTest, ShortBuffersGiveErangeAndGlibcRetriesWithLargerOnes) {
    passwd pw{}, *pwr = nullptr;
    char small[16];
    EXPECT_EQ(::getpwuid_r(kWeb + 5, &pw, small, sizeof small, &pwr), ERANGE);
    EXPECT_EQ(pwr, nullptr);
    group gr{}, *grr = nullptr;
    EXPECT_EQ(::getgrgid_r(kWeb + 5, &gr, small, sizeof small, &grr), ERANGE);
    // getpwuid()/getgrnam() grow their static buffer on ERANGE until it fits.
    const passwd* p = ::getpwuid(kWeb + 65535);
    ASSERT_NE(p, nullptr);
    EXPECT_STREQ(p->pw_name, "vu-web-65535");
    const group* g = ::getgrnam("vg-db-1-1");
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->gr_gid, kWeb + 0x30000 + 1);
}

// Our groups have no members: getgrouplist() gives the primary GID it was given, and no more.
TEST_F(NssGlibcTest, GetgrouplistAddsNoGroupThroughInitgroupsDyn) {
    gid_t groups[8];
    int n = 8;
    ASSERT_GE(::getgrouplist("vu-web-5", 100, groups, &n), 0);
    ASSERT_EQ(n, 1);
    EXPECT_EQ(groups[0], 100U);
    n = 8;
    ASSERT_GE(::getgrouplist("vu-web-5", kWeb + 5, groups, &n), 0);
    EXPECT_EQ(n, 1);
}

TEST_F(NssGlibcTest, GetpwentListsOneUserPerRange) {
    std::vector<std::string> names;
    ::setpwent();
    while (const passwd* p = ::getpwent())
        names.push_back(p->pw_name);
    ::endpwent();
    EXPECT_EQ(names, (std::vector<std::string>{"vu-web-0", "vu-db-1-0"}));
}

// TRANSIENT_NSS_BYPASS through glibc: nss_environment_test.cpp (it needs a fresh process).

}  // namespace
}  // namespace transient::nss
