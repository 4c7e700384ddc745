// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Lifetimes of ranges bound to a user namespace: the sweep that releases them once the
// namespace is gone. It runs from the daemon's timer on a worker thread (the loop takes its
// snapshot and judges its answers in steps: WorkerSweep), or in steps of a few bindings between
// the event loop's other work where the probe has no thread of its own, once whole at start-up (the
// allocator may have been down while namespaces died), and when an allocation runs short of
// quota (the owner's bindings only) or room (one step).
// Nothing here depends on a single event being seen: every sweep asks about every binding.

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "allocator/allocator.hpp"

namespace transient::allocator {

std::size_t Allocator::bound_count() const {
    return static_cast<std::size_t>(
            std::count_if(ranges_.begin(), ranges_.end(), [](const auto& kv) {
                return is_bound(kv.second);
            }));
}

Outcome<std::vector<RangeEntry>> Allocator::reap_dead_bindings(std::optional<uid_t> owner) {
    if (!probe_)
        return std::vector<RangeEntry>{};
    if (owner) {
        // The owner's own bindings, found by its index: a request over quota must not cost a
        // walk of everyone's (a user at the quota decides how often it asks).
        const auto it = bound_of_.find(*owner);
        if (it == bound_of_.end())
            return std::vector<RangeEntry>{};
        last_sweep_ = std::chrono::steady_clock::now();
        if (!probe_->begin_sweep())
            return std::vector<RangeEntry>{};  // the probe cannot tell this time; keep everything
        std::vector<RangeEntry> dead;
        for (const std::uint32_t start : it->second)
            if (const RangeEntry& r = ranges_.at(start); probe_->check(r) == Liveness::kDead)
                dead.push_back(r);
        if (auto r = release_dead(dead); !r)
            return std::unexpected(r.error());
        return dead;
    }
    if (bound_of_.empty())
        return std::vector<RangeEntry>{};
    last_sweep_ = std::chrono::steady_clock::now();
    if (!probe_->begin_sweep())
        return std::vector<RangeEntry>{};
    SweepCursor all{0, true};
    return judge(*probe_, [](const RangeEntry&) { return true; }, all, SIZE_MAX);
}

Outcome<std::vector<RangeEntry>> Allocator::sweep_step(std::size_t max_checks) {
    if (!probe_ || (!sweep_.under_way && bound_of_.empty()))
        return std::vector<RangeEntry>{};
    if (!sweep_.under_way) {
        last_sweep_ = std::chrono::steady_clock::now();
        if (!probe_->begin_sweep())
            return std::vector<RangeEntry>{};  // the probe cannot tell this time
        sweep_ = {0, true};
    }
    return judge(*probe_, [](const RangeEntry&) { return true; }, sweep_, max_checks);
}

void WorkerSweep::clear() {
    bindings.clear();
    usable = false;
    snapshot = {0, true};
    judging = {0, true};
}

void WorkerSweep::answer(UsernsProbe& probe, bool begun) {
    usable = begun;
    if (!usable)
        return;
    // The probe's inputs only; the name stays empty (no allocation).
    RangeEntry e;
    for (Binding& b : bindings) {
        e.start = b.start;
        e.flags = b.flags;
        e.created_usec = b.created_usec;
        e.userns_id = b.userns_id;
        e.userns_ino = b.userns_ino;
        b.answer = probe.check(e);
    }
}

const WorkerSweep::Binding* WorkerSweep::asked(const RangeEntry& e) const {
    // Sorted by start: the snapshot is taken in the table's order, each step ahead of the last.
    const auto it = std::lower_bound(bindings.begin(), bindings.end(), e.start,
                                     [](const Binding& b, std::uint32_t s) { return b.start < s; });
    if (it == bindings.end() || it->start != e.start || it->created_usec != e.created_usec ||
        it->userns_id != e.userns_id || it->userns_ino != e.userns_ino || it->flags != e.flags)
        return nullptr;
    return &*it;
}

Liveness WorkerSweep::check(const RangeEntry& e) {
    const Binding* b = asked(e);
    return b == nullptr ? Liveness::kUnknown : b->answer;
}

bool Allocator::snapshot_step(WorkerSweep& sweep, std::size_t max_bindings) const {
    // Unbound ranges are stepped over too, bounded as in judge().
    const std::size_t max_visits = max_bindings > SIZE_MAX / 16 ? SIZE_MAX : max_bindings * 16;
    std::size_t taken = 0, visits = 0;
    auto it = !sweep.snapshot.under_way || sweep.snapshot.next > UINT32_MAX
                      ? ranges_.end()
                      : ranges_.lower_bound(static_cast<std::uint32_t>(sweep.snapshot.next));
    for (; it != ranges_.end() && taken < max_bindings && visits < max_visits; ++it) {
        const RangeEntry& r = it->second;
        visits++;
        if (!is_bound(r))
            continue;
        sweep.bindings.push_back({r.start, r.flags, r.created_usec, r.userns_id, r.userns_ino,
                                  Liveness::kUnknown});
        taken++;
    }
    if (it == ranges_.end()) {
        sweep.snapshot = {};
        return true;
    }
    sweep.snapshot.next = it->first;
    return false;
}

Outcome<std::vector<RangeEntry>> Allocator::judge_step(WorkerSweep& sweep,
                                                       std::size_t max_checks) {
    last_sweep_ = std::chrono::steady_clock::now();
    if (!sweep.usable || !sweep.judging.under_way) {
        sweep.judging = {};
        return std::vector<RangeEntry>{};
    }
    // A lookup in the snapshot each: only the ranges the worker was asked about are judged.
    return judge(
            sweep, [&sweep](const RangeEntry& r) { return sweep.asked(r) != nullptr; },
            sweep.judging, max_checks);
}

Outcome<std::vector<RangeEntry>> Allocator::reap_if_due(std::optional<uid_t> owner) {
    // A probe that answers on the loop (file handles: one open_by_handle_at() per binding) is
    // asked now, so a namespace that just died frees its range for this very request: over
    // quota, about the owner's own bindings; for a pool or table that is short, one step of the
    // sweep (wrapping round once), so that a request never checks more than kSweepStep
    // bindings. With more bindings than that, a retry goes on where this one stopped, and the
    // timer's sweep goes on between requests.
    if (!sweep_runner_) {
        if (owner)
            return reap_dead_bindings(owner);
        const bool from_start = !sweep_.under_way;
        auto dead = sweep_step(kSweepStep);
        if (!dead || !dead->empty() || from_start || sweep_.under_way)
            return dead;
        // The step finished a sweep begun elsewhere and found nothing: the bindings before
        // where it began are checked by a new one (at most kSweepStep more).
        return sweep_step(kSweepStep);
    }
    // A slow probe (the /proc scan) sweeps on the worker: one sweep serves every request until
    // the spacing is over, and this request is answered from what is known now.
    const auto now = std::chrono::steady_clock::now();
    if (!last_sweep_ || now - *last_sweep_ >= sweep_spacing_) {
        last_sweep_ = now;
        sweep_runner_();
    }
    return std::vector<RangeEntry>{};
}

Outcome<std::vector<RangeEntry>> Allocator::judge(
        UsernsProbe& swept, const std::function<bool(const RangeEntry&)>& judged,
        SweepCursor& at, std::size_t max_checks) {
    // Unbound ranges are stepped over too: bounded as well, so that a step stays short in a
    // table of unbound ranges.
    const std::size_t max_visits = max_checks > SIZE_MAX / 16 ? SIZE_MAX : max_checks * 16;
    std::vector<RangeEntry> dead;
    std::size_t checks = 0, visits = 0;
    auto it = at.next > UINT32_MAX ? ranges_.end()
                                   : ranges_.lower_bound(static_cast<std::uint32_t>(at.next));
    for (; it != ranges_.end() && checks < max_checks && visits < max_visits; ++it) {
        const RangeEntry& r = it->second;
        visits++;
        if (!is_bound(r) || !judged(r))
            continue;
        checks++;
        // Only a definite "gone" releases: kUnknown (a failed probe) keeps the range.
        if (swept.check(r) == Liveness::kDead)
            dead.push_back(r);
    }
    if (it == ranges_.end())
        at = {};
    else
        at.next = it->first;
    if (auto r = release_dead(dead); !r)
        return std::unexpected(r.error());
    return dead;
}

Outcome<void> Allocator::release_dead(const std::vector<RangeEntry>& dead) {
    // One change each, as ReleaseRange makes: a republished table cost a copy of every range.
    std::size_t done = 0;
    Outcome<void> result;
    for (; done < dead.size(); done++) {
        if (auto w = writer_.erase(dead[done].start); !w) {
            result = std::unexpected(Failure{ErrorKind::kInternal,
                                             "Failed to publish the range table: " +
                                                     w.error().message()});
            break;
        }
        drop_range(ranges_.find(dead[done].start));
    }
    history_.record({dead.data(), done});
    if (observer_)
        for (std::size_t i = 0; i < done; i++)
            observer_(dead[i]);
    return result;
}

}  // namespace transient::allocator
