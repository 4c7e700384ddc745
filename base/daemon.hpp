// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The skeleton both daemons (transient-allocd, transient-userdbd) share: option parsing with
// --help and --version, a last-resort catch, an sd-event loop that SIGTERM and SIGINT end, a
// descriptor limit that fits many clients, the listening socket from systemd or one bound by
// hand, and the READY=1 / STOPPING=1 protocol. What a daemon serves comes in through a Service,
// so this knows nothing of Varlink: the daemon hands the listening socket to its server.

#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <systemd/sd-event.h>

#include "base/result.hpp"
#include "base/sd_event.hpp"
#include "base/unique_fd.hpp"

namespace transient::base {

// What a daemon serves. DaemonSpec::setup makes it once the event loop exists; it is destroyed
// after the loop ended and after run_daemon() dropped its own reference to the loop, so a
// Service that keeps one (sd_event_ref()) decides where in its members the loop dies.
class Service {
public:
    virtual ~Service() = default;
    // Where to bind when systemd passed no socket.
    virtual std::string socket_path() const = 0;
    // Serves `listener`, a listening AF_UNIX stream socket. May log what it serves.
    virtual Result<void> listen(UniqueFd listener) = 0;
};

// A long option that takes an argument (--name VALUE), beyond --help and --version.
struct DaemonOption {
    const char* name;
    const char** value;  // receives VALUE; untouched if the option is not given
};

struct DaemonSpec {
    const char* name;     // "transient-allocd": --version output and usage errors
    const char* version;  // PROJECT_VERSION
    std::string help;     // the --help text
    std::vector<DaemonOption> options;
    mode_t socket_mode = 0666;
    std::string status;  // STATUS= sent with READY=1
    // Runs inside the last-resort catch with the event loop made. Logs why it failed and
    // returns null then.
    std::function<std::unique_ptr<Service>(sd_event* event)> setup;
};

// The daemon's main(): parses argv (exit status 2 for a usage error), then sets up, listens and
// runs the loop until SIGTERM/SIGINT. Returns the process's exit status; failures are logged.
int run_daemon(const DaemonSpec& spec, int argc, char** argv);

// The pieces of run_daemon(), for tests.
// The default event loop of the thread, ended by SIGTERM or SIGINT (blocked for the process, so
// that sd-event receives them through a signalfd).
Result<EventPtr> make_daemon_event_loop();
// Many clients may connect at once; the soft limit of 1024 descriptors is too low for that.
void raise_fd_limit();

}  // namespace transient::base
