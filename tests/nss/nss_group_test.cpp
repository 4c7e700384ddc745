// SPDX-License-Identifier: LGPL-2.1-or-later
//
// getgrgid_r / getgrnam_r: records, edges, the foreign range, gr_mem alignment and the buffer
// protocol, for aligned and misaligned buffers.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "tests/nss/nss_test_util.hpp"

namespace transient::nss::testing {
namespace {

class NssGroupTest : public NssTest {
protected:
    void SetUp() override {
        NssTest::SetUp();
        publish(default_ranges());
    }

    std::string group_name(gid_t gid) {
        group gr{};
        char buf[1024];
        int err;
        const nss_status s = getgrgid(gid, &gr, buf, sizeof buf, &err);
        if (s == NSS_STATUS_SUCCESS)
            return gr.gr_name;
        return s == NSS_STATUS_NOTFOUND ? "" : "<status " + std::to_string(s) + ">";
    }
};

TEST_F(NssGroupTest, ResolvesAGroupWithNoMembers) {
    group gr{};
    alignas(char*) char buf[256];
    int err;
    ASSERT_EQ(getgrgid(kWeb + 1, &gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_STREQ(gr.gr_name, "vg-web-1");
    EXPECT_STREQ(gr.gr_passwd, "x");
    EXPECT_EQ(gr.gr_gid, kWeb + 1);
    ASSERT_NE(gr.gr_mem, nullptr);
    EXPECT_EQ(gr.gr_mem[0], nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(gr.gr_mem) % alignof(char*), 0U);
    EXPECT_EQ(err, -1);
}

TEST_F(NssGroupTest, ResolvesEveryEdgeOfARange) {
    EXPECT_EQ(group_name(kWeb), "vg-web-0");
    EXPECT_EQ(group_name(kWeb + 65535), "vg-web-65535");
    EXPECT_EQ(group_name(kWeb + 65536), "");
    EXPECT_EQ(group_name(kSingle), "vg-one-0");
    EXPECT_EQ(group_name(kSingle + 1), "");
    EXPECT_EQ(group_name(kDb1 + 9), "vg-db-1-9");
    EXPECT_EQ(group_name(0), "");
}

TEST_F(NssGroupTest, ResolvesGroupNames) {
    group gr{};
    alignas(char*) char buf[256];
    int err;
    ASSERT_EQ(getgrnam("vg-db-1-65535", &gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(gr.gr_gid, kDb1 + 65535);
    ASSERT_EQ(getgrnam("vg-one-0", &gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(gr.gr_gid, kSingle);
    const std::string huge(70000, 'g');
    for (const char* name : {"vu-web-0", "vg-web-01", "vg-web-65536", "vg-web-", "vg-", "",
                             "vg-one-1", "foreign-65535", huge.c_str()}) {
        EXPECT_EQ(getgrnam(name, &gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND) << name;
        EXPECT_EQ(err, ENOENT);
    }
    EXPECT_EQ(getgrnam(nullptr, &gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
}

TEST_F(NssGroupTest, ServesTheForeignRange) {
    group gr{};
    alignas(char*) char buf[256];
    int err;
    ASSERT_EQ(getgrgid(shm::kForeignBase + 65534, &gr, buf, sizeof buf, &err),
              NSS_STATUS_SUCCESS);
    EXPECT_STREQ(gr.gr_name, "foreign-65534");
    EXPECT_EQ(gr.gr_mem[0], nullptr);
    EXPECT_EQ(getgrgid(shm::kForeignBase + 65535, &gr, buf, sizeof buf, &err),
              NSS_STATUS_NOTFOUND);
    ASSERT_EQ(getgrnam("foreign-0", &gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(gr.gr_gid, shm::kForeignBase);
}

// `misalign` shifts the buffer off pointer alignment: the record then needs that much padding.
void expect_exact_group_buffer(const Module& m, gid_t gid, const std::string& name,
                               std::size_t misalign) {
    const std::size_t pad = (alignof(char*) - misalign) % alignof(char*);
    const std::size_t needed = pad + sizeof(char*) + name.size() + 1 + 2;
    // malloc() returns max_align_t-aligned memory; the record starts `misalign` bytes in.
    std::unique_ptr<char, decltype(&std::free)> block(
            static_cast<char*>(std::malloc(needed + misalign + 1)), &std::free);
    char* buf = block.get() + misalign;
    group sentinel;
    std::memset(&sentinel, 0x5A, sizeof sentinel);
    for (std::size_t len = 0; len < needed; len++) {
        group gr = sentinel;
        int err = -1;
        errno = kErrnoSentinel;
        ASSERT_EQ(m.getgrgid_r(gid, &gr, buf, len, &err), NSS_STATUS_TRYAGAIN)
                << "buffer of " << len << " misaligned by " << misalign;
        EXPECT_EQ(err, ERANGE);
        EXPECT_EQ(errno, kErrnoSentinel);
        EXPECT_EQ(std::memcmp(&gr, &sentinel, sizeof gr), 0);
        int err2 = -1;
        ASSERT_EQ(m.getgrnam_r(name.c_str(), &gr, buf, len, &err2), NSS_STATUS_TRYAGAIN);
        EXPECT_EQ(err2, ERANGE);
    }
    group gr{};
    int err = -1;
    ASSERT_EQ(m.getgrgid_r(gid, &gr, buf, needed, &err), NSS_STATUS_SUCCESS)
            << "buffer of exactly " << needed << " misaligned by " << misalign;
    EXPECT_EQ(gr.gr_name, name);
    EXPECT_TRUE(inside(gr.gr_name, buf, needed));
    EXPECT_TRUE(inside(gr.gr_passwd, buf, needed));
    const auto mem = reinterpret_cast<char*>(gr.gr_mem);
    EXPECT_TRUE(mem >= buf && mem + sizeof(char*) <= buf + needed);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(gr.gr_mem) % alignof(char*), 0U);
    EXPECT_EQ(gr.gr_mem[0], nullptr);
    gr = group{};
    ASSERT_EQ(m.getgrnam_r(name.c_str(), &gr, buf, needed, &err), NSS_STATUS_SUCCESS);
    EXPECT_EQ(gr.gr_gid, gid);
}

TEST_F(NssGroupTest, ReturnsTryAgainWithErangeForEveryBufferShorterThanTheRecord) {
    for (std::size_t misalign = 0; misalign < alignof(char*); misalign++) {
        expect_exact_group_buffer(nss(), kWeb, "vg-web-0", misalign);
        expect_exact_group_buffer(nss(), kLong + 65535,
                                  std::string("vg-") + kLongName + "-65535", misalign);
        expect_exact_group_buffer(nss(), shm::kForeignBase + 7, "foreign-7", misalign);
    }
}

}  // namespace
}  // namespace transient::nss::testing
