// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The Varlink protocol (https://varlink.org): NUL-terminated JSON messages over AF_UNIX stream
// sockets. libsystemd 252 has no public sd-varlink, so this is ours: a server on sd-event with a
// method table, parameter checking against a declared signature, `more`/`continues` streaming,
// `oneway`, fd passing (SCM_RIGHTS), org.varlink.service introspection, and limits on everything
// a client controls; plus a small blocking client for transientctl and the tests.
//
// Every client-controlled resource is bounded (message size, nesting depth, connections in all
// and per UID, queued output per connection, per UID and in all, time spent idle or half-way
// through a message, requests handled per wakeup), sockets are non-blocking, and a client that
// misbehaves (garbage, oversized or half-sent messages, never reading its replies) is
// disconnected or throttled without affecting the others. Root is never locked out by others:
// it has connections of its own in reserve and does not wait for other UIDs' output.
//
// Memory, roughly: per connection at most max_message_size + 64 KiB of input and
// max_output_buffer of output (plus the answers of the one request that crossed it); per UID
// at most max_output_per_uid of output plus one request's answers; in all (root aside)
// max_output_total + output_reserve_total plus one request's answers, however many UIDs
// connect. With the defaults, one hostile UID holds at most 64 connections, ~13 MiB of input
// and ~4 MiB of output, and all of them together 48 MiB of output plus one request's answers
// (one userdb enumeration or ListRanges: ~5 MB with a full table). A client that leaves
// answers unread is closed after idle_timeout whatever holds it back, so the budgets of
// clients that never read are given back.
//
// Descriptors (SCM_RIGHTS) are accepted only when the bytes they arrived with belong to one
// message: the kernel glues the bytes of earlier sendmsg() calls in front of the one that
// carried them without saying where they end. A client that passes descriptors must not
// pipeline: it sends a call carrying descriptors when no earlier call is unanswered (as
// Client does). A read that mixes descriptors with several messages drops the connection.

#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <systemd/sd-event.h>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace transient::varlink {

using json = nlohmann::json;

// Error names of the org.varlink.service interface.
inline constexpr char kErrorInterfaceNotFound[] = "org.varlink.service.InterfaceNotFound";
inline constexpr char kErrorMethodNotFound[] = "org.varlink.service.MethodNotFound";
inline constexpr char kErrorMethodNotImplemented[] = "org.varlink.service.MethodNotImplemented";
inline constexpr char kErrorInvalidParameter[] = "org.varlink.service.InvalidParameter";
inline constexpr char kErrorExpectedMore[] = "org.varlink.service.ExpectedMore";
inline constexpr char kErrorPermissionDenied[] = "org.varlink.service.PermissionDenied";
// A failure that is nobody's fault in particular, with {"errno": N}: what sd-varlink sends when
// a method fails with an errno. The server's fallback for failures of an interface that
// declares no Interface::internal_error (org.varlink.service's own methods).
inline constexpr char kErrorSystem[] = "io.systemd.System";

struct Limits {
    std::size_t max_message_size = 128 * 1024;  // bytes, NUL excluded, in either direction
    int max_depth = 32;                          // JSON nesting depth of a request
    std::size_t max_connections = 1024;          // in all, root's reserve included
    std::size_t root_reserved_connections = 16;  // of max_connections, kept for root
    std::size_t max_connections_per_uid = 64;    // root (uid 0) is exempt
    // Unread replies of one connection, before the server stops handling its requests.
    std::size_t max_output_buffer = 1024 * 1024;
    std::size_t max_fds_per_message = 8;
    // Unread replies of all connections of one UID together, and of everybody: over either,
    // a UID's connections handle no requests until their clients read. Root is exempt (only
    // its connections' own max_output_buffer applies), so it is served whatever others do.
    // Neither holds back a connection whose client hung up: its answers are discarded, so it
    // runs what the client sent and is closed.
    std::size_t max_output_per_uid = 4 * 1024 * 1024;
    std::size_t max_output_total = 32 * 1024 * 1024;
    // The total holds back only UIDs with more unread output than this: a UID with less (one
    // that reads its answers, or has nothing queued) is still served once the total is full,
    // so a few UIDs that never read cannot lock every other user out. What UIDs queue that way
    // comes out of output_reserve_total: past max_output_total + output_reserve_total every
    // UID but root is held back, which bounds memory however many UIDs connect. A UID under
    // its reserve that is held back by that gets room: the connections of UIDs past their
    // reserve that left answers unread longest are closed, until the total is under again.
    std::size_t output_reserve_per_uid = 64 * 1024;
    std::size_t output_reserve_total = 16 * 1024 * 1024;
    // Requests one connection gets handled before the others get their turn.
    unsigned max_requests_per_wakeup = 16;
    // A connection without any progress (no request read, no reply byte taken by the client)
    // for this long is closed, unless it is waiting for the server: a deferred call, or
    // requests held back by its UID's or everybody's output budget while none of its own
    // answers waits unread. Held back with answers of its own unread, it is the client that
    // does not read: its clock runs, and its budget comes back when it is closed.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
    // A message must be complete this long after its first byte arrived.
    std::chrono::milliseconds partial_message_timeout = std::chrono::seconds(10);
};

// The JSON types a parameter may have. kInt accepts any JSON integer (signed or unsigned);
// handlers range-check the value.
enum class Type { kString, kInt, kBool, kObject, kArray, kAny };

struct Param {
    std::string name;
    Type type = Type::kAny;
    bool optional = false;  // may be absent or null
};

class Call;
using Handler = std::function<void(Call&)>;

struct Method {
    std::string name;           // the bare method name, e.g. "AllocateRange"
    std::vector<Param> params;  // anything not listed gets InvalidParameter naming it
    Handler handler;
};

struct Interface {
    std::string name;         // e.g. "io.transient.Allocator"
    std::string description;  // the interface's IDL text, returned by GetInterfaceDescription
    std::vector<Method> methods;
    // A fully qualified error the description declares, without required parameters, that the
    // server sends (with empty parameters) for a failure of the server's or a handler's making:
    // a handler that throws, a reply that is not an object or too large to send, a deferred
    // call dropped unanswered. Empty: kErrorSystem with {"errno": N}, which no interface here
    // declares, so every interface should set one.
    std::string internal_error;
};

struct ServiceInfo {
    std::string vendor = "transient";
    std::string product;
    std::string version;
    std::string url;
};

// One request being answered. Handlers run synchronously on the event loop and answer before
// they return: reply(), error(), or one or more reply_continues() followed by reply(); or they
// defer() the call and answer later. For oneway calls the answers are discarded.
class Call {
public:
    virtual ~Call() = default;

    // Takes the call over so that it can be answered after the handler returned, e.g. from a
    // timer, without blocking the event loop. Call it inside the handler, before answering; the
    // Call the handler got is spent and the returned one (owned by the caller, used only on the
    // event loop's thread) answers instead, with the same methods. Meanwhile:
    //  - the connection handles no further request: requests sent after this one wait, so
    //    replies stay in order, and a client has at most one deferred call per connection;
    //  - its idle timeout does not run (the client is waiting for us, not the other way round),
    //    but its other limits do.
    // If the connection is gone by the time the answer comes, the answer is dropped silently.
    // Destroying the returned call without a final answer answers it with the interface's
    // internal error. Calling defer() twice or after an answer returns a call whose answers
    // go nowhere.
    virtual std::unique_ptr<Call> defer() = 0;

    virtual const std::string& method() const = 0;  // fully qualified: "iface.Method"
    virtual const json& parameters() const = 0;     // always an object, already type-checked
    virtual bool more() const = 0;
    virtual bool oneway() const = 0;
    virtual const ucred& peer() const = 0;  // SO_PEERCRED of the connection
    // File descriptors received with this message (SCM_RIGHTS), by index. take_fd() transfers
    // ownership; the rest are closed when the call ends.
    virtual std::size_t fd_count() const = 0;
    virtual base::UniqueFd take_fd(std::size_t index) = 0;

    virtual void reply(json parameters = json::object()) = 0;
    // REQUIRES: more(). Sends a reply with "continues": true.
    virtual void reply_continues(json parameters) = 0;
    virtual void error(std::string_view name, json parameters = json::object()) = 0;
    // reply() (continues: reply_continues()) with the parameters already serialized, as
    // compact JSON of one object: for handlers that stream many records, whose JSON trees
    // would cost more to build and dump than the records themselves. Not checked: the text
    // must be a valid JSON object.
    virtual void reply_serialized(std::string_view parameters, bool continues) = 0;

    void invalid_parameter(std::string_view parameter) {
        error(kErrorInvalidParameter, json{{"parameter", parameter}});
    }
};

// Receives the server's diagnostics: handler exceptions, accept() failures, clients dropped for
// protocol violations or limits. `priority` is a syslog level (LOG_ERR ... LOG_DEBUG). By
// default they go to stderr with sd-daemon(3) "<N>" priority prefixes, which journald turns
// into priorities under systemd; set_log_handler() replaces that, an empty handler drops them.
// The server rate-limits them (a burst of 20 per 5 s, then a count of what it suppressed), so
// a hostile client cannot flood the journal.
using LogHandler = std::function<void(int priority, std::string_view message)>;

class Server {
public:
    // `event` must outlive the server.
    Server(sd_event* event, ServiceInfo info, Limits limits = {});
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    void add_interface(Interface iface);

    // Serves an already listening socket (from sd_listen_fds()). Takes ownership.
    Result<void> listen_fd(base::UniqueFd fd);
    // Binds and listens on `path` (a stale socket there is replaced) with the given mode.
    Result<void> listen_path(const std::string& path, mode_t mode);

    std::size_t connection_count() const;
    // Reply bytes queued for clients that have not read them yet, in all.
    std::size_t buffered_output() const;
    const Limits& limits() const;
    void set_log_handler(LogHandler handler);

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

// A blocking client. Every call waits at most `timeout` for each reply.
class Client {
public:
    static Result<Client> connect(const std::string& path,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
    Client(Client&&) noexcept;
    Client& operator=(Client&&) noexcept;
    ~Client();

    // A reply: either parameters, or an error name with its parameters.
    struct Reply {
        std::string error;  // empty on success
        json parameters = json::object();
        bool continues = false;
    };

    // Sends one call and waits for its (single) reply. `fds` are passed with SCM_RIGHTS and not
    // closed. Transport failures (closed connection, timeout, malformed reply) are errors;
    // Varlink errors are replies.
    Result<Reply> call(std::string_view method, const json& parameters = json::object(),
                       std::span<const int> fds = {});
    // Sends a call with "more": true and collects replies until one without "continues" (or an
    // error, which is the last element).
    Result<std::vector<Reply>> call_more(std::string_view method,
                                         const json& parameters = json::object());

    // Like call_more(), for enumerations of many records, without a JSON tree per reply where
    // the caller reads the records more cheaply: a reply as servers write it (compact,
    // {"continues":true,"parameters":P} or {"parameters":P}) goes to `read` as the text P,
    // which takes it and returns true, but only if P is exactly one JSON object. Any other
    // reply (an error, another layout, text `read` declined) is parsed as call_more() parses
    // it and goes to `each`. Returns after the last reply was handed over.
    using ReadParameters = std::function<bool(std::string_view parameters, bool continues)>;
    Result<void> call_more(std::string_view method, const json& parameters,
                           const ReadParameters& read, const std::function<void(Reply&&)>& each);

    int fd() const;

private:
    Client();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace transient::varlink
