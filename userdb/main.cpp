// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-userdbd: serves the range table as the userdb provider io.transient.Ranges, so
// that userdbctl, nss-systemd and every other userdb client see the same records as
// libnss_transient. It only reads the table (never asks the allocator), so it keeps answering
// while the allocator is down, and needs no privilege beyond reading the table.

#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "shm/table_reader.hpp"
#include "userdb/records.hpp"
#include "userdb/service.hpp"
#include "varlink/varlink.hpp"

namespace {

using namespace transient;

struct EventUnref {
    void operator()(sd_event* e) const { sd_event_unref(e); }
};

void help() {
    std::printf("transient-userdbd [OPTIONS...]\n\n"
                "Serves transient UID/GID ranges as the userdb provider io.transient.Ranges.\n\n"
                "  -h --help       Show this help\n"
                "     --version    Show package version\n\n"
                "Environment:\n"
                "  TRANSIENT_RUNTIME_DIR  where the range table is (default /run/transient)\n"
                "  TRANSIENT_USERDB_DIR   where to bind the socket (default /run/systemd/userdb)\n");
}

int run() {
    const char* env_dir = std::getenv("TRANSIENT_USERDB_DIR");
    const std::string dir = env_dir != nullptr && env_dir[0] != '\0' ? env_dir
                                                                     : "/run/systemd/userdb";
    const std::string socket_path = dir + "/" + userdb::kServiceName;
    shm::TableReader table(shm::table_path());

    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &rl);
    }

    sd_event* raw = nullptr;
    if (int r = sd_event_default(&raw); r < 0) {
        std::fprintf(stderr, SD_ERR "Failed to allocate event loop: %s\n", std::strerror(-r));
        return EXIT_FAILURE;
    }
    std::unique_ptr<sd_event, EventUnref> event(raw);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    sd_event_add_signal(event.get(), nullptr, SIGTERM, nullptr, nullptr);
    sd_event_add_signal(event.get(), nullptr, SIGINT, nullptr, nullptr);

    varlink::Server server(event.get(), {"transient", "transient-userdbd", PROJECT_VERSION,
                                         "https://github.com/transient-uids/transient"});
    server.add_interface(userdb::make_interface(table));

    const int n = sd_listen_fds(1);
    Result<void> listening;
    if (n > 1) {
        std::fprintf(stderr, SD_ERR "Expected at most one socket from systemd, got %d.\n", n);
        return EXIT_FAILURE;
    } else if (n == 1) {
        listening = server.listen_fd(shm::UniqueFd(SD_LISTEN_FDS_START));
    } else {
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) {
            std::fprintf(stderr, SD_ERR "Failed to create '%s': %s\n", dir.c_str(),
                         std::strerror(errno));
            return EXIT_FAILURE;
        }
        listening = server.listen_path(socket_path, 0666);
    }
    if (!listening) {
        std::fprintf(stderr, SD_ERR "Failed to listen on '%s': %s\n", socket_path.c_str(),
                     listening.error().message().c_str());
        return EXIT_FAILURE;
    }
    if (auto v = table.view(); !v && v.error().value() != ENOENT)
        std::fprintf(stderr, SD_WARNING "Range table '%s' is not usable yet: %s\n",
                     table.path().c_str(), v.error().message().c_str());
    std::fprintf(stderr, SD_INFO "Serving %s from '%s'.\n", socket_path.c_str(),
                 table.path().c_str());
    (void)sd_notify(0, "READY=1\nSTATUS=Serving io.systemd.UserDatabase");

    const int r = sd_event_loop(event.get());
    (void)sd_notify(0, "STOPPING=1");
    if (r < 0) {
        std::fprintf(stderr, SD_ERR "Event loop failed: %s\n", std::strerror(-r));
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
    static const option options[] = {
            {"help", no_argument, nullptr, 'h'},
            {"version", no_argument, nullptr, 'V'},
            {},
    };
    for (int c; (c = getopt_long(argc, argv, "h", options, nullptr)) >= 0;) {
        switch (c) {
        case 'h':
            help();
            return EXIT_SUCCESS;
        case 'V':
            std::printf("transient-userdbd %s\n", PROJECT_VERSION);
            return EXIT_SUCCESS;
        default:
            return 2;
        }
    }
    if (optind < argc) {
        std::fprintf(stderr, "transient-userdbd takes no arguments.\n");
        return 2;
    }
    try {
        return run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, SD_CRIT "Unexpected failure: %s\n", e.what());
        return EXIT_FAILURE;
    }
}
