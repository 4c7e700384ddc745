// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-allocd: the allocator daemon. Reads its configuration, opens (or recovers) the
// range table, releases ranges whose user namespaces died while it was down, serves
// io.transient.Allocator on the socket systemd passes it or on one it binds itself, checks the
// remaining bindings on a timer, and runs until SIGTERM/SIGINT. Logs to stderr with sd-daemon
// priority prefixes.

#include <getopt.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "allocator/allocator.hpp"
#include "allocator/collision.hpp"
#include "allocator/config.hpp"
#include "allocator/subids.hpp"
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

// Checks the bindings to user namespaces on every tick of a monotonic timer. A probe whose
// sweep is slow (the /proc scan) sweeps on a worker thread, which touches only a probe of its
// own and reports through an eventfd; the loop then judges the bindings by that sweep. The
// next tick is armed only once a sweep is done, so at most one worker runs.
struct Sweeper {
    allocator::Allocator* allocator = nullptr;
    std::uint64_t interval_usec = 0;
    std::string problem;  // the probe's last complaint, logged when it changes
    sd_event_source* timer = nullptr;  // floating: owned by the event loop
    shm::UniqueFd done_fd;             // eventfd the worker signals
    std::thread worker;
    std::unique_ptr<allocator::UsernsProbe> worker_probe;
    bool worker_usable = false;
    std::vector<shm::RangeEntry> before;  // the bound ranges when the worker began

    ~Sweeper() {
        if (worker.joinable())
            worker.join();
    }
};

// A probe that cannot see everything keeps ranges it cannot judge; say so, once.
void report_probe_problem(Sweeper& sw, const allocator::UsernsProbe& probe) {
    const std::string problem = probe.problem();
    if (problem == sw.problem)
        return;
    if (!problem.empty())
        std::fprintf(stderr, SD_WARNING "User namespace check incomplete (%s; the %s probe "
                                        "needs %s); ranges whose namespace was not seen are "
                                        "kept.\n", problem.c_str(), probe.name(),
                     std::string_view(probe.name()) == "scan" ? "CAP_SYS_PTRACE"
                                                              : "CAP_SYS_ADMIN");
    else
        std::fprintf(stderr, SD_INFO "User namespace check complete again.\n");
    sw.problem = problem;
}

// Re-armed from now, not from the due time: a slow sweep does not make the next one early.
int arm_next_sweep(Sweeper& sw) {
    uint64_t now = 0;
    (void)sd_event_now(sd_event_source_get_event(sw.timer), CLOCK_MONOTONIC, &now);
    (void)sd_event_source_set_time(sw.timer, now + sw.interval_usec);
    return sd_event_source_set_enabled(sw.timer, SD_EVENT_ON);
}

// Starts a sweep on the worker thread; false if the probe sweeps on the loop.
bool start_worker_sweep(Sweeper& sw) {
    if (!sw.done_fd)
        return false;
    sw.worker_probe = sw.allocator->probe()->for_worker_thread();
    if (!sw.worker_probe)
        return false;
    sw.before = sw.allocator->bound_ranges();
    if (sw.before.empty())
        return false;  // nothing to judge: the loop's sweep returns at once
    sw.worker = std::thread([&sw] {
        sw.worker_usable = sw.worker_probe->begin_sweep();
        const std::uint64_t one = 1;
        (void)!::write(sw.done_fd.get(), &one, sizeof one);
    });
    return true;
}

int on_sweep_timer(sd_event_source* source, uint64_t now, void* userdata) noexcept {
    (void)now;
    auto* sw = static_cast<Sweeper*>(userdata);
    sw->timer = source;
    try {
        if (start_worker_sweep(*sw))
            return sd_event_source_set_enabled(source, SD_EVENT_OFF);  // until it is done
        if (auto r = sw->allocator->reap_dead_bindings(); !r)
            std::fprintf(stderr, SD_ERR "%s, ignoring.\n", r.error().message.c_str());
        report_probe_problem(*sw, *sw->allocator->probe());
    } catch (const std::exception& e) {
        std::fprintf(stderr, SD_ERR "Failed to check user namespace bindings: %s\n", e.what());
    }
    return arm_next_sweep(*sw);
}

int on_worker_sweep_done(sd_event_source*, int fd, uint32_t, void* userdata) noexcept {
    auto* sw = static_cast<Sweeper*>(userdata);
    std::uint64_t count = 0;
    (void)!::read(fd, &count, sizeof count);
    if (!sw->worker.joinable())
        return 0;
    sw->worker.join();
    try {
        if (auto r = sw->allocator->reap_swept(*sw->worker_probe, sw->worker_usable, sw->before);
            !r)
            std::fprintf(stderr, SD_ERR "%s, ignoring.\n", r.error().message.c_str());
        report_probe_problem(*sw, *sw->worker_probe);
    } catch (const std::exception& e) {
        std::fprintf(stderr, SD_ERR "Failed to check user namespace bindings: %s\n", e.what());
    }
    sw->worker_probe.reset();
    sw->before.clear();
    return arm_next_sweep(*sw);
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

// The user namespace sweep runs on a timer; a worker thread's sweep reports on an eventfd.
bool add_sweep_timer(sd_event* event, Sweeper& sweeper) {
    if (sweeper.allocator->probe()->for_worker_thread() != nullptr) {
        sweeper.done_fd = shm::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!sweeper.done_fd ||
            sd_event_add_io(event, nullptr, sweeper.done_fd.get(), EPOLLIN, on_worker_sweep_done,
                            &sweeper) < 0) {
            std::fprintf(stderr, SD_ERR "Failed to set up the user namespace sweep thread.\n");
            return false;
        }
    }
    uint64_t now = 0;
    sd_event_now(event, CLOCK_MONOTONIC, &now);
    if (int r = sd_event_add_time(event, &sweeper.timer, CLOCK_MONOTONIC,
                                  now + sweeper.interval_usec, 0, on_sweep_timer, &sweeper);
        r < 0) {
        std::fprintf(stderr, SD_ERR "Failed to add the user namespace timer: %s\n",
                     std::strerror(-r));
        return false;
    }
    (void)sd_event_source_set_floating(sweeper.timer, 1);  // the loop owns it
    if (sweeper.done_fd)
        // Allocations short of quota or room start the worker's sweep now instead of walking
        // /proc on the loop; the timer waits for it.
        sweeper.allocator->set_sweep_runner([&sweeper] {
            if (!sweeper.worker.joinable() && start_worker_sweep(sweeper))
                (void)sd_event_source_set_enabled(sweeper.timer, SD_EVENT_OFF);
        });
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
    alloc.set_sweep_spacing(config.userns_check_interval);
    // Declared before the event loop, so destroyed after it: the worker's eventfd stays open
    // while the loop watches it, and a running worker is joined last.
    Sweeper sweeper{&alloc,
                    static_cast<std::uint64_t>(config.userns_check_interval.count()) * 1000,
                    {}};
    // Namespaces may have died while we were not running.
    if (auto r = alloc.reap_dead_bindings(); !r)
        std::fprintf(stderr, SD_ERR "%s, ignoring.\n", r.error().message.c_str());

    auto event = varlink::make_daemon_event_loop();
    if (!event) {
        std::fprintf(stderr, SD_ERR "Failed to set up the event loop: %s\n",
                     event.error().message().c_str());
        return EXIT_FAILURE;
    }
    report_probe_problem(sweeper, *alloc.probe());
    if (!add_sweep_timer(event->get(), sweeper))
        return EXIT_FAILURE;
    if (!allocator::start_subid_import(event->get(), alloc, config.import_subordinate_ids))
        return EXIT_FAILURE;

    varlink::Server server(event->get(), {"transient", "transient-allocd", PROJECT_VERSION,
                                         "https://github.com/transient-uids/transient"});
    server.add_interface(allocator::make_interface(alloc, event->get()));
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
