// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The allocation policy of transient-allocd: which range a request gets, who may do what (name
// scopes and quotas, policy.hpp), how long it lives (until released, or until the user
// namespace it is bound to is gone, userns.hpp), and the in-memory view of the live ranges that
// the table writer publishes: an allocation, a release or a range a sweep found dead as one
// change, an import as a whole table. Logic over three seams —
// the TableWriter, a CollisionChecker and a UsernsProbe — so that tests can drive it without
// sockets, NSS or namespaces.

#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <string_view>
#include <vector>

#include "shm/layout.hpp"
#include "allocator/interface.hpp"
#include "allocator/userns.hpp"
#include "shm/writer.hpp"

namespace transient::allocator {

using shm::RangeEntry;

// A failure the interface reports to a caller as the declared error of `kind`
// (interface.hpp); the message is for logs and people.
struct Failure {
    ErrorKind kind;
    std::string message;  // for logs and for the human reading transientctl's output
    // kBusy: the lock file, and its holder's PID where known (else 0).
    std::string lock_file = {};
    pid_t holder = 0;
};

template <typename T>
using Outcome = std::expected<T, Failure>;

// The other sources of truth about UIDs and GIDs: NSS and userdb (with our own module
// bypassed), /etc/subuid and /etc/subgid, and systemd's allocators. The allocator consults it
// before taking a range.
class CollisionChecker {
public:
    virtual ~CollisionChecker() = default;
    // Takes the locks other allocators take while they choose, without waiting (kBusy when one
    // is held: the caller retries later, never sleeping on the event loop). They stay held
    // until end_choice(), which the allocator calls only after it published its choice, so
    // that the others, once they may go on, find the range taken.
    virtual std::optional<Failure> begin_choice() { return std::nullopt; }
    virtual void end_choice() {}
    // Whether some other source claims any ID of [start, start + size) that it must not.
    // Returns a short reason ("UID 524288 has a passwd entry") or nothing. For a free
    // candidate, its own lock (if other allocators have one) stays held until end_choice().
    virtual std::optional<std::string> range_taken(std::uint32_t start, std::uint32_t size) = 0;
    // Whether the records the range would get ("vu-<name>-0", "vg-<name>-0") already resolve.
    virtual std::optional<std::string> name_taken(std::string_view name) = 0;
};

struct Pools {
    std::uint32_t container_first = shm::kContainerPoolFirst;
    std::uint32_t container_last = shm::kContainerPoolLast;
    std::uint32_t dynamic_first = shm::kDynamicPoolFirst;
    std::uint32_t dynamic_last = shm::kDynamicPoolLast;
};

// What the configuration may change (config.hpp).
struct Policy {
    Pools pools;
    // Ranges one non-root UID may own at a time; root is not limited.
    std::uint32_t max_ranges_per_user = 16;
    bool allow_single = true;     // size 1
    bool allow_container = true;  // sizes 65536 and up
    // The largest range (a multiple of 65536); sizes above 65536 are for root only.
    std::uint32_t max_range_size = shm::kMaxRangeSize;
};

struct AllocateRequest {
    std::string_view name;  // as the caller gave it; scoped here (policy.hpp)
    std::int64_t size = 0;
    uid_t caller = 0;
    // The user namespace the range lives and dies with, already identified (the caller's fd
    // is closed by now: the allocator never keeps a namespace alive).
    std::optional<UsernsIdentity> userns;
    // Whose range it is (quotas, release rights, the subid provider, listings); nothing: the
    // caller. Only root may name another UID.
    std::optional<uid_t> owner = std::nullopt;
};

// The order released IDs are handed out again: files outlive ranges (a rootless podman storage,
// a chowned tree), so never-used 64K blocks and single IDs go first, then released ones, least
// recently released first. Kept in a small state file next to the table (the runtime
// directory): one released block start or single ID per line, oldest release first, a later
// line winning over an earlier one of the same ID. A release appends its lines (rewriting the
// whole file on every release made a release cost as much as the history was long); once the
// file holds more than twice the lines it needs, it is rewritten (to a temporary file, then
// renamed). A missing or damaged file only loses the order: unreadable lines (a line cut short
// by a crash) are skipped, and IDs it does not name count as never used.
class ReleaseHistory {
public:
    explicit ReleaseHistory(std::string path = {});  // empty: kept in memory only
    // Records the release of `r`'s blocks (or its single ID) now, and saves the file.
    void record(std::span<const RangeEntry> released);
    // The release rank of a block start or single ID (higher: released later), or nothing if it
    // was never released.
    std::optional<std::uint64_t> rank(std::uint32_t id) const;
    const std::string& path() const { return path_; }
    // The released 64K block starts that are candidates for reuse, (rank, start), least
    // recently released first: record() adds a block, take() removes it (a range holds it
    // now, or it is outside the pool). The allocator reuses a block from the front in
    // O(log n) rather than walking the pool for the oldest release.
    using FreeBlocks = std::set<std::pair<std::uint64_t, std::uint32_t>>;
    const FreeBlocks& free_blocks() const { return free_; }
    // The same for released single IDs (keys that are no 64K block start).
    const FreeBlocks& free_ids() const { return free_ids_; }
    void take(std::uint32_t id);
    // Every released block back among the free ones, before a whole table is taken anew.
    void free_all();

private:
    void load();
    void save();
    FreeBlocks& free_of(std::uint32_t id);  // free_ or free_ids_, by the kind of key

    std::string path_;
    std::unordered_map<std::uint32_t, std::uint64_t> ranks_;
    FreeBlocks free_;
    FreeBlocks free_ids_;
    std::uint64_t next_ = 1;
    std::size_t lines_ = 0;  // in the file, superseded ones included
};

// Where a sweep in steps stands: the first start it has not looked at yet.
struct SweepCursor {
    std::uint64_t next = 0;
    bool under_way = false;
};

// A sweep by a probe on another thread (a worker), its event loop's parts in steps
// (Allocator::snapshot_step(), Allocator::judge_step()): with 16,000 bindings, the copy of the
// bound ranges (names and all) when the worker began and the judging of all its answers were one
// turn of the loop each, about a millisecond that the scheduler stretched to tens under load.
// Holds what a probe needs of each binding, sorted by start, and the worker's answers; no names.
class WorkerSweep final : public UsernsProbe {
public:
    struct Binding {
        std::uint32_t start = 0;
        std::uint32_t flags = 0;
        std::uint64_t created_usec = 0;
        std::uint64_t userns_id = 0;
        std::uint64_t userns_ino = 0;
        Liveness answer = Liveness::kUnknown;
    };
    // Forgets everything, for a new sweep: the snapshot and the judging start over.
    void clear();
    // On the worker: asks `probe` about every binding of the snapshot; `usable` is what the
    // probe's begin_sweep() said (false: every answer stays kUnknown).
    void answer(UsernsProbe& probe, bool usable);
    // The binding `e` is, if the snapshot has it: the same start, creation time and namespace.
    // A namesake allocated at that start since (another creation time) is not it.
    const Binding* asked(const RangeEntry& e) const;
    // As a probe on the loop: the worker's answer about `e`, or kUnknown.
    const char* name() const override { return "answers"; }
    Liveness check(const RangeEntry& e) override;

    std::vector<Binding> bindings;
    bool usable = false;
    SweepCursor snapshot{0, true};  // snapshot_step()'s
    SweepCursor judging{0, true};   // judge_step()'s
};

class Allocator {
public:
    // Called for every range released without a ReleaseRange call (its namespace is gone).
    using ReleaseObserver = std::function<void(const RangeEntry&)>;

    // `probe` may be null: bound ranges are then never released automatically.
    Allocator(shm::TableWriter writer, std::unique_ptr<CollisionChecker> checker,
              Policy policy = {}, std::unique_ptr<UsernsProbe> probe = nullptr);

    // Takes a free range of `size` IDs (1, or 64K blocks) for the owner and publishes it before
    // returning: once this returns a range, every reader sees it. Returns the entry as stored
    // (with its scoped name).
    Outcome<RangeEntry> allocate(const AllocateRequest& request);
    Outcome<RangeEntry> allocate(std::string_view name, std::int64_t size, uid_t caller) {
        return allocate(AllocateRequest{name, size, caller, std::nullopt});
    }
    // Releases the caller's range `name` (scoped as for allocate); root may release any.
    // Returns the released entry.
    Outcome<RangeEntry> release(std::string_view name, uid_t caller);
    // The range called `name` (scoped for `caller` first, then as given), or containing `id`;
    // both given must name the same range.
    Outcome<RangeEntry> find(const std::optional<std::string>& name,
                             const std::optional<std::int64_t>& id, uid_t caller = 0) const;

    // Lifetimes (lifetimes.cpp). Releases every bound range (of `owner` only, if given) whose
    // user namespace the probe reports gone, each as one change. Returns what it released.
    // Every binding is checked before this returns: for start-up and tests; the event loop
    // sweeps by sweep_step().
    Outcome<std::vector<RangeEntry>> reap_dead_bindings(std::optional<uid_t> owner = {});
    // One step of a sweep with the allocator's own probe, so that the event loop never waits
    // for all the bindings (16,000 of them: 16,000 open_by_handle_at() calls, tens of ms): at
    // most `max_checks` bindings are checked, from where the last step stopped (a start; ranges
    // allocated or released between steps need no bookkeeping, and one allocated behind it waits
    // for the next sweep). Begins a sweep if none is under way. Returns what it released.
    static constexpr std::size_t kSweepStep = 128;
    Outcome<std::vector<RangeEntry>> sweep_step(std::size_t max_checks = kSweepStep);
    // Whether a sweep begun by sweep_step() has bindings left to check.
    bool sweep_under_way() const { return sweep_.under_way; }
    // A sweep on a worker thread, the loop's parts at most kWorkerStep bindings a turn. First
    // snapshot_step() until it returns true (the snapshot is whole; a range bound or released
    // between steps is in it or not, as its start is ahead of the cursor or behind), then the
    // worker's WorkerSweep::answer(), then judge_step() while sweep.judging.under_way: it
    // releases the ranges the worker found dead that are still the ones it asked about (one
    // bound since may be to a namespace the sweep could not have seen: not judged by it).
    static constexpr std::size_t kWorkerStep = 512;
    bool snapshot_step(WorkerSweep& sweep, std::size_t max_bindings = kWorkerStep) const;
    Outcome<std::vector<RangeEntry>> judge_step(WorkerSweep& sweep,
                                                std::size_t max_checks = kWorkerStep);
    // Sweeps asked for by allocations (quota or pool exhausted) run at most once per
    // `spacing`, shared by all callers: a sweep may walk all of /proc, and a flood of
    // over-quota requests must not walk it once each. Zero: every time (the default).
    void set_sweep_spacing(std::chrono::milliseconds spacing) { sweep_spacing_ = spacing; }
    // Where a sweep is too slow for the event loop (the /proc scan), allocations do not sweep
    // themselves but ask `runner` to start one elsewhere (a worker thread) and answer from what
    // is known now; a retry after that sweep sees its result.
    void set_sweep_runner(std::function<void()> runner) { sweep_runner_ = std::move(runner); }
    std::size_t bound_count() const;
    void set_release_observer(ReleaseObserver observer) { observer_ = std::move(observer); }
    const UsernsProbe* probe() const { return probe_.get(); }

    // Makes `imported` (subids.hpp's imported_entries()) the table's imported ranges, in place
    // of the previous ones, and publishes if that changed anything. An entry overlapping a live
    // range, or named like one, is left out with a line in *skipped.
    Outcome<void> set_imported(const std::vector<RangeEntry>& imported,
                               std::vector<std::string>* skipped);

    // Allocated ranges only: imported ones count against nobody's quota.
    std::size_t owned_by(uid_t owner) const;
    const Policy& policy() const { return policy_; }
    // The live ranges, sorted by start. Built on demand from the index after a change (a
    // listing, the status, an import), so that a change itself stays O(log n); the reference
    // stays valid until the next change.
    const std::vector<RangeEntry>& ranges() const;
    const shm::TableWriter& writer() const { return writer_; }

private:
    Outcome<void> check_request(const std::string& name, const AllocateRequest& request);
    Outcome<void> check_quota(uid_t caller);
    Outcome<std::uint32_t> choose(std::uint32_t size);
    std::optional<std::uint32_t> pick(std::uint32_t size);
    std::optional<std::uint32_t> pick_container_base(std::uint32_t size);
    std::optional<std::uint32_t> pick_dynamic_id();
    std::optional<std::uint32_t> pick_released_block();
    void skip_used_blocks();
    bool candidate_free(std::uint32_t start, std::uint32_t size);
    using Index = std::map<std::uint32_t, RangeEntry>;  // by start
    // The range called `name` (exactly), or ranges_.end(); O(log n).
    Index::const_iterator named_range(std::string_view name) const;
    // The first range ending above `id` (which may contain it), or ranges_.end(); O(log n).
    Index::const_iterator first_ending_above(std::uint64_t id) const;
    // Every change of ranges_ goes through these, which keep owned_ and the listing in step.
    void add_range(const RangeEntry& r);
    void drop_range(Index::const_iterator it);
    void reset_ranges(const std::vector<RangeEntry>& sorted);
    Outcome<void> publish(std::vector<RangeEntry> next);
    // Releases the bound ranges `judged` accepts that `swept` reports gone, from `at.next` on,
    // checking at most `max_checks` of them; at.under_way turns false at the end of the table.
    Outcome<std::vector<RangeEntry>> judge(UsernsProbe& swept,
                                           const std::function<bool(const RangeEntry&)>& judged,
                                           SweepCursor& at, std::size_t max_checks);
    // Releases `dead` (ranges of ranges_) one change each, as a release does.
    Outcome<void> release_dead(const std::vector<RangeEntry>& dead);
    // reap_dead_bindings() for an allocation, unless one ran less than the spacing ago.
    Outcome<std::vector<RangeEntry>> reap_if_due(std::optional<uid_t> owner = {});

    shm::TableWriter writer_;
    std::unique_ptr<CollisionChecker> checker_;
    Policy policy_;
    std::unique_ptr<UsernsProbe> probe_;
    ReleaseObserver observer_;
    // The live ranges by start: an allocation or a release changes one node, where a sorted
    // vector moved every range after the change (about 100 µs a release at 28,000; issue 11).
    Index ranges_;
    // Allocated (not imported) ranges per owner, for the quota without a scan.
    std::unordered_map<uid_t, std::size_t> owned_;
    // The starts of the bound ranges per owner: an over-quota request checks the owner's own
    // (at most max_ranges_per_user), never walks everyone's.
    std::unordered_map<uid_t, std::set<std::uint32_t>> bound_of_;
    SweepCursor sweep_;  // sweep_step()'s
    mutable std::vector<RangeEntry> listed_;  // ranges(), valid while !listed_stale_
    mutable bool listed_stale_ = true;
    std::chrono::milliseconds sweep_spacing_{0};
    std::function<void()> sweep_runner_;
    std::optional<std::chrono::steady_clock::time_point> last_sweep_;
    ReleaseHistory history_;
    // Every 64K block of the container pool below this is ours or was released before.
    std::uint64_t never_used_ = 0;
    // The same for the dynamic pool: every ID below it is ours or was released before.
    std::uint64_t never_used_id_ = 0;
};

// Where the allocator keeps its ReleaseHistory for the table at `table_path`: beside it.
std::string release_history_path(const std::string& table_path);

bool is_valid_range_name(std::string_view name);

}  // namespace transient::allocator
