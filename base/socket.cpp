// SPDX-License-Identifier: LGPL-2.1-or-later

#include "base/socket.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include <systemd/sd-daemon.h>

namespace transient::base {

Result<UnixAddress> unix_address(const std::string& path) {
    UnixAddress a;
    a.sa.sun_family = AF_UNIX;
    if (path.empty() || path.find('\0') != std::string::npos)
        return errno_error(EINVAL);
    if (path.size() >= sizeof(a.sa.sun_path))
        return errno_error(ENAMETOOLONG);
    std::memcpy(a.sa.sun_path, path.data(), path.size());
    a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return a;
}

Result<UniqueFd> listen_unix(const std::string& path, mode_t mode) {
    auto addr = unix_address(path);
    if (!addr)
        return std::unexpected(addr.error());

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
        return errno_error(errno);

    // A socket left by a previous instance is ours to replace. Anything else at that path is
    // not, and bind() reports EADDRINUSE for it.
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        ::unlink(path.c_str());

    if (::bind(fd.get(), addr->get(), addr->len) < 0)
        return errno_error(errno);
    // bind() honours the umask, which is process-wide and cannot be changed safely with
    // threads around; set the mode explicitly before anyone can be accepted.
    if (::chmod(path.c_str(), mode) < 0 || ::listen(fd.get(), SOMAXCONN) < 0) {
        const int e = errno;
        ::unlink(path.c_str());
        return errno_error(e);
    }
    return fd;
}

Result<UniqueFd> listen_activated_or_bind(const std::string& path, mode_t mode) {
    const int n = sd_listen_fds(1);
    if (n < 0)
        return errno_error(n);
    if (n > 1)
        return errno_error(E2BIG);  // one socket per daemon; anything else is a unit mistake
    if (n == 1) {
        if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, nullptr, 0) <= 0)
            return errno_error(ENOTSOCK);
        return UniqueFd(SD_LISTEN_FDS_START);
    }
    const auto slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
        const std::string dir = path.substr(0, slash);
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
            return errno_error(errno);
    }
    return listen_unix(path, mode);
}

}  // namespace transient::base
