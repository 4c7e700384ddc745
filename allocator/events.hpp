// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The allocator's audit trail: one journal entry per allocation, release, import, namespace
// death and refused request, each with a MESSAGE_ID= of its kind and TRANSIENT_* fields, so that
// `journalctl TRANSIENT_RANGE=web` answers "what happened to web" and `journalctl MESSAGE_ID=...`
// "what was refused". Not under journald, the same events are plain stderr lines (base/log.hpp).
// The message ids are fixed (journalctl and log monitors match on them) and listed in README.md.
//
// Fields: TRANSIENT_RANGE= (the range's name, for a refusal the name as the caller's scope
// makes it), TRANSIENT_START=, TRANSIENT_SIZE=, TRANSIENT_OWNER_UID=, TRANSIENT_CALLER_UID= (the
// UID that called, where one did), TRANSIENT_REASON= (why, where it was not the caller's
// request: a refusal's error name, "userns-gone", "subid-file"), TRANSIENT_USERNS_INODE= (bound
// ranges only).

#pragma once

#include <sys/types.h>

#include <optional>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "shm/writer.hpp"

namespace transient::allocator::events {

// MESSAGE_ID= of each kind of event (128 bits, lower-case hex, as journalctl shows them).
inline constexpr char kAllocated[] = "5d3a0b2f8e6c4f1a9b7d2e4c6a8f0b13";
inline constexpr char kReleased[] = "a41c7e9d03b24f6f8e5a1d2c3b4e5f60";
inline constexpr char kUsernsGone[] = "a93c531502174141a93e4122b3c23127";
inline constexpr char kImported[] = "878285c599c64639b794512f00cc4096";
inline constexpr char kImportRemoved[] = "7e28960912924cb6a3640e99dc8cbbd8";
inline constexpr char kRefused[] = "400ac437309d4f26acd5139d66b1683c";

// The TRANSIENT_* fields of an event about `r`, in the order above; `caller` and `reason` only
// where given.
std::vector<base::LogField> range_fields(const shm::RangeEntry& r, std::optional<uid_t> caller,
                                         std::string_view reason = {});

void allocated(const shm::RangeEntry& r, uid_t caller);
void released(const shm::RangeEntry& r, uid_t caller);
// Released without a call: the user namespace it was bound to is gone.
void userns_gone(const shm::RangeEntry& r);
// An /etc/subuid or /etc/subgid range appeared in the table, or left it with its line.
void imported(const shm::RangeEntry& r);
void import_removed(const shm::RangeEntry& r);

// A request refused with `error` (the interface's error name). `name` is the range asked for
// (scoped), `size` the size asked for (0: none). Rate-limited: a burst per window
// (base::LogRateLimit), then one line saying how many were held back, because callers decide
// how often this happens. Call from the event loop's thread only.
void refused(std::string_view method, std::string_view name, std::int64_t size, uid_t caller,
             std::string_view error, std::string_view message);

}  // namespace transient::allocator::events
