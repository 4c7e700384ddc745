// SPDX-License-Identifier: LGPL-2.1-or-later

#include "base/daemon.hpp"

#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <syslog.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <systemd/sd-daemon.h>

#include "base/log.hpp"
#include "base/socket.hpp"

namespace transient::base {
namespace {

constexpr int kExitUsage = 2;

// Parses argv into spec's options. Returns an exit status if the process is done (--help,
// --version, a usage error), -1 if it goes on.
int parse_options(const DaemonSpec& spec, int argc, char** argv) {
    constexpr int kHelp = 'h', kVersion = 0x100, kFirstOwn = 0x101;
    std::vector<option> options{{"help", no_argument, nullptr, kHelp},
                                {"version", no_argument, nullptr, kVersion}};
    for (std::size_t i = 0; i < spec.options.size(); i++)
        options.push_back({spec.options[i].name, required_argument, nullptr,
                           kFirstOwn + static_cast<int>(i)});
    options.push_back({});
    for (int c; (c = getopt_long(argc, argv, "h", options.data(), nullptr)) >= 0;) {
        if (c == kHelp) {
            std::fputs(spec.help.c_str(), stdout);
            return EXIT_SUCCESS;
        }
        if (c == kVersion) {
            std::printf("%s %s\n", spec.name, spec.version);
            return EXIT_SUCCESS;
        }
        if (c < kFirstOwn) {  // getopt_long() already said what was wrong
            std::fprintf(stderr, "Try '%s --help' for more information.\n", spec.name);
            return kExitUsage;
        }
        *spec.options[static_cast<std::size_t>(c - kFirstOwn)].value = optarg;
    }
    if (optind < argc) {
        std::fprintf(stderr, "%s takes no arguments, got '%s'.\n"
                             "Try '%s --help' for more information.\n",
                     spec.name, argv[optind], spec.name);
        return kExitUsage;
    }
    return -1;
}

int serve(const DaemonSpec& spec) {
    raise_fd_limit();
    auto event = make_daemon_event_loop();
    if (!event) {
        log_printf(LOG_ERR, "Failed to set up the event loop: %s",
                   event.error().message().c_str());
        return EXIT_FAILURE;
    }
    std::unique_ptr<Service> service = spec.setup(event->get());
    if (!service)
        return EXIT_FAILURE;
    const std::string path = service->socket_path();
    auto listener = listen_activated_or_bind(path, spec.socket_mode);
    Result<void> listening = listener ? service->listen(std::move(*listener))
                                      : std::unexpected(listener.error());
    if (!listening) {
        log_printf(LOG_ERR, "Failed to listen on '%s': %s", path.c_str(),
                   listening.error().message().c_str());
        return EXIT_FAILURE;
    }
    (void)sd_notify(0, ("READY=1\nSTATUS=" + spec.status).c_str());
    const int r = sd_event_loop(event->get());
    (void)sd_notify(0, "STOPPING=1");
    // The service goes with the last reference to the loop it holds, if any (see Service).
    event->reset();
    service.reset();
    if (r < 0) {
        log_printf(LOG_ERR, "Event loop failed: %s", errno_string(r).c_str());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

}  // namespace

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

int run_daemon(const DaemonSpec& spec, int argc, char** argv) {
    try {
        if (const int status = parse_options(spec, argc, argv); status >= 0)
            return status;
        return serve(spec);
    } catch (const std::exception& e) {
        log_printf(LOG_CRIT, "Unexpected failure: %s", e.what());
        return EXIT_FAILURE;
    }
}

}  // namespace transient::base
