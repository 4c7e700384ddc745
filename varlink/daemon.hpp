// SPDX-License-Identifier: LGPL-2.1-or-later
//
// What the two daemons (transient-allocd, transient-userdbd) share around their Varlink server:
// an sd-event loop that SIGTERM and SIGINT end, a descriptor limit that fits many clients, the
// listening socket from systemd or one bound by hand, and the READY=1 / STOPPING=1 protocol.
// Like the rest of the library it does not log: it returns errors for main() to report.

#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include <systemd/sd-event.h>

#include "shm/result.hpp"
#include "varlink/varlink.hpp"

namespace transient::varlink {

struct EventUnref {
    void operator()(sd_event* e) const { sd_event_unref(e); }
};
using EventPtr = std::unique_ptr<sd_event, EventUnref>;

// The default event loop of the thread, ended by SIGTERM or SIGINT (blocked for the process, so
// that sd-event receives them through a signalfd).
Result<EventPtr> make_daemon_event_loop();

// Many clients may connect at once; the soft limit of 1024 descriptors is too low for that.
void raise_fd_limit();

// Serves the one socket systemd passed (socket activation); without one, creates the parent
// directory of `path` (mode 0755) if it is missing and binds `path` with `mode`.
// Returns whether the socket came from systemd.
Result<bool> listen_activated_or_bind(Server& server, const std::string& path, mode_t mode);

// Tells systemd we are ready (with `status`), runs the loop until a signal ends it, and says
// we are stopping. Returns sd_event_loop()'s result.
int serve(sd_event* event, const std::string& status);

}  // namespace transient::varlink
