// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The Varlink interface io.transient.Allocator over an Allocator: parameter conversion, the
// mapping of allocation failures to the interface's errors, and the audit log.

#pragma once

#include "allocator/allocator.hpp"
#include "varlink/varlink.hpp"

namespace transient::allocator {

inline constexpr char kInterfaceName[] = "io.transient.Allocator";

// The interface description served by org.varlink.service.GetInterfaceDescription.
extern const char kInterfaceDescription[];

// REQUIRES: `allocator` outlives the returned interface's handlers.
varlink::Interface make_interface(Allocator& allocator);

// The error name of a failure, e.g. "io.transient.Allocator.NameInUse".
std::string error_name(ErrorKind kind);

// A Range as the interface describes it; `details` adds the owner-only fields (policy.hpp).
varlink::json range_to_json(const RangeEntry& r, bool details);

// The audit record of a range released because its user namespace is gone: hand it to
// Allocator::set_release_observer().
void log_automatic_release(const RangeEntry& r);

}  // namespace transient::allocator
