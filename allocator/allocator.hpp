// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The allocation policy of transient-allocd: which range a request gets, who may do what, and
// the in-memory view of the live ranges that is published, whole, through the table writer
// after every change. Pure logic over two seams — the TableWriter and a CollisionChecker — so
// that tests can drive it without sockets or NSS.

#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/layout.hpp"
#include "shm/writer.hpp"

namespace transient::allocator {

using shm::RangeEntry;

enum class ErrorKind {
    kNameInUse,
    kNoSuchRange,
    kInvalidName,
    kInvalidSize,
    kPoolExhausted,
    kPermissionDenied,
    kQuotaExceeded,
    kInternal,
};

struct Failure {
    ErrorKind kind;
    std::string message;  // for logs and for the human reading transientctl's output
};

template <typename T>
using Outcome = std::expected<T, Failure>;

// The other sources of truth about UIDs and GIDs: NSS and userdb (with our own module
// bypassed), /etc/subuid and /etc/subgid. The allocator consults it before taking a range.
class CollisionChecker {
public:
    virtual ~CollisionChecker() = default;
    // Whether some other source claims any ID of [start, start + size) that it must not.
    // Returns a short reason ("UID 524288 has a passwd entry") or nothing.
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

class Allocator {
public:
    Allocator(shm::TableWriter writer, std::unique_ptr<CollisionChecker> checker,
              Pools pools = {});

    // Takes a free range of `size` IDs (1 or 65536) for `owner` and publishes it before
    // returning: once this returns a range, every reader sees it.
    Outcome<RangeEntry> allocate(std::string_view name, std::int64_t size, uid_t caller);
    Outcome<void> release(std::string_view name, uid_t caller);
    // The range called `name`, or containing `id`; both given must name the same range.
    Outcome<RangeEntry> find(const std::optional<std::string>& name,
                             const std::optional<std::int64_t>& id) const;

    const std::vector<RangeEntry>& ranges() const { return ranges_; }  // sorted by start
    const shm::TableWriter& writer() const { return writer_; }

private:
    std::optional<std::uint32_t> pick_container_base();
    std::optional<std::uint32_t> pick_dynamic_id();
    bool candidate_free(std::uint32_t start, std::uint32_t size);
    Outcome<void> publish(std::vector<RangeEntry> next);

    shm::TableWriter writer_;
    std::unique_ptr<CollisionChecker> checker_;
    Pools pools_;
    std::vector<RangeEntry> ranges_;
};

bool is_valid_range_name(std::string_view name);

}  // namespace transient::allocator
