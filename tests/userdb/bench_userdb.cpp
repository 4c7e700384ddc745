// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transient-bench-userdb: why the NSS module reads shared memory. In one run it times, round
// after round, getpwuid_r() through glibc with "passwd: systemd" (nss-systemd, which opens a
// Varlink connection to transient-userdbd for every lookup) against "passwd: transient"
// (libnss_transient, a read of the shared table), switching with __nss_configure_lookup(), and
// then the endpoint's GetUserRecord throughput on one connection.
//
//   transient-bench-userdb [--rounds N] [--batch N] [--ranges N] [--seconds S]
//
// Run it inside scripts/sandbox.sh (as scripts/bench-userdb.sh does): it needs a private /run,
// so that /run/systemd/userdb holds only our socket, and libnss_transient.so.2 where glibc finds
// it. It starts transient-userdbd itself and stops it at the end.

#include <nss.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
namespace base = transient::base;
namespace shm = transient::shm;

struct Options {
    int rounds = 15;
    int batch = 300;
    std::uint32_t ranges = 1000;
    double seconds = 2.0;
};

constexpr char kProgram[] = "transient-bench-userdb";

[[noreturn]] void die(const std::string& what) {
    transient::bench::die(kProgram, what);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (i + 1 >= argc)
            die("missing value for " + a);
        const char* v = argv[++i];
        if (a == "--rounds")
            o.rounds = std::atoi(v);
        else if (a == "--batch")
            o.batch = std::atoi(v);
        else if (a == "--ranges")
            o.ranges = static_cast<std::uint32_t>(std::atol(v));
        else if (a == "--seconds")
            o.seconds = std::atof(v);
        else
            die("unknown option " + a);
    }
    if (o.rounds < 1 || o.batch < 1 || o.ranges < 1 || o.ranges > shm::kContainerSlots)
        die("bad option value");
    return o;
}

// Random UIDs of the n ranges make_table() publishes.
std::vector<std::uint32_t> random_uids(std::uint32_t n) {
    std::mt19937 rng(1);
    std::vector<std::uint32_t> uids(4096);
    for (auto& u : uids)
        u = shm::kContainerPoolFirst + static_cast<std::uint32_t>(rng() % n) * 65536 +
            static_cast<std::uint32_t>(rng() % 65536);
    return uids;
}

// ns per getpwuid_r() through the configured module; every lookup must succeed.
double time_batch(const std::vector<std::uint32_t>& uids, int batch, std::size_t& cursor) {
    char buf[1024];
    passwd pw, *res;
    const auto t0 = Clock::now();
    for (int i = 0; i < batch; i++) {
        const std::uint32_t uid = uids[cursor++ % uids.size()];
        if (::getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || res == nullptr)
            die("getpwuid_r(" + std::to_string(uid) + ") found nothing");
    }
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / batch;
}

double median(std::vector<double> v) {
    return transient::bench::quantile(v, 0.5);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    ::setenv("SYSTEMD_LOG_LEVEL", "crit", 1);  // nss-systemd stays quiet if something is off
    const std::string socket = "/run/systemd/userdb/io.transient.Ranges";
    ::mkdir("/run/systemd", 0755);
    ::mkdir("/run/systemd/userdb", 0755);
    ::mkdir(base::runtime_dir().c_str(), 0755);
    transient::bench::make_table(kProgram, shm::table_path(), o.ranges);
    const auto uids = random_uids(o.ranges);
    const pid_t userdbd = transient::bench::start_userdbd(kProgram, TRANSIENT_USERDBD, socket);

    std::vector<double> via_systemd, via_transient;
    std::size_t cursor = 0;
    for (int r = 0; r < o.rounds; r++) {
        __nss_configure_lookup("passwd", "systemd");
        via_systemd.push_back(time_batch(uids, o.batch, cursor));
        __nss_configure_lookup("passwd", "transient");
        via_transient.push_back(time_batch(uids, o.batch * 20, cursor));
    }

    auto client = transient::varlink::Client::connect(socket);
    if (!client)
        die("cannot connect to " + socket);
    std::size_t calls = 0;
    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::duration<double>(o.seconds);
    while (Clock::now() < deadline) {
        for (int i = 0; i < 100; i++) {
            auto reply = client->call("io.systemd.UserDatabase.GetUserRecord",
                                      {{"uid", uids[calls % uids.size()]},
                                       {"service", "io.transient.Ranges"}});
            if (!reply || !reply->error.empty())
                die("GetUserRecord failed");
            calls++;
        }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    transient::bench::stop_daemon(userdbd);

    const double s = median(via_systemd), t = median(via_transient);
    std::printf("getpwuid_r() through glibc, %u live 64K ranges, median of %d alternating rounds:\n\n",
                o.ranges, o.rounds);
    std::printf("| path | ns/lookup | relative |\n|---|---:|---:|\n");
    std::printf("| passwd: transient (libnss_transient, shared memory) | %.0f | 1.0x |\n", t);
    std::printf("| passwd: systemd (nss-systemd -> transient-userdbd, Varlink) | %.0f | %.1fx |\n\n",
                s, s / t);
    std::printf("io.systemd.UserDatabase.GetUserRecord on one connection: %.0f calls/s "
                "(%.1f us/call, %zu calls)\n",
                calls / secs, secs * 1e6 / calls, calls);
    return 0;
}
