// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The latch under load: one writer thread publishes changing sets of ranges as fast as it can
// while N reader threads call every lookup. Every range describes itself (name "r<hex start>",
// every other field derived from the start), so a torn record is recognisable; every eighth slot
// is "stable", present in every published state, so it must always be found. Readers may give
// up with -EAGAIN only, rarely, and every call must return in bounded time.
//
// Parameterized over reader threads and table sizes with a deadline, as abseil's
// ConcurrentSequenceLockTest is. Built twice: plainly (label "stress") and with
// -fsanitize=thread (labels "stress;tsan"). Half of the readers use the writer's own mapping, so
// that TSan sees both sides of the latch at the same addresses; the others map the file
// read-only, as libnss_transient.so.2 does.
//
// TSan and the latch's fences: TSan does not model std::atomic_thread_fence (GCC says so with
// -Wtsan), so it cannot derive happens-before from the fence pairs. That does not produce false
// positives here, because TSan reports races between plain accesses only, and every access to
// the table, payload included, is an atomic (STYLE.md §2 rule 1); the records readers build are
// private. It does make TSan blind to a missing fence, which is what the torn-record checks
// below are for. Conversely TSan does see a plain access: replacing one relaxed load in
// load_entry() by a memcpy() is reported as a data race at once, but only on the shared
// mapping; a second mapping of the same file has different addresses, invisible to TSan.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "shm/identity.hpp"
#include "shm/reader.hpp"
#include "shm/table_reader.hpp"
#include "shm/writer.hpp"
#include "tests/shm/shm_test_util.hpp"
#include "tests/shm/writer_freezer.hpp"

namespace transient::shm {
namespace {

using Clock = std::chrono::steady_clock;
using testing::self_consistent;

#ifdef TRANSIENT_TESTS_SANITIZED
// TSan makes every atomic access a runtime call, ~100x slower: a full table would be published
// a few times per case only, so the sanitized build stops at 4096 slots.
constexpr auto kDefaultDuration = std::chrono::milliseconds(2500);
constexpr std::uint32_t kSpans[] = {64, 512, 4096};
#else
constexpr auto kDefaultDuration = std::chrono::milliseconds(2000);
constexpr std::uint32_t kSpans[] = {64, 4096, kDefaultCapacity};
#endif

std::chrono::milliseconds case_duration() {
    if (const char* s = std::getenv("TRANSIENT_STRESS_MS"))
        return std::chrono::milliseconds(std::strtoll(s, nullptr, 10));
    return kDefaultDuration;
}

constexpr std::uint32_t kStableEvery = 8;

enum Op {
    kById,
    kByIdStable,
    kByName,
    kByNameStable,
    kNext,
    kReadAll,
    kIdentity,
    kEnumerate,
    kOps
};
constexpr const char* kOpNames[kOps] = {"find_by_id",   "find_by_id(stable)", "find_by_name",
                                        "find_by_name(stable)", "find_next", "read_all",
                                        "lookup_id/name",   "enumeration"};

struct ReaderStats {
    std::uint64_t calls[kOps] = {};
    std::uint64_t eagain[kOps] = {};
    std::uint64_t found = 0;
    Clock::duration slowest{};
    std::vector<std::string> failures;  // the first few

    void fail(std::string what) {
        if (failures.size() < 8)
            failures.push_back(std::move(what));
    }
};

// What the readers know: the slots in play and which of them are stable.
struct Universe {
    std::vector<RangeEntry> slots;        // slots [0, span)
    std::vector<std::uint32_t> stable;    // indexes into slots, ascending start
    std::vector<std::uint32_t> stable_starts;

    explicit Universe(std::uint32_t span) {
        for (std::uint32_t i = 0; i < span; i++) {
            slots.push_back(testing::slot_range(i));
            if (i % kStableEvery == 0) {
                stable.push_back(i);
                stable_starts.push_back(slots.back().start);
            }
        }
    }
    bool is_stable(std::uint32_t start) const {
        return std::binary_search(stable_starts.begin(), stable_starts.end(), start);
    }
};

// Everything one reader checks about one record it was handed.
bool check_record(ReaderStats& st, const RangeRecord& r, const char* op) {
    if (auto ok = self_consistent(r); !ok) {
        st.fail(std::string(op) + ": " + ok.message());
        return false;
    }
    return true;
}

void run_reader(const TableView& v, const Universe& u, std::uint64_t seed,
                const std::atomic<bool>& stop, ReaderStats& st) {
    std::mt19937_64 rng(seed);
    std::vector<RangeRecord> all(v.capacity);
    RangeRecord r;
    const auto stable_slot = [&] { return u.slots[u.stable[rng() % u.stable.size()]]; };
    // Relaxed: the flag carries no data, it only ends the loop.
    while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t dice = rng() % 64;
        const Op op = dice < 12   ? kById
                      : dice < 24 ? kByIdStable
                      : dice < 34 ? kByName
                      : dice < 44 ? kByNameStable
                      : dice < 54 ? kNext
                      : dice < 61 ? kIdentity
                      : dice < 63 ? kReadAll
                                  : kEnumerate;
        if (op == kEnumerate && u.slots.size() > 4096)
            continue;  // a full enumeration of a big table is 30000 calls; read_all covers it
        st.calls[op]++;
        const auto t0 = Clock::now();
        int e = 0;
        switch (op) {
        case kById:
        case kByIdStable: {
            const RangeEntry& want =
                    op == kById ? u.slots[rng() % u.slots.size()] : stable_slot();
            const std::uint32_t id = want.start + static_cast<std::uint32_t>(rng() % want.size);
            e = find_by_id(v, id, &r);
            if (e == 0 && check_record(st, r, "find_by_id") && r.start != want.start)
                st.fail("find_by_id(" + std::to_string(id) + ") returned " + r.name);
            if (e == -ESRCH && op == kByIdStable)
                st.fail("stable " + want.name + " not found by ID");
            break;
        }
        case kByName:
        case kByNameStable: {
            const RangeEntry& want =
                    op == kByName ? u.slots[rng() % u.slots.size()] : stable_slot();
            e = find_by_name(v, want.name.c_str(), &r);
            if (e == 0 && check_record(st, r, "find_by_name") && r.start != want.start)
                st.fail("find_by_name(" + want.name + ") returned " + r.name);
            if (e == -ESRCH && op == kByNameStable)
                st.fail("stable " + want.name + " not found by name");
            break;
        }
        case kNext: {
            const std::uint64_t min = rng() % (std::uint64_t{u.slots.back().start} + 2);
            e = find_next(v, min, &r);
            const auto s = std::lower_bound(u.stable_starts.begin(), u.stable_starts.end(), min);
            if (e == 0 && check_record(st, r, "find_next") &&
                (r.start < min || (s != u.stable_starts.end() && r.start > *s)))
                st.fail("find_next(" + std::to_string(min) + ") skipped to " + r.name);
            if (e == -ESRCH && s != u.stable_starts.end())
                st.fail("find_next(" + std::to_string(min) + ") missed a stable range");
            break;
        }
        case kIdentity: {
            const RangeEntry& want = stable_slot();
            const std::uint32_t n = static_cast<std::uint32_t>(rng() % want.size);
            Identity ident;
            e = lookup_id(&v, want.start + n, IdKind::kUser, &ident);
            const std::string name = "vu-" + want.name + "-" + std::to_string(n);
            if (e == 0 && ident.name != name)
                st.fail("lookup_id gave " + std::string(ident.name) + " for " + name);
            if (e == 0)
                e = lookup_name(&v, name.c_str(), IdKind::kUser, &ident);
            if (e == 0 && (ident.id != want.start + n || !check_record(st, ident.range, "lookup")))
                st.fail("lookup_name(" + name + ") gave " + std::to_string(ident.id));
            if (e == -ESRCH)
                st.fail("stable " + name + " not found");
            break;
        }
        case kReadAll: {
            std::size_t count = 0, invalid = 0;
            e = read_all(v, all.data(), all.size(), &count, &invalid);
            if (e != 0)
                break;
            if (invalid != 0 || count > all.size())
                st.fail("read_all: " + std::to_string(invalid) + " invalid, count " +
                        std::to_string(count));
            std::size_t stable_seen = 0;
            for (std::size_t i = 0; i < std::min(count, all.size()); i++) {
                if (!check_record(st, all[i], "read_all"))
                    break;
                if (i > 0 && std::uint64_t{all[i - 1].start} + all[i - 1].size > all[i].start)
                    st.fail("read_all: unsorted or overlapping at " + std::to_string(i));
                stable_seen += u.is_stable(all[i].start);
            }
            if (stable_seen != u.stable.size())
                st.fail("read_all: " + std::to_string(stable_seen) + " of " +
                        std::to_string(u.stable.size()) + " stable ranges");
            break;
        }
        case kEnumerate: {
            // One call per range while the table changes under us: each stable range must show
            // up exactly once, in order, as getpwent() would list it.
            std::uint64_t next = 0;
            std::size_t stable_seen = 0;
            while ((e = find_next(v, next, &r)) == 0) {
                if (!check_record(st, r, "enumeration"))
                    break;
                if (u.is_stable(r.start)) {
                    if (stable_seen >= u.stable.size() || u.stable_starts[stable_seen] != r.start)
                        st.fail(std::string("enumeration out of order at ") + r.name);
                    stable_seen++;
                }
                next = std::uint64_t{r.start} + 1;
            }
            if (e == -ESRCH && stable_seen != u.stable.size())
                st.fail("enumeration saw " + std::to_string(stable_seen) + " stable ranges");
            if (e == -ESRCH)
                e = 0;
            break;
        }
        case kOps:
            break;
        }
        const auto took = Clock::now() - t0;
        st.slowest = std::max(st.slowest, took);
        if (e == 0)
            st.found++;
        else if (e == -EAGAIN)
            st.eagain[op]++;
        else if (e != -ESRCH)
            st.fail(std::string(kOpNames[op]) + " returned " + std::to_string(e));
    }
}

// Publishes stable ∪ a fresh random half of the other slots, over and over, and between two
// whole tables a burst of single changes (TableWriter::insert() and erase(), the allocator's
// path): a random slot that is not stable comes or goes; every other burst ends with a re-seed
// of the name index (each copy under its own seed while readers are on the other).
// Publishes random states until `stop`; `published` counts them as they go.
void run_writer(TableWriter& w, const Universe& u, const std::atomic<bool>& stop,
                std::atomic<std::uint64_t>& published, std::string& error) {
    std::mt19937_64 rng(99);
    std::vector<RangeEntry> state;
    std::vector<bool> present(u.slots.size());
    while (!stop.load(std::memory_order_relaxed)) {  // relaxed: only ends the loop
        state.clear();
        std::uint64_t bits = 0;
        for (std::uint32_t i = 0; i < u.slots.size(); i++) {
            if (i % 64 == 0)
                bits = rng();
            present[i] = i % kStableEvery == 0 || ((bits >> (i % 64)) & 1);
            if (present[i])
                state.push_back(u.slots[i]);
        }
        if (auto r = w.publish(state); !r) {
            error = r.error().message();
            return;
        }
        published.fetch_add(1, std::memory_order_relaxed);
        for (int n = 0; n < 16 && !stop.load(std::memory_order_relaxed); n++) {
            const auto i = static_cast<std::uint32_t>(rng() % u.slots.size());
            if (i % kStableEvery == 0)
                continue;
            auto r = present[i] ? w.erase(u.slots[i].start) : w.insert(u.slots[i]);
            if (!r) {
                error = (present[i] ? "erase: " : "insert: ") + r.error().message();
                return;
            }
            present[i] = !present[i];
            published.fetch_add(1, std::memory_order_relaxed);
        }
        if (published.load(std::memory_order_relaxed) % 2 == 0)
            w.reseed();
    }
}

class TableStressTest : public ::testing::TestWithParam<std::tuple<int, std::uint32_t>> {};

TEST_P(TableStressTest, ReadersNeverSeeTornRecordsAndAlwaysFindStableRanges) {
    const auto [readers, span] = GetParam();
    testing::TempDir dir;
    const Universe u(span);

    ASSERT_TRUE(TableWriter::open(dir.table()));  // create it, so open() maps it once below
    testing::capture_next_mapping(file_size_for(kDefaultCapacity));
    auto w = TableWriter::open(dir.table());
    ASSERT_TRUE(w) << w.error().message();
    std::vector<RangeEntry> stable;
    for (const std::uint32_t i : u.stable)
        stable.push_back(u.slots[i]);
    ASSERT_TRUE(w->publish(stable));
    const std::byte* shared = testing::captured_mapping();
    ASSERT_NE(shared, nullptr);

    TableView writer_view, file_view;
    ASSERT_EQ(view_table(shared, file_size_for(kDefaultCapacity), &writer_view), 0);
    TableReader reader(dir.table());
    auto rv = reader.view();
    ASSERT_TRUE(rv) << rv.error().message();
    file_view = **rv;

    std::atomic<bool> stop{false};
    std::vector<ReaderStats> stats(readers);
    std::vector<std::thread> threads;
    for (int i = 0; i < readers; i++)
        threads.emplace_back([&, i] {
            run_reader(i % 2 == 0 ? writer_view : file_view, u, 1000 + i, stop, stats[i]);
        });
    std::string writer_error;
    std::atomic<std::uint64_t> progress{0};
    std::thread writer([&] { run_writer(*w, u, stop, progress, writer_error); });

    // At least the case's duration, and on a loaded machine until the writer has published
    // enough states to have raced the readers (within a minute).
    std::this_thread::sleep_for(case_duration());
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (progress.load(std::memory_order_relaxed) <= 10 &&
           std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stop.store(true, std::memory_order_relaxed);
    writer.join();
    for (auto& t : threads)
        t.join();

    const std::uint64_t published = progress.load();
    EXPECT_EQ(writer_error, "");
    EXPECT_GT(published, 10U) << "the writer hardly ran";
    std::uint64_t total_calls = 0, total_eagain = 0;
    for (int i = 0; i < readers; i++) {
        SCOPED_TRACE(::testing::Message() << "reader " << i);
        const ReaderStats& st = stats[i];
        for (const auto& f : st.failures)
            ADD_FAILURE() << f;
        std::uint64_t calls = 0, eagain = 0, point_calls = 0, point_eagain = 0;
        for (int op = 0; op < kOps; op++) {
            calls += st.calls[op];
            eagain += st.eagain[op];
            if (op != kReadAll && op != kEnumerate) {
                point_calls += st.calls[op];
                point_eagain += st.eagain[op];
            }
        }
        total_calls += calls;
        total_eagain += eagain;
        EXPECT_GT(calls, 100U) << "the reader hardly ran";
        EXPECT_GT(st.found, calls / 4);
        // A point lookup takes well under a microsecond and is retried 16 times: giving up must
        // be rare. read_all() of a big table takes as long as the writer's update of a copy, so
        // it may give up more often, but not most of the time.
        EXPECT_LE(point_eagain, point_calls / 100 + 2)
                << point_eagain << " of " << point_calls << " point lookups gave up";
        EXPECT_LE(st.eagain[kReadAll], st.calls[kReadAll] / 2 + 2)
                << st.eagain[kReadAll] << " of " << st.calls[kReadAll] << " read_all() gave up";
        // Bounded retries: no call may spin. Generous, for preemption on a loaded machine.
        EXPECT_LT(st.slowest, std::chrono::seconds(1));
    }
    std::cout << "[ stats    ] " << readers << " readers, " << span << " slots: " << published
              << " publishes, " << total_calls << " reader calls, " << total_eagain
              << " EAGAIN (";
    for (int op = 0; op < kOps; op++) {
        std::uint64_t c = 0, a = 0;
        for (const auto& st : stats) {
            c += st.calls[op];
            a += st.eagain[op];
        }
        std::cout << (op ? ", " : "") << kOpNames[op] << " " << a << "/" << c;
    }
    std::cout << ")\n";
}

std::string case_name(const ::testing::TestParamInfo<TableStressTest::ParamType>& info) {
    return std::to_string(std::get<0>(info.param)) + "Readers" +
           std::to_string(std::get<1>(info.param)) + "Slots";
}

INSTANTIATE_TEST_SUITE_P(ReadersAndSizes, TableStressTest,
                         ::testing::Combine(::testing::Values(1, 2, 4),
                                            ::testing::ValuesIn(kSpans)),
                         case_name);

}  // namespace
}  // namespace transient::shm
