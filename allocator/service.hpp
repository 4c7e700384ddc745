// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The Varlink interface io.transient.Allocator over an Allocator: parameter conversion, the
// mapping of allocation failures to the interface's errors, and the audit log.

#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <string>

#include "allocator/allocator.hpp"
#include "allocator/interface.hpp"
#include "varlink/varlink.hpp"

namespace transient::allocator {

// How long an allocation waits, deferred, for another allocator's lock: systemd's allocators
// hold theirs for milliseconds, lckpwdf() callers (useradd, passwd) for a moment.
inline constexpr std::chrono::milliseconds kBusyTimeout{5000};

// The IDL served by org.varlink.service.GetInterfaceDescription, printed from the declarations
// in interface.hpp.
std::string interface_description();

// REQUIRES: `allocator` (and `event`) outlive the returned interface's handlers. With an
// event loop, an allocation that finds another allocator's lock held is deferred and retried
// from a timer for up to `busy_timeout` before it answers TemporarilyUnavailable; the loop never
// waits for the lock. Without one, it answers TemporarilyUnavailable at once.
varlink::Interface make_interface(Allocator& allocator, sd_event* event = nullptr,
                                  std::chrono::milliseconds busy_timeout = kBusyTimeout);

// A Range as the interface describes it; `details` adds the owner-only fields (policy.hpp).
varlink::json range_to_json(const RangeEntry& r, bool details);

// The parameters of a ListRanges reply, {"range": range_to_json(r, details)}, serialized: byte
// for byte what dump() makes of that object, without building it (a full pool lists 28,000
// ranges, and the JSON trees cost the daemon more than everything else in the listing).
std::string range_reply(const RangeEntry& r, bool details);

// The audit record of a range released because its user namespace is gone: hand it to
// Allocator::set_release_observer().
void log_automatic_release(const RangeEntry& r);

}  // namespace transient::allocator
