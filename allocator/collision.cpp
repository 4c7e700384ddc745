// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/collision.hpp"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <vector>

namespace transient::allocator {
namespace {

// getpwuid_r()/getgrgid_r() style results: found, not found, or the lookup failed (which we
// treat as "taken": a source we cannot ask might well know the ID).
enum class Lookup { kFound, kNotFound, kFailed };

template <typename Entry, typename Fn>
Lookup lookup(Fn&& fn) {
    std::vector<char> buf(4096);
    for (int i = 0; i < 8; i++) {
        Entry e{};
        Entry* result = nullptr;
        const int r = fn(&e, buf.data(), buf.size(), &result);
        if (r == ERANGE) {
            buf.resize(buf.size() * 4);
            continue;
        }
        if (r == 0)
            return result != nullptr ? Lookup::kFound : Lookup::kNotFound;
        // POSIX lets "not found" be reported as any of these.
        return r == ENOENT || r == ESRCH || r == EBADF || r == EPERM ? Lookup::kNotFound
                                                                     : Lookup::kFailed;
    }
    return Lookup::kFailed;
}

std::optional<std::string> probe_id(std::uint32_t id) {
    const Lookup u = lookup<passwd>([&](passwd* e, char* b, size_t n, passwd** res) {
        return ::getpwuid_r(id, e, b, n, res);
    });
    if (u != Lookup::kNotFound)
        return "UID " + std::to_string(id) +
               (u == Lookup::kFound ? " has a user record" : " could not be looked up");
    const Lookup g = lookup<group>([&](group* e, char* b, size_t n, group** res) {
        return ::getgrgid_r(id, e, b, n, res);
    });
    if (g != Lookup::kNotFound)
        return "GID " + std::to_string(id) +
               (g == Lookup::kFound ? " has a group record" : " could not be looked up");
    return std::nullopt;
}

}  // namespace

void bypass_own_sources() {
    ::setenv("TRANSIENT_NSS_BYPASS", "1", 1);
    // nss-systemd/userdb: do not ask our own userdb endpoint either.
    ::setenv("SYSTEMD_BYPASS_USERDB", "io.transient.Ranges", 1);
}

std::optional<std::string> subid_overlap(const std::string& path, std::uint32_t start,
                                         std::uint32_t size) {
    std::ifstream in(path);
    std::string line;
    const std::uint64_t end = std::uint64_t{start} + size;
    for (unsigned n = 1; std::getline(in, line); n++) {
        // owner:first:count; comments and malformed lines claim nothing.
        const auto c1 = line.find(':');
        const auto c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
        if (line.empty() || line[0] == '#' || c2 == std::string::npos)
            continue;
        std::uint64_t first = 0, count = 0;
        const char* b = line.data();
        auto r1 = std::from_chars(b + c1 + 1, b + c2, first);
        auto r2 = std::from_chars(b + c2 + 1, b + line.size(), count);
        if (r1.ec != std::errc{} || r2.ec != std::errc{} || r1.ptr != b + c2 || count == 0)
            continue;
        if (first < end && start < first + count)
            return path + ":" + std::to_string(n);
    }
    return std::nullopt;
}

SystemCollisionChecker::SystemCollisionChecker(CollisionSources sources)
    : sources_(std::move(sources)) {}

std::optional<std::string> SystemCollisionChecker::range_taken(std::uint32_t start,
                                                               std::uint32_t size) {
    if (auto why = probe_id(start))
        return why;
    if (size > 1)
        if (auto why = probe_id(start + 0xFFFE))
            return why;
    if (auto where = subid_overlap(sources_.subuid, start, size))
        return "overlaps the subordinate UIDs of " + *where;
    if (auto where = subid_overlap(sources_.subgid, start, size))
        return "overlaps the subordinate GIDs of " + *where;
    return std::nullopt;
}

std::optional<std::string> SystemCollisionChecker::name_taken(std::string_view name) {
    const std::string user = "vu-" + std::string(name) + "-0";
    const std::string grp = "vg-" + std::string(name) + "-0";
    if (lookup<passwd>([&](passwd* e, char* b, size_t n, passwd** res) {
            return ::getpwnam_r(user.c_str(), e, b, n, res);
        }) == Lookup::kFound)
        return "user " + user + " already exists";
    if (lookup<group>([&](group* e, char* b, size_t n, group** res) {
            return ::getgrnam_r(grp.c_str(), e, b, n, res);
        }) == Lookup::kFound)
        return "group " + grp + " already exists";
    return std::nullopt;
}

}  // namespace transient::allocator
