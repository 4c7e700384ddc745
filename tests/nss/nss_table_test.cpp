// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The module against the table's life cycle and against hostile files: no table, a table
// replaced or removed under a running process, corrupt, truncated and random files, and
// lookups racing a writer. Every file is put in the table's place in the one runtime directory
// of the process (the module reads TRANSIENT_RUNTIME_DIR once), the way the allocator replaces
// a table: the old one retired, the new one renamed over it.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shm/reader.hpp"
#include "tests/nss/nss_test_util.hpp"

namespace transient::nss::testing {
namespace {

using Clock = std::chrono::steady_clock;

class NssTableTest : public NssTest {
protected:
    // Polls until user_name(uid) == want or `seconds` passed; the module stat()s the table path
    // at most once per second, on one of every 64 lookups of a thread.
    bool eventually(uid_t uid, const std::string& want, double seconds = 4.0) {
        const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
        while (Clock::now() < deadline) {
            if (user_name(uid) == want)
                return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return user_name(uid) == want;
    }

    // A second table for `ranges` in the same directory, ready to be renamed over path_.
    std::string make_table(const std::string& name, const std::vector<shm::RangeEntry>& ranges,
                           std::optional<shm::TableWriter>* keep) {
        const std::string p = dir_ + "/" + name;
        auto w = shm::TableWriter::open(p);
        EXPECT_TRUE(w) << w.error().message();
        EXPECT_TRUE(w->publish(ranges));
        keep->emplace(std::move(*w));
        return p;
    }

    static void mark_retired(int fd) {
        const std::uint64_t retired = static_cast<std::uint64_t>(shm::TableState::kRetired);
        ASSERT_EQ(::pwrite(fd, &retired, sizeof retired, offsetof(shm::FileHeader, state)),
                  static_cast<ssize_t>(sizeof retired));
    }
};

TEST_F(NssTableTest, MissingTableAnswersNotFoundQuickly) {
    passwd pw{};
    char buf[256];
    int err;
    ASSERT_EQ(getpwuid(kWeb, &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(err, ENOENT);
    EXPECT_EQ(getpwnam("vu-web-0", &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(err, ENOENT);
    group gr{};
    EXPECT_EQ(getgrgid(kWeb, &gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(err, ENOENT);
    constexpr int kCalls = 20000;
    const auto t0 = Clock::now();
    for (int i = 0; i < kCalls; i++)
        nss().getpwuid_r(kWeb + i, &pw, buf, sizeof buf, &err);
    const auto per_call = (Clock::now() - t0) / kCalls;
    // One failed open() each: a few microseconds; 50 µs leaves room for valgrind and sanitizers.
    EXPECT_LT(per_call, std::chrono::microseconds(50));
}

TEST_F(NssTableTest, TableCreatedLaterIsPickedUpAtOnce) {
    EXPECT_EQ(user_name(kWeb), "");
    publish(default_ranges());
    EXPECT_EQ(user_name(kWeb), "vu-web-0");
}

TEST_F(NssTableTest, PublishedChangesAreSeenAtOnce) {
    publish(default_ranges());
    EXPECT_EQ(user_name(kWeb + 0x100000), "");
    auto ranges = default_ranges();
    ranges.push_back(container("late", kWeb + 0x100000));
    publish(ranges);
    EXPECT_EQ(user_name(kWeb + 0x100000), "vu-late-0");
    publish({});
    EXPECT_EQ(user_name(kWeb), "");
}

TEST_F(NssTableTest, RetiredTableIsReplacedByTheOneRenamedOverIt) {
    publish(default_ranges());
    ASSERT_EQ(user_name(kWeb + 2), "vu-web-2");
    std::optional<shm::TableWriter> next;
    const std::string next_path = make_table("next.table", {container("new", kWeb)}, &next);
    shm::UniqueFd old_fd(::open(path_.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(old_fd);
    // The allocator's order: retire the old file, then rename the new one into place. In
    // between, a reader finds only a retired table: TRYAGAIN/EAGAIN, never the stale answer.
    mark_retired(old_fd.get());
    passwd pw{};
    char buf[256];
    int err;
    EXPECT_EQ(getpwuid(kWeb + 2, &pw, buf, sizeof buf, &err), NSS_STATUS_TRYAGAIN);
    EXPECT_EQ(err, EAGAIN);
    ASSERT_EQ(::rename(next_path.c_str(), path_.c_str()), 0);
    EXPECT_EQ(user_name(kWeb + 2), "vu-new-2") << "the retired flag is checked on every call";
    EXPECT_EQ(user_name(kDb1), "");
}

TEST_F(NssTableTest, TableRenamedOverWithoutRetiringIsPickedUpWithinSeconds) {
    publish(default_ranges());
    ASSERT_EQ(user_name(kWeb), "vu-web-0");
    std::optional<shm::TableWriter> next;
    const std::string next_path = make_table("next.table", {container("other", kWeb)}, &next);
    ASSERT_EQ(::rename(next_path.c_str(), path_.c_str()), 0);
    EXPECT_TRUE(eventually(kWeb, "vu-other-0"));
    // And the new table is live: its writer's updates show at once.
    ASSERT_TRUE(next->publish(std::vector{container("other", kWeb), container("more", kDb1)}));
    EXPECT_EQ(user_name(kDb1), "vu-more-0");
}

TEST_F(NssTableTest, RemovedTableStopsAnsweringAndComesBack) {
    publish(default_ranges());
    ASSERT_EQ(user_name(kWeb), "vu-web-0");
    ASSERT_EQ(::unlink(path_.c_str()), 0);
    EXPECT_TRUE(eventually(kWeb, ""));
    EXPECT_EQ(user_name(shm::kForeignBase), "foreign-0");
    writer_.reset();
    publish({container("back", kWeb)});
    EXPECT_EQ(user_name(kWeb), "vu-back-0");
}

// Runtime directories other than the process's own are tested in fresh processes, because the
// module reads TRANSIENT_RUNTIME_DIR once: nss_environment_test.cpp.

// ---- hostile files ----------------------------------------------------------------------

// Every status a lookup may give for a broken table, and never a crash or a string outside the
// buffer. Returns how many lookups succeeded.
int probe_everything(const Module& m) {
    int ok = 0;
    std::vector<std::uint32_t> ids{kWeb, kWeb + 1, kWeb + 65535, kDb1, kSingle, kLong, 0,
                                   0xFFFFFFFFU, shm::kForeignBase + 1};
    std::mt19937 rng(7);
    for (int i = 0; i < 40; i++)
        ids.push_back(rng());
    for (std::uint32_t id : ids) {
        passwd pw{};
        alignas(char*) char buf[512];
        int err = -1;
        const nss_status s = m.getpwuid_r(id, &pw, buf, sizeof buf, &err);
        EXPECT_TRUE(s == NSS_STATUS_SUCCESS || s == NSS_STATUS_NOTFOUND ||
                    s == NSS_STATUS_UNAVAIL || s == NSS_STATUS_TRYAGAIN)
                << s;
        if (s == NSS_STATUS_SUCCESS) {
            ok++;
            EXPECT_TRUE(inside(pw.pw_name, buf, sizeof buf));
            EXPECT_TRUE(inside(pw.pw_gecos, buf, sizeof buf));
            EXPECT_EQ(pw.pw_uid, id);
        } else {
            EXPECT_GT(err, 0) << "*errnop is never 0 on failure";
        }
        group gr{};
        if (m.getgrgid_r(id, &gr, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS) {
            EXPECT_TRUE(inside(gr.gr_name, buf, sizeof buf));
        }
    }
    for (const char* name : {"vu-web-0", "vu-db-1-3", "vg-web-9", "vu-one-0", "vu-a-0", "vu--0"}) {
        passwd pw{};
        group gr{};
        alignas(char*) char buf[512];
        int err;
        if (m.getpwnam_r(name, &pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS) {
            ok++;
            EXPECT_TRUE(inside(pw.pw_name, buf, sizeof buf));
        }
        m.getgrnam_r(name, &gr, buf, sizeof buf, &err);
    }
    m.setpwent(0);
    for (int i = 0; i < 100; i++) {
        passwd pw{};
        char buf[512];
        int err;
        if (m.getpwent_r(&pw, buf, sizeof buf, &err) != NSS_STATUS_SUCCESS)
            break;
        EXPECT_TRUE(inside(pw.pw_name, buf, sizeof buf));
    }
    m.endpwent();
    return ok;
}

class NssCorruptTableTest : public NssTableTest {
protected:
    // A valid table with a few ranges, then `damage` applied to a read-write mapping of it,
    // installed as the table.
    void damaged(const std::function<void(std::byte* base, std::size_t size)>& damage,
                 std::uint32_t capacity = 64,
                 const std::vector<shm::RangeEntry>& ranges = default_ranges()) {
        const std::string p = dir_ + "/case" + std::to_string(cases_++);
        {
            auto w = shm::TableWriter::open(p, capacity);
            ASSERT_TRUE(w);
            ASSERT_TRUE(w->publish(ranges));
        }
        shm::UniqueFd fd(::open(p.c_str(), O_RDWR | O_CLOEXEC));
        ASSERT_TRUE(fd);
        struct stat st;
        ASSERT_EQ(::fstat(fd.get(), &st), 0);
        void* m = ::mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
        ASSERT_NE(m, MAP_FAILED);
        damage(static_cast<std::byte*>(m), st.st_size);
        ::munmap(m, st.st_size);
        ::unlink((p + ".lock").c_str());
        install_table(p);
    }

    // A file with exactly these bytes as the table.
    void raw_file(const std::string& bytes) {
        const std::string p = dir_ + "/case" + std::to_string(cases_++);
        FILE* f = std::fopen(p.c_str(), "we");
        ASSERT_NE(f, nullptr);
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
        install_table(p);
    }

    static shm::FileHeader& header(std::byte* base) {
        return *reinterpret_cast<shm::FileHeader*>(base);
    }
    static std::byte* copy(std::byte* base, int i) {
        return base + header(base).copy_offset[i].load();
    }

    void expect_unavail(int want_errno) {
        passwd pw{};
        char buf[256];
        int err;
        EXPECT_EQ(getpwuid(kWeb, &pw, buf, sizeof buf, &err), NSS_STATUS_UNAVAIL);
        EXPECT_EQ(err, want_errno);
        EXPECT_EQ(user_name(shm::kForeignBase), "foreign-0") << "foreign needs no table";
        probe_everything(nss());
    }

    int cases_ = 0;
};

TEST_F(NssCorruptTableTest, EmptyTinyAndRandomFilesAreUnavailable) {
    raw_file("");
    expect_unavail(EBADMSG);
    raw_file("TRNSRNG1");
    expect_unavail(EBADMSG);
    std::mt19937_64 rng(1);
    for (std::size_t size : {127UL, 128UL, 4096UL, 100000UL}) {
        std::string bytes(size, '\0');
        for (auto& c : bytes)
            c = static_cast<char>(rng());
        raw_file(bytes);
        expect_unavail(EBADMSG);
    }
}

TEST_F(NssCorruptTableTest, BadHeadersAreUnavailable) {
    damaged([](std::byte* b, std::size_t) { header(b).capacity_entry_size.store(0xFFFFFFFFULL | (64ULL << 32)); });
    expect_unavail(EBADMSG);
    damaged([](std::byte* b, std::size_t) { header(b).capacity_entry_size.store(64ULL | (65ULL << 32)); });
    expect_unavail(EBADMSG);
    damaged([](std::byte* b, std::size_t) { header(b).copy_offset[1].store(1ULL << 62); });
    expect_unavail(EBADMSG);
    damaged([](std::byte* b, std::size_t s) { header(b).copy_offset[1].store(s - 64); });
    expect_unavail(EBADMSG);
    damaged([](std::byte* b, std::size_t) { header(b).copy_offset[0].store(129); });
    expect_unavail(EBADMSG);
    damaged([](std::byte* b, std::size_t) { header(b).copy_size.store(1); });
    expect_unavail(EBADMSG);
    damaged([](std::byte* b, std::size_t) { header(b).version_header_size.store((shm::kVersion + 1) | (128ULL << 32)); });
    expect_unavail(EPROTONOSUPPORT);
    damaged([](std::byte* b, std::size_t) { header(b).magic.store(0); });
    expect_unavail(EBADMSG);
}

TEST_F(NssCorruptTableTest, ARetiredTableWithNoSuccessorIsTryAgain) {
    damaged([](std::byte* b, std::size_t) { header(b).state.store(1); });
    passwd pw{};
    char buf[256];
    int err;
    EXPECT_EQ(getpwuid(kWeb, &pw, buf, sizeof buf, &err), NSS_STATUS_TRYAGAIN);
    EXPECT_EQ(err, EAGAIN);
}

TEST_F(NssCorruptTableTest, TruncatedTableIsUnavailable) {
    for (off_t size : {off_t(shm::file_size_for(64) - 1), off_t(shm::file_size_for(64) / 2),
                       off_t(200), off_t(128), off_t(127)}) {
        // Truncated before it is installed: a table shrinking under a reader's mapping would be
        // SIGBUS, which is why the writer never shrinks one.
        const std::string p = dir_ + "/trunc";
        {
            auto w = shm::TableWriter::open(p, 64);
            ASSERT_TRUE(w);
            ASSERT_TRUE(w->publish(default_ranges()));
        }
        ::unlink((p + ".lock").c_str());
        ASSERT_EQ(::truncate(p.c_str(), size), 0);
        install_table(p);
        expect_unavail(EBADMSG);
    }
}

TEST_F(NssCorruptTableTest, HugeCountsAndBogusIndexesNeverCrash) {
    damaged([](std::byte* b, std::size_t) {
        for (int i = 0; i < 2; i++)
            reinterpret_cast<shm::CopyHeader*>(copy(b, i))->count.store(~0ULL);
    });
    probe_everything(nss());
    damaged([](std::byte* b, std::size_t) {
        for (int i = 0; i < 2; i++) {
            auto* idx = reinterpret_cast<std::atomic<std::uint32_t>*>(
                    copy(b, i) + shm::name_index_offset(64));
            // Every slot of the hash index (version 5) names no entry: a lookup skips them
            // all, going round once, and finds nothing.
            for (std::uint32_t k = 0; k < shm::name_slots(64); k++)
                idx[k].store(0xFFFFFFFEU - k);
        }
    });
    probe_everything(nss());
    passwd pw{};
    char buf[256];
    int err;
    EXPECT_EQ(getpwnam("vu-web-0", &pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    EXPECT_EQ(user_name(kWeb), "vu-web-0") << "lookups by UID do not use the name index";
    // Entries with invalid shapes and names, unsorted; one more range after them stays intact.
    constexpr std::uint32_t kIntact = kWeb + 9 * 0x10000;
    auto ranges = default_ranges();
    ranges.push_back(container("intact", kIntact));
    damaged(
            [](std::byte* b, std::size_t) {
                for (int i = 0; i < 2; i++) {
                    auto* e = reinterpret_cast<shm::EntryWords*>(copy(b, i) +
                                                                 shm::entries_offset());
                    e[0].start_size.store(0xFFFFFFFFULL | (0xFFFFFFFFULL << 32));  // "one"
                    e[1].name[0].store(0x2F2F2F2F2F2F2F2FULL);  // "web": "////////"
                    for (auto& w : e[2].name)   // "db-1": 24 'A's, no NUL terminator
                        w.store(0x4141414141414141ULL);
                    e[3].start_size.store(1);   // the long one: sorts before everything else
                }
            },
            64, ranges);
    // Of everything probe_everything() asks, only foreign-1 (no table needed) resolves: no
    // damaged entry is handed out, under its own UID or any other.
    EXPECT_EQ(probe_everything(nss()), 1);
    // The damaged entries are errors (not a record, not a NOTFOUND that would let the UID look
    // free); the entry behind them and the foreign range still resolve.
    for (std::uint32_t id : {kWeb, kWeb + 65535, kDb1, kLong + 1})
        EXPECT_EQ(user_name(id), "<status " + std::to_string(NSS_STATUS_UNAVAIL) + " errno " +
                                         std::to_string(EBADMSG) + ">")
                << id;
    EXPECT_EQ(user_name(kIntact), "vu-intact-0");
    EXPECT_EQ(user_name(kIntact + 65535), "vu-intact-65535");
    EXPECT_EQ(user_name(shm::kForeignBase + 1), "foreign-1");
}

TEST_F(NssCorruptTableTest, RandomDamageNeverCrashes) {
    std::mt19937_64 rng(42);
    for (int round = 0; round < 60; round++) {
        damaged([&](std::byte* b, std::size_t size) {
            // Mostly the header, the copy headers, the first entries and the name index.
            const std::size_t hot = std::min<std::size_t>(size, 2048);
            const int flips = 1 + static_cast<int>(rng() % 64);
            for (int k = 0; k < flips; k++) {
                const std::size_t at = rng() % 2 ? rng() % hot : rng() % size;
                b[at] = static_cast<std::byte>(rng());
            }
        });
        probe_everything(nss());
    }
}

TEST_F(NssCorruptTableTest, NonRegularFilesAreUnavailableWithoutBlocking) {
    ASSERT_EQ(::mkdir(path_.c_str(), 0755), 0);
    EXPECT_TRUE(user_name(kWeb).rfind("<status ", 0) == 0);
    ASSERT_EQ(::rmdir(path_.c_str()), 0);

    ASSERT_EQ(::mkfifo(path_.c_str(), 0644), 0);
    EXPECT_EQ(user_name(kWeb), "<status " + std::to_string(NSS_STATUS_UNAVAIL) + " errno " +
                                       std::to_string(EBADMSG) + ">");
    ASSERT_EQ(::unlink(path_.c_str()), 0);

    const std::string real = dir_ + "/real.table";
    std::optional<shm::TableWriter> w;
    make_table("real.table", default_ranges(), &w);
    ASSERT_EQ(::symlink(real.c_str(), path_.c_str()), 0);
    EXPECT_EQ(user_name(kWeb), "<status " + std::to_string(NSS_STATUS_UNAVAIL) + " errno " +
                                       std::to_string(ELOOP) + ">")
            << "O_NOFOLLOW: the table itself is never a symlink";
}

// ---- concurrency ------------------------------------------------------------------------

// Readers on several threads while the writer publishes and replaces whole files. Every answer
// must be one some published table gave: range r<k> always starts at kWeb + k * 64K.
TEST_F(NssTableTest, LookupsRacingAWriterSeeOnlyPublishedRanges) {
    constexpr int kThreads = 3;
    constexpr std::uint32_t kRanges = 64;
    auto table_for = [](int generation) {
        std::vector<shm::RangeEntry> ranges;
        for (std::uint32_t k = 0; k < kRanges; k++)
            if ((k + generation) % 3 != 0)
                ranges.push_back(container("r" + std::to_string(k), kWeb + k * 0x10000));
        return ranges;
    };
    publish(table_for(0));
    std::atomic<bool> stop{false};
    std::atomic<long> lookups{0}, found{0}, bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < kThreads; t++) {
        readers.emplace_back([&, t] {
            std::mt19937 rng(t);
            while (!stop.load(std::memory_order_relaxed)) {
                const std::uint32_t k = rng() % kRanges, off = rng() % 65536;
                passwd pw{};
                char buf[256];
                int err = 0;
                const nss_status s = nss().getpwuid_r(kWeb + k * 0x10000 + off, &pw, buf,
                                                      sizeof buf, &err);
                lookups++;
                const std::string want = "vu-r" + std::to_string(k) + "-" + std::to_string(off);
                if (s == NSS_STATUS_SUCCESS) {
                    found++;
                    if (want != pw.pw_name)
                        bad++;
                } else if (!(s == NSS_STATUS_NOTFOUND ||
                             (s == NSS_STATUS_TRYAGAIN && err == EAGAIN))) {
                    bad++;
                }
            }
        });
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(1500);
    for (int generation = 1; Clock::now() < deadline; generation++) {
        if (generation % 50 == 0) {
            // Replace the file the way the allocator does: retire, then rename a new one over.
            std::optional<shm::TableWriter> next;
            const std::string np = make_table("next.table", table_for(generation), &next);
            shm::UniqueFd old_fd(::open(path_.c_str(), O_RDWR | O_CLOEXEC));
            mark_retired(old_fd.get());
            ASSERT_EQ(::rename(np.c_str(), path_.c_str()), 0);
            ::unlink((np + ".lock").c_str());
            writer_ = std::move(next);
        } else {
            publish(table_for(generation));
        }
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
