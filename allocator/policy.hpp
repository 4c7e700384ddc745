// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Who may do what, as pure functions the Allocator and the Varlink layer share.
//
// Name scopes. A name of the form "u<UID>-<rest>" (UID in canonical decimal) lies in the scope
// of that UID; any other name lies in root's scope. Names given by root are taken as they are.
// A name given by any other caller is put into the caller's scope: "web" from UID 1000 means
// "u1000-web", and "u1000-web" from UID 1000 means itself. A name in another UID's scope is
// refused (PermissionDenied) when a non-root caller would create or release it. Because the
// digits end at the first '-', no UID's prefix is a prefix of another's ("u1000-" vs
// "u10001-"), so no caller can create a name another non-root caller could ever ask for.
// This follows systemd-nsresourced, which prefixes unprivileged callers' names with their UID.
//
// Visibility. The range table is world-readable, so every caller may list and look up every
// range (name, start, size, owner, creation time). The binding to a user namespace (its id and
// inode, which identify another user's process tree) is shown only to the range's owner and root.

#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "shm/writer.hpp"

namespace transient::allocator {

// The UID whose scope `name` lies in, or nothing for root's scope.
std::optional<uid_t> name_scope(std::string_view name);

// The name `caller` means by `name` (see above). The result may be invalid (too long): callers
// validate it.
std::string scoped_name(std::string_view name, uid_t caller);

// Whether `caller` may create or release a range of this (already scoped) name.
bool may_use_name(std::string_view scoped, uid_t caller);

// Whether `caller` may see the owner-only details of `r`.
bool may_see_details(const shm::RangeEntry& r, uid_t caller);

}  // namespace transient::allocator
