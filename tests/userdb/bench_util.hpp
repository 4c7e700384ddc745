// SPDX-License-Identifier: LGPL-2.1-or-later
//
// What the userdb benchmarks share: a table of N live 64K ranges, transient-userdbd started on
// it, and medians.

#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "shm/layout.hpp"
#include "shm/writer.hpp"

namespace transient::bench {

// Exits at once, even from a worker thread while others run (std::exit() would not).
[[noreturn]] inline void die(const char* program, const std::string& what) {
    std::fprintf(stderr, "%s: %s\n", program, what.c_str());
    std::fflush(nullptr);
    std::_Exit(2);
}

// Publishes ranges "ct0" … "ct<n-1>", 64K each, back to back from the container pool's start.
// The writer (and its lock) go away on return; the table stays.
inline void make_table(const char* program, const std::string& path, std::uint32_t n) {
    auto w = shm::TableWriter::open(path);
    if (!w)
        die(program, "cannot open " + path + ": " + w.error().message());
    std::vector<shm::RangeEntry> ranges;
    for (std::uint32_t i = 0; i < n; i++)
        ranges.push_back({"ct" + std::to_string(i), shm::kContainerPoolFirst + i * 65536, 65536,
                          0, 0, 1, 0, 0});
    if (auto r = w->publish(ranges); !r)
        die(program, "cannot publish: " + r.error().message());
}

// Starts `userdbd` and waits until it has bound `socket`.
inline pid_t start_userdbd(const char* program, const char* userdbd, const std::string& socket) {
    ::unlink(socket.c_str());  // a stale one would look like a started daemon
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::execl(userdbd, "transient-userdbd", nullptr);
        ::_exit(127);
    }
    for (int i = 0; i < 500; i++) {
        struct stat st;
        if (::stat(socket.c_str(), &st) == 0)
            return pid;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    die(program, std::string(userdbd) + " did not create " + socket);
}

inline void stop_daemon(pid_t pid) {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
}

// The element at fraction q (0.5: the median) of `v`, sorted in place.
inline double quantile(std::vector<double>& v, double q) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace transient::bench
