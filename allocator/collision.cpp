// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/collision.hpp"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <string_view>
#include <vector>

#include "shm/identity.hpp"
#include "allocator/subids.hpp"

namespace transient::allocator {
namespace {

// getpwuid_r()/getgrgid_r() style results: found, not found, or the lookup failed (which we
// treat as "taken": a source we cannot ask might well know the ID).
enum class Lookup { kFound, kNotFound, kFailed };

// `buf` is the caller's, kept from lookup to lookup (six an allocation): 4 KiB, or what a large
// group needed last time up to 64 KiB.
template <typename Entry, typename Fn>
Lookup lookup(std::vector<char>& buf, Fn&& fn) {
    if (buf.size() < 4096 || buf.size() > 65536) {
        buf.assign(4096, 0);
        buf.shrink_to_fit();
    }
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

Lookup found_if(bool found) {
    return found ? Lookup::kFound : Lookup::kNotFound;
}

// Why an ID whose record a lookup found, or could not look for, is taken; `kind` is "UID" or
// "GID", `record` "user" or "group".
std::optional<std::string> id_refusal(const char* kind, std::uint32_t id, Lookup result,
                                      const char* record) {
    if (result == Lookup::kNotFound)
        return std::nullopt;
    return std::string(kind) + " " + std::to_string(id) +
           (result == Lookup::kFound ? std::string(" has a ") + record + " record"
                                     : std::string(" could not be looked up"));
}

}  // namespace

void bypass_own_sources() {
    ::setenv("TRANSIENT_NSS_BYPASS", "1", 1);
    // nss-systemd/userdb: do not ask our own userdb endpoint either.
    ::setenv("SYSTEMD_BYPASS_USERDB", "io.transient.Ranges", 1);
}

bool FileWatch::same(const Stamp& a, const Stamp& b) {
    auto eq = [](const timespec& x, const timespec& y) {
        return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec;
    };
    return a.exists == b.exists && a.dev == b.dev && a.ino == b.ino && a.size == b.size &&
           eq(a.mtime, b.mtime) && eq(a.ctime, b.ctime);
}

bool FileWatch::stale() {
    seen_ = Stamp{};
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0)
        seen_ = Stamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim, true};
    if (trusted_ && same(*trusted_, seen_))
        return false;
    trusted_.reset();
    return true;
}

void FileWatch::read() {
    timespec read_at{};
    ::clock_gettime(CLOCK_REALTIME, &read_at);
    // A change after the stat() in stale() gives the file new times (or a new inode), so the
    // next check reads it again, unless it came within the same clock tick: hence the margin.
    const time_t newest = std::max(seen_.mtime.tv_sec, seen_.ctime.tv_sec);
    if (read_at.tv_sec - newest >= 2)
        trusted_ = seen_;
}

namespace {

// The file's text; nothing if it cannot be opened.
std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in.is_open())
        return std::nullopt;
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string read_text(const std::string& path) { return read_file(path).value_or(""); }

// Calls fn(line) for each line of `text` that glibc's files parsers would read: leading blanks
// skipped, empty lines and comments left out.
template <typename Fn>
void for_each_entry_line(std::string_view text, Fn&& fn) {
    while (!text.empty()) {
        const std::size_t eol = std::min(text.find('\n'), text.size());
        std::string_view line = text.substr(0, eol);
        text.remove_prefix(std::min(eol + 1, text.size()));
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
            line.remove_prefix(1);
        if (!line.empty() && line.front() != '#')
            fn(line);
    }
}

// The name and the number (third field) of a passwd or group line, or nothing for a line that
// glibc might read otherwise: NIS compat entries ("+", "-"), fewer than four fields, a number
// that is not plain decimal.
std::optional<std::pair<std::string_view, std::uint32_t>> parse_entry(std::string_view line) {
    std::string_view fields[3];
    for (std::string_view& f : fields) {
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos)
            return std::nullopt;
        f = line.substr(0, colon);
        line.remove_prefix(colon + 1);
    }
    const std::string_view name = fields[0], number = fields[2];
    if (name.empty() || name.front() == '+' || name.front() == '-' || number.empty() ||
        number.size() > 10 || number.find_first_not_of("0123456789") != std::string_view::npos)
        return std::nullopt;
    std::uint64_t id = 0;
    std::from_chars(number.data(), number.data() + number.size(), id);
    if (id > UINT32_MAX)
        return std::nullopt;
    return std::pair(name, static_cast<std::uint32_t>(id));
}

// Reads a passwd or group file into `ids` and `names`; false if a line is not one parse_entry()
// takes (then neither is used).
bool parse_database(const std::string& text, std::unordered_set<std::uint32_t>& ids,
                    std::unordered_set<std::string>& names) {
    ids.clear();
    names.clear();
    bool ok = true;
    for_each_entry_line(text, [&](std::string_view line) {
        auto e = parse_entry(line);
        ok = ok && e.has_value();
        if (!ok)
            return;
        names.emplace(e->first);
        ids.insert(e->second);
    });
    return ok;
}

// Whether nsswitch.conf's passwd and group lines, each present once, name no source but files
// and (while our module is bypassed) transient.
bool names_files_only(const std::string& text) {
    const char* bypass = std::getenv("TRANSIENT_NSS_BYPASS");
    const bool ours_silent = bypass != nullptr && std::string_view(bypass) == "1";
    int passwd = 0, group = 0;
    bool ok = true;
    for_each_entry_line(text, [&](std::string_view line) {
        line = line.substr(0, line.find('#'));
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos)
            return;
        std::string_view db = line.substr(0, colon);
        while (!db.empty() && (db.back() == ' ' || db.back() == '\t'))
            db.remove_suffix(1);
        // glibc compares database names without regard to case.
        auto is = [&](std::string_view want) {
            return db.size() == want.size() &&
                   std::equal(db.begin(), db.end(), want.begin(), [](char a, char b) {
                       return std::tolower(static_cast<unsigned char>(a)) == b;
                   });
        };
        if (!is("passwd") && !is("group") && !is("passwd_compat") && !is("group_compat"))
            return;
        if (is("passwd"))
            passwd++;
        else if (is("group"))
            group++;
        else
            ok = false;  // the compat module's databases: not ours to read
        std::string_view rest = line.substr(colon + 1);
        while (!rest.empty()) {
            const std::size_t start = rest.find_first_not_of(" \t\r");
            if (start == std::string_view::npos)
                break;
            rest.remove_prefix(start);
            const std::size_t end = std::min(rest.find_first_of(" \t\r"), rest.size());
            const std::string_view word = rest.substr(0, end);
            rest.remove_prefix(end);
            if (word != "files" && !(word == "transient" && ours_silent))
                ok = false;
        }
    });
    return ok && passwd == 1 && group == 1;
}

}  // namespace

FilesDatabases::FilesDatabases(std::string nsswitch, std::string passwd, std::string group)
    : nsswitch_(std::move(nsswitch)), passwd_(std::move(passwd)), group_(std::move(group)) {}

bool FilesDatabases::usable() {
    if (nsswitch_.stale()) {
        files_only_ = names_files_only(read_text(nsswitch_.path()));
        nsswitch_.read();
        reads_++;
    }
    if (!files_only_)
        return false;
    // A file that cannot be read is glibc's to report (as a failed lookup, which claims the ID).
    auto load = [&](FileWatch& w, std::unordered_set<std::uint32_t>& ids,
                    std::unordered_set<std::string>& names) {
        const auto text = read_file(w.path());
        const bool ok = text && parse_database(*text, ids, names);
        w.read();
        reads_++;
        return ok;
    };
    if (passwd_.stale())
        passwd_ok_ = load(passwd_, uids_, users_);
    if (group_.stale())
        group_ok_ = load(group_, gids_, groups_);
    return passwd_ok_ && group_ok_;
}

std::optional<std::string> SubidFile::overlap(std::uint32_t start, std::uint32_t size) {
    if (watch_.stale()) {
        // The same parser as the import (subids.hpp): a line that names a range claims its IDs.
        lines_ = parse_subid_file(read_text(watch_.path()));
        watch_.read();
        reads_++;
    }
    if (auto line = subid_overlap(lines_, start, size))
        return watch_.path() + ":" + std::to_string(line->line);
    return std::nullopt;
}

std::optional<std::string> subid_overlap(const std::string& path, std::uint32_t start,
                                         std::uint32_t size) {
    return SubidFile(path).overlap(start, size);
}

SystemCollisionChecker::SystemCollisionChecker(CollisionSources sources)
    : sources_(std::move(sources)),
      subuid_(sources_.subuid),
      subgid_(sources_.subgid),
      files_(sources_.nsswitch, sources_.passwd, sources_.group) {}

bool SystemCollisionChecker::have_systemd() const {
    if (systemd_)
        return *systemd_;
    struct stat st {};
    return ::stat(sources_.systemd_run.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::optional<Failure> SystemCollisionChecker::begin_choice() {
    end_choice();
    // The order other allocators use: the passwd lock first (PID 1 takes it before its UID
    // lock files), then nsresourced's registry lock, then per-candidate lock files. We only
    // ever try, never wait, so there is no deadlock, and the event loop never sleeps here.
    auto failed = [](const std::string& path, const std::error_code& err, pid_t holder) {
        if (err.value() != EBUSY)
            return Failure{ErrorKind::kInternal, "Failed to lock " + path + ": " + err.message()};
        return Failure{ErrorKind::kBusy,
                       "Failed to lock " + path + ": held by " +
                               (holder > 0 ? "PID " + std::to_string(holder)
                                           : std::string("another process")),
                       path, holder};
    };
    pid_t holder = 0;
    auto pw = try_passwd_lock(sources_.passwd_lock, &holder);
    if (!pw)
        return failed(sources_.passwd_lock, pw.error(), holder);
    passwd_lock_ = std::move(*pw);
    // Looked at once per choice, under the passwd lock that tools editing the files take.
    files_only_ = files_.usable();
    // Looked at once per choice: whether systemd runs does not change within one allocation.
    systemd_ = have_systemd();
    if (!*systemd_)
        return std::nullopt;
    const std::string registry = sources_.systemd_run + "/nsresource/registry";
    auto made = make_directories(registry);
    auto reg = made ? try_flock(registry + "/lock")
                    : Result<shm::UniqueFd>(std::unexpected(made.error()));
    if (!reg) {
        end_choice();
        return failed(registry + "/lock", reg.error(), 0);
    }
    registry_lock_ = std::move(*reg);
    return std::nullopt;
}

void SystemCollisionChecker::end_choice() {
    // Reverse order; the allocator has published its choice by now, so the other allocators'
    // NSS checks see it as soon as they can go on.
    candidate_locks_.clear();
    registry_lock_.reset();
    passwd_lock_.reset();
    systemd_.reset();
    probed_.clear();
    files_only_ = false;
}

std::optional<std::string> SystemCollisionChecker::lock_candidate(std::uint32_t start,
                                                                  std::uint32_t size) {
    candidate_locks_.clear();
    if (!have_systemd())
        return std::nullopt;
    // 64K ranges are what nspawn picks, single UIDs what DynamicUser= picks.
    const std::string dir =
            sources_.systemd_run + (size == 1 ? "/dynamic-uid" : "/nspawn-uid");
    auto made = make_directories(dir);
    // nspawn locks its files with make_lock_file() (an OFD lock), PID 1 its dynamic-uid files
    // with flock(): the kinds do not exclude each other, so each is taken its owner's way. A
    // multi-block range takes the file of every block, each of which nspawn could pick.
    const std::uint64_t step = size == 1 ? 1 : 0x10000;
    for (std::uint64_t at = start; at < std::uint64_t{start} + size; at += step) {
        const std::string path = dir + "/" + std::to_string(at);
        auto lock = made ? LockFile::try_take(path, size == 1 ? LockKind::kBsd : LockKind::kOfd)
                         : Result<LockFile>(std::unexpected(made.error()));
        if (!lock) {
            candidate_locks_.clear();
            if (lock.error().value() == EBUSY)
                return "held by another allocator (" + path + " is locked)";
            return "could not lock " + path + ": " + lock.error().message();
        }
        candidate_locks_.push_back(std::move(*lock));
    }
    return std::nullopt;
}

std::optional<std::string> SystemCollisionChecker::registry_claims(std::uint32_t start) const {
    // nsresourced indexes its ranges by start UID and GID (userns-registry.c); its ranges use
    // the same 64K grid and dynamic range as ours, so the start is the only place to look.
    const std::string registry = sources_.systemd_run + "/nsresource/registry/";
    for (const char* pattern : {"u%u.userns", "g%u.userns", "u%u.delegate", "g%u.delegate"}) {
        char name[64];
        std::snprintf(name, sizeof name, pattern, start);
        if (::access((registry + name).c_str(), F_OK) == 0)
            return "registered by systemd-nsresourced (" + registry + name + ")";
    }
    return std::nullopt;
}

std::optional<std::string> SystemCollisionChecker::probe_id(std::uint32_t id) {
    // With files the only source, its parsed copy answers; otherwise glibc asks every source.
    const auto user_record = [&] {
        if (files_only_)
            return found_if(files_.has_uid(id));
        lookups_++;
        return lookup<passwd>(buf_, [&](passwd* e, char* b, size_t n, passwd** res) {
            return ::getpwuid_r(id, e, b, n, res);
        });
    };
    const auto group_record = [&] {
        if (files_only_)
            return found_if(files_.has_gid(id));
        lookups_++;
        return lookup<group>(buf_, [&](group* e, char* b, size_t n, group** res) {
            return ::getgrgid_r(id, e, b, n, res);
        });
    };
    if (auto why = id_refusal("UID", id, user_record(), "user"))
        return why;
    return id_refusal("GID", id, group_record(), "group");
}

std::optional<std::string> SystemCollisionChecker::probed(std::uint32_t id) {
    // Within one choice (the passwd lock held) an ID is asked about once: the pool's walk moves
    // one block at a time, so a multi-block candidate refused at its k-th block is followed by
    // candidates sharing the k-1 free ones before it.
    if (const auto it = probed_.find(id); it != probed_.end())
        return it->second;
    auto why = probe_id(id);
    probed_.emplace(id, why);
    return why;
}

std::optional<std::string> SystemCollisionChecker::range_taken(std::uint32_t start,
                                                               std::uint32_t size) {
    auto why = lock_candidate(start, size);
    // Per 64K block, what nspawn and nsresourced would look at for a candidate of their own.
    // The local sources first, a file's existence and the subid files as parsed (once per change
    // of the file): a candidate they claim costs no NSS lookup, each of which opens and reads a
    // file or asks a daemon.
    const std::uint64_t step = size == 1 ? 1 : 0x10000;
    const std::uint64_t end = std::uint64_t{start} + size;
    if (have_systemd())
        for (std::uint64_t at = start; !why && at < end; at += step)
            why = registry_claims(static_cast<std::uint32_t>(at));
    if (!why)
        if (auto where = subuid_.overlap(start, size))
            why = "overlaps the subordinate UIDs of " + *where;
    if (!why)
        if (auto where = subgid_.overlap(start, size))
            why = "overlaps the subordinate GIDs of " + *where;
    for (std::uint64_t at = start; !why && at < end; at += step) {
        const auto block = static_cast<std::uint32_t>(at);
        why = probed(block);
        if (!why && size > 1)
            why = probed(block + 0xFFFE);
    }
    // A taken candidate's lock goes at once; a free one's stays until end_choice().
    if (why)
        candidate_locks_.clear();
    return why;
}

std::optional<std::string> SystemCollisionChecker::name_taken(std::string_view name) {
    // The names of offset 0, by the rule the module and transient-userdbd name them with.
    const std::string suffix = std::string(name) + shm::kOffsetSeparator + "0";
    const std::string user = shm::kUserNamePrefix + suffix;
    const std::string grp = shm::kGroupNamePrefix + suffix;
    if (files_.usable()) {
        if (files_.has_user(user))
            return "user " + user + " already exists";
        if (files_.has_group(grp))
            return "group " + grp + " already exists";
        return std::nullopt;
    }
    lookups_++;
    if (lookup<passwd>(buf_, [&](passwd* e, char* b, size_t n, passwd** res) {
            return ::getpwnam_r(user.c_str(), e, b, n, res);
        }) == Lookup::kFound)
        return "user " + user + " already exists";
    lookups_++;
    if (lookup<group>(buf_, [&](group* e, char* b, size_t n, group** res) {
            return ::getgrnam_r(grp.c_str(), e, b, n, res);
        }) == Lookup::kFound)
        return "group " + grp + " already exists";
    return std::nullopt;
}

}  // namespace transient::allocator
