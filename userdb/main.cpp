// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-userdbd: serves the range table as the userdb provider io.transient.Ranges, so
// that userdbctl, nss-systemd and every other userdb client see the same records as
// libnss_transient. It only reads the table (never asks the allocator), so it keeps answering
// while the allocator is down, and needs no privilege beyond reading the table.

#include <getopt.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shm/table_reader.hpp"
#include "userdb/records.hpp"
#include "userdb/service.hpp"
#include "varlink/daemon.hpp"
#include "varlink/varlink.hpp"

namespace {

using namespace transient;

void help() {
    std::printf("transient-userdbd [OPTIONS...]\n\n"
                "Serves transient UID/GID ranges as the userdb provider io.transient.Ranges.\n\n"
                "  -h --help       Show this help\n"
                "     --version    Show package version\n\n"
                "Environment:\n"
                "  TRANSIENT_RUNTIME_DIR  where the range table is (default "
                TRANSIENT_DEFAULT_RUNTIME_DIR ")\n"
                "  TRANSIENT_USERDB_DIR   where to bind the socket (default /run/systemd/userdb)\n");
}

int run() {
    const char* env_dir = std::getenv("TRANSIENT_USERDB_DIR");
    const std::string dir = env_dir != nullptr && env_dir[0] != '\0' ? env_dir
                                                                     : "/run/systemd/userdb";
    const std::string socket_path = dir + "/" + userdb::kServiceName;
    shm::TableReader table(shm::table_path());

    varlink::raise_fd_limit();
    auto event = varlink::make_daemon_event_loop();
    if (!event) {
        std::fprintf(stderr, SD_ERR "Failed to set up the event loop: %s\n",
                     event.error().message().c_str());
        return EXIT_FAILURE;
    }

    varlink::Server server(event->get(), {"transient", "transient-userdbd", PROJECT_VERSION,
                                         "https://github.com/transient-uids/transient"});
    server.add_interface(userdb::make_interface(table));

    if (auto r = varlink::listen_activated_or_bind(server, socket_path, 0666); !r) {
        std::fprintf(stderr, SD_ERR "Failed to listen on '%s': %s\n", socket_path.c_str(),
                     r.error().message().c_str());
        return EXIT_FAILURE;
    }
    if (auto v = table.view(); !v && v.error().value() != ENOENT)
        std::fprintf(stderr, SD_WARNING "Range table '%s' is not usable yet: %s\n",
                     table.path().c_str(), v.error().message().c_str());
    std::fprintf(stderr, SD_INFO "Serving %s from '%s'.\n", socket_path.c_str(),
                 table.path().c_str());
    if (const int r = varlink::serve(event->get(), "Serving io.systemd.UserDatabase"); r < 0) {
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
