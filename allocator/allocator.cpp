// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/allocator.hpp"

#include <time.h>

#include <algorithm>
#include <string>

#include "shm/reader.hpp"

namespace transient::allocator {
namespace {

std::uint64_t now_usec() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000U +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000U;
}

std::unexpected<Failure> fail(ErrorKind kind, std::string message) {
    return std::unexpected(Failure{kind, std::move(message)});
}

}  // namespace

bool is_valid_range_name(std::string_view name) {
    return shm::is_valid_range_name(name.data(), name.size());
}

Allocator::Allocator(shm::TableWriter writer, std::unique_ptr<CollisionChecker> checker,
                     Pools pools)
    : writer_(std::move(writer)),
      checker_(std::move(checker)),
      pools_(pools),
      ranges_(writer_.recovery().ranges) {}

bool Allocator::candidate_free(std::uint32_t start, std::uint32_t size) {
    return !checker_->range_taken(start, size).has_value();
}

std::optional<std::uint32_t> Allocator::pick_container_base() {
    // First fit over the gaps between our own ranges (sorted by start), asking the other
    // sources of truth only about candidates we do not already hold.
    const std::uint64_t first = shm::round_up(pools_.container_first, shm::kContainerRangeSize);
    const std::uint64_t last = pools_.container_last;  // inclusive
    auto it = ranges_.begin();
    for (std::uint64_t base = first; base + shm::kContainerRangeSize - 1 <= last;
         base += shm::kContainerRangeSize) {
        while (it != ranges_.end() && it->end() <= base)
            ++it;
        if (it != ranges_.end() && it->start < base + shm::kContainerRangeSize) {
            // Occupied by one of ours: skip to the first aligned base past it.
            base = shm::round_up(it->end(), shm::kContainerRangeSize) - shm::kContainerRangeSize;
            continue;
        }
        if (candidate_free(static_cast<std::uint32_t>(base), shm::kContainerRangeSize))
            return static_cast<std::uint32_t>(base);
    }
    return std::nullopt;
}

std::optional<std::uint32_t> Allocator::pick_dynamic_id() {
    auto it = ranges_.begin();
    for (std::uint64_t id = pools_.dynamic_first; id <= pools_.dynamic_last; id++) {
        while (it != ranges_.end() && it->end() <= id)
            ++it;
        if (it != ranges_.end() && it->start <= id)
            continue;
        if (!shm::is_valid_range_shape(static_cast<std::uint32_t>(id), 1))
            continue;
        if (candidate_free(static_cast<std::uint32_t>(id), 1))
            return static_cast<std::uint32_t>(id);
    }
    return std::nullopt;
}

Outcome<void> Allocator::publish(std::vector<RangeEntry> next) {
    if (auto r = writer_.publish(next); !r)
        return fail(ErrorKind::kInternal,
                    "Failed to publish the range table: " + r.error().message());
    ranges_ = std::move(next);
    return {};
}

Outcome<RangeEntry> Allocator::allocate(std::string_view name, std::int64_t size, uid_t caller) {
    if (caller != 0)
        return fail(ErrorKind::kPermissionDenied, "Only root may allocate ranges");
    if (!is_valid_range_name(name))
        return fail(ErrorKind::kInvalidName,
                    "'" + std::string(name) +
                            "' is not a valid range name: [A-Za-z_][A-Za-z0-9_-]*, at most " +
                            std::to_string(shm::kMaxRangeNameLength) + " bytes");
    if (size != 1 && size != shm::kContainerRangeSize)
        return fail(ErrorKind::kInvalidSize,
                    "Invalid range size " + std::to_string(size) + ": must be 1 or 65536");
    if (std::any_of(ranges_.begin(), ranges_.end(),
                    [&](const RangeEntry& r) { return r.name == name; }))
        return fail(ErrorKind::kNameInUse, "Range '" + std::string(name) + "' already exists");
    if (auto why = checker_->name_taken(name))
        return fail(ErrorKind::kNameInUse, "Range name '" + std::string(name) + "' is taken: " + *why);
    if (ranges_.size() >= writer_.capacity())
        return fail(ErrorKind::kPoolExhausted, "The range table is full");

    const auto start = size == 1 ? pick_dynamic_id() : pick_container_base();
    if (!start)
        return fail(ErrorKind::kPoolExhausted,
                    "No free range of size " + std::to_string(size) + " is left in the pool");

    RangeEntry entry{std::string(name), *start, static_cast<std::uint32_t>(size),
                     static_cast<std::uint32_t>(caller), 0, now_usec(), 0, 0};
    std::vector<RangeEntry> next = ranges_;
    next.insert(std::upper_bound(next.begin(), next.end(), entry,
                                 [](const RangeEntry& a, const RangeEntry& b) {
                                     return a.start < b.start;
                                 }),
                entry);
    if (auto r = publish(std::move(next)); !r)
        return std::unexpected(r.error());
    return entry;
}

Outcome<void> Allocator::release(std::string_view name, uid_t caller) {
    auto it = std::find_if(ranges_.begin(), ranges_.end(),
                           [&](const RangeEntry& r) { return r.name == name; });
    if (it == ranges_.end())
        return fail(ErrorKind::kNoSuchRange, "No range named '" + std::string(name) + "'");
    if (caller != 0 && caller != it->owner)
        return fail(ErrorKind::kPermissionDenied,
                    "Range '" + std::string(name) + "' belongs to UID " + std::to_string(it->owner));
    std::vector<RangeEntry> next = ranges_;
    next.erase(next.begin() + (it - ranges_.begin()));
    return publish(std::move(next));
}

Outcome<RangeEntry> Allocator::find(const std::optional<std::string>& name,
                                    const std::optional<std::int64_t>& id) const {
    const RangeEntry* by_name = nullptr;
    const RangeEntry* by_id = nullptr;
    if (name) {
        auto it = std::find_if(ranges_.begin(), ranges_.end(),
                               [&](const RangeEntry& r) { return r.name == *name; });
        if (it == ranges_.end())
            return fail(ErrorKind::kNoSuchRange, "No range named '" + *name + "'");
        by_name = &*it;
    }
    if (id) {
        auto it = std::upper_bound(ranges_.begin(), ranges_.end(), *id,
                                   [](std::int64_t v, const RangeEntry& r) { return v < r.start; });
        if (it == ranges_.begin() || *id >= static_cast<std::int64_t>(std::prev(it)->end()))
            return fail(ErrorKind::kNoSuchRange, "No range contains UID " + std::to_string(*id));
        by_id = &*std::prev(it);
    }
    if (by_name && by_id && by_name != by_id)
        return fail(ErrorKind::kNoSuchRange,
                    "Range '" + *name + "' does not contain UID " + std::to_string(*id));
    if (!by_name && !by_id)
        return fail(ErrorKind::kNoSuchRange, "Neither a name nor a UID was given");
    return by_name ? *by_name : *by_id;
}

}  // namespace transient::allocator
