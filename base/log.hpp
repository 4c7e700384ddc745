// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The daemons' one way to log: a line on stderr with an sd-daemon(3) "<N>" priority prefix,
// which journald turns into the entry's priority when the unit sends stderr to the journal.
// The daemons' main code, and the Varlink server's default log handler, write through here.
// Libraries (shm/, the allocator core) return errors instead; the NSS module never logs.

#pragma once

#include <string_view>

namespace transient::base {

// `priority` is a syslog level (LOG_ERR ... LOG_DEBUG). Writes "<priority>message\n".
void log(int priority, std::string_view message) noexcept;

// log() with a printf format; messages longer than 4 KiB are cut.
__attribute__((format(printf, 2, 3))) void log_printf(int priority, const char* format,
                                                      ...) noexcept;

}  // namespace transient::base
