// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-allocd: the allocator daemon. Reads its configuration, opens (or recovers) the
// range table, releases ranges whose user namespaces died while it was down, serves
// io.transient.Allocator on the socket systemd passes it or on one it binds itself, checks the
// remaining bindings on a timer, and runs until SIGTERM/SIGINT. Logs to stderr with sd-daemon
// priority prefixes (base/log.hpp).

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

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
#include "base/daemon.hpp"
#include "base/log.hpp"
#include "base/paths.hpp"
#include "base/sd_event.hpp"
#include "varlink/varlink.hpp"

namespace {

using namespace transient;

std::string help_text() {
    std::string text =
            "transient-allocd [OPTIONS...]\n\n"
            "Hands out transient UID/GID ranges over Varlink (io.transient.Allocator) and\n"
            "publishes them in the range table read by libnss_transient and transient-userdbd.\n\n"
            "  -h --help          Show this help\n"
            "     --version       Show package version\n"
            "     --config PATH   Read the configuration from PATH (default ";
    text += allocator::kDefaultConfigPath;
    text += ";\n"
            "                     a missing default file means built-in defaults)\n\n"
            "Environment:\n"
            "  TRANSIENT_RUNTIME_DIR  runtime directory (default " TRANSIENT_DEFAULT_RUNTIME_DIR
            ")\n"
            "  TRANSIENT_CONFIG       configuration file, if --config is not given\n";
    return text;
}

// Checks the bindings to user namespaces on every tick of a monotonic timer, on a worker thread:
// the /proc scan is slow, and file handles make one open_by_handle_at() per binding (16,000
// bindings: tens of ms, which on the loop kept every call waiting, and on a loaded machine a
// loop busy that long is also scheduled late). The loop takes a snapshot of what the probe needs
// of each binding (no names) in steps, the worker asks a probe of its own about every binding
// of it and reports through an eventfd, and the loop judges the bindings by those answers (a
// lookup each) in steps too: each step Allocator::kWorkerStep bindings, one per turn below the
// sockets' priority. The worker runs at a lower priority than the loop, so the loop's calls are
// not held up by it either. A probe without a thread of its own sweeps on the
// loop in steps of Allocator::kSweepStep bindings, one per turn below the sockets' priority.
// The next tick is armed only once a sweep is done, so at most one worker runs.

struct Sweeper {
    allocator::Allocator* allocator = nullptr;
    std::uint64_t interval_usec = 0;
    std::string problem;  // the probe's last complaint, logged when it changes
    // Floating, owned by the event loop; borrowed here (base::make_floating()).
    sd_event_source* timer = nullptr;
    sd_event_source* step = nullptr;         // the next step of a sweep on the loop
    sd_event_source* worker_step = nullptr;  // the loop's next step of a worker's sweep
    shm::UniqueFd done_fd;                   // eventfd the worker signals
    std::thread worker;
    std::unique_ptr<allocator::UsernsProbe> worker_probe;
    // A worker's sweep: its snapshot taken on the loop, the worker's answers, judged on the loop.
    enum class Phase { kIdle, kSnapshot, kWorker, kJudging } phase = Phase::kIdle;
    allocator::WorkerSweep swept;  // the worker's alone between the snapshot and the join
    // Ranges the worker's sweep released, and whether it was a follow-up: a namespace that dies
    // while the worker is under way is found only if the worker had not checked it yet (16,000
    // bindings on a loaded machine: a pass of about a second), so a sweep that released some
    // is followed at once by one more, not after a whole interval (namespaces die together).
    std::size_t released = 0;
    bool follow_up = false;

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
        base::log_printf(LOG_WARNING, "User namespace check incomplete (%s; the %s probe "
                                      "needs %s); ranges whose namespace was not seen are "
                                      "kept.", problem.c_str(), probe.name(),
                         std::string_view(probe.name()) == "scan" ? "CAP_SYS_PTRACE"
                                                                  : "CAP_SYS_ADMIN");
    else
        base::log_printf(LOG_INFO, "User namespace check complete again.");
    sw.problem = problem;
}

// Re-armed from now, not from the due time: a slow sweep does not make the next one early.
// `at_once`: due now (a follow-up sweep), still after the loop's pending work.
int arm_next_sweep(Sweeper& sw, bool at_once = false) {
    uint64_t now = 0;
    (void)sd_event_now(sd_event_source_get_event(sw.timer), CLOCK_MONOTONIC, &now);
    (void)sd_event_source_set_time(sw.timer, at_once ? now : now + sw.interval_usec);
    return sd_event_source_set_enabled(sw.timer, SD_EVENT_ON);
}

// The worker's part: every binding of the snapshot, asked on a thread of its own.
void run_worker(Sweeper& sw) {
    sw.phase = Sweeper::Phase::kWorker;
    sw.worker = std::thread([&sw] {
        // Below the loop: nice 10 for this thread only (Linux: a TID names one thread).
        (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
        const bool usable = sw.worker_probe->begin_sweep();
        sw.swept.answer(*sw.worker_probe, usable);
        const std::uint64_t one = 1;
        (void)!::write(sw.done_fd.get(), &one, sizeof one);
    });
}

// The end of a worker's sweep, or of one that found nothing to ask about.
void finish_worker_sweep(Sweeper& sw) {
    if (sw.worker_probe)
        report_probe_problem(sw, *sw.worker_probe);
    sw.worker_probe.reset();
    sw.swept.clear();
    sw.phase = Sweeper::Phase::kIdle;
}

// Starts a sweep on the worker thread, with a probe for the timer's sweeps or (`for_timer`
// false) for a sweep an allocation asked for; false if there is none and the loop sweeps. The
// snapshot's first step is taken now, the others one a turn; the worker starts once it is whole.
bool start_worker_sweep(Sweeper& sw, bool for_timer) {
    if (!sw.done_fd || sw.worker_step == nullptr || sw.phase != Sweeper::Phase::kIdle)
        return false;
    const allocator::UsernsProbe& probe = *sw.allocator->probe();
    sw.worker_probe = for_timer ? probe.for_timer_thread() : probe.for_worker_thread();
    if (!sw.worker_probe)
        return false;
    sw.swept.clear();
    if (!sw.allocator->snapshot_step(sw.swept)) {
        sw.phase = Sweeper::Phase::kSnapshot;
        return sd_event_source_set_enabled(sw.worker_step, SD_EVENT_ONESHOT) >= 0;
    }
    if (sw.swept.bindings.empty()) {
        sw.worker_probe.reset();
        return false;  // nothing to judge: the loop's sweep returns at once
    }
    run_worker(sw);
    return true;
}

// One step of a worker's sweep on the loop: of its snapshot, or of the judging of its answers;
// the next one, or the next tick once the sweep is done.
int on_worker_step(sd_event_source* source, void* userdata) noexcept {
    auto* sw = static_cast<Sweeper*>(userdata);
    try {
        if (sw->phase == Sweeper::Phase::kSnapshot) {
            if (!sw->allocator->snapshot_step(sw->swept))
                return sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
            if (!sw->swept.bindings.empty()) {
                run_worker(*sw);
                return 0;
            }
        } else if (sw->phase == Sweeper::Phase::kJudging) {
            if (auto r = sw->allocator->judge_step(sw->swept); !r)
                base::log_printf(LOG_ERR, "%s, ignoring.", r.error().message.c_str());
            else
                sw->released += r->size();
            if (sw->swept.judging.under_way)
                return sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        } else {
            return 0;
        }
    } catch (const std::exception& e) {
        base::log_printf(LOG_ERR, "Failed to check user namespace bindings: %s", e.what());
    }
    // One follow-up at most: a steady trickle of deaths still sweeps once per interval.
    const bool follow = sw->released > 0 && !sw->follow_up;
    sw->follow_up = follow;
    sw->released = 0;
    finish_worker_sweep(*sw);
    return arm_next_sweep(*sw, follow);
}

// One step of the sweep on the loop; the next one, or the next tick once the sweep is done.
// Allocations short of room take steps too, and may finish the sweep between two of these.
int on_sweep_step(sd_event_source* source, void* userdata) noexcept {
    auto* sw = static_cast<Sweeper*>(userdata);
    try {
        if (sw->allocator->sweep_under_way())
            if (auto r = sw->allocator->sweep_step(); !r)
                base::log_printf(LOG_ERR, "%s, ignoring.", r.error().message.c_str());
        if (sw->allocator->sweep_under_way())
            return sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        report_probe_problem(*sw, *sw->allocator->probe());
    } catch (const std::exception& e) {
        base::log_printf(LOG_ERR, "Failed to check user namespace bindings: %s", e.what());
    }
    return arm_next_sweep(*sw);
}

int on_sweep_timer(sd_event_source* source, uint64_t now, void* userdata) noexcept {
    (void)now;
    auto* sw = static_cast<Sweeper*>(userdata);
    sw->timer = source;
    try {
        if (start_worker_sweep(*sw, true))
            return sd_event_source_set_enabled(source, SD_EVENT_OFF);  // until it is done
        if (auto r = sw->allocator->sweep_step(); !r)
            base::log_printf(LOG_ERR, "%s, ignoring.", r.error().message.c_str());
        if (sw->allocator->sweep_under_way() && sw->step != nullptr) {
            (void)sd_event_source_set_enabled(source, SD_EVENT_OFF);  // until it is done
            return sd_event_source_set_enabled(sw->step, SD_EVENT_ONESHOT);
        }
        // Without a step source (it could not be added) the sweep is finished here, whole.
        if (sw->allocator->sweep_under_way())
            while (sw->allocator->sweep_under_way())
                if (auto r = sw->allocator->sweep_step(); !r) {
                    base::log_printf(LOG_ERR, "%s, ignoring.", r.error().message.c_str());
                    break;
                }
        report_probe_problem(*sw, *sw->allocator->probe());
    } catch (const std::exception& e) {
        base::log_printf(LOG_ERR, "Failed to check user namespace bindings: %s", e.what());
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
    // Judged from the next turn on, a step a turn.
    sw->phase = Sweeper::Phase::kJudging;
    return sd_event_source_set_enabled(sw->worker_step, SD_EVENT_ONESHOT);
}

constexpr char kNeedsForHandles[] =
        " (needs CAP_SYS_ADMIN, and open_by_handle_at() allowed by any seccomp filter)";

std::unique_ptr<allocator::UsernsProbe> make_probe(allocator::ProbeMode mode) {
    if (mode == allocator::ProbeMode::kAuto)
        if (auto fh = allocator::FileHandleProbe::create(); !fh)
            base::log_printf(LOG_INFO, "Not checking user namespaces by file handles: %s%s.",
                             fh.error().message().c_str(),
                             fh.error().value() == EPERM ? kNeedsForHandles : "");
    auto probe = allocator::make_userns_probe(mode);
    if (!probe) {
        base::log_printf(LOG_ERR, "UserNamespaceProbe=%s is not available: %s%s",
                         allocator::probe_mode_name(mode), probe.error().message().c_str(),
                         probe.error().value() == EPERM ? kNeedsForHandles : "");
        return nullptr;
    }
    base::log_printf(LOG_INFO, "Checking user namespace bindings by %s.", (*probe)->name());
    return std::move(*probe);
}

// Creates the runtime dir and opens (or recovers) the table in it, saying what it found.
std::optional<shm::TableWriter> open_table(const std::string& dir) {
    const std::string table = dir + "/" + shm::kTableFileName;
    if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) {
        base::log_printf(LOG_ERR, "Failed to create runtime directory '%s': %s", dir.c_str(),
                         std::strerror(errno));
        return std::nullopt;
    }
    auto writer = shm::TableWriter::open(table);
    if (!writer) {
        base::log_printf(LOG_ERR, "Failed to open range table '%s': %s", table.c_str(),
                         writer.error().message().c_str());
        return std::nullopt;
    }
    const shm::Recovery& rec = writer->recovery();
    if (rec.replaced)
        base::log_printf(LOG_WARNING, "Range table '%s' was unusable; replaced it with an "
                                      "empty one.", table.c_str());
    if (rec.migrated)
        base::log_printf(LOG_NOTICE, "Migrated range table '%s' to format version %u.",
                         table.c_str(), shm::kVersion);
    if (rec.dropped > 0)
        base::log_printf(LOG_WARNING, "Dropped %zu invalid or conflicting entries from '%s'.",
                         rec.dropped, table.c_str());
    base::log_printf(LOG_INFO, "%s range table '%s' with %zu ranges (capacity %u).",
                     rec.created ? "Created" : "Opened", table.c_str(), rec.ranges.size(),
                     writer->capacity());
    return std::move(*writer);
}

// The user namespace sweep runs on a timer; a worker thread's sweep reports on an eventfd.
bool add_sweep_timer(sd_event* event, Sweeper& sweeper) {
    if (sweeper.allocator->probe()->for_timer_thread() != nullptr) {
        sweeper.done_fd = shm::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!sweeper.done_fd ||
            sd_event_add_io(event, nullptr, sweeper.done_fd.get(), EPOLLIN, on_worker_sweep_done,
                            &sweeper) < 0) {
            base::log_printf(LOG_ERR, "Failed to set up the user namespace sweep thread.");
            return false;
        }
    }
    // Below the sockets and the Varlink server's own turns (SD_EVENT_PRIORITY_NORMAL + 1): a
    // step runs when the calls that were waiting have been served.
    if (int r = sd_event_add_defer(event, &sweeper.step, on_sweep_step, &sweeper); r < 0) {
        base::log_printf(LOG_ERR, "Failed to add the user namespace sweep's steps: %s",
                         std::strerror(-r));
        return false;
    }
    (void)sd_event_source_set_priority(sweeper.step, SD_EVENT_PRIORITY_NORMAL + 2);
    (void)sd_event_source_set_enabled(sweeper.step, SD_EVENT_OFF);
    sweeper.step = base::make_floating(sweeper.step);
    if (sweeper.done_fd) {
        if (int r = sd_event_add_defer(event, &sweeper.worker_step, on_worker_step, &sweeper);
            r < 0) {
            base::log_printf(LOG_ERR, "Failed to add the user namespace sweep's steps: %s",
                             std::strerror(-r));
            return false;
        }
        // At the sockets' priority, not below: a step is short, sd-event takes pending sources
        // of one priority in turn, and below them a client that keeps the loop busy would hold
        // the judging back, and the releases with it.
        (void)sd_event_source_set_priority(sweeper.worker_step, SD_EVENT_PRIORITY_NORMAL);
        (void)sd_event_source_set_enabled(sweeper.worker_step, SD_EVENT_OFF);
        sweeper.worker_step = base::make_floating(sweeper.worker_step);
    }
    uint64_t now = 0;
    sd_event_now(event, CLOCK_MONOTONIC, &now);
    if (int r = sd_event_add_time(event, &sweeper.timer, CLOCK_MONOTONIC,
                                  now + sweeper.interval_usec, 0, on_sweep_timer, &sweeper);
        r < 0) {
        base::log_printf(LOG_ERR, "Failed to add the user namespace timer: %s",
                         std::strerror(-r));
        return false;
    }
    sweeper.timer = base::make_floating(sweeper.timer);  // the loop owns it
    if (sweeper.done_fd && sweeper.allocator->probe()->for_worker_thread() != nullptr)
        // Allocations short of quota or room start the worker's sweep now instead of walking
        // /proc on the loop; the timer waits for it. (File handles answer such a request on
        // the loop: the owner's few bindings, or one step of the sweep.)
        sweeper.allocator->set_sweep_runner([&sweeper] {
            if (start_worker_sweep(sweeper, false))
                (void)sd_event_source_set_enabled(sweeper.timer, SD_EVENT_OFF);
        });
    return true;
}

// The allocator with everything it serves through. Members are destroyed in reverse: the
// server first, then the reference to the event loop (the last one, so the loop and the
// floating sweep sources go), then the sweeper, whose eventfd stays open while the loop watches
// it and whose running worker is joined last, then the allocator.
class AllocatorService final : public base::Service {
public:
    AllocatorService(sd_event* event, const allocator::Config& config,
                     std::unique_ptr<allocator::UsernsProbe> probe, shm::TableWriter writer)
        : alloc_(std::move(writer), std::make_unique<allocator::SystemCollisionChecker>(),
                 config.policy, std::move(probe)),
          sweeper_{&alloc_,
                   static_cast<std::uint64_t>(config.userns_check_interval.count()) * 1000,
                   {}},
          event_(sd_event_ref(event)),
          server_(event, {"transient", "transient-allocd", PROJECT_VERSION,
                          "https://github.com/transient-uids/transient"}) {
        alloc_.set_release_observer(allocator::log_automatic_release);
        alloc_.set_sweep_spacing(config.userns_check_interval);
        import_subordinate_ids_ = config.import_subordinate_ids;
    }

    // Releases what died while we were not running and starts the sweep timer.
    bool start() {
        if (auto r = alloc_.reap_dead_bindings(); !r)
            base::log_printf(LOG_ERR, "%s, ignoring.", r.error().message.c_str());
        report_probe_problem(sweeper_, *alloc_.probe());
        if (!add_sweep_timer(event_.get(), sweeper_))
            return false;
        if (!allocator::start_subid_import(event_.get(), alloc_, import_subordinate_ids_))
            return false;
        server_.add_interface(allocator::make_interface(alloc_, event_.get()));
        return true;
    }

    std::string socket_path() const override {
        return base::runtime_path("io.transient.Allocator");
    }

    Result<void> listen(base::UniqueFd listener) override {
        if (auto r = server_.listen_fd(std::move(listener)); !r)
            return r;
        base::log_printf(LOG_INFO, "Listening on %s.", socket_path().c_str());
        return {};
    }

private:
    allocator::Allocator alloc_;
    bool import_subordinate_ids_ = true;
    Sweeper sweeper_;
    base::EventPtr event_;
    varlink::Server server_;
};

std::unique_ptr<base::Service> setup(sd_event* event, const char* config_path) {
    // A file the administrator named must exist; the default one may be absent.
    if (config_path == nullptr)
        if (const char* env = std::getenv("TRANSIENT_CONFIG"); env != nullptr && *env != '\0')
            config_path = env;
    const bool named = config_path != nullptr;
    auto config = allocator::load_config(named ? config_path : allocator::kDefaultConfigPath,
                                         named);
    if (!config) {
        base::log_printf(LOG_ERR, "%s", config.error().message.c_str());
        base::log_printf(LOG_ERR, "Refusing to start with a bad configuration.");
        return nullptr;
    }
    allocator::bypass_own_sources();
    auto writer = open_table(base::runtime_dir());
    if (!writer)
        return nullptr;
    auto probe = make_probe(config->probe);
    if (!probe)
        return nullptr;
    auto service = std::make_unique<AllocatorService>(event, *config, std::move(probe),
                                                      std::move(*writer));
    if (!service->start())
        return nullptr;
    return service;
}

}  // namespace

int main(int argc, char** argv) {
    const char* config_path = nullptr;
    return base::run_daemon({.name = "transient-allocd",
                             .version = PROJECT_VERSION,
                             .help = help_text(),
                             .options = {{"config", &config_path}},
                             .socket_mode = 0666,
                             .status = "Serving io.transient.Allocator",
                             .setup = [&config_path](sd_event* event) {
                                 return setup(event, config_path);
                             }},
                            argc, argv);
}
