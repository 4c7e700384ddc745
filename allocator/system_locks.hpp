// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The locks systemd's UID allocators take, each taken exactly the way its owner takes it, so
// that we exclude them (and they us) while a range is chosen. The kinds matter: on Linux a BSD
// lock (flock()) and a POSIX or open file description (OFD) lock on the same file never conflict,
// so a lock of the wrong kind excludes nobody. Reference: systemd-userdb-and-ranges.md §4.3, §4.6.
//   - /etc/.pwd.lock: a POSIX write lock on the whole file (fcntl(F_SETLK)), as glibc's
//     lckpwdf() and systemd's take_etc_passwd_lock() take it (PID 1 holds it while it picks a
//     DynamicUser= UID);
//   - /run/systemd/nspawn-uid/<base> (systemd-nspawn --private-users=pick): systemd's
//     make_lock_file() (lockfile-util.c, systemd 252 and later), an OFD write lock
//     (fcntl(F_OFD_SETLK)) that falls back to flock() only where the kernel has no OFD locks
//     (EINVAL, before Linux 3.15). nspawn holds it for the life of the container;
//   - /run/systemd/dynamic-uid/<uid> (DynamicUser=): systemd 252's dynamic-user.c pick_uid()
//     opens the file and takes flock(LOCK_EX|LOCK_NB), a BSD lock, held while the UID is in use;
//   - both kinds of lock file are created if missing, and their holder unlinks the file while
//     still holding the lock when done;
//   - /run/systemd/nsresource/registry/lock (systemd-nsresourced, v256 and later; systemd 252
//     has none): xopenat_lock_full(..., LOCK_BSD, LOCK_EX), i.e. flock(LOCK_EX), on a file
//     that is never removed.
// Library code: returns errors, never logs.

#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace transient::allocator {

// Which kind of lock a lock file's owner takes (see above).
enum class LockKind {
    kBsd,  // flock(): DynamicUser='s dynamic-uid/, nsresourced's registry lock
    kOfd,  // fcntl(F_OFD_SETLK), as systemd's make_lock_file(): nspawn-uid/
};

// A held lock file of the nspawn-uid / dynamic-uid kind. Releasing unlinks it first, as
// systemd's release_lock_file() does, so nobody is left locking a file that no longer exists.
class LockFile {
public:
    LockFile() = default;
    LockFile(LockFile&& o) noexcept;
    LockFile& operator=(LockFile&& o) noexcept;
    ~LockFile() { release(); }

    // Creates `path` (mode 0600) if missing and locks it, the `kind` way, without waiting.
    // EBUSY: someone else holds it. The directory must exist.
    static Result<LockFile> try_take(const std::string& path, LockKind kind);

    explicit operator bool() const { return static_cast<bool>(fd_); }
    const std::string& path() const { return path_; }
    void release();

private:
    std::string path_;
    shm::UniqueFd fd_;
};

// Takes the POSIX write lock on `path` (normally /etc/.pwd.lock) without waiting: the daemon
// must never sleep on its event loop, its caller retries later. The file is opened like
// lckpwdf() opens it. EBUSY when someone holds it; `*holder` (if given) then gets the
// holder's PID where the kernel tells (POSIX locks), else 0.
Result<shm::UniqueFd> try_passwd_lock(const std::string& path, pid_t* holder = nullptr);

// Takes flock(LOCK_EX) on `path` without waiting, creating it (mode 0600) if missing. EBUSY
// when someone holds it.
Result<shm::UniqueFd> try_flock(const std::string& path);

// mkdir -p for the directories of systemd's allocators (mode 0755, like theirs).
Result<void> make_directories(const std::string& path);

}  // namespace transient::allocator
