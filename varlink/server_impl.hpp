// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The server's private state, shared by server.cpp (sockets, connections, framing and flow
// control) and dispatch.cpp (parsing a request, checking it against the method table, running
// the handler and encoding its answers, org.varlink.service). Nothing here is public API.

#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/log.hpp"
#include "varlink/varlink.hpp"
#include "varlink/wire.hpp"

namespace transient::varlink {

namespace detail {

class Connection;

// Shared by a connection and the call deferred on it (Call::defer()): the call answers through
// it, and finds it empty once the connection is gone.
struct DeferredSlot {
    Connection* connection = nullptr;
};

// What the connections of one UID hold together.
struct UidState {
    std::size_t connections = 0;
    std::size_t output = 0;  // unread reply bytes
    // Connections holding back requests because this UID (or everybody) has too much unread
    // output; woken when that changes.
    std::vector<Connection*> waiting;
};

// One listening socket and its sd-event source. A timer re-arms it after accept() ran out of
// file descriptors, instead of letting a level-triggered source spin.
struct Listener {
    Server::Impl* server = nullptr;
    base::UniqueFd fd;
    SourcePtr source;
    SourcePtr retry_timer;
};

}  // namespace detail

struct Server::Impl {
    Impl(sd_event* event, ServiceInfo info, Limits limits);
    ~Impl();

    // server.cpp
    Result<void> add_listener(base::UniqueFd fd);
    void accept_connections(detail::Listener& listener);
    // Turns a listener off for a moment after accept() failed for lack of resources.
    void pause_listener(detail::Listener& listener, int error);
    // Destroys the connection; safe from inside its own sd-event callback as long as the
    // caller does not touch it afterwards.
    void close_connection(detail::Connection& connection);
    // Rate-limited: see LogHandler.
    void log(int priority, std::string_view message) const noexcept;
    // Output accounting of all connections; waking the waiting ones when budgets free up.
    void add_output(detail::UidState& uid, std::size_t n);
    void remove_output(detail::UidState& uid, std::size_t n);
    // Unread output in all past which every UID but root is held back, reserves included.
    std::size_t output_hard_limit() const;
    // Gives the heap that a burst of buffered requests and answers freed back to the kernel,
    // once the burst is over.
    void trim_if_quiet();
    // Closes connections that leave answers unread (longest without progress first, of UIDs
    // past their reserve, never root's or `requester`'s) until the total is under
    // output_hard_limit() again, for a connection under its reserve that waits for room.
    void make_room(const detail::Connection& requester);
    uint64_t now_usec() const;
    // Runs the connections that asked for it (Connection::wake()), in the order they asked.
    void queue_wake(detail::Connection& connection);
    void forget_wake(detail::Connection& connection);
    static int on_wake(sd_event_source* s, void* userdata) noexcept;

    // dispatch.cpp
    void add_interface(Interface iface);
    // Registers the built-in org.varlink.service (GetInfo, GetInterfaceDescription).
    void add_service_interface();
    // Handles one complete request (the bytes between two NULs, already depth-checked) and
    // queues its answers on `connection`. Returns false if the message violates the protocol
    // so badly that the connection must be dropped (not JSON, not an object, no method).
    bool dispatch(detail::Connection& connection, std::string_view text,
                  std::vector<base::UniqueFd> fds);
    // The method table entry for call.method(), or nullptr after answering
    // InterfaceNotFound or MethodNotFound.
    // `ret_iface` is set with the method.
    const Method* find_method(Call& call, const Interface** ret_iface) const;

    sd_event* event_;
    ServiceInfo info_;
    Limits limits_;
    LogHandler log_handler_;
    std::map<std::string, Interface, std::less<>> interfaces_;
    std::vector<std::unique_ptr<detail::Listener>> listeners_;
    std::unordered_map<detail::Connection*, std::unique_ptr<detail::Connection>> connections_;
    // Node-based: connections keep pointers to their UID's entry.
    std::unordered_map<uid_t, detail::UidState> uids_;
    std::size_t total_output_ = 0;
    // Bytes read or queued since the heap was last trimmed (trim_if_quiet()).
    std::size_t churn_since_trim_ = 0;
    std::deque<detail::Connection*> wake_queue_;
    detail::SourcePtr wake_source_;
    // The log's rate limit.
    mutable base::LogRateLimit log_limit_;
    // Scratch space for recvmsg(), shared by all connections: the loop reads one at a time.
    std::vector<char> read_buffer_;
    std::vector<char> control_buffer_;
};

namespace detail {

// One accepted client. Requests are read and answered strictly in order; answers go to an
// output queue that is written without blocking. While the queue holds more than
// max_output_buffer bytes the connection neither reads nor processes requests, so a client
// that never reads its replies stalls only itself and costs bounded memory.
class Connection {
public:
    Connection(Server::Impl& server, base::UniqueFd fd, const ucred& peer, UidState& uid);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    Result<void> start();

    Server::Impl& server() const { return server_; }
    const ucred& peer() const { return peer_; }
    // Queues one message; the terminating NUL is added here.
    void queue(std::string_view message);
    std::size_t pending_output() const { return out_.size() - out_pos_; }

    // A call on this connection was deferred: no further request is handled until
    // end_deferred().
    std::shared_ptr<DeferredSlot> begin_deferred();
    void end_deferred();
    // Asks the loop to come back to this connection soon (flush output queued from outside its
    // own callback, resume requests held back) without waiting for the socket.
    void wake();
    // The UID's budget freed up: try again.
    void stop_waiting_and_wake();
    // Server::Impl::on_wake() runs the connection.
    void run_woken() { wake_queued_ = false; on_event(this, 0); }

private:
    static int on_io(sd_event_source* s, int fd, uint32_t revents, void* userdata) noexcept;
    static int on_event(Connection* connection, uint32_t revents) noexcept;
    friend struct Server::Impl;
    static int on_timer(sd_event_source* s, uint64_t usec, void* userdata) noexcept;
    // Each returns false when the connection has to be closed.
    bool handle_io(uint32_t revents);
    bool read_once();
    bool process_buffered();
    bool flush();
    bool update_events();
    bool has_complete_message() const;
    bool throttled() const { return pending_output() > server_.limits_.max_output_buffer; }
    // Too much unread output of this UID or of everybody (never for root).
    bool over_budget() const;
    // Under its UID's reserve, and held back only because everybody's output, reserves
    // included, is full (never for root).
    bool wants_room() const;
    // Output budgets hold back the requests of a client that does not read its answers; one
    // that hung up gets none (they are discarded), so they do not apply to it: it runs what it
    // sent and is closed, even while the rest of its UID is over budget.
    bool budget_holds() const { return !hung_up_ && (throttled() || over_budget()); }
    // True while requests must wait: too much unread output, or a deferred call outstanding.
    bool held() const { return deferred_ != nullptr || budget_holds(); }
    // The client is gone: nothing more is queued for it, and what was is discarded.
    void hang_up();
    // Drops everything queued (the client is gone) and gives the budget back.
    void discard_output();
    // The time the connection is closed unless something happens first; 0 for never.
    uint64_t deadline() const;
    bool arm_timer();
    bool finished() const;

    Server::Impl& server_;
    base::UniqueFd fd_;
    ucred peer_;
    SourcePtr source_;
    bool wake_queued_ = false;  // in server_.wake_queue_
    SourcePtr timer_;        // idle and partial-message timeouts
    UidState& uid_;
    bool waiting_ = false;   // in uid_.waiting
    uint64_t last_progress_usec_ = 0;  // last request read or reply byte written
    uint64_t partial_since_usec_ = 0;  // first byte of the incomplete message in in_, or 0
    uint32_t events_ = 0;
    bool enabled_ = true;  // source_ is on; off while a hung-up connection is held

    std::string in_;
    std::size_t in_pos_ = 0;  // start of the first unprocessed message in in_
    bool eof_ = false;        // the peer shut down its sending side
    bool hung_up_ = false;    // the peer closed the connection: answers are discarded

    // Descriptors keyed by the absolute index of the message they arrived with: the kernel
    // delivers SCM_RIGHTS with the first byte of the sendmsg() that carried them, which is the
    // first byte of the chunk recvmsg() returned.
    std::map<uint64_t, std::vector<base::UniqueFd>> fds_;
    uint64_t messages_received_ = 0;  // NULs seen so far
    uint64_t messages_processed_ = 0;

    std::string out_;
    std::size_t out_pos_ = 0;  // first byte not yet written

    std::shared_ptr<DeferredSlot> deferred_;  // the call being answered later, if any
};

}  // namespace detail
}  // namespace transient::varlink
