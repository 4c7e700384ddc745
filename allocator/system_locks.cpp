// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/system_locks.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace transient::allocator {

LockFile::LockFile(LockFile&& o) noexcept : path_(std::move(o.path_)), fd_(std::move(o.fd_)) {}

LockFile& LockFile::operator=(LockFile&& o) noexcept {
    if (this != &o) {
        release();
        path_ = std::move(o.path_);
        fd_ = std::move(o.fd_);
    }
    return *this;
}

namespace {

// 0, or errno (EWOULDBLOCK/EAGAIN when someone else holds it).
int lock_without_waiting(int fd, LockKind kind) {
    if (kind == LockKind::kOfd) {
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (::fcntl(fd, F_OFD_SETLK, &fl) == 0)
            return 0;
        // make_lock_file() uses flock() where the kernel has no OFD locks; so do we.
        if (errno != EINVAL)
            return errno;
    }
    return ::flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
}

}  // namespace

Result<LockFile> LockFile::try_take(const std::string& path, LockKind kind) {
    // The holder unlinks the file when done; if that happened between our open() and lock,
    // we hold a lock on a file nobody else can find, so try again on the new one.
    for (int attempt = 0; attempt < 8; attempt++) {
        shm::UniqueFd fd(::open(path.c_str(),
                                O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
        if (!fd)
            return errno_error(errno);
        if (const int err = lock_without_waiting(fd.get(), kind); err != 0)
            return errno_error(err == EWOULDBLOCK || err == EAGAIN || err == EACCES ? EBUSY
                                                                                    : err);
        struct stat st {};
        if (::fstat(fd.get(), &st) < 0)
            return errno_error(errno);
        if (st.st_nlink == 0)
            continue;
        LockFile l;
        l.path_ = path;
        l.fd_ = std::move(fd);
        return l;
    }
    return errno_error(EBUSY);
}

void LockFile::release() {
    if (!fd_)
        return;
    // Unlink while still holding the lock, then close, which drops it.
    (void)::unlink(path_.c_str());
    fd_.reset();
}

Result<shm::UniqueFd> try_passwd_lock(const std::string& path, pid_t* holder) {
    // lckpwdf() opens O_WRONLY|O_CREAT with mode 0600. A POSIX lock, not flock(): that is what
    // shadow's tools and systemd take, and the two kinds do not exclude each other.
    if (holder != nullptr)
        *holder = 0;
    shm::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd)
        return errno_error(errno);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    for (;;) {
        if (::fcntl(fd.get(), F_SETLK, &fl) == 0)
            return fd;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EACCES)
            return errno_error(errno);
        // Who holds it, for the message (-1 for an OFD lock, which has no owning process).
        struct flock who {};
        who.l_type = F_WRLCK;
        who.l_whence = SEEK_SET;
        if (holder != nullptr && ::fcntl(fd.get(), F_GETLK, &who) == 0 && who.l_type != F_UNLCK &&
            who.l_pid > 0)
            *holder = who.l_pid;
        return errno_error(EBUSY);
    }
}

Result<shm::UniqueFd> try_flock(const std::string& path) {
    shm::UniqueFd fd(
            ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
    if (!fd)
        return errno_error(errno);
    for (;;) {
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno == EINTR)
            continue;
        return errno_error(errno == EWOULDBLOCK ? EBUSY : errno);
    }
}

Result<void> make_directories(const std::string& path) {
    for (std::size_t pos = 1; pos != std::string::npos;) {
        pos = path.find('/', pos + 1);
        const std::string prefix = path.substr(0, pos);
        if (::mkdir(prefix.c_str(), 0755) < 0 && errno != EEXIST)
            return errno_error(errno);
    }
    return {};
}

}  // namespace transient::allocator
