// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The answer cache (nss/answer_cache.hpp): an ID asked for again is answered from process
// memory, but only while the table says nothing changed. An answer is stored the second time it
// is computed in a row and served from the third lookup on, so every test below asks three
// times before it changes anything.

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/nss/nss_test_util.hpp"

namespace transient::nss::testing {
namespace {

using Clock = std::chrono::steady_clock;

class NssAnswerCacheTest : public NssTest {
protected:
    void SetUp() override {
        NssTest::SetUp();
        publish(default_ranges());
    }

    // user_name() three times: computed, stored, served from the cache. All three must agree.
    std::string cached_user_name(uid_t uid) {
        const std::string first = user_name(uid);
        EXPECT_EQ(user_name(uid), first);
        EXPECT_EQ(user_name(uid), first);
        return first;
    }

    std::string group_name(gid_t gid) {
        group gr{};
        alignas(char*) char buf[1024];
        int err;
        const nss_status s = getgrgid(gid, &gr, buf, sizeof buf, &err);
        if (s != NSS_STATUS_SUCCESS)
            return s == NSS_STATUS_NOTFOUND ? "" : "<status " + std::to_string(s) + ">";
        EXPECT_EQ(gr.gr_mem[0], nullptr);
        EXPECT_TRUE(inside(gr.gr_name, buf, sizeof buf));
        EXPECT_STREQ(gr.gr_passwd, "x");
        EXPECT_EQ(gr.gr_gid, gid);
        return gr.gr_name;
    }
};

TEST_F(NssAnswerCacheTest, ServesTheSameAnswerAsTheFullLookup) {
    for (int i = 0; i < 5; i++) {
        passwd pw{};
        char buf[1024];
        int err = -1;
        ASSERT_EQ(getpwuid(kLong + 65535, &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
        EXPECT_STREQ(pw.pw_name, (std::string("vu-") + kLongName + "-65535").c_str());
        EXPECT_STREQ(pw.pw_passwd, "x");
        EXPECT_EQ(pw.pw_uid, kLong + 65535);
        EXPECT_EQ(pw.pw_gid, kLong + 65535);
        EXPECT_EQ(pw.pw_gecos, std::string("UID 65535 of transient range ") + kLongName);
        EXPECT_STREQ(pw.pw_dir, "/");
        EXPECT_STREQ(pw.pw_shell, "/usr/sbin/nologin");
        EXPECT_EQ(err, -1) << "*errnop is left alone on success";
        for (const char* p : {pw.pw_name, pw.pw_passwd, pw.pw_gecos, pw.pw_dir, pw.pw_shell})
            EXPECT_TRUE(inside(p, buf, sizeof buf));
    }
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(group_name(kSingle), "vg-one-0");
}

TEST_F(NssAnswerCacheTest, EveryPublishInvalidatesCachedAnswers) {
    ASSERT_EQ(cached_user_name(kWeb + 7), "vu-web-7");
    ASSERT_EQ(group_name(kWeb + 7), "vg-web-7");
    ASSERT_EQ(group_name(kWeb + 7), "vg-web-7");
    ASSERT_EQ(group_name(kWeb + 7), "vg-web-7");
    // Same start, another name: only the cache could still say "web".
    auto ranges = default_ranges();
    ranges[1].name = "www";
    publish(ranges);
    EXPECT_EQ(user_name(kWeb + 7), "vu-www-7");
    EXPECT_EQ(group_name(kWeb + 7), "vg-www-7");
    ASSERT_EQ(cached_user_name(kWeb + 7), "vu-www-7");
    ranges.erase(ranges.begin() + 1);
    publish(ranges);
    EXPECT_EQ(user_name(kWeb + 7), "");
    EXPECT_EQ(group_name(kWeb + 7), "");
}

// Lookups of distinct IDs of one range reuse the range found and validated last (nss/lookup.cpp,
// the range memo): a publish must end that reuse too, for an ID never asked before.
TEST_F(NssAnswerCacheTest, EveryPublishInvalidatesTheRangeOfDistinctIds) {
    for (uid_t n = 1; n <= 4; n++)
        ASSERT_EQ(user_name(kWeb + n), "vu-web-" + std::to_string(n));
    auto ranges = default_ranges();
    ranges[1].name = "www";
    publish(ranges);
    EXPECT_EQ(user_name(kWeb + 5), "vu-www-5");
    EXPECT_EQ(group_name(kWeb + 6), "vg-www-6");
    EXPECT_EQ(user_name(kWeb + 7), "vu-www-7");
    ranges.erase(ranges.begin() + 1);
    publish(ranges);
    EXPECT_EQ(user_name(kWeb + 8), "");
    EXPECT_EQ(group_name(kWeb + 9), "");
    // The range's neighbours are still found, and an ID outside the memorized range is not
    // answered from it.
    EXPECT_EQ(user_name(kSingle), "vu-one-0");
    EXPECT_EQ(user_name(kLong + 65535), std::string("vu-") + kLongName + "-65535");
}

TEST_F(NssAnswerCacheTest, AReplacedTableInvalidatesCachedAnswers) {
    ASSERT_EQ(cached_user_name(kWeb + 1), "vu-web-1");
    const std::string next = dir_ + "/next.table";
    {
        auto w = shm::TableWriter::open(next);
        ASSERT_TRUE(w);
        ASSERT_TRUE(w->publish(std::vector{container("other", kWeb)}));
    }
    install_table(next);
    EXPECT_EQ(user_name(kWeb + 1), "vu-other-1") << "the old table was retired";
}

TEST_F(NssAnswerCacheTest, SmallBuffersStillGetErangeOrTheExactRecord) {
    ASSERT_EQ(cached_user_name(kWeb + 65535), "vu-web-65535");
    const std::string name = "vu-web-65535", gecos = "UID 65535 of transient range web";
    const std::size_t needed = name.size() + 1 + 2 + gecos.size() + 1 + 2 + 18;
    for (std::size_t len = 0; len <= needed + 130; len++) {
        auto buf = std::make_unique<char[]>(len);  // exactly len: an overrun trips ASan
        passwd pw{};
        int err = -1;
        const nss_status s = getpwuid(kWeb + 65535, &pw, buf.get(), len, &err);
        if (len < needed) {
            EXPECT_EQ(s, NSS_STATUS_TRYAGAIN) << len;
            EXPECT_EQ(err, ERANGE);
            continue;
        }
        ASSERT_EQ(s, NSS_STATUS_SUCCESS) << len;
        EXPECT_EQ(pw.pw_name, name);
        EXPECT_EQ(pw.pw_gecos, gecos);
        for (const char* p : {pw.pw_name, pw.pw_passwd, pw.pw_gecos, pw.pw_dir, pw.pw_shell})
            EXPECT_TRUE(inside(p, buf.get(), len)) << len;
    }
}

TEST_F(NssAnswerCacheTest, MisalignedGroupBuffersGetAnAlignedMemberList) {
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(group_name(kDb1 + 2), "vg-db-1-2");
    for (std::size_t misalign = 0; misalign < alignof(char*); misalign++) {
        const std::size_t len = 200;
        std::unique_ptr<char, decltype(&std::free)> block(
                static_cast<char*>(std::malloc(len + misalign)), &std::free);
        char* buf = block.get() + misalign;
        group gr{};
        int err = -1;
        ASSERT_EQ(getgrgid(kDb1 + 2, &gr, buf, len, &err), NSS_STATUS_SUCCESS);
        EXPECT_STREQ(gr.gr_name, "vg-db-1-2");
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(gr.gr_mem) % alignof(char*), 0U);
        EXPECT_EQ(gr.gr_mem[0], nullptr);
        EXPECT_TRUE(inside(gr.gr_name, buf, len));
        EXPECT_TRUE(inside(gr.gr_passwd, buf, len));
    }
}

TEST_F(NssAnswerCacheTest, KeepsErrnoAndErrnopOnCachedAnswers) {
    passwd pw{};
    char buf[256];
    for (int i = 0; i < 5; i++) {
        int err = -1;
        errno = kErrnoSentinel;
        ASSERT_EQ(nss().getpwuid_r(kWeb, &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
        EXPECT_EQ(errno, kErrnoSentinel);
        EXPECT_EQ(err, -1);
    }
}

// Readers asking for a handful of UIDs over and over (so that answers are cached, served and
// invalidated all the time) while the writer publishes generations. Range r<k> is named
// "g<generation>r<k>" in the generation that published it, so a reader can tell how old an
// answer is: on one thread a later lookup may never report an older generation than an earlier
// one did (a stale cached answer would), and never a range that generation did not have.
TEST_F(NssAnswerCacheTest, ConcurrentReadersNeverSeeAnAnswerOlderThanOneTheySaw) {
    constexpr int kThreads = 3;
    constexpr std::uint32_t kRanges = 4;
    auto table_for = [](int generation) {
        std::vector<shm::RangeEntry> ranges;
        for (std::uint32_t k = 0; k < kRanges; k++)
            if ((k + generation) % 3 != 0)
                ranges.push_back(container("g" + std::to_string(generation) + "r" +
                                                   std::to_string(k),
                                           kWeb + k * 0x10000));
        return ranges;
    };
    publish(table_for(1));
    std::atomic<bool> stop{false};
    std::atomic<long> lookups{0}, found{0}, bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < kThreads; t++) {
        readers.emplace_back([&, t] {
            std::mt19937 rng(t);
            long newest = 0;  // the newest generation this thread has seen
            while (!stop.load(std::memory_order_relaxed)) {
                const std::uint32_t k = rng() % kRanges;
                const std::uint32_t uid = kWeb + k * 0x10000 + 5;
                passwd pw{};
                char buf[512];
                int err = 0;
                const nss_status s = nss().getpwuid_r(uid, &pw, buf, sizeof buf, &err);
                lookups++;
                if (s == NSS_STATUS_NOTFOUND || (s == NSS_STATUS_TRYAGAIN && err == EAGAIN))
                    continue;
                if (s != NSS_STATUS_SUCCESS) {
                    bad++;
                    continue;
                }
                found++;
                long generation = 0;
                char suffix[32];
                if (std::sscanf(pw.pw_name, "vu-g%ldr%31s", &generation, suffix) != 2 ||
                    suffix != std::to_string(k) + "-5" || (k + generation) % 3 == 0 ||
                    generation < newest)
                    bad++;
                newest = std::max(newest, generation);
            }
        });
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(1500);
    for (int generation = 2; Clock::now() < deadline; generation++) {
        publish(table_for(generation));
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    stop = true;
    for (auto& t : readers)
        t.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(found.load(), 0);
    std::printf("%ld lookups, %ld found\n", lookups.load(), found.load());
}

}  // namespace
}  // namespace transient::nss::testing
