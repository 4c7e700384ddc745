// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Wire helpers for the Varlink server and client: serialization that cannot throw on bad
// UTF-8, the nesting-depth scan, the exception-free parse and SCM_RIGHTS send/receive.

#include "varlink/wire.hpp"

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace transient::varlink::detail {

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool exceeds_depth(std::string_view text, int max_depth) noexcept {
    int depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (char c : text) {
        if (in_string) {
            // Only '"' and '\' matter inside a string; anything after a backslash is skipped,
            // which is enough to find where the string ends (\uXXXX has no quotes in it).
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        switch (c) {
        case '"':
            in_string = true;
            break;
        case '[':
        case '{':
            if (++depth > max_depth)
                return true;
            break;
        case ']':
        case '}':
            depth--;
            break;
        default:
            break;
        }
    }
    return false;
}

json parse(std::string_view text) {
    return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

void collect_fds(const msghdr& msg, std::vector<base::UniqueFd>& out) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
         c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < n; i++) {
            int fd;
            // CMSG_DATA need not be int-aligned for the compiler's purposes: copy, don't cast.
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            out.emplace_back(fd);
        }
    }
}

ssize_t send_with_fds(int fd, std::string_view data, std::span<const int> fds) noexcept {
    iovec iov{const_cast<char*>(data.data()), data.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;

    std::vector<char> control;
    if (!fds.empty()) {
        try {
            control.resize(cmsg_space_for_fds(fds.size()));
        } catch (...) {
            return -ENOMEM;
        }
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }

    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n < 0 ? -errno : n;
}

}  // namespace transient::varlink::detail
