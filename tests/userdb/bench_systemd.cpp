// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-bench-userdb-systemd: transient-userdbd against systemd's own userdb service on the
// same number of records. Inside a container that runs systemd-userdbd (bench_systemd.sh sets
// it up: N static users in /etc/passwd, the userdbd unit started), it publishes N live 64K
// ranges, starts transient-userdbd on them and times, round after round and in a rotating
// order, four ways to get a user record:
//
//   systemd NSS      io.systemd.NameServiceSwitch (systemd-userwork reading /etc/passwd)
//   systemd mux      io.systemd.Multiplexer for the same static users (what userdbctl asks)
//   transient        io.transient.Ranges, our endpoint, directly
//   mux -> transient io.systemd.Multiplexer for our records: systemd-userwork asks every
//                    service in /run/systemd/userdb, ours among them
//
// For each: GetUserRecord by random UID on one connection (calls/s, latency p50/p99); with a
// new connection per call, as nss-systemd and userdbctl ask, from one client and from --clients
// clients at once (calls/s in all); and the enumeration of every record (GetUserRecord with
// "more": true). Every answer is checked (the record asked for, the
// number of records enumerated), so a broken setup cannot pass as a fast one.
//
//   transient-bench-userdb-systemd --ranges N --static-first UID [--rounds R] [--seconds S]
//                                  [--clients C] [--check]
//
// --check: exit 1 if transient-userdbd is slower than either systemd row anywhere.

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/paths.hpp"
#include "shm/table_reader.hpp"
#include "tests/userdb/bench_util.hpp"
#include "varlink/varlink.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace shm = transient::shm;
namespace varlink = transient::varlink;
using transient::bench::quantile;

constexpr char kProgram[] = "transient-bench-userdb-systemd";
constexpr char kUserdbDir[] = "/run/systemd/userdb/";
constexpr char kGetUser[] = "io.systemd.UserDatabase.GetUserRecord";

[[noreturn]] void die(const std::string& what) {
    transient::bench::die(kProgram, what);
}

struct Options {
    std::uint32_t ranges = 1000;
    std::uint32_t static_first = 0;
    int rounds = 7;
    double seconds = 0.3;
    int clients = 16;
    bool check = false;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--check") {
            o.check = true;
            continue;
        }
        if (i + 1 >= argc)
            die("missing value for " + a);
        const char* v = argv[++i];
        if (a == "--ranges")
            o.ranges = static_cast<std::uint32_t>(std::atol(v));
        else if (a == "--static-first")
            o.static_first = static_cast<std::uint32_t>(std::atol(v));
        else if (a == "--rounds")
            o.rounds = std::atoi(v);
        else if (a == "--seconds")
            o.seconds = std::atof(v);
        else if (a == "--clients")
            o.clients = std::atoi(v);
        else
            die("unknown option " + a);
    }
    if (o.ranges < 1 || o.ranges > shm::kContainerSlots || o.static_first == 0 ||
        o.rounds < 1 || o.seconds <= 0 || o.clients < 1 || o.clients > 64)
        die("bad option value");
    return o;
}

// One way to ask for user records.
struct Target {
    const char* label;
    std::string socket;
    const char* service;
    bool ours;  // the records are our ranges (else the static users)
    bool enumerate;  // the multiplexer enumerates everything: measured once, as "systemd mux"
};

struct Samples {
    std::vector<double> single_rate, latency_us, connecting_rate, concurrent_rate, enumerate_ms;
    std::size_t enumerated = 0;
};

class UidSource {
public:
    UidSource(const Options& o, bool ours, unsigned seed) : o_(o), ours_(ours), rng_(seed) {}
    std::uint32_t next() {
        const auto i = static_cast<std::uint32_t>(rng_() % o_.ranges);
        if (!ours_)
            return o_.static_first + i;
        return shm::kContainerPoolFirst + i * 65536 + static_cast<std::uint32_t>(rng_() % 65536);
    }

private:
    const Options& o_;
    bool ours_;
    std::mt19937 rng_;
};

Clock::duration span(double seconds) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

varlink::Client connect(const Target& t) {
    auto c = varlink::Client::connect(t.socket);
    if (!c)
        die("cannot connect to " + t.socket + ": " + c.error().message());
    return std::move(*c);
}

// One GetUserRecord; dies unless the answer is the record of `uid`.
void get_user(varlink::Client& c, const Target& t, std::uint32_t uid) {
    auto reply = c.call(kGetUser, {{"uid", uid}, {"service", t.service}});
    if (!reply)
        die(std::string(t.label) + ": GetUserRecord: " + reply.error().message());
    if (!reply->error.empty())
        die(std::string(t.label) + ": GetUserRecord(" + std::to_string(uid) + "): " +
            reply->error);
    const auto& record = reply->parameters["record"];
    if (!record.is_object() || record.value("uid", -1LL) != static_cast<long long>(uid))
        die(std::string(t.label) + ": GetUserRecord(" + std::to_string(uid) +
            ") answered another record");
}

void time_single(const Options& o, const Target& t, Samples& s, unsigned seed) {
    auto c = connect(t);
    UidSource uids(o, t.ours, seed);
    get_user(c, t, uids.next());  // the connection is set up, the worker picked
    std::size_t calls = 0;
    const auto t0 = Clock::now();
    const auto deadline = t0 + span(o.seconds);
    for (auto now = t0; now < deadline; calls++) {
        get_user(c, t, uids.next());
        const auto after = Clock::now();
        s.latency_us.push_back(std::chrono::duration<double, std::micro>(after - now).count());
        now = after;
    }
    s.single_rate.push_back(calls / std::chrono::duration<double>(Clock::now() - t0).count());
}

// `clients` threads at once, each connecting anew for every call, as nss-systemd and userdbctl
// do (systemd-userwork serves one connection per worker and drops idle ones when others wait,
// so connections cannot be kept open across calls). Returns calls/s in all.
double time_connecting(const Options& o, const Target& t, int clients, unsigned seed) {
    std::atomic<std::size_t> calls{0};
    std::barrier start(clients + 1);
    Clock::time_point deadline;
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; i++)
        threads.emplace_back([&, i] {
            UidSource uids(o, t.ours, seed + 1000 + i);
            start.arrive_and_wait();
            std::size_t n = 0;
            while (Clock::now() < deadline) {
                auto c = connect(t);
                get_user(c, t, uids.next());
                n++;
            }
            calls += n;
        });
    const auto t0 = Clock::now();
    deadline = t0 + span(o.seconds);
    start.arrive_and_wait();
    for (auto& th : threads)
        th.join();
    return calls / std::chrono::duration<double>(Clock::now() - t0).count();
}

void time_enumeration(const Target& t, Samples& s) {
    auto c = connect(t);
    const auto t0 = Clock::now();
    auto replies = c.call_more(kGetUser, {{"service", t.service}});
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!replies)
        die(std::string(t.label) + ": enumeration: " + replies.error().message());
    if (!replies->back().error.empty())
        die(std::string(t.label) + ": enumeration ended with " + replies->back().error);
    s.enumerate_ms.push_back(ms);
    s.enumerated = replies->size();
}

std::string fmt(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    const std::string ours_socket = std::string(kUserdbDir) + "io.transient.Ranges";
    const std::string mux_socket = std::string(kUserdbDir) + "io.systemd.Multiplexer";
    const std::string nss_socket = std::string(kUserdbDir) + "io.systemd.NameServiceSwitch";
    ::mkdir(transient::base::runtime_dir().c_str(), 0755);
    transient::bench::make_table(kProgram, shm::table_path(), o.ranges);
    const pid_t userdbd = transient::bench::start_userdbd(kProgram, TRANSIENT_USERDBD, ours_socket);

    const std::vector<Target> targets = {
            {"systemd NSS", nss_socket, "io.systemd.NameServiceSwitch", false, true},
            {"systemd mux", mux_socket, "io.systemd.Multiplexer", false, true},
            {"transient", ours_socket, "io.transient.Ranges", true, true},
            {"mux -> transient", mux_socket, "io.systemd.Multiplexer", true, false},
    };
    std::vector<Samples> samples(targets.size());
    for (int r = 0; r < o.rounds; r++) {
        // A rotating order, so that none is always first after a change of the machine's load.
        for (std::size_t k = 0; k < targets.size(); k++) {
            const std::size_t i = (k + static_cast<std::size_t>(r)) % targets.size();
            const unsigned seed = static_cast<unsigned>(r * 100 + i);
            time_single(o, targets[i], samples[i], seed);
            samples[i].connecting_rate.push_back(time_connecting(o, targets[i], 1, seed));
            samples[i].concurrent_rate.push_back(
                    time_connecting(o, targets[i], o.clients, seed));
            if (targets[i].enumerate)
                time_enumeration(targets[i], samples[i]);
        }
    }
    transient::bench::stop_daemon(userdbd);

    // Our enumeration must be every range, the static users' at least every static user.
    if (samples[2].enumerated != o.ranges)
        die("transient enumerated " + std::to_string(samples[2].enumerated) + " records, not " +
            std::to_string(o.ranges));
    for (int i : {0, 1})
        if (samples[i].enumerated < o.ranges)
            die(std::string(targets[i].label) + " enumerated only " +
                std::to_string(samples[i].enumerated) + " records");

    struct Row {
        const char* name;
        bool higher_is_better;
        std::vector<double> Samples::*field;
        double q;
        const char* format;
    };
    const Row rows[] = {
            {"1 connection, calls/s", true, &Samples::single_rate, 0.5, "%.0f"},
            {"1 connection, latency p50 (us)", false, &Samples::latency_us, 0.5, "%.1f"},
            {"1 connection, latency p99 (us)", false, &Samples::latency_us, 0.99, "%.1f"},
            {"1 client, connection per call, calls/s", true, &Samples::connecting_rate, 0.5,
             "%.0f"},
            {"16 clients, connection per call, calls/s", true, &Samples::concurrent_rate, 0.5,
             "%.0f"},
            {"enumeration, ms", false, &Samples::enumerate_ms, 0.5, "%.1f"},
    };
    std::printf("%u records each (static users in /etc/passwd; 64K ranges), %d rounds, "
                "%d clients; medians\n\n",
                o.ranges, o.rounds, o.clients);
    std::printf("| | systemd NSS | systemd mux | transient | mux -> transient "
                "| transient vs NSS | vs mux |\n|---|---:|---:|---:|---:|---:|---:|\n");
    bool slower = false;
    for (const Row& row : rows) {
        double v[4];
        for (std::size_t i = 0; i < targets.size(); i++)
            v[i] = quantile(samples[i].*row.field, row.q);
        const bool enumeration = row.field == &Samples::enumerate_ms;
        std::string name = row.name;
        if (std::strncmp(row.name, "16", 2) == 0)
            name = std::to_string(o.clients) + name.substr(2);
        std::printf("| %s |", name.c_str());
        for (std::size_t i = 0; i < targets.size(); i++)
            std::printf(" %s |", i == 3 && enumeration ? "—" : fmt(row.format, v[i]).c_str());
        // How many times faster transient is: > 1 is the target.
        for (int base : {0, 1}) {
            const double ratio = row.higher_is_better ? v[2] / v[base] : v[base] / v[2];
            slower = slower || ratio < 1;
            std::printf(" %.2fx |", ratio);
        }
        std::printf("\n");
    }
    std::printf("\nrecords enumerated: systemd NSS %zu, systemd mux %zu (every service), "
                "transient %zu\n",
                samples[0].enumerated, samples[1].enumerated, samples[2].enumerated);
    if (o.check && slower) {
        std::printf("FAIL: transient-userdbd is slower than systemd-userdbd on a row\n");
        return 1;
    }
    return 0;
}
