// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The Varlink server's transport: listening sockets, accept() with connection limits, and
// per-connection non-blocking I/O: NUL framing with size and depth limits, SCM_RIGHTS
// collection, an output queue written as the socket allows, and backpressure that stops
// reading from a client whose unread replies pile up. Requests themselves are handled in
// dispatch.cpp.

#include "varlink/server_impl.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <utility>

#include <systemd/sd-daemon.h>

#include "base/log.hpp"
#include "base/socket.hpp"

namespace transient::varlink {
namespace {

// How much one read takes from a socket. Reading once per wakeup keeps one chatty client from
// starving the others; the level-triggered source calls us again for the rest.
constexpr std::size_t kReadChunk = 64 * 1024;
// accept() calls per wakeup, for the same reason.
constexpr int kMaxAcceptsPerWakeup = 64;
// How long a listener rests after accept() ran out of descriptors or memory.
constexpr uint64_t kAcceptRetryUsec = 100'000;
// An idle output buffer larger than this gives its memory back.
constexpr std::size_t kKeepCapacity = 256 * 1024;

uint64_t to_usec(std::chrono::milliseconds ms) {
    return ms.count() <= 0 ? 0 : static_cast<uint64_t>(ms.count()) * 1000;
}

int on_listener_io(sd_event_source*, int, uint32_t, void* userdata) noexcept {
    auto* listener = static_cast<detail::Listener*>(userdata);
    try {
        listener->server->accept_connections(*listener);
    } catch (...) {
        // Only allocation can throw here; the connection being set up is gone, and the
        // listener stays armed for the next client.
    }
    // Never a negative value: sd-event would disable the listener for good.
    return 0;
}

int on_accept_retry(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* listener = static_cast<detail::Listener*>(userdata);
    sd_event_source_set_enabled(listener->source.get(), SD_EVENT_ON);
    return 0;
}

}  // namespace

// ---- Server ------------------------------------------------------------------------------

Server::Server(sd_event* event, ServiceInfo info, Limits limits)
    : impl_(std::make_unique<Impl>(event, std::move(info), limits)) {}

Server::~Server() = default;

void Server::add_interface(Interface iface) {
    impl_->add_interface(std::move(iface));
}

Result<void> Server::listen_fd(base::UniqueFd fd) {
    if (!fd)
        return errno_error(EBADF);
    const int r = sd_is_socket(fd.get(), AF_UNIX, SOCK_STREAM, /*listening=*/1);
    if (r < 0)
        return errno_error(r);
    if (r == 0)  // not a socket at all, or not an AF_UNIX stream socket that listens
        return errno_error(sd_is_socket(fd.get(), AF_UNSPEC, 0, -1) > 0 ? EINVAL : ENOTSOCK);
    // systemd passes sockets in blocking mode; one accept() racing another client must not
    // block the whole event loop.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
        return errno_error(errno);
    return impl_->add_listener(std::move(fd));
}

Result<void> Server::listen_path(const std::string& path, mode_t mode) {
    auto fd = base::listen_unix(path, mode);
    if (!fd)
        return std::unexpected(fd.error());
    return impl_->add_listener(std::move(*fd));
}

std::size_t Server::connection_count() const {
    return impl_->connections_.size();
}

std::size_t Server::buffered_output() const {
    return impl_->total_output_;
}

const Limits& Server::limits() const {
    return impl_->limits_;
}

void Server::set_log_handler(LogHandler handler) {
    impl_->log_handler_ = std::move(handler);
}

// ---- Server::Impl: listeners and connection bookkeeping ----------------------------------

Server::Impl::Impl(sd_event* event, ServiceInfo info, Limits limits)
    : event_(event), info_(std::move(info)), limits_(limits), log_handler_(base::log),
      read_buffer_(kReadChunk),
      // Room for one descriptor more than allowed, so that "too many" is seen as such; beyond
      // that the kernel sets MSG_CTRUNC and closes the excess itself.
      control_buffer_(detail::cmsg_space_for_fds(limits.max_fds_per_message + 1)) {
    add_service_interface();
    // Below the sockets' priority: a connection with requests left after its turn waits until
    // every socket with news had its turn too. One source for all, run in a batch, because a
    // defer source that is re-enabled keeps its place at the front of sd-event's queue.
    sd_event_source* source = nullptr;
    if (sd_event_add_defer(event_, &source, on_wake, this) >= 0) {
        wake_source_.reset(source);
        sd_event_source_set_priority(source, SD_EVENT_PRIORITY_NORMAL + 1);
        sd_event_source_set_enabled(source, SD_EVENT_OFF);
        sd_event_source_set_description(source, "varlink-wake");
    }
}

void Server::Impl::queue_wake(detail::Connection& connection) {
    wake_queue_.push_back(&connection);
    sd_event_source_set_enabled(wake_source_.get(), SD_EVENT_ON);
}

void Server::Impl::forget_wake(detail::Connection& connection) {
    std::erase(wake_queue_, &connection);
}

int Server::Impl::on_wake(sd_event_source* source, void* userdata) noexcept {
    auto* self = static_cast<Server::Impl*>(userdata);
    // Those queued before this turn; who asks again now waits for the next one.
    for (std::size_t n = self->wake_queue_.size(); n > 0 && !self->wake_queue_.empty(); n--) {
        detail::Connection* connection = self->wake_queue_.front();
        self->wake_queue_.pop_front();
        connection->run_woken();  // may close it, which takes it out of the queue
    }
    if (self->wake_queue_.empty())
        sd_event_source_set_enabled(source, SD_EVENT_OFF);
    return 0;
}

Server::Impl::~Impl() {
    // Connections first: their handlers may refer to interfaces, never the other way round.
    connections_.clear();
    wake_source_.reset();
    listeners_.clear();
}

void Server::Impl::log(int priority, std::string_view message) const noexcept {
    if (!log_handler_)
        return;
    try {
        // Clients decide how often most of these happen: keep them from flooding the journal.
        unsigned suppressed = 0;
        const bool admitted = log_limit_.admit(now_usec(), &suppressed);
        if (suppressed > 0)
            log_handler_(LOG_WARNING, "Suppressed " + std::to_string(suppressed) +
                                          " Varlink server messages");
        if (!admitted)
            return;
        log_handler_(priority, message);
    } catch (...) {
        // A logger that fails must not take a connection (or the loop) down with it.
    }
}

uint64_t Server::Impl::now_usec() const {
    uint64_t usec = 0;
    sd_event_now(event_, CLOCK_MONOTONIC, &usec);
    return usec;
}

void Server::Impl::add_output(detail::UidState& uid, std::size_t n) {
    uid.output += n;
    total_output_ += n;
    churn_since_trim_ += n;
}

void Server::Impl::trim_if_quiet() {
    // glibc keeps the heap that buffers freed, for the next burst that may never come:
    // transient-allocd stayed at 50-67 MiB after integration.dos's attacks (8.5 MiB before).
    // Once 16 MiB have gone through the buffers and less than 1 MiB of answers is queued, what
    // is free goes back. malloc_trim() walks the free chunks, a few milliseconds on the loop at
    // most, at most once per 16 MiB of traffic, which took far longer to read or build.
    constexpr std::size_t kTrimAfter = 16 << 20, kQuietBelow = 1 << 20;
    if (churn_since_trim_ < kTrimAfter || total_output_ >= kQuietBelow)
        return;
    churn_since_trim_ = 0;
    ::malloc_trim(0);
}

std::size_t Server::Impl::output_hard_limit() const {
    return limits_.max_output_total + limits_.output_reserve_total;
}

void Server::Impl::make_room(const detail::Connection& requester) {
    while (total_output_ > output_hard_limit()) {
        // Of the connections whose own unread answers hold their UID past its reserve, the one
        // whose client has made no progress for longest: a client that reads is closed last.
        detail::Connection* oldest = nullptr;
        for (const auto& [key, c] : connections_) {
            if (c.get() == &requester || c->peer_.uid == 0 || c->deferred_ != nullptr ||
                c->pending_output() == 0 || c->uid_.output <= limits_.output_reserve_per_uid)
                continue;
            if (oldest == nullptr || c->last_progress_usec_ < oldest->last_progress_usec_)
                oldest = c.get();
        }
        if (oldest == nullptr)
            return;
        log(LOG_INFO, "Varlink client of UID " + std::to_string(oldest->peer_.uid) +
                          " left answers unread while others wait for room, disconnecting");
        close_connection(*oldest);
    }
}

void Server::Impl::remove_output(detail::UidState& uid, std::size_t n) {
    const bool uid_was_over = uid.output > limits_.max_output_per_uid;
    const bool total_was_over = total_output_ > limits_.max_output_total;
    const bool reserves_were_over = total_output_ > output_hard_limit();
    const bool reserve_was_over = uid.output > limits_.output_reserve_per_uid;
    uid.output -= n;
    total_output_ -= n;
    auto wake_all = [](detail::UidState& state) {
        for (detail::Connection* c : state.waiting)
            c->stop_waiting_and_wake();
        state.waiting.clear();
    };
    if ((total_was_over && total_output_ <= limits_.max_output_total) ||
        (reserves_were_over && total_output_ <= output_hard_limit())) {
        for (auto& [id, state] : uids_)
            wake_all(state);
    } else if ((uid_was_over && uid.output <= limits_.max_output_per_uid) ||
               (total_was_over && reserve_was_over &&
                uid.output <= limits_.output_reserve_per_uid)) {
        // Back under its own budget, or under its reserve, which the total does not hold.
        wake_all(uid);
    }
}

Result<void> Server::Impl::add_listener(base::UniqueFd fd) {
    auto listener = std::make_unique<detail::Listener>();
    listener->server = this;
    listener->fd = std::move(fd);
    sd_event_source* source = nullptr;
    const int r = sd_event_add_io(event_, &source, listener->fd.get(), EPOLLIN, on_listener_io,
                                  listener.get());
    if (r < 0)
        return errno_error(r);
    listener->source.reset(source);
    sd_event_source_set_description(source, "varlink-listener");
    listeners_.push_back(std::move(listener));
    return {};
}

void Server::Impl::pause_listener(detail::Listener& listener, int error) {
    log(LOG_WARNING, "Failed to accept Varlink connection: " + errno_string(error) +
                         ", pausing listener");
    sd_event_source_set_enabled(listener.source.get(), SD_EVENT_OFF);
    sd_event_source* timer = nullptr;
    if (sd_event_add_time_relative(event_, &timer, CLOCK_MONOTONIC, kAcceptRetryUsec, 0,
                                   on_accept_retry, &listener) < 0) {
        // Without a timer the listener would stay off forever; spinning is the lesser evil.
        sd_event_source_set_enabled(listener.source.get(), SD_EVENT_ON);
        return;
    }
    listener.retry_timer.reset(timer);
}

void Server::Impl::accept_connections(detail::Listener& listener) {
    for (int i = 0; i < kMaxAcceptsPerWakeup; i++) {
        base::UniqueFd fd(
            ::accept4(listener.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            const int e = errno;
            switch (e) {
            case EAGAIN:
                return;
            case EINTR:
            case ECONNABORTED:  // the client gave up while queued
            case EPROTO:
            case EPERM:
                continue;
            default:  // EMFILE, ENFILE, ENOBUFS, ENOMEM, ...
                pause_listener(listener, e);
                return;
            }
        }

        ucred peer{};
        socklen_t len = sizeof(peer);
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0)
            continue;

        // Over a limit the connection is accepted and closed at once: the client sees EOF
        // instead of hanging in the backlog, and the backlog does not fill up. Root has
        // connections in reserve that nobody else can take.
        const std::size_t cap =
            peer.uid == 0 ? limits_.max_connections
                          : limits_.max_connections -
                                std::min(limits_.root_reserved_connections,
                                         limits_.max_connections);
        if (connections_.size() >= cap) {
            log(LOG_WARNING, "Too many Varlink connections, refusing one of UID " +
                                 std::to_string(peer.uid));
            continue;
        }
        if (peer.uid != 0) {
            auto it = uids_.find(peer.uid);
            if (it != uids_.end() && it->second.connections >= limits_.max_connections_per_uid) {
                log(LOG_NOTICE, "Too many Varlink connections of UID " +
                                    std::to_string(peer.uid) + ", refusing connection");
                continue;
            }
        }

        detail::UidState& uid = uids_[peer.uid];
        uid.connections++;
        auto connection = std::make_unique<detail::Connection>(*this, std::move(fd), peer, uid);
        if (auto r = connection->start(); !r) {
            log(LOG_WARNING, "Failed to watch Varlink connection: " + r.error().message());
            connection.reset();
            if (--uid.connections == 0)
                uids_.erase(peer.uid);
            continue;
        }
        detail::Connection* key = connection.get();
        connections_.emplace(key, std::move(connection));
    }
}

void Server::Impl::close_connection(detail::Connection& connection) {
    const uid_t uid = connection.peer().uid;
    connections_.erase(&connection);  // gives its output budget back to its UID entry first
    auto it = uids_.find(uid);
    if (it != uids_.end() && --it->second.connections == 0)
        uids_.erase(it);
    trim_if_quiet();  // after the connection's buffers are freed, not from its destructor
}

// ---- Connection --------------------------------------------------------------------------

namespace detail {

Connection::Connection(Server::Impl& server, base::UniqueFd fd, const ucred& peer, UidState& uid)
    : server_(server), fd_(std::move(fd)), peer_(peer), uid_(uid),
      last_progress_usec_(server.now_usec()) {}

// source_ is declared after fd_, so it is released (and leaves epoll) before the fd closes.
Connection::~Connection() {
    if (deferred_)
        deferred_->connection = nullptr;  // its answer is dropped
    if (waiting_)
        std::erase(uid_.waiting, this);
    if (wake_queued_)
        server_.forget_wake(*this);
    discard_output();
}

Result<void> Connection::start() {
    sd_event_source* source = nullptr;
    int r = sd_event_add_io(server_.event_, &source, fd_.get(), EPOLLIN, on_io, this);
    if (r < 0)
        return errno_error(r);
    source_.reset(source);
    sd_event_source_set_description(source, "varlink-connection");
    events_ = EPOLLIN;


    r = sd_event_add_time(server_.event_, &source, CLOCK_MONOTONIC, 0, 0, on_timer, this);
    if (r < 0)
        return errno_error(r);
    timer_.reset(source);
    sd_event_source_set_description(source, "varlink-connection-timeout");
    sd_event_source_set_enabled(source, SD_EVENT_OFF);
    if (!arm_timer())
        return errno_error(ENOMEM);
    return {};
}

std::shared_ptr<DeferredSlot> Connection::begin_deferred() {
    deferred_ = std::make_shared<DeferredSlot>();
    deferred_->connection = this;
    return deferred_;
}

void Connection::end_deferred() {
    if (deferred_)
        deferred_->connection = nullptr;
    deferred_.reset();
    last_progress_usec_ = server_.now_usec();  // the idle clock starts again
    wake();
}

void Connection::wake() {
    if (wake_queued_)
        return;
    wake_queued_ = true;
    server_.queue_wake(*this);
}

void Connection::stop_waiting_and_wake() {
    waiting_ = false;
    // A client with nothing unread was waiting for us: its idle clock starts again. One that
    // leaves answers unread keeps its clock, or others' progress would keep it alive.
    if (pending_output() == 0)
        last_progress_usec_ = server_.now_usec();
    wake();
}

void Connection::queue(std::string_view message) {
    if (hung_up_)
        return;  // nobody left to read it
    out_.append(message);
    out_.push_back('\0');
    server_.add_output(uid_, message.size() + 1);
}

void Connection::hang_up() {
    hung_up_ = true;
    discard_output();
}

void Connection::discard_output() {
    server_.remove_output(uid_, pending_output());
    out_.clear();
    out_.shrink_to_fit();
    out_pos_ = 0;
}

bool Connection::over_budget() const {
    const Limits& limits = server_.limits_;
    if (peer_.uid == 0)
        return false;
    if (uid_.output > limits.max_output_per_uid ||
        server_.total_output_ > server_.output_hard_limit())
        return true;
    // Below that, the total holds back only UIDs past their reserve: a UID with little or
    // nothing queued is served while other UIDs leave answers unread.
    return server_.total_output_ > limits.max_output_total &&
           uid_.output > limits.output_reserve_per_uid;
}

bool Connection::wants_room() const {
    const Limits& limits = server_.limits_;
    return peer_.uid != 0 && !hung_up_ && deferred_ == nullptr &&
           uid_.output <= limits.output_reserve_per_uid &&
           server_.total_output_ > server_.output_hard_limit();
}

int Connection::on_io(sd_event_source*, int, uint32_t revents, void* userdata) noexcept {
    return on_event(static_cast<Connection*>(userdata), revents);
}

int Connection::on_event(Connection* connection, uint32_t revents) noexcept {
    Server::Impl& server = connection->server_;
    bool keep = false;
    try {
        keep = connection->handle_io(revents);
    } catch (const std::bad_alloc&) {
        server.log(LOG_ERR, "Out of memory handling Varlink connection, closing it");
    } catch (...) {
        server.log(LOG_ERR, "Unexpected failure handling Varlink connection, closing it");
    }
    if (!keep)
        server.close_connection(*connection);  // connection is gone now
    return 0;
}

int Connection::on_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* connection = static_cast<Connection*>(userdata);
    Server::Impl& server = connection->server_;
    const uint64_t deadline = connection->deadline();
    if (deadline == 0 || deadline > server.now_usec()) {
        // Something happened since the timer was armed; it moved the deadline.
        if (connection->arm_timer())
            return 0;
    } else {
        const std::string uid = std::to_string(connection->peer_.uid);
        if (connection->partial_since_usec_ != 0 && !connection->held())
            server.log(LOG_NOTICE, "Varlink client of UID " + uid +
                                       " did not complete its message in time, disconnecting");
        else if (connection->pending_output() > 0)
            server.log(LOG_INFO, "Varlink client of UID " + uid +
                                     " did not read its answers for too long, disconnecting");
        else
            server.log(LOG_INFO, "Varlink client of UID " + uid + " idle too long, disconnecting");
    }
    server.close_connection(*connection);
    return 0;
}

uint64_t Connection::deadline() const {
    const Limits& limits = server_.limits_;
    uint64_t deadline = 0;
    auto consider = [&deadline](uint64_t since, uint64_t timeout) {
        if (timeout == 0)
            return;
        const uint64_t at = since + timeout;
        if (deadline == 0 || at < deadline)
            deadline = at;
    };
    // While requests are held back for a reason that is not the client's, the client is
    // waiting for us: neither of its clocks runs. A budget holds a connection back for the
    // client's own fault, though, while answers of its own wait unread (the kernel's buffer is
    // full, or they would have been written): whether it is over its own budget or only its
    // UID or everybody is, its idle clock runs, so live clients that never read cannot keep
    // budgets full for ever.
    const bool client_waits =
        deferred_ != nullptr || (budget_holds() && pending_output() == 0);
    if (client_waits)
        return 0;
    if (partial_since_usec_ != 0 && !held())
        consider(partial_since_usec_, to_usec(limits.partial_message_timeout));
    consider(last_progress_usec_, to_usec(limits.idle_timeout));
    return deadline;
}

bool Connection::arm_timer() {
    const uint64_t at = deadline();
    if (at == 0)
        return sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF) >= 0;
    return sd_event_source_set_time(timer_.get(), at) >= 0 &&
           sd_event_source_set_enabled(timer_.get(), SD_EVENT_ONESHOT) >= 0;
}

bool Connection::handle_io(uint32_t revents) {
    if (revents & (EPOLLHUP | EPOLLERR)) {
        // The peer closed its socket; if it left answers of ours unread, the kernel calls that
        // a reset (EPOLLERR, and ECONNRESET from recv() once what was sent is read). Nobody
        // will read answers any more, but what it sent before closing still counts: a oneway
        // call followed by close() is a complete conversation. Drop the output and read on.
        hang_up();
        // Requests behind a deferred call would have to wait for it, for nobody: the deferred
        // answer is dropped, and what the client sent after that call with it.
        if (deferred_)
            return false;
    }
    if ((revents & EPOLLOUT) && !flush())
        return false;
    // A client under its reserve with something to say, held back only because others' unread
    // answers fill even the reserves: they make room, or they would lock it out until their
    // idle timeouts (and could fill everything again at once).
    if (((revents & EPOLLIN) || has_complete_message()) && wants_room())
        server_.make_room(*this);
    // One read's worth of requests at a time: nothing is read while complete ones wait.
    if ((revents & (EPOLLIN | EPOLLHUP)) && !eof_ && !held() && !has_complete_message() &&
        !read_once())
        return false;

    if (!process_buffered() || !flush())
        return false;
    if (!held() && has_complete_message())
        wake();  // more to do, after the other connections had their turn
    if (budget_holds() && !throttled() && !waiting_ && deferred_ == nullptr) {
        waiting_ = true;
        uid_.waiting.push_back(this);
    }
    if (finished())
        return false;
    return update_events() && arm_timer();
}

bool Connection::has_complete_message() const {
    return std::memchr(in_.data() + in_pos_, '\0', in_.size() - in_pos_) != nullptr;
}

// A client that shut down its sending side still gets the answers to what it sent.
bool Connection::finished() const {
    return eof_ && pending_output() == 0 && !has_complete_message() && deferred_ == nullptr;
}

bool Connection::read_once() {
    const Limits& limits = server_.limits_;
    std::vector<char>& buffer = server_.read_buffer_;
    std::vector<char>& control = server_.control_buffer_;
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();

    const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if (errno == ECONNRESET) {  // everything sent before the reset has been read
            hang_up();
            eof_ = true;
            return true;
        }
        return errno == EAGAIN || errno == EINTR;
    }

    std::vector<base::UniqueFd> fds;  // owned from here on, closed on every early return
    collect_fds(msg, fds);
    if (msg.msg_flags & MSG_CTRUNC) {
        server_.log(LOG_NOTICE, "Varlink client sent too many file descriptors, disconnecting");
        return false;
    }
    if (n == 0) {
        eof_ = true;
        return true;
    }
    const std::string_view chunk(buffer.data(), static_cast<std::size_t>(n));
    const auto nuls = static_cast<uint64_t>(std::count(chunk.begin(), chunk.end(), '\0'));
    if (!fds.empty()) {
        // The kernel hands descriptors over with the last sendmsg() this read took bytes from
        // and glues the bytes of earlier ones in front without saying where they end: only if
        // all the bytes belong to one message is it certain which message they came with.
        // Nothing complete is waiting in in_ here (see handle_io()), so that message is the
        // one in progress.
        if (nuls > 1 || (nuls == 1 && chunk.back() != '\0')) {
            server_.log(LOG_NOTICE, "Varlink client sent file descriptors along with several "
                                    "pipelined messages, disconnecting");
            return false;
        }
        auto& slot = fds_[messages_received_];
        if (slot.size() + fds.size() > limits.max_fds_per_message) {
            server_.log(LOG_NOTICE,
                        "Varlink client sent too many file descriptors, disconnecting");
            return false;
        }
        std::move(fds.begin(), fds.end(), std::back_inserter(slot));
    }
    in_.append(chunk);
    server_.churn_since_trim_ += chunk.size();
    messages_received_ += nuls;
    last_progress_usec_ = server_.now_usec();

    // What follows the last NUL is the start of one message, which may not grow past the
    // limit while we wait for the rest.
    const std::size_t last_nul = in_.rfind('\0');
    const std::size_t partial = last_nul == std::string::npos ? in_.size()
                                                              : in_.size() - last_nul - 1;
    if (partial > limits.max_message_size) {
        server_.log(LOG_NOTICE, "Varlink message too long, disconnecting");
        return false;
    }
    return true;
}

bool Connection::process_buffered() {
    const Limits& limits = server_.limits_;
    unsigned handled = 0;
    while (!held() && handled < limits.max_requests_per_wakeup) {
        const char* begin = in_.data() + in_pos_;
        const auto* nul = static_cast<const char*>(std::memchr(begin, '\0', in_.size() - in_pos_));
        if (nul == nullptr)
            break;
        const std::string_view text(begin, static_cast<std::size_t>(nul - begin));
        in_pos_ += text.size() + 1;
        const uint64_t index = messages_processed_++;
        handled++;

        if (text.size() > limits.max_message_size) {
            server_.log(LOG_NOTICE, "Varlink message too long, disconnecting");
            return false;
        }
        if (exceeds_depth(text, limits.max_depth)) {
            server_.log(LOG_NOTICE, "Varlink message nested too deeply, disconnecting");
            return false;
        }
        std::vector<base::UniqueFd> fds;
        if (auto it = fds_.find(index); it != fds_.end()) {
            fds = std::move(it->second);
            fds_.erase(it);
        }
        if (!server_.dispatch(*this, text, std::move(fds)))
            return false;
    }

    if (in_pos_ > 0) {
        in_.erase(0, in_pos_);
        in_pos_ = 0;
        if (in_.empty() && in_.capacity() > kKeepCapacity)
            in_.shrink_to_fit();
    }
    // The partial-message clock runs for a message whose start is all that is left, from
    // about when its first bytes came.
    if (in_.empty() || has_complete_message())
        partial_since_usec_ = 0;
    else if (handled > 0 || partial_since_usec_ == 0)
        partial_since_usec_ = server_.now_usec();
    return true;
}

bool Connection::flush() {
    std::size_t written = 0;
    bool reset = false;
    while (pending_output() > 0) {  // always empty once hung up
        const ssize_t n = ::send(fd_.get(), out_.data() + out_pos_, pending_output(),
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            // The peer is gone, perhaps before epoll said so: the requests it sent still run.
            if (errno != EPIPE && errno != ECONNRESET)
                return false;
            reset = true;
            break;
        }
        out_pos_ += static_cast<std::size_t>(n);
        written += static_cast<std::size_t>(n);
    }
    if (written > 0) {
        last_progress_usec_ = server_.now_usec();
        server_.remove_output(uid_, written);
    }
    if (reset) {
        hang_up();  // discards what is left
        return true;
    }
    if (out_pos_ == out_.size()) {
        out_.clear();
        out_pos_ = 0;
        if (out_.capacity() > kKeepCapacity) {
            out_.shrink_to_fit();
            server_.trim_if_quiet();  // once the buffer is freed, not while it is drained
        }
    } else if (out_pos_ > kKeepCapacity) {
        out_.erase(0, out_pos_);
        out_pos_ = 0;
    }
    return true;
}

bool Connection::update_events() {
    // epoll reports a hang-up whether asked for or not: while a deferred call holds back its
    // requests, a hung-up connection would wake the loop for nothing, over and over. It sleeps
    // until end_deferred() wakes it. (Budgets never hold a hung-up connection back.)
    const bool enable = !(hung_up_ && held());
    if (enable != enabled_) {
        if (sd_event_source_set_enabled(source_.get(), enable ? SD_EVENT_ON : SD_EVENT_OFF) < 0)
            return false;
        enabled_ = enable;
    }
    uint32_t want = 0;
    if (!eof_ && !held() && !has_complete_message())
        want |= EPOLLIN;
    if (pending_output() > 0)
        want |= EPOLLOUT;
    if (want == events_)
        return true;
    if (sd_event_source_set_io_events(source_.get(), want) < 0)
        return false;
    events_ = want;
    return true;
}

}  // namespace detail
}  // namespace transient::varlink
