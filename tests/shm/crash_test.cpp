// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Crash consistency of the writer (DESIGN.md: "kill -9 of the allocator at any instant loses no
// acknowledged range, creates no overlap"). A forked child publishes a long sequence of states
// and acknowledges each one on a pipe once publish() returned; the parent SIGKILLs it at random
// instants and checks that readers of the dead writer's file, and a restarted writer, see the
// last acknowledged state or the one after it, never an older one and never a mix. Crafted
// files and a WriterFreezer then pin down exact instants: a writer dead in the middle of either
// copy, and a publish and a recovery stopped at their first store into every page of the file,
// where readers are checked live and a restarted writer on a copy of the file as it was then.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <gtest/gtest.h>

#include "shm/reader.hpp"
#include "shm/table_reader.hpp"
#include "shm/writer.hpp"
#include "tests/shm/shm_test_util.hpp"
#include "tests/shm/writer_freezer.hpp"

namespace transient::shm {
namespace {

using Clock = std::chrono::steady_clock;
using testing::TempDir;

// The plain suite kills 100 times and stops the writer at every page; under ASan, where each
// round costs twice as much, fewer rounds and every third page keep `ctest -L unit` fast.
#ifdef TRANSIENT_TESTS_SANITIZED
constexpr int kKillRounds = 25;
constexpr std::size_t kPageStride = 3;
#else
constexpr int kKillRounds = 100;
constexpr std::size_t kPageStride = 1;
#endif

// All 33000 slots, built once before any fork so children do not pay for it.
const std::vector<RangeEntry>& all_slots() {
    static const std::vector<RangeEntry> slots = [] {
        std::vector<RangeEntry> v;
        for (std::uint32_t i = 0; i < kDefaultCapacity; i++)
            v.push_back(testing::slot_range(i));
        return v;
    }();
    return slots;
}

// State k of round `round`: a pseudo-random subset (0 … ~4000 ranges) of the first slots.
std::vector<RangeEntry> state_for(std::uint64_t round, std::uint64_t k) {
    std::mt19937_64 rng(round * 0x9E3779B97F4A7C15ULL + k);
    const std::uint32_t span = static_cast<std::uint32_t>(rng() % 8000);
    std::vector<RangeEntry> out;
    std::uint64_t bits = 0;
    for (std::uint32_t i = 0; i < span; i++) {
        if (i % 64 == 0)
            bits = rng();
        if ((bits >> (i % 64)) & 1)
            out.push_back(all_slots()[i]);
    }
    return out;
}

struct Mapped {
    testing::GuardedMapping mapping;
    TableView view;
};

// Maps the table read-only, as the NSS module would, right after the writer died.
std::optional<Mapped> map_table(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return std::nullopt;
    Mapped m;
    m.mapping = testing::GuardedMapping::of_file(fd, std::filesystem::file_size(path));
    ::close(fd);
    if (view_table(m.mapping.data(), m.mapping.size(), &m.view) < 0)
        return std::nullopt;
    return m;
}

std::uint64_t latch_of(const Mapped& m) {
    return reinterpret_cast<const FileHeader*>(m.view.base)->seq.load(std::memory_order_acquire);
}

// Checks that every point lookup agrees with `state`, and that the ranges of `other` which are
// not in `state` are not found: the readers see exactly one state.
void expect_lookups_agree(const TableView& v, const std::vector<RangeEntry>& state,
                          const std::vector<RangeEntry>& other) {
    RangeRecord r;
    std::unordered_set<std::uint32_t> starts;
    for (const RangeEntry& e : state) {
        starts.insert(e.start);
        ASSERT_EQ(find_by_id(v, e.start + e.size - 1, &r), 0) << e.name;
        ASSERT_EQ(testing::to_entry(r), e);
        ASSERT_EQ(find_by_name(v, e.name.c_str(), &r), 0) << e.name;
        ASSERT_EQ(r.start, e.start);
    }
    for (const RangeEntry& e : other) {
        if (starts.contains(e.start))
            continue;
        ASSERT_EQ(find_by_id(v, e.start, &r), -ESRCH) << e.name;
        ASSERT_EQ(find_by_name(v, e.name.c_str(), &r), -ESRCH) << e.name;
    }
}

std::string describe(const std::vector<RangeEntry>& got, const std::vector<RangeEntry>& a,
                     const std::vector<RangeEntry>& b) {
    const auto starts = [](const std::vector<RangeEntry>& v) {
        std::unordered_set<std::uint32_t> s;
        for (const auto& e : v)
            s.insert(e.start);
        return s;
    };
    const auto sa = starts(a), sb = starts(b);
    std::size_t in_a = 0, in_b = 0, torn = 0;
    for (const auto& e : got) {
        in_a += sa.contains(e.start);
        in_b += sb.contains(e.start);
        torn += e != testing::self_describing(e.start, e.size);
    }
    return std::to_string(got.size()) + " ranges, " + std::to_string(in_a) + " of " +
           std::to_string(a.size()) + " from the first state, " + std::to_string(in_b) + " of " +
           std::to_string(b.size()) + " from the second, " + std::to_string(torn) + " torn";
}

// The child: opens the writer (recovering what the last round left), then publishes state 0,
// 1, 2, … of `round`, acknowledging each on `ack` after publish() returned. Never returns.
[[noreturn]] void run_child(const std::string& path, std::uint64_t round, int ack) {
    auto w = TableWriter::open(path);
    if (!w)
        ::_exit(2);
    if (::write(ack, "o\n", 2) != 2)
        ::_exit(3);
    for (std::uint64_t k = 0;; k++) {
        if (!w->publish(state_for(round, k)))
            ::_exit(4);
        char line[32];
        const int n =
                std::snprintf(line, sizeof line, "%llu\n", static_cast<unsigned long long>(k));
        if (::write(ack, line, static_cast<std::size_t>(n)) != n)
            ::_exit(5);
    }
}

struct Acks {
    bool opened = false;
    std::optional<std::uint64_t> last;
};

// `text`: what was read from the pipe before.
Acks read_acks(int fd, std::string text) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        text.append(buf, static_cast<std::size_t>(n));
    Acks a;
    std::size_t pos = 0, nl;
    // Only complete lines count: a partial line was not acknowledged.
    while ((nl = text.find('\n', pos)) != std::string::npos) {
        const std::string line = text.substr(pos, nl - pos);
        if (line == "o")
            a.opened = true;
        else
            a.last = std::stoull(line);
        pos = nl + 1;
    }
    return a;
}

TEST(TableCrashTest, SigkillAtRandomInstantsKeepsTheLastAcknowledgedStateOrTheNext) {
    TempDir dir;
    const std::string path = dir.table();
    (void)all_slots();
    std::uint64_t seed = 0x6b696c6cULL;
    if (const char* s = std::getenv("TRANSIENT_CRASH_SEED"))
        seed = std::strtoull(s, nullptr, 0);
    std::cout << "[ seed     ] TRANSIENT_CRASH_SEED=" << seed << "\n";
    std::mt19937_64 rng(seed);

    std::vector<RangeEntry> recovered;  // what the previous round left behind
    int during_open = 0, before_first_ack = 0, after_acks = 0, saw_next = 0;
    const auto begin = Clock::now();
    for (int round = 0; round < kKillRounds; round++) {
        SCOPED_TRACE(::testing::Message() << "round " << round << ", seed " << seed);
        int pipe_fds[2];
        ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
        // One round in eight kills the child anywhere in its first 3 ms, usually while it
        // opens (and recovers) the table; the others anywhere in its first ~10 ms of publishing,
        // three in four of them counted from its first acknowledged state, so that most kills
        // land mid-sequence however long the first publish takes (under ASan on a loaded
        // machine, often more than 10 ms).
        const bool early = rng() % 8 == 0;
        const bool after_first_ack = !early && rng() % 4 != 0;
        const auto delay = std::chrono::microseconds(early ? rng() % 3000 : rng() % 10000);
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(pipe_fds[0]);
            run_child(path, static_cast<std::uint64_t>(round), pipe_fds[1]);
        }
        ::close(pipe_fds[1]);
        std::string read_before;
        if (!early) {
            // Until "o\n" and, if wanted, the first state's line are in.
            const std::size_t lines = after_first_ack ? 2 : 1;
            while (static_cast<std::size_t>(
                           std::count(read_before.begin(), read_before.end(), '\n')) < lines) {
                pollfd p{pipe_fds[0], POLLIN, 0};
                ASSERT_EQ(::poll(&p, 1, 10000), 1) << "the child did not open the table";
                char buf[256];
                const ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
                ASSERT_GT(n, 0);
                read_before.append(buf, static_cast<std::size_t>(n));
            }
            ASSERT_TRUE(read_before.starts_with("o\n"));
        }
        std::this_thread::sleep_for(delay);
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
        Acks acks = read_acks(pipe_fds[0], std::move(read_before));
        ::close(pipe_fds[0]);

        // The states the file may hold: the last acknowledged one and the one being published.
        std::vector<RangeEntry> acked, next;
        if (acks.last) {
            after_acks++;
            acked = state_for(round, *acks.last);
            next = state_for(round, *acks.last + 1);
        } else if (acks.opened) {
            before_first_ack++;
            acked = recovered;
            next = state_for(round, 0);
        } else {
            during_open++;
            acked = recovered;
            next = recovered;
        }

        // Readers of the dead writer's file, before anyone repairs it.
        std::vector<RangeEntry> seen;
        if (auto m = map_table(path)) {
            int e = 0;
            seen = testing::read_entries(m->view, &e);
            ASSERT_EQ(e, 0);
            ASSERT_TRUE(seen == acked || seen == next) << describe(seen, acked, next);
            expect_lookups_agree(m->view, seen, seen == acked ? next : acked);
            if (HasFatalFailure())
                return;
        } else {
            // Only a child killed while creating the very first table leaves no table.
            ASSERT_TRUE(recovered.empty() && !acks.opened);
        }
        saw_next += seen != acked;

        // A restarted writer recovers exactly what the readers saw.
        auto w = TableWriter::open(path);
        ASSERT_TRUE(w) << w.error().message();
        EXPECT_FALSE(w->recovery().replaced);
        EXPECT_EQ(w->recovery().dropped, 0U);
        ASSERT_TRUE(TableWriter::check(w->recovery().ranges, w->capacity())) << "overlaps";
        ASSERT_TRUE(w->recovery().ranges == seen) << describe(w->recovery().ranges, acked, next);
        recovered = w->recovery().ranges;
    }
    const auto elapsed = Clock::now() - begin;
    std::cout << "[ stats    ] " << kKillRounds << " kills: " << during_open << " during open, "
              << before_first_ack << " before the first ack, " << after_acks << " after acks; "
              << saw_next << " left the unacknowledged next state; "
              << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms\n";
    EXPECT_GT(after_acks, kKillRounds / 4) << "the kills should mostly land mid-sequence";
    EXPECT_LT(elapsed, std::chrono::seconds(15));
}

// Crafted crashes: the file as a writer leaves it when it dies at an exact instant of the latch
// protocol. States A and B share no range, and entry i of B sits right after entry i of A, so a
// copy that mixes them, or a record torn between two entries, is recognisable.
class TableCrashStateTest : public ::testing::Test {
protected:
    static constexpr std::uint32_t kCapacity = 4096;
    static constexpr std::uint32_t kEntries = 2000;

    void SetUp() override {
        (void)all_slots();
        for (std::uint32_t i = 0; i < kEntries; i++)
            a_.push_back(all_slots()[2 * i]);
        for (std::uint32_t i = 0; i < kEntries * 3 / 4; i++)
            b_.push_back(all_slots()[2 * i + 1]);
    }

    // Rewrites the file as a writer publishing B after A leaves it when it dies while writing
    // entry `torn` of copy `c`, having written its first word only: entries before it hold B,
    // the rest (and the name index and count, written last) still hold A. The other copy holds
    // what the protocol left there: A if the writer died in copy 0 (it had not reached copy 1
    // yet), B if it died in copy 1 (it completed copy 0 first). `seq` is the latch value.
    void craft_death_in_copy(int c, std::uint32_t torn, std::uint64_t seq) {
        std::vector<std::byte> a_copy, b_copy;
        {
            auto w = TableWriter::open(dir_.table(), kCapacity);
            ASSERT_TRUE(w);
            ASSERT_TRUE(w->publish(a_));
            a_copy = copy_bytes(0);
            ASSERT_TRUE(w->publish(b_));
            b_copy = copy_bytes(0);
        }
        const int fd = ::open(dir_.table().c_str(), O_RDWR | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        const std::size_t size = std::filesystem::file_size(dir_.table());
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        ASSERT_NE(p, MAP_FAILED);
        auto* base = static_cast<std::byte*>(p);
        TableView v;
        ASSERT_EQ(view_table(base, size, &v), 0);
        std::byte* copy = base + v.copy_offset[c];
        const std::vector<std::byte>& other = c == 0 ? a_copy : b_copy;
        std::memcpy(base + v.copy_offset[1 - c], other.data(), other.size());
        std::memcpy(copy, a_copy.data(), a_copy.size());
        std::memcpy(copy + entries_offset(), b_copy.data() + entries_offset(),
                    std::size_t{torn} * sizeof(EntryWords) + 8);
        reinterpret_cast<FileHeader*>(base)->seq.store(seq, std::memory_order_relaxed);
        ::munmap(p, size);
    }

    std::vector<std::byte> copy_bytes(int c) {
        auto m = map_table(dir_.table());
        EXPECT_TRUE(m);
        const std::byte* copy = m->view.base + m->view.copy_offset[c];
        return {copy, copy + copy_size_for(m->view.capacity)};
    }

    // What readers of `path` see must be `want` exactly, and a writer restarted on it (a copy
    // of it, when `path` is still in use) must recover exactly that.
    void expect_readers_and_recovery_see(const std::string& path,
                                         const std::vector<RangeEntry>& want,
                                         const std::vector<RangeEntry>& other) {
        auto m = map_table(path);
        ASSERT_TRUE(m);
        const std::vector<RangeEntry> seen = testing::read_entries(m->view);
        ASSERT_TRUE(seen == want) << describe(seen, want, other);
        expect_lookups_agree(m->view, want, other);
        auto w = TableWriter::open(path);
        ASSERT_TRUE(w) << w.error().message();
        EXPECT_EQ(w->recovery().dropped, 0U);
        EXPECT_TRUE(w->recovery().ranges == want) << describe(w->recovery().ranges, want, other);
    }

    // The file as a writer killed at this instant would leave it, in a directory of its own.
    std::string copy_of_table_as_if_killed_now() {
        const std::string dead = dead_.path() + "/" + kTableFileName;
        testing::write_file(dead, testing::read_file(dir_.table()));
        return dead;
    }

    // A writer on a new table of kCapacity whose mapping freezer_ watches, and the table mapped
    // as a reader maps it: where the tests that stop a change at every page start.
    void open_frozen_writer() {
        ASSERT_TRUE(TableWriter::open(dir_.table(), kCapacity));  // create it, so open() maps once
        freezer_.emplace();
        freezer_->arm_mapping(file_size_for(kCapacity));
        auto w = TableWriter::open(dir_.table(), kCapacity);
        ASSERT_TRUE(w) << w.error().message();
        ASSERT_TRUE(freezer_->captured());
        writer_.emplace(std::move(*w));
        reader_ = map_table(dir_.table());
        ASSERT_TRUE(reader_);
    }

    // Stops `change` of the table from `from` into `to` at its first store into `page` (if it
    // makes one); there, the live file's readers and a writer restarted on a copy of the file
    // must see one of the two states completely.
    void stop_at(std::size_t page, const std::function<void()>& change,
                 const std::vector<RangeEntry>& from, const std::vector<RangeEntry>& to) {
        freezer_->protect(page);
        if (!freezer_->run_until_frozen(change))
            return;
        frozen_++;
        const std::vector<RangeEntry> seen = testing::read_entries(reader_->view);
        const bool is_new = seen == to;
        saw_new_ += is_new;
        EXPECT_TRUE(is_new || seen == from) << describe(seen, from, to);
        expect_readers_and_recovery_see(copy_of_table_as_if_killed_now(), is_new ? to : from,
                                        is_new ? from : to);
        freezer_->release();
    }

    // After stop_at() at every page: the writer stopped in most pages of `entries` entries'
    // two copies, and readers saw both states.
    void expect_stops_on_both_sides(const char* what, std::size_t entries) {
        std::cout << "[ stats    ] stopped " << what << " at " << frozen_ << " of "
                  << freezer_->pages() << " pages, " << saw_new_
                  << " times after the switch to the new state\n";
        EXPECT_GT(frozen_ * kPageStride, 2 * (entries * sizeof(EntryWords) / testing::page_size()));
        EXPECT_GT(saw_new_, 0U);
        EXPECT_LT(saw_new_, frozen_);
    }

    TempDir dir_, dead_;
    std::vector<RangeEntry> a_, b_;
    // Set by open_frozen_writer(); declared in this order so that the reader's mapping and the
    // writer go before the freezer, which watches the writer's mapping.
    std::optional<testing::WriterFreezer> freezer_;
    std::optional<TableWriter> writer_;
    std::optional<Mapped> reader_;
    std::size_t frozen_ = 0, saw_new_ = 0;
};

TEST_F(TableCrashStateTest, WriterDeadInCopyZeroLeavesTheAcknowledgedState) {
    // Odd latch: readers are on copy 1, which still holds A (B was never acknowledged).
    craft_death_in_copy(0, kEntries / 2, 5);
    expect_readers_and_recovery_see(dir_.table(), a_, b_);
}

TEST_F(TableCrashStateTest, WriterDeadInCopyOneLeavesTheNewState) {
    // Even latch: copy 0 was completed with B before the counter moved back to it.
    craft_death_in_copy(1, kEntries / 2, 6);
    expect_readers_and_recovery_see(dir_.table(), b_, a_);
}

// A publish of B over A, stopped at its first store into each page of the file in turn. At every
// instant the live file's readers, and a writer restarted on a copy of the file (as if the writer
// had been killed there), see A or B, one of them completely.
TEST_F(TableCrashStateTest, PublishStoppedAtEveryPageLeavesTheOldOrTheNewState) {
    ASSERT_NO_FATAL_FAILURE(open_frozen_writer());
    for (std::size_t page = 0; page < freezer_->pages(); page += kPageStride) {
        SCOPED_TRACE(::testing::Message() << "page " << page);
        ASSERT_TRUE(writer_->publish(a_));
        stop_at(page, [&] { EXPECT_TRUE(writer_->publish(b_)); }, a_, b_);
        ASSERT_TRUE(testing::read_entries(reader_->view) == b_);
        if (HasFailure())
            return;
    }
    expect_stops_on_both_sides("the writer", b_.size());
}

// The same for the allocator's path: one range inserted near the front of A (every entry after
// it moves by one, in both copies) and erased again, each stopped at its first store into each
// page in turn. Readers and a restarted writer see the table before or after the change.
TEST_F(TableCrashStateTest, SingleChangesStoppedAtEveryPageLeaveTheOldOrTheNewState) {
    ASSERT_NO_FATAL_FAILURE(open_frozen_writer());
    const RangeEntry added = all_slots()[1];  // right after A's first entry
    std::vector<RangeEntry> with = a_;
    with.insert(with.begin() + 1, added);
    for (std::size_t page = 0; page < freezer_->pages(); page += kPageStride) {
        SCOPED_TRACE(::testing::Message() << "page " << page);
        ASSERT_TRUE(writer_->publish(a_));
        stop_at(page, [&] { EXPECT_TRUE(writer_->insert(added)); }, a_, with);
        ASSERT_TRUE(testing::read_entries(reader_->view) == with);
        stop_at(page, [&] { EXPECT_TRUE(writer_->erase(added.start)); }, with, a_);
        ASSERT_TRUE(testing::read_entries(reader_->view) == a_);
        if (HasFailure())
            return;
    }
    expect_stops_on_both_sides("single changes", a_.size());
}

// The restarted writer of a file left by a writer that died in copy 1 recovers B from copy 0 and
// republishes it. Copy 1 is torn, so the latch must not steer readers to it (an odd counter)
// before the writer rewrote it: at every instant of the recovery, readers, and a writer
// restarted after a second death at that instant, must see B, never a mix of A and B.
TEST_F(TableCrashStateTest, RecoveryStoppedAtEveryPageKeepsTheRecoveredState) {
    craft_death_in_copy(1, kEntries / 2, 6);
    const std::vector<std::byte> image = testing::read_file(dir_.table());
    testing::WriterFreezer freezer;
    const std::size_t pages = testing::round_up_page(image.size()) / testing::page_size();
    std::size_t frozen = 0;
    for (std::size_t page = 0; page < pages; page += kPageStride) {
        SCOPED_TRACE(::testing::Message() << "page " << page);
        testing::write_file(dir_.table(), image);
        auto m = map_table(dir_.table());
        ASSERT_TRUE(m);
        freezer.arm_mapping(image.size(), page);
        if (!freezer.run_until_frozen([&] { EXPECT_TRUE(TableWriter::open(dir_.table())); }))
            continue;
        frozen++;
        const std::vector<RangeEntry> seen = testing::read_entries(m->view);
        EXPECT_TRUE(seen == b_) << "latch " << latch_of(*m) << ": " << describe(seen, b_, a_);
        expect_readers_and_recovery_see(copy_of_table_as_if_killed_now(), b_, a_);
        freezer.release();
        if (HasFailure())
            return;
    }
    std::cout << "[ stats    ] stopped the recovering writer at " << frozen << " of " << pages
              << " pages\n";
    EXPECT_GT(frozen * kPageStride, 2 * (b_.size() * sizeof(EntryWords) / testing::page_size()));
}

}  // namespace
}  // namespace transient::shm
