// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The locks systemd's UID allocators take, taken the same way so that we exclude them (and they
// us) while a range is chosen (reference: systemd-userdb-and-ranges.md §4.3, §4.6):
//   - /etc/.pwd.lock: a POSIX write lock on the whole file, as lckpwdf() and systemd's
//     take_etc_passwd_lock() take it (PID 1 holds it while it picks a DynamicUser= UID);
//   - /run/systemd/nspawn-uid/<base> (systemd-nspawn --private-users=pick) and
//     /run/systemd/dynamic-uid/<uid> (DynamicUser=): a file created if missing and locked with
//     flock(LOCK_EX|LOCK_NB); its holder unlinks it while still holding it when done;
//   - /run/systemd/nsresource/registry/lock (systemd-nsresourced): flock(LOCK_EX) on a file
//     that is never removed.
// Library code: returns errors, never logs.

#pragma once

#include <chrono>
#include <string>

#include "shm/result.hpp"
#include "shm/unique_fd.hpp"

namespace transient::allocator {

// A held lock file of the nspawn-uid / dynamic-uid kind. Releasing unlinks it first, as
// systemd's release_lock_file() does, so nobody is left locking a file that no longer exists.
class LockFile {
public:
    LockFile() = default;
    LockFile(LockFile&& o) noexcept;
    LockFile& operator=(LockFile&& o) noexcept;
    ~LockFile() { release(); }

    // Creates `path` (mode 0600) if missing and locks it without waiting. EBUSY: someone else
    // holds it. The directory must exist.
    static Result<LockFile> try_take(const std::string& path);

    explicit operator bool() const { return static_cast<bool>(fd_); }
    const std::string& path() const { return path_; }
    void release();

private:
    std::string path_;
    shm::UniqueFd fd_;
};

// Waits up to `timeout` for the POSIX write lock on `path` (normally /etc/.pwd.lock). The file
// is opened like lckpwdf() opens it. ETIMEDOUT when someone holds it that long.
Result<shm::UniqueFd> take_passwd_lock(const std::string& path,
                                       std::chrono::milliseconds timeout);

// Waits up to `timeout` for flock(LOCK_EX) on `path`, creating it (mode 0600) if missing.
Result<shm::UniqueFd> take_flock(const std::string& path, std::chrono::milliseconds timeout);

// mkdir -p for the directories of systemd's allocators (mode 0755, like theirs).
Result<void> make_directories(const std::string& path);

}  // namespace transient::allocator
