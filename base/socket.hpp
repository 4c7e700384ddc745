// SPDX-License-Identifier: LGPL-2.1-or-later
//
// AF_UNIX stream sockets in the file system: the address, a listening socket bound by hand, and
// the daemons' "the socket systemd passed, or else one of our own".

#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace transient::base {

// An AF_UNIX address for a file-system socket path, with the length bind() and connect() take.
struct UnixAddress {
    sockaddr_un sa{};
    socklen_t len = 0;

    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&sa); }
};

// EINVAL for an empty path or one with a NUL in it, ENAMETOOLONG if it does not fit sun_path.
Result<UnixAddress> unix_address(const std::string& path);

// A non-blocking listening socket bound to `path` with `mode` (a stale socket there is
// replaced; anything else there is EADDRINUSE).
Result<UniqueFd> listen_unix(const std::string& path, mode_t mode);

// The one socket systemd passed (socket activation); without one, creates the parent directory
// of `path` (mode 0755) if it is missing and binds `path` with `mode`. More than one passed
// socket is E2BIG, one that is not an AF_UNIX stream socket ENOTSOCK.
Result<UniqueFd> listen_activated_or_bind(const std::string& path, mode_t mode);

}  // namespace transient::base
