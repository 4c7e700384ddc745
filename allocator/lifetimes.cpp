// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Lifetimes of ranges bound to a user namespace: the sweep that releases them once the
// namespace is gone. It runs from the daemon's timer (on a worker thread where a sweep is slow),
// once at start-up (the allocator may have been down while namespaces died), and when an
// allocation runs short of room or quota, at most once per sweep spacing.
// Nothing here depends on a single event being seen: every sweep asks about every binding.

#include <algorithm>
#include <iterator>
#include <unordered_map>

#include "allocator/allocator.hpp"

namespace transient::allocator {

std::size_t Allocator::bound_count() const {
    return static_cast<std::size_t>(
            std::count_if(ranges_.begin(), ranges_.end(), [](const auto& kv) {
                return is_bound(kv.second);
            }));
}

Outcome<std::vector<RangeEntry>> Allocator::reap_dead_bindings(std::optional<uid_t> owner) {
    auto concerned = [&](const RangeEntry& r) {
        return is_bound(r) && (!owner || r.owner == *owner);
    };
    if (!probe_ || std::none_of(ranges_.begin(), ranges_.end(),
                                [&](const auto& kv) { return concerned(kv.second); }))
        return std::vector<RangeEntry>{};
    last_sweep_ = std::chrono::steady_clock::now();
    if (!probe_->begin_sweep())
        return std::vector<RangeEntry>{};  // the probe cannot tell this time; keep everything
    return judge(*probe_, concerned);
}

std::vector<RangeEntry> Allocator::bound_ranges() const {
    std::vector<RangeEntry> out;
    for (const auto& [start, r] : ranges_)
        if (is_bound(r))
            out.push_back(r);
    return out;
}

Outcome<std::vector<RangeEntry>> Allocator::reap_swept(UsernsProbe& swept, bool usable,
                                                       const std::vector<RangeEntry>& before) {
    last_sweep_ = std::chrono::steady_clock::now();
    if (!usable)
        return std::vector<RangeEntry>{};
    // The same range, not a namesake allocated since: name, start and creation time match.
    // Found by start (unique in one table): a scan of `before` per range was quadratic, about
    // 10^8 comparisons on the event loop with 16,000 bound ranges.
    std::unordered_map<std::uint32_t, const RangeEntry*> by_start;
    by_start.reserve(before.size());
    for (const RangeEntry& b : before)
        by_start.emplace(b.start, &b);
    return judge(swept, [&](const RangeEntry& r) {
        const auto it = by_start.find(r.start);
        return it != by_start.end() && it->second->created_usec == r.created_usec &&
               it->second->name == r.name;
    });
}

Outcome<std::vector<RangeEntry>> Allocator::reap_if_due(std::optional<uid_t> owner) {
    // A probe that answers on the loop (file handles: one open_by_handle_at() per binding) is
    // asked every time, so a namespace that just died frees its range for this very request.
    if (!sweep_runner_)
        return reap_dead_bindings(owner);
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
        UsernsProbe& swept, const std::function<bool(const RangeEntry&)>& judged) {
    std::vector<RangeEntry> dead;
    std::vector<RangeEntry> next;
    next.reserve(ranges_.size());
    for (const auto& [start, r] : ranges_) {
        // Only a definite "gone" releases: kUnknown (a failed probe) keeps the range.
        if (is_bound(r) && judged(r) && swept.check(r) == Liveness::kDead)
            dead.push_back(r);
        else
            next.push_back(r);
    }
    if (dead.empty())
        return dead;
    if (auto r = publish(std::move(next)); !r)
        return std::unexpected(r.error());
    if (observer_)
        for (const RangeEntry& r : dead)
            observer_(r);
    return dead;
}

}  // namespace transient::allocator
