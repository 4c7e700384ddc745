// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/subids.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "allocator/allocator.hpp"
#include "allocator/events.hpp"
#include "base/sd_event.hpp"
#include "shm/reader.hpp"

namespace transient::allocator {
namespace {

bool parse_number(std::string_view s, std::uint64_t* ret) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *ret);
    return !s.empty() && ec == std::errc{} && end == s.data() + s.size();
}

std::uint32_t fnv1a(std::string_view s) {
    std::uint32_t h = 2166136261U;
    for (unsigned char c : s) {
        h ^= c;
        h *= 16777619U;
    }
    return h;
}

std::size_t decimal_digits(std::uint32_t v) {
    std::size_t n = 1;
    for (; v >= 10; v /= 10)
        n++;
    return n;
}

}  // namespace

std::vector<SubidLine> parse_subid_file(std::string_view text) {
    std::vector<SubidLine> out;
    unsigned n = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        n++;
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        const auto c1 = line.find(':');
        const auto c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
        if (line.empty() || line[0] == '#' || c1 == 0 || c2 == std::string_view::npos)
            continue;
        std::uint64_t first = 0, count = 0;
        if (!parse_number(line.substr(c1 + 1, c2 - c1 - 1), &first) ||
            !parse_number(line.substr(c2 + 1), &count) || count == 0 ||
            first + count > 0x100000000ULL)
            continue;
        out.push_back(SubidLine{std::string(line.substr(0, c1)), static_cast<std::uint32_t>(first),
                                static_cast<std::uint32_t>(count), n});
    }
    return out;
}

std::optional<SubidLine> subid_overlap(const std::vector<SubidLine>& lines, std::uint32_t start,
                                       std::uint32_t size) {
    const std::uint64_t end = std::uint64_t{start} + size;
    for (const SubidLine& l : lines)
        if (l.start < end && start < std::uint64_t{l.start} + l.count)
            return l;
    return std::nullopt;
}

std::string imported_range_name(std::string_view owner, unsigned nth, std::uint32_t size) {
    std::string name = kImportedPrefix + std::string(owner);
    if (nth > 1)
        name += "-" + std::to_string(nth);
    // vu-<name>-<n> within 31 bytes for every n < size.
    const std::size_t limit = std::min(shm::kMaxRangeNameLength,
                                       31 - 4 - decimal_digits(size == 0 ? 0 : size - 1));
    if (name.size() <= limit && shm::is_valid_range_name(name.data(), name.size()))
        return name;
    char hash[8];
    std::snprintf(hash, sizeof hash, "%06x", fnv1a(name) & 0xFFFFFFU);
    std::string owner_part(owner.substr(0, limit - (sizeof kImportedPrefix - 1) - 1 - 6));
    for (char& c : owner_part)
        if (!shm::is_range_name_char(c, false))
            c = '_';
    return kImportedPrefix + owner_part + "_" + hash;
}

bool is_imported_name(std::string_view name) {
    return name.starts_with(kImportedPrefix);
}

std::optional<std::uint32_t> resolve_owner_uid(const std::string& owner) {
    std::uint64_t v = 0;
    if (parse_number(owner, &v) && v < 0xFFFFFFFFULL && (owner == "0" || owner[0] != '0'))
        return static_cast<std::uint32_t>(v);
    passwd pw{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(owner.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr)
        return std::nullopt;
    return res->pw_uid;
}

std::vector<shm::RangeEntry> imported_entries(const std::vector<SubidLine>& subuid,
                                              const std::vector<SubidLine>& subgid,
                                              const OwnerResolver& resolve,
                                              std::vector<std::string>* skipped) {
    struct Candidate {
        const SubidLine* line;
        std::uint32_t flags;
        const char* file;
    };
    std::vector<Candidate> candidates;
    std::vector<bool> gid_used(subgid.size(), false);
    for (const SubidLine& u : subuid) {
        std::uint32_t flags = shm::kEntryFlagImported | shm::kEntryFlagNoGid;
        for (std::size_t i = 0; i < subgid.size(); i++) {
            const SubidLine& g = subgid[i];
            if (!gid_used[i] && g.owner == u.owner && g.start == u.start && g.count == u.count) {
                gid_used[i] = true;
                flags = shm::kEntryFlagImported;
                break;
            }
        }
        candidates.push_back({&u, flags, "/etc/subuid"});
    }
    for (std::size_t i = 0; i < subgid.size(); i++)
        if (!gid_used[i])
            candidates.push_back(
                    {&subgid[i], shm::kEntryFlagImported | shm::kEntryFlagNoUid, "/etc/subgid"});

    std::map<std::string, unsigned> nth;
    std::map<std::uint32_t, shm::RangeEntry> by_start;
    std::set<std::string> names;
    for (const Candidate& c : candidates) {
        const SubidLine& l = *c.line;
        const std::string where = std::string(c.file) + ":" + std::to_string(l.line);
        const unsigned k = ++nth[l.owner];
        if (!shm::is_valid_imported_shape(l.start, l.count)) {
            skipped->push_back(where + ": " + std::to_string(l.start) + "+" +
                               std::to_string(l.count) +
                               " covers UID 0, 65535, the foreign range or (uid_t) -1");
            continue;
        }
        shm::RangeEntry e{imported_range_name(l.owner, k, l.count), l.start, l.count,
                          resolve(l.owner).value_or(0xFFFFFFFFU), c.flags, 0, 0, 0};
        // The kept entries by start, so that a file of thousands of lines is not quadratic.
        const shm::RangeEntry* clash = nullptr;
        auto next = by_start.lower_bound(e.start);
        if (next != by_start.end() && next->second.start < e.end())
            clash = &next->second;
        else if (next != by_start.begin() && std::prev(next)->second.end() > e.start)
            clash = &std::prev(next)->second;
        if (clash == nullptr && !names.insert(e.name).second)
            clash = &e;
        if (clash != nullptr) {
            skipped->push_back(where + ": " + std::to_string(l.start) + "+" +
                               std::to_string(l.count) + " overlaps or has the name of " +
                               clash->name + ", skipped");
            continue;
        }
        by_start.emplace(e.start, std::move(e));
    }
    std::vector<shm::RangeEntry> out;
    for (auto& [start, e] : by_start)
        out.push_back(std::move(e));
    return out;
}

}  // namespace transient::allocator

namespace transient::allocator {
namespace {

// What stat() says of a file, enough to notice any edit (or its removal).
struct FileStamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    std::int64_t mtime_ns = 0;
    std::int64_t ctime_ns = 0;
    friend bool operator==(const FileStamp&, const FileStamp&) = default;
};

FileStamp stamp_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0)
        return {};
    auto ns = [](const timespec& t) { return std::int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; };
    return {st.st_dev, st.st_ino, st.st_size, ns(st.st_mtim), ns(st.st_ctim)};
}

std::vector<SubidLine> read_subid_file(const std::string& path) {
    std::ifstream in(path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse_subid_file(text);
}

struct Importer {
    Allocator* allocator;
    bool enabled;
    std::uint64_t interval_usec;
    std::string subuid, subgid;
    FileStamp uid_stamp, gid_stamp;
    bool done_once = false;
};

void import_now(Importer& im) {
    std::vector<std::string> skipped;
    std::vector<shm::RangeEntry> entries;
    if (im.enabled)
        entries = imported_entries(read_subid_file(im.subuid), read_subid_file(im.subgid),
                                   resolve_owner_uid, &skipped);
    auto imported_now = [&im] {
        std::vector<shm::RangeEntry> out;
        for (const shm::RangeEntry& e : im.allocator->ranges())
            if ((e.flags & shm::kEntryFlagImported) != 0)
                out.push_back(e);
        return out;
    };
    const std::vector<shm::RangeEntry> before = imported_now();
    auto r = im.allocator->set_imported(entries, &skipped);
    if (r) {
        // One event per range that came or went. Both lists are sorted by start (ranges() is),
        // and a start is unique among imported ranges, so a merge finds them.
        const std::vector<shm::RangeEntry> after = imported_now();
        auto key = [](const shm::RangeEntry& e) {
            return std::tie(e.start, e.size, e.name, e.owner, e.flags, e.created_usec);
        };
        auto less = [&](const shm::RangeEntry& a, const shm::RangeEntry& b) {
            return key(a) < key(b);
        };
        std::vector<shm::RangeEntry> gone, came;
        std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                            std::back_inserter(gone), less);
        std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                            std::back_inserter(came), less);
        for (const shm::RangeEntry& e : gone)
            events::import_removed(e);
        for (const shm::RangeEntry& e : came)
            events::imported(e);
    }
    for (const std::string& s : skipped)
        std::fprintf(stderr, SD_WARNING "Not importing: %s\n", s.c_str());
    if (!r)
        std::fprintf(stderr, SD_ERR "Failed to import %s and %s: %s\n", im.subuid.c_str(),
                     im.subgid.c_str(), r.error().message.c_str());
    else if (im.enabled)
        std::fprintf(stderr, SD_INFO "%zu ranges imported from %s and %s.\n",
                     static_cast<std::size_t>(std::count_if(
                             im.allocator->ranges().begin(), im.allocator->ranges().end(),
                             [](const shm::RangeEntry& e) {
                                 return (e.flags & shm::kEntryFlagImported) != 0;
                             })),
                     im.subuid.c_str(), im.subgid.c_str());
}

void check(Importer& im) {
    const FileStamp u = stamp_of(im.subuid), g = stamp_of(im.subgid);
    if (im.done_once && u == im.uid_stamp && g == im.gid_stamp)
        return;
    im.uid_stamp = u;
    im.gid_stamp = g;
    im.done_once = true;
    import_now(im);
}

int on_timer(sd_event_source* s, std::uint64_t usec, void* userdata) {
    auto& im = *static_cast<Importer*>(userdata);
    check(im);
    (void)sd_event_source_set_time(s, usec + im.interval_usec);
    return 0;
}

}  // namespace

bool start_subid_import(sd_event* event, Allocator& a, bool enabled,
                        std::chrono::milliseconds interval, std::string subuid,
                        std::string subgid) {
    // Lives as long as the process: the floating timer refers to it until the loop ends.
    auto* im = new Importer{&a,
                            enabled,
                            static_cast<std::uint64_t>(interval.count()) * 1000,
                            std::move(subuid),
                            std::move(subgid),
                            {},
                            {},
                            false};
    check(*im);
    if (!enabled)
        return true;
    std::uint64_t now = 0;
    (void)sd_event_now(event, CLOCK_MONOTONIC, &now);
    sd_event_source* timer = nullptr;
    if (int r = sd_event_add_time(event, &timer, CLOCK_MONOTONIC, now + im->interval_usec, 0,
                                  on_timer, im);
        r < 0) {
        std::fprintf(stderr, SD_ERR "Failed to add the /etc/subuid timer: %s\n", std::strerror(-r));
        return false;
    }
    timer = base::make_floating(timer);  // the loop owns it
    // A repeating timer: sd_event_source_set_time() re-arms it, ONESHOT keeps it enabled.
    (void)sd_event_source_set_enabled(timer, SD_EVENT_ON);
    return true;
}

}  // namespace transient::allocator
