// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Internals shared by the Varlink server and client: turning JSON into wire bytes and back,
// the nesting-depth pre-check that runs before any untrusted text reaches the parser, and
// SCM_RIGHTS plumbing. Nothing here is part of the public API.

#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <systemd/sd-event.h>

#include "base/result.hpp"
#include "base/sd_event.hpp"
#include "base/unique_fd.hpp"

namespace transient::varlink::detail {

using json = nlohmann::json;

// The size of a control buffer that holds `n` descriptors in one SCM_RIGHTS message.
constexpr std::size_t cmsg_space_for_fds(std::size_t n) noexcept {
    return CMSG_SPACE(sizeof(int) * n);
}

// Serializes `j` as compact JSON. Strings that are not valid UTF-8 (a handler may copy bytes
// from anywhere) get U+FFFD instead of making nlohmann throw type_error 316 mid-reply.
std::string dump(const json& j);

// True if `text` nests arrays and objects deeper than `max_depth`. This runs before parsing so
// that a hostile message never costs more than one linear scan; brackets inside strings (and
// escaped quotes) do not count. Unbalanced text is left for the parser to reject.
bool exceeds_depth(std::string_view text, int max_depth) noexcept;

// Parses untrusted text without exceptions: the result is_discarded() if it is not JSON.
// REQUIRES: !exceeds_depth(text, ...) for a sane bound, so the parser's stack stays small.
json parse(std::string_view text);

// Takes every SCM_RIGHTS descriptor out of a received message. Descriptors from any other
// control message type cannot occur (we never ask for them) and are ignored.
void collect_fds(const msghdr& msg, std::vector<base::UniqueFd>& out);

// sendmsg() with MSG_NOSIGNAL (a closed peer is EPIPE, never SIGPIPE) and, if `fds` is not
// empty, one SCM_RIGHTS control message. Returns bytes sent or -errno.
ssize_t send_with_fds(int fd, std::string_view data, std::span<const int> fds) noexcept;

using base::SourcePtr;

}  // namespace transient::varlink::detail
