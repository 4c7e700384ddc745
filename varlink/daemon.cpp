// SPDX-License-Identifier: LGPL-2.1-or-later

#include "varlink/daemon.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>

#include <systemd/sd-daemon.h>

namespace transient::varlink {

Result<EventPtr> make_daemon_event_loop() {
    sd_event* raw = nullptr;
    if (int r = sd_event_default(&raw); r < 0)
        return errno_error(r);
    EventPtr event(raw);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &mask, nullptr) < 0)
        return errno_error(errno);
    for (int sig : {SIGTERM, SIGINT})
        // A null handler makes sd-event exit the loop on the signal.
        if (int r = sd_event_add_signal(event.get(), nullptr, sig, nullptr, nullptr); r < 0)
            return errno_error(r);
    return event;
}

void raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &rl);
    }
}

Result<bool> listen_activated_or_bind(Server& server, const std::string& path, mode_t mode) {
    const int n = sd_listen_fds(1);
    if (n < 0)
        return errno_error(n);
    if (n > 1)
        return errno_error(E2BIG);  // one socket per daemon; anything else is a unit mistake
    if (n == 1) {
        if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, nullptr, 0) <= 0)
            return errno_error(ENOTSOCK);
        if (auto r = server.listen_fd(shm::UniqueFd(SD_LISTEN_FDS_START)); !r)
            return std::unexpected(r.error());
        return true;
    }
    const auto slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
        const std::string dir = path.substr(0, slash);
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
            return errno_error(errno);
    }
    if (auto r = server.listen_path(path, mode); !r)
        return std::unexpected(r.error());
    return false;
}

int serve(sd_event* event, const std::string& status) {
    (void)sd_notify(0, ("READY=1\nSTATUS=" + status).c_str());
    const int r = sd_event_loop(event);
    (void)sd_notify(0, "STOPPING=1");
    return r;
}

}  // namespace transient::varlink
