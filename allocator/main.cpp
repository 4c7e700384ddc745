// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-allocd: the allocator daemon. Reads its configuration, opens (or recovers) the
// range table, releases ranges whose user namespaces died while it was down, serves
// io.transient.Allocator on the socket systemd passes it or on one it binds itself, checks the
// remaining bindings on a timer, and runs until SIGTERM/SIGINT. Logs to stderr with sd-daemon
// priority prefixes.

#include <getopt.h>
#include <sys/stat.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "allocator/allocator.hpp"
#include "allocator/collision.hpp"
#include "allocator/config.hpp"
#include "allocator/service.hpp"
#include "shm/table_reader.hpp"
#include "varlink/daemon.hpp"
#include "varlink/varlink.hpp"

namespace {

using namespace transient;

void help() {
    std::printf("transient-allocd [OPTIONS...]\n\n"
                "Hands out transient UID/GID ranges over Varlink (io.transient.Allocator) and\n"
                "publishes them in the range table read by libnss_transient and transient-userdbd.\n\n"
                "  -h --help          Show this help\n"
                "     --version       Show package version\n"
                "     --config PATH   Read the configuration from PATH (default %s;\n"
                "                     a missing default file means built-in defaults)\n\n"
                "Environment:\n"
                "  TRANSIENT_RUNTIME_DIR  runtime directory (default "
                TRANSIENT_DEFAULT_RUNTIME_DIR ")\n"
                "  TRANSIENT_CONFIG       configuration file, if --config is not given\n",
                allocator::kDefaultConfigPath);
}

// Checks the bindings to user namespaces on every tick of a monotonic timer.
struct Sweeper {
    allocator::Allocator* allocator = nullptr;
    std::uint64_t interval_usec = 0;
    std::string problem;  // the probe's last complaint, logged when it changes
};

// A probe that cannot see everything keeps ranges it cannot judge; say so, once.
void report_probe_problem(Sweeper& sw) {
    const std::string problem = sw.allocator->probe()->problem();
    if (problem == sw.problem)
        return;
    if (!problem.empty())
        std::fprintf(stderr, SD_WARNING "User namespace check incomplete (%s; the %s probe "
                                        "needs %s); ranges whose namespace was not seen are "
                                        "kept.\n", problem.c_str(), sw.allocator->probe()->name(),
                     std::string_view(sw.allocator->probe()->name()) == "scan"
                             ? "CAP_SYS_PTRACE"
                             : "CAP_SYS_ADMIN");
    else
        std::fprintf(stderr, SD_INFO "User namespace check complete again.\n");
    sw.problem = problem;
}

int on_sweep_timer(sd_event_source* source, uint64_t now, void* userdata) noexcept {
    auto* sw = static_cast<Sweeper*>(userdata);
    try {
        if (auto r = sw->allocator->reap_dead_bindings(); !r)
            std::fprintf(stderr, SD_ERR "%s, ignoring.\n", r.error().message.c_str());
        report_probe_problem(*sw);
    } catch (const std::exception& e) {
        std::fprintf(stderr, SD_ERR "Failed to check user namespace bindings: %s\n", e.what());
    }
    // Re-armed from now, not from the due time: a slow sweep does not make the next one early.
    (void)sd_event_source_set_time(source, now + sw->interval_usec);
    return sd_event_source_set_enabled(source, SD_EVENT_ON);
}

constexpr char kNeedsForHandles[] =
        " (needs CAP_SYS_ADMIN, and open_by_handle_at() allowed by any seccomp filter)";

std::unique_ptr<allocator::UsernsProbe> make_probe(allocator::ProbeMode mode) {
    if (mode == allocator::ProbeMode::kAuto)
        if (auto fh = allocator::FileHandleProbe::create(); !fh)
            std::fprintf(stderr, SD_INFO "Not checking user namespaces by file handles: %s%s.\n",
                         fh.error().message().c_str(),
                         fh.error().value() == EPERM ? kNeedsForHandles : "");
    auto probe = allocator::make_userns_probe(mode);
    if (!probe) {
        std::fprintf(stderr, SD_ERR "UserNamespaceProbe=%s is not available: %s%s\n",
                     allocator::probe_mode_name(mode), probe.error().message().c_str(),
                     probe.error().value() == EPERM ? kNeedsForHandles : "");
        return nullptr;
    }
    std::fprintf(stderr, SD_INFO "Checking user namespace bindings by %s.\n", (*probe)->name());
    return std::move(*probe);
}

// Creates the runtime dir and opens (or recovers) the table in it, saying what it found.
std::optional<shm::TableWriter> open_table(const std::string& dir) {
    const std::string table = dir + "/" + shm::kTableFileName;
    if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) {
        std::fprintf(stderr, SD_ERR "Failed to create runtime directory '%s': %s\n", dir.c_str(),
                     std::strerror(errno));
        return std::nullopt;
    }
    auto writer = shm::TableWriter::open(table);
    if (!writer) {
        std::fprintf(stderr, SD_ERR "Failed to open range table '%s': %s\n", table.c_str(),
                     writer.error().message().c_str());
        return std::nullopt;
    }
    const shm::Recovery& rec = writer->recovery();
    if (rec.replaced)
        std::fprintf(stderr, SD_WARNING "Range table '%s' was unusable; replaced it with an "
                                        "empty one.\n", table.c_str());
    if (rec.migrated)
        std::fprintf(stderr, SD_NOTICE "Migrated range table '%s' to format version %u.\n",
                     table.c_str(), shm::kVersion);
    if (rec.dropped > 0)
        std::fprintf(stderr, SD_WARNING "Dropped %zu invalid or conflicting entries from '%s'.\n",
                     rec.dropped, table.c_str());
    std::fprintf(stderr, SD_INFO "%s range table '%s' with %zu ranges (capacity %u).\n",
                 rec.created ? "Created" : "Opened", table.c_str(), rec.ranges.size(),
                 writer->capacity());
    return std::move(*writer);
}

// The user namespace sweep runs on a timer.
bool add_sweep_timer(sd_event* event, Sweeper& sweeper) {
    uint64_t now = 0;
    sd_event_now(event, CLOCK_MONOTONIC, &now);
    if (int r = sd_event_add_time(event, nullptr, CLOCK_MONOTONIC, now + sweeper.interval_usec, 0,
                                  on_sweep_timer, &sweeper);
        r < 0) {
        std::fprintf(stderr, SD_ERR "Failed to add the user namespace timer: %s\n",
                     std::strerror(-r));
        return false;
    }
    return true;
}

int run(const allocator::Config& config) {
    const std::string dir = shm::runtime_dir();
    const std::string socket_path = dir + "/io.transient.Allocator";

    allocator::bypass_own_sources();
    varlink::raise_fd_limit();
    auto writer = open_table(dir);
    if (!writer)
        return EXIT_FAILURE;
    auto probe = make_probe(config.probe);
    if (!probe)
        return EXIT_FAILURE;
    allocator::Allocator alloc(std::move(*writer),
                               std::make_unique<allocator::SystemCollisionChecker>(),
                               config.policy, std::move(probe));
    alloc.set_release_observer(allocator::log_automatic_release);
    // Namespaces may have died while we were not running.
    if (auto r = alloc.reap_dead_bindings(); !r)
        std::fprintf(stderr, SD_ERR "%s, ignoring.\n", r.error().message.c_str());

    auto event = varlink::make_daemon_event_loop();
    if (!event) {
        std::fprintf(stderr, SD_ERR "Failed to set up the event loop: %s\n",
                     event.error().message().c_str());
        return EXIT_FAILURE;
    }
    Sweeper sweeper{&alloc,
                    static_cast<std::uint64_t>(config.userns_check_interval.count()) * 1000,
                    {}};
    report_probe_problem(sweeper);
    if (!add_sweep_timer(event->get(), sweeper))
        return EXIT_FAILURE;

    varlink::Server server(event->get(), {"transient", "transient-allocd", PROJECT_VERSION,
                                         "https://github.com/transient-uids/transient"});
    server.add_interface(allocator::make_interface(alloc));
    if (auto r = varlink::listen_activated_or_bind(server, socket_path, 0666); !r) {
        std::fprintf(stderr, SD_ERR "Failed to listen on '%s': %s\n", socket_path.c_str(),
                     r.error().message().c_str());
        return EXIT_FAILURE;
    }
    std::fprintf(stderr, SD_INFO "Listening on %s.\n", socket_path.c_str());
    if (const int r = varlink::serve(event->get(), "Serving io.transient.Allocator"); r < 0) {
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
            {"config", required_argument, nullptr, 'c'},
            {},
    };
    const char* config_path = nullptr;
    for (int c; (c = getopt_long(argc, argv, "h", options, nullptr)) >= 0;) {
        switch (c) {
        case 'h':
            help();
            return EXIT_SUCCESS;
        case 'V':
            std::printf("transient-allocd %s\n", PROJECT_VERSION);
            return EXIT_SUCCESS;
        case 'c':
            config_path = optarg;
            break;
        default:
            return 2;
        }
    }
    if (optind < argc) {
        std::fprintf(stderr, "transient-allocd takes no arguments.\n");
        return 2;
    }
    try {
        // A file the administrator named must exist; the default one may be absent.
        if (config_path == nullptr)
            if (const char* env = std::getenv("TRANSIENT_CONFIG"); env != nullptr && *env != '\0')
                config_path = env;
        const bool named = config_path != nullptr;
        auto config = allocator::load_config(named ? config_path : allocator::kDefaultConfigPath,
                                             named);
        if (!config) {
            std::fprintf(stderr, SD_ERR "%s\n", config.error().message.c_str());
            std::fprintf(stderr, SD_ERR "Refusing to start with a bad configuration.\n");
            return EXIT_FAILURE;
        }
        return run(*config);
    } catch (const std::exception& e) {
        std::fprintf(stderr, SD_CRIT "Unexpected failure: %s\n", e.what());
        return EXIT_FAILURE;
    }
}
