// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Lifetimes of ranges bound to a user namespace: the sweep that releases them once the
// namespace is gone. It runs from the daemon's timer, once at start-up (the allocator may have
// been down while namespaces died), and whenever an allocation runs short of room or quota.
// Nothing here depends on a single event being seen: every sweep asks about every binding.

#include <algorithm>

#include "allocator/allocator.hpp"

namespace transient::allocator {

std::size_t Allocator::bound_count() const {
    return static_cast<std::size_t>(
            std::count_if(ranges_.begin(), ranges_.end(), [](const RangeEntry& r) {
                return is_bound(r);
            }));
}

Outcome<std::vector<RangeEntry>> Allocator::reap_dead_bindings(std::optional<uid_t> owner) {
    std::vector<RangeEntry> dead;
    auto concerned = [&](const RangeEntry& r) {
        return is_bound(r) && (!owner || r.owner == *owner);
    };
    if (!probe_ || std::none_of(ranges_.begin(), ranges_.end(), concerned))
        return dead;
    if (!probe_->begin_sweep())
        return dead;  // the probe cannot tell this time; keep everything
    std::vector<RangeEntry> next;
    next.reserve(ranges_.size());
    for (const RangeEntry& r : ranges_) {
        // Only a definite "gone" releases: kUnknown (a failed probe) keeps the range.
        if (concerned(r) && probe_->check(r) == Liveness::kDead)
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
