// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The production CollisionChecker. While the allocator chooses, it holds the locks systemd's
// allocators take (system_locks.hpp); for each candidate it takes the candidate's own lock file,
// looks for systemd-nsresourced's registry entries, asks NSS (and through nss-systemd every userdb
// provider) about the IDs with our own module bypassed, and reads /etc/subuid and /etc/subgid.
// systemd's allocators only probe a range's base and base+0xFFFE (nspawn), so we probe at least
// those, in every 64K block of a multi-block candidate, and take every block's nspawn lock file:
// nspawn sees each block as one of its own candidates. Where /run/systemd does not exist there is
// no systemd to coexist with, and its locks and registry are skipped.

#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "allocator/allocator.hpp"
#include "allocator/subids.hpp"
#include "allocator/system_locks.hpp"

namespace transient::allocator {

struct CollisionSources {
    std::string subuid = "/etc/subuid";
    std::string subgid = "/etc/subgid";
    std::string passwd_lock = "/etc/.pwd.lock";
    // Holds nspawn-uid/, dynamic-uid/ and nsresource/registry/.
    std::string systemd_run = "/run/systemd";
    // The files databases (FilesDatabases), and what says whether they are the only ones.
    std::string nsswitch = "/etc/nsswitch.conf";
    std::string passwd = "/etc/passwd";
    std::string group = "/etc/group";
};

// Whether a file changed since it was last read, so that what was parsed from it is kept until
// it does. Every check stat()s the path; a parse is reused only while the file's device, inode,
// size, mtime and ctime are those it was read with, and only once those times are two seconds
// older than the read (file times are as coarse as the kernel's clock tick: an edit in the same
// tick as the read, of the same size, would otherwise go unseen).
class FileWatch {
public:
    explicit FileWatch(std::string path) : path_(std::move(path)) {}
    // Stats the file: whether it must be read (again) before what was parsed from it is used.
    bool stale();
    // Called once the file was read after stale() said so.
    void read();
    const std::string& path() const { return path_; }

private:
    struct Stamp {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = 0;
        timespec mtime{};
        timespec ctime{};
        bool exists = false;
    };
    static bool same(const Stamp& a, const Stamp& b);

    std::string path_;
    Stamp seen_;                    // by the last stale()
    std::optional<Stamp> trusted_;  // that of the last read, once old enough to be trusted
};

// A subuid-format file, parsed once per change of the file rather than once per candidate (the
// allocator read and parsed /etc/subuid and /etc/subgid for every candidate, issue 11).
class SubidFile {
public:
    explicit SubidFile(std::string path) : watch_(std::move(path)) {}
    // The first line overlapping [start, start + size), as "FILE:LINE", or nothing. Unreadable
    // or missing files claim nothing.
    std::optional<std::string> overlap(std::uint32_t start, std::uint32_t size);
    // How often the file was read and parsed (for tests).
    std::size_t reads() const { return reads_; }

private:
    FileWatch watch_;
    std::vector<SubidLine> lines_;
    std::size_t reads_ = 0;
};

// The user and group databases where the files are all of them: nsswitch.conf's passwd and
// group lines name `files` and nothing else but `transient` (our own module, which answers
// nothing while TRANSIENT_NSS_BYPASS=1 is set, as bypass_own_sources() does). Then /etc/passwd
// and /etc/group are what every lookup of the collision check would read, and they are parsed
// once per change of any of the three files (FileWatch) instead of glibc opening, reading and
// parsing one of them for each of an allocation's six lookups (two thirds of an allocation's
// cost in the daemon, issue 11). Any other source (systemd, sss, ldap, an action in brackets),
// or a line not taken as glibc's files module would take it (NIS "+"/"-" lines, anything
// malformed), makes it unusable: every lookup then goes through glibc, nothing kept.
class FilesDatabases {
public:
    FilesDatabases(std::string nsswitch, std::string passwd, std::string group);
    // Whether the files answer for every source now; re-reads what changed.
    bool usable();
    bool has_uid(std::uint32_t uid) const { return uids_.contains(uid); }
    bool has_gid(std::uint32_t gid) const { return gids_.contains(gid); }
    bool has_user(const std::string& name) const { return users_.contains(name); }
    bool has_group(const std::string& name) const { return groups_.contains(name); }
    // How often nsswitch.conf, passwd or group was read and parsed (for tests).
    std::size_t reads() const { return reads_; }

private:
    FileWatch nsswitch_, passwd_, group_;
    bool files_only_ = false;  // nsswitch.conf, as last read
    bool passwd_ok_ = false;   // every line of passwd, as last read, parsed
    bool group_ok_ = false;
    std::unordered_set<std::uint32_t> uids_, gids_;
    std::unordered_set<std::string> users_, groups_;
    std::size_t reads_ = 0;
};

class SystemCollisionChecker : public CollisionChecker {
public:
    explicit SystemCollisionChecker(CollisionSources sources = {});

    std::optional<Failure> begin_choice() override;
    void end_choice() override;
    std::optional<std::string> range_taken(std::uint32_t start, std::uint32_t size) override;
    std::optional<std::string> name_taken(std::string_view name) override;
    // NSS lookups made so far through glibc (getpwuid_r() and the like, each one call), for
    // tests; none where FilesDatabases answers.
    std::size_t lookups() const { return lookups_; }

private:
    // Whether NSS (our own module bypassed) knows `id` as a user or a group.
    std::optional<std::string> probe_id(std::uint32_t id);
    // probe_id(), asked once per ID and choice.
    std::optional<std::string> probed(std::uint32_t id);
    std::optional<std::string> lock_candidate(std::uint32_t start, std::uint32_t size);
    std::optional<std::string> registry_claims(std::uint32_t start) const;
    bool have_systemd() const;

    CollisionSources sources_;
    SubidFile subuid_;
    SubidFile subgid_;
    FilesDatabases files_;
    bool files_only_ = false;  // files_.usable(), as begin_choice() found it
    shm::UniqueFd passwd_lock_;
    shm::UniqueFd registry_lock_;
    std::vector<LockFile> candidate_locks_;  // one per 64K block of the candidate
    // Whether systemd runs, as begin_choice() found it: asked once per choice, not once per
    // candidate and step (three stat() calls an allocation).
    std::optional<bool> systemd_;
    // What NSS said about each ID asked in this choice (nothing: free); cleared by
    // end_choice(), so nothing is kept from one call to the next.
    std::unordered_map<std::uint32_t, std::optional<std::string>> probed_;
    std::vector<char> buf_;  // the lookups' buffer, kept (4 KiB or more)
    std::size_t lookups_ = 0;
};

// Makes this process's own NSS lookups skip libnss_transient and our userdb endpoint, so that
// the collision checks see only the other sources. Call before the first lookup.
void bypass_own_sources();

// The first line of a subuid-format file whose range overlaps [start, start + size), as
// "FILE:LINE", or nothing. Unreadable or missing files claim nothing.
std::optional<std::string> subid_overlap(const std::string& path, std::uint32_t start,
                                         std::uint32_t size);

}  // namespace transient::allocator
