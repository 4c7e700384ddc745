// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The blocking Varlink client used by transientctl and the tests: one call at a time, each
// reply awaited with poll() and a timeout, replies checked for shape before anyone reads them.
// After a transport failure (timeout, EOF, malformed or oversized reply) the stream is out of
// step with the server, so the client refuses further calls with the same error.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/socket.hpp"
#include "varlink/varlink.hpp"
#include "varlink/wire.hpp"

namespace transient::varlink {
namespace {

using Clock = std::chrono::steady_clock;

// Replies come from a service we chose to talk to, but a broken or impostor service must not
// make us allocate without bound or recurse deeply either.
constexpr std::size_t kMaxReplySize = 16 * 1024 * 1024;
constexpr int kMaxReplyDepth = 128;
constexpr std::size_t kReadChunk = 64 * 1024;

// Waits until `fd` is ready for `events` or the deadline passes. 0, or -errno (-ETIMEDOUT).
int wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            return -ETIMEDOUT;
        pollfd p{fd, events, 0};
        const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r > 0)
            return 0;  // ready, or POLLHUP/POLLERR, which the next send/recv will report
    }
}

// Checks a reply's shape. Returns false if it is not a Varlink reply.
bool decode_reply(const json& message, Client::Reply& ret) {
    if (!message.is_object())
        return false;
    Client::Reply reply;
    if (auto it = message.find("error"); it != message.end()) {
        if (!it->is_string() || it->get_ref<const std::string&>().empty())
            return false;
        reply.error = it->get<std::string>();
    }
    if (auto it = message.find("parameters"); it != message.end() && !it->is_null()) {
        if (!it->is_object())
            return false;
        reply.parameters = *it;
    }
    if (auto it = message.find("continues"); it != message.end() && !it->is_null()) {
        if (!it->is_boolean())
            return false;
        reply.continues = it->get<bool>();
    }
    // An error ends the call, whatever else it says.
    if (!reply.error.empty())
        reply.continues = false;
    ret = std::move(reply);
    return true;
}

// Parses and checks one reply's text (without its NUL).
bool decode_text(std::string_view text, Client::Reply& ret) {
    return !detail::exceeds_depth(text, kMaxReplyDepth) && decode_reply(detail::parse(text), ret);
}

}  // namespace

struct Client::Impl {
    Result<void> send(std::string_view method, const json& parameters, bool more,
                      std::span<const int> fds);
    Result<Reply> receive();
    // The next message's text, without its NUL; valid until the next call.
    Result<std::string_view> receive_text();
    std::unexpected<std::error_code> fail(int e) {
        broken = std::error_code(e < 0 ? -e : e, std::system_category());
        return std::unexpected(broken);
    }

    base::UniqueFd fd;
    std::chrono::milliseconds timeout{};
    std::string in;  // received bytes; those before in_pos were returned as replies already
    std::size_t in_pos = 0;
    std::error_code broken;
};

Client::Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

int Client::fd() const {
    return impl_ ? impl_->fd.get() : -1;
}

Result<Client> Client::connect(const std::string& path, std::chrono::milliseconds timeout) {
    auto addr = base::unix_address(path);
    if (!addr)
        return std::unexpected(addr.error());

    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return errno_error(errno);

    // connect() to a listener whose backlog is full waits for room, for at most SO_SNDTIMEO;
    // a non-blocking connect() would fail with EAGAIN at once instead of waiting.
    const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
    timeval tv{static_cast<time_t>(usec / 1000000), static_cast<suseconds_t>(usec % 1000000)};
    if (usec > 0 && ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return errno_error(errno);
    if (::connect(fd.get(), addr->get(), addr->len) < 0)
        return errno_error(errno == EAGAIN ? ETIMEDOUT : errno);

    // From here on every wait is a poll() with its own deadline.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
        return errno_error(errno);

    Client client;
    client.impl_ = std::make_unique<Impl>();
    client.impl_->fd = std::move(fd);
    client.impl_->timeout = timeout;
    return client;
}

Result<void> Client::Impl::send(std::string_view method, const json& parameters, bool more,
                                std::span<const int> fds) {
    if (broken)
        return std::unexpected(broken);
    json message{{"method", method}, {"parameters", parameters}};
    if (more)
        message["more"] = true;
    std::string text = detail::dump(message);
    text.push_back('\0');

    const auto deadline = Clock::now() + timeout;
    std::string_view left = text;
    bool fds_sent = fds.empty();
    while (!left.empty()) {
        // The descriptors ride on the first byte of the message; that is how the server knows
        // which message they belong to.
        const ssize_t n = detail::send_with_fds(fd.get(), left, fds_sent ? std::span<const int>{}
                                                                         : fds);
        if (n == -EAGAIN || n == -EINTR) {
            if (const int r = wait_for(fd.get(), POLLOUT, deadline); r < 0)
                return fail(r);
            continue;
        }
        if (n < 0)
            return fail(static_cast<int>(n));
        fds_sent = true;
        left.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

Result<std::string_view> Client::Impl::receive_text() {
    // The previous message was returned whole: its bytes can go now.
    if (in_pos == in.size()) {
        in.clear();
        in_pos = 0;
    }
    const auto deadline = Clock::now() + timeout;
    std::size_t scanned = in_pos;  // bytes of `in` before this hold no NUL
    for (;;) {
        if (auto nul = in.find('\0', scanned); nul != std::string::npos) {
            // Only an offset moves: a read that brought many replies (an enumeration) must not
            // cost a move of everything behind each one.
            const std::string_view text(in.data() + in_pos, nul - in_pos);
            in_pos = nul + 1;
            return text;
        }
        if (in.size() - in_pos > kMaxReplySize)
            return fail(EMSGSIZE);
        // What is left is the start of one reply: move it to the front before reading more.
        in.erase(0, in_pos);
        in_pos = 0;
        scanned = in.size();

        const std::size_t old = in.size();
        ssize_t n = 0;
        int e = 0;
        in.resize_and_overwrite(old + kReadChunk, [&](char* data, std::size_t) {
            n = ::recv(fd.get(), data + old, kReadChunk, MSG_DONTWAIT);
            e = errno;
            return old + static_cast<std::size_t>(std::max<ssize_t>(n, 0));
        });
        if (n == 0)
            return fail(ECONNRESET);
        if (n < 0) {
            if (e != EAGAIN && e != EINTR)
                return fail(e);
            if (const int r = wait_for(fd.get(), POLLIN, deadline); r < 0)
                return fail(r);
        }
    }
}

Result<Client::Reply> Client::Impl::receive() {
    auto text = receive_text();
    if (!text)
        return std::unexpected(text.error());
    Reply reply;
    if (!decode_text(*text, reply))
        return fail(EBADMSG);
    return reply;
}

Result<Client::Reply> Client::call(std::string_view method, const json& parameters,
                                   std::span<const int> fds) {
    if (!impl_)
        return errno_error(EBADF);
    if (auto r = impl_->send(method, parameters, /*more=*/false, fds); !r)
        return std::unexpected(r.error());
    return impl_->receive();
}

Result<std::vector<Client::Reply>> Client::call_more(std::string_view method,
                                                     const json& parameters) {
    if (!impl_)
        return errno_error(EBADF);
    if (auto r = impl_->send(method, parameters, /*more=*/true, {}); !r)
        return std::unexpected(r.error());
    std::vector<Reply> replies;
    for (;;) {
        auto reply = impl_->receive();
        if (!reply)
            return std::unexpected(reply.error());
        const bool last = !reply->continues;
        replies.push_back(std::move(*reply));
        if (last)
            return replies;
    }
}

Result<void> Client::call_more(std::string_view method, const json& parameters,
                               const ReadParameters& read,
                               const std::function<void(Reply&&)>& each) {
    // What dump() makes of a reply's keys, in order: what our server (and sd-varlink) write.
    static constexpr std::string_view kContinues = R"({"continues":true,"parameters":)";
    static constexpr std::string_view kLast = R"({"parameters":)";
    if (!impl_)
        return errno_error(EBADF);
    if (auto r = impl_->send(method, parameters, /*more=*/true, {}); !r)
        return std::unexpected(r.error());
    for (;;) {
        auto text = impl_->receive_text();
        if (!text)
            return std::unexpected(text.error());
        const bool continues = text->starts_with(kContinues);
        const std::size_t prefix = continues ? kContinues.size() : kLast.size();
        // `read` sees the text between the prefix and the last brace, and takes it only if it
        // is one object: then the message is that object framed as a reply.
        if ((continues || text->starts_with(kLast)) && text->size() > prefix &&
            text->back() == '}' &&
            read(text->substr(prefix, text->size() - prefix - 1), continues)) {
            if (!continues)
                return {};
            continue;
        }
        Reply reply;
        if (!decode_text(*text, reply))
            return impl_->fail(EBADMSG);
        const bool last = !reply.continues;
        each(std::move(reply));
        if (last)
            return {};
    }
}

}  // namespace transient::varlink
