// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/system_locks.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace transient::allocator {
namespace {

using Clock = std::chrono::steady_clock;

// Short sleeps: the other allocators hold these locks for milliseconds.
constexpr auto kRetryDelay = std::chrono::milliseconds(5);

}  // namespace

LockFile::LockFile(LockFile&& o) noexcept : path_(std::move(o.path_)), fd_(std::move(o.fd_)) {}

LockFile& LockFile::operator=(LockFile&& o) noexcept {
    if (this != &o) {
        release();
        path_ = std::move(o.path_);
        fd_ = std::move(o.fd_);
    }
    return *this;
}

Result<LockFile> LockFile::try_take(const std::string& path) {
    // The holder unlinks the file when done; if that happened between our open() and flock(),
    // we hold a lock on a file nobody else can find, so try again on the new one.
    for (int attempt = 0; attempt < 8; attempt++) {
        shm::UniqueFd fd(::open(path.c_str(),
                                O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
        if (!fd)
            return errno_error(errno);
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0)
            return errno_error(errno == EWOULDBLOCK ? EBUSY : errno);
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

Result<shm::UniqueFd> take_passwd_lock(const std::string& path,
                                       std::chrono::milliseconds timeout) {
    // lckpwdf() opens O_WRONLY|O_CREAT with mode 0600. A POSIX lock, not flock(): that is what
    // shadow's tools and systemd take, and the two kinds do not exclude each other.
    shm::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd)
        return errno_error(errno);
    const auto deadline = Clock::now() + timeout;
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    for (;;) {
        if (::fcntl(fd.get(), F_SETLK, &fl) == 0)
            return fd;
        if (errno != EAGAIN && errno != EACCES && errno != EINTR)
            return errno_error(errno);
        if (Clock::now() >= deadline)
            return errno_error(ETIMEDOUT);
        std::this_thread::sleep_for(kRetryDelay);
    }
}

Result<shm::UniqueFd> take_flock(const std::string& path, std::chrono::milliseconds timeout) {
    shm::UniqueFd fd(
            ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
    if (!fd)
        return errno_error(errno);
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return errno_error(errno);
        if (Clock::now() >= deadline)
            return errno_error(ETIMEDOUT);
        std::this_thread::sleep_for(kRetryDelay);
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
