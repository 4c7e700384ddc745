// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/config.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <optional>

namespace transient::allocator {
namespace {

// Configuration errors stop the daemon before it serves anyone: no caller sees their kind.
std::unexpected<Failure> config_error(std::string message) {
    return std::unexpected(Failure{ErrorKind::kInternal, std::move(message)});
}

// One line's worth of context for error messages.
struct Where {
    std::string_view file;
    unsigned line;
};

std::unexpected<Failure> error_at(const Where& w, const std::string& what) {
    return config_error(std::string(w.file) + ":" + std::to_string(w.line) + ": " + what);
}

std::string_view trim(std::string_view s) {
    const auto first = s.find_first_not_of(" \t\r");
    if (first == std::string_view::npos)
        return {};
    const auto last = s.find_last_not_of(" \t\r");
    return s.substr(first, last - first + 1);
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size())
        return std::nullopt;
    return v;
}

// "FIRST-LAST", both inclusive.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_interval(std::string_view s) {
    const auto dash = s.find('-');
    if (dash == std::string_view::npos)
        return std::nullopt;
    auto first = parse_u64(trim(s.substr(0, dash)));
    auto last = parse_u64(trim(s.substr(dash + 1)));
    if (!first || !last || *first > *last)
        return std::nullopt;
    return std::pair{*first, *last};
}

// Pools may be narrowed, never widened: outside systemd's ranges live regular users, system
// users and the foreign range, and systemd classifies UIDs by these very bounds.
Outcome<void> set_container_range(Config& c, std::string_view v,
                                                     const Where& w) {
    auto iv = parse_interval(v);
    if (!iv)
        return error_at(w, "ContainerRange= wants FIRST-LAST, got '" + std::string(v) + "'");
    if (iv->first < shm::kContainerPoolFirst || iv->second > shm::kContainerPoolLast)
        return error_at(w, "ContainerRange= must lie within " +
                                   std::to_string(shm::kContainerPoolFirst) + "-" +
                                   std::to_string(shm::kContainerPoolLast));
    if (shm::round_up(iv->first, shm::kContainerRangeSize) + shm::kContainerRangeSize - 1 >
        iv->second)
        return error_at(w, "ContainerRange= holds no 64K-aligned range of 65536 UIDs");
    c.policy.pools.container_first = static_cast<std::uint32_t>(iv->first);
    c.policy.pools.container_last = static_cast<std::uint32_t>(iv->second);
    return {};
}

Outcome<void> set_dynamic_range(Config& c, std::string_view v,
                                                   const Where& w) {
    auto iv = parse_interval(v);
    if (!iv)
        return error_at(w, "DynamicRange= wants FIRST-LAST, got '" + std::string(v) + "'");
    if (iv->first < shm::kDynamicPoolFirst || iv->second > shm::kDynamicPoolLast)
        return error_at(w, "DynamicRange= must lie within " +
                                   std::to_string(shm::kDynamicPoolFirst) + "-" +
                                   std::to_string(shm::kDynamicPoolLast));
    c.policy.pools.dynamic_first = static_cast<std::uint32_t>(iv->first);
    c.policy.pools.dynamic_last = static_cast<std::uint32_t>(iv->second);
    return {};
}

Outcome<void> set_allowed_sizes(Config& c, std::string_view v,
                                                   const Where& w) {
    bool single = false, container = false;
    std::istringstream words{std::string(v)};
    for (std::string word; words >> word;) {
        if (word == "1")
            single = true;
        else if (word == "65536")
            container = true;
        else
            return error_at(w, "AllowedSizes= takes 1 and/or 65536, got '" + word + "'");
    }
    if (!single && !container)
        return error_at(w, "AllowedSizes= must name at least one of 1 and 65536");
    c.policy.allow_single = single;
    c.policy.allow_container = container;
    return {};
}

Outcome<void> set_quota(Config& c, std::string_view v, const Where& w) {
    auto n = parse_u64(v);
    if (!n || *n > shm::kMaxCapacity)
        return error_at(w, "MaxRangesPerUser= wants a number from 0 to " +
                                   std::to_string(shm::kMaxCapacity) + ", got '" +
                                   std::string(v) + "'");
    c.policy.max_ranges_per_user = static_cast<std::uint32_t>(*n);
    return {};
}

Outcome<void> set_max_range_size(Config& c, std::string_view v, const Where& w) {
    auto n = parse_u64(v);
    if (!n || *n < shm::kContainerRangeSize || *n % shm::kContainerRangeSize != 0 ||
        *n > shm::kMaxRangeSize)
        return error_at(w, "MaxRangeSize= wants a multiple of 65536 from 65536 to " +
                                   std::to_string(shm::kMaxRangeSize) + ", got '" +
                                   std::string(v) + "'");
    c.policy.max_range_size = static_cast<std::uint32_t>(*n);
    return {};
}

Outcome<void> set_check_interval(Config& c, std::string_view v,
                                                    const Where& w) {
    // Seconds, fractions allowed: tests use sub-second intervals.
    double sec = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), sec);
    if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || !std::isfinite(sec) ||
        sec < 0.05 || sec > 3600)
        return error_at(w, "UserNamespaceCheckSec= wants seconds from 0.05 to 3600, got '" +
                                   std::string(v) + "'");
    c.userns_check_interval = std::chrono::milliseconds(std::llround(sec * 1000));
    return {};
}

Outcome<void> set_probe(Config& c, std::string_view v, const Where& w) {
    if (v == "auto")
        c.probe = ProbeMode::kAuto;
    else if (v == "file-handle")
        c.probe = ProbeMode::kFileHandle;
    else if (v == "scan")
        c.probe = ProbeMode::kScan;
    else
        return error_at(w, "UserNamespaceProbe= takes auto, file-handle or scan, got '" +
                                   std::string(v) + "'");
    return {};
}

Outcome<void> set_import(Config& c, std::string_view v, const Where& w) {
    if (v == "yes")
        c.import_subordinate_ids = true;
    else if (v == "no")
        c.import_subordinate_ids = false;
    else
        return error_at(w, "ImportSubordinateIDs= takes yes or no, got '" + std::string(v) + "'");
    return {};
}

using Setter = Outcome<void> (*)(Config&, std::string_view, const Where&);

struct Key {
    std::string_view name;
    Setter set;
};

constexpr Key kKeys[] = {
        {"ContainerRange", set_container_range},
        {"DynamicRange", set_dynamic_range},
        {"AllowedSizes", set_allowed_sizes},
        {"MaxRangesPerUser", set_quota},
        {"MaxRangeSize", set_max_range_size},
        {"UserNamespaceCheckSec", set_check_interval},
        {"UserNamespaceProbe", set_probe},
        {"ImportSubordinateIDs", set_import},
};

Outcome<void> parse_line(Config& c, std::string_view line, bool& in_section,
                                            const Where& w) {
    if (line.front() == '[') {
        if (line != "[Allocator]")
            return error_at(w, "unknown section " + std::string(line) +
                                       " (the only section is [Allocator])");
        in_section = true;
        return {};
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos)
        return error_at(w, "expected Key=Value, got '" + std::string(line) + "'");
    const std::string_view key = trim(line.substr(0, eq));
    const std::string_view value = trim(line.substr(eq + 1));
    if (!in_section)
        return error_at(w, "'" + std::string(key) + "=' outside of the [Allocator] section");
    for (const Key& k : kKeys)
        if (k.name == key)
            return k.set(c, value, w);
    return error_at(w, "unknown key '" + std::string(key) + "'");
}

}  // namespace

Outcome<Config> parse_config(std::string_view text, std::string_view filename) {
    Config c;
    bool in_section = false;
    unsigned n = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        const std::string_view raw = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        n++;
        const std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#' || line.front() == ';')
            continue;
        if (line.find('\0') != std::string_view::npos)
            return error_at({filename, n}, "NUL byte in line");
        if (auto r = parse_line(c, line, in_section, {filename, n}); !r) {
            // As in systemd's files (systemd.syntax(7)), a '#' or ';' after a value is part of
            // it; whoever wrote one meant a comment, so the error says why it was not one.
            Failure f = r.error();
            if (line.find_first_of("#;") != std::string_view::npos)
                f.message += " ('#' and ';' start a comment only at the beginning of a line, "
                             "as in systemd's)";
            return std::unexpected(std::move(f));
        }
    }
    return c;
}

Outcome<Config> load_config(const std::string& path, bool required) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int e = errno;
        if (e == ENOENT && !required)
            return Config{};
        return config_error("Failed to open configuration file " + path + ": " +
                            std::strerror(e));
    }
    // A configuration file is a few lines; anything huge is a mistake (or /dev/zero), and is
    // not read to its end.
    constexpr std::size_t kMaxSize = 1024 * 1024;
    std::string text(kMaxSize + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad())
        return config_error("Failed to read configuration file " + path);
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxSize)
        return config_error(path + ": file is larger than 1 MiB");
    return parse_config(text, path);
}

const char* probe_mode_name(ProbeMode mode) {
    switch (mode) {
    case ProbeMode::kFileHandle:
        return "file-handle";
    case ProbeMode::kScan:
        return "scan";
    case ProbeMode::kAuto:
        break;
    }
    return "auto";
}

}  // namespace transient::allocator
