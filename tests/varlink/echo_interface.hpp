// SPDX-License-Identifier: LGPL-2.1-or-later
//
// io.test.Echo, the interface the Varlink tests serve: one method per server behaviour under
// test (echoing parameters, streaming, handlers that misbehave, fd passing, peer credentials).

#pragma once

#include <unistd.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <systemd/sd-event.h>

#include "varlink/varlink.hpp"

namespace transient::varlink::testing {

inline constexpr char kEchoInterface[] = "io.test.Echo";
inline constexpr char kEchoDescription[] = R"(interface io.test.Echo

method Echo(text: string, number: ?int, flag: ?bool, object: ?object, list: ?[]int,
            anything: ?any) -> (text: string, number: ?int, flag: ?bool, object: ?object,
            list: ?[]int, anything: ?any)
method Count(n: int) -> (i: int)
method Touch() -> ()
method Touches() -> (touches: int)
method Silent() -> ()
method Throw() -> ()
method ContinuesWithoutMore() -> (x: int)
method ReadFd() -> (data: string)
method Peer() -> (uid: int, pid: int)
method Big(size: int) -> (data: string)
method Defer(text: string) -> (text: string)
method DeferAndDrop() -> ()
method Later(text: string, usec: int) -> (text: string)
method Nap() -> ()
error NoFd ()
error InternalError ()
)";

// Shared between the handlers (on the loop thread) and the test body.
struct EchoState {
    std::atomic<int> touches{0};
    // Calls of Defer, for the test to answer (on the loop thread, through ServerThread::run()).
    std::vector<std::unique_ptr<Call>> deferred;
    sd_event* event = nullptr;  // where Later arms its timers
};

// Answers a deferred call from a timer: Later's way of taking its time.
struct LaterReply {
    std::unique_ptr<Call> call;
    std::string text;

    static int on_timer(sd_event_source* source, uint64_t, void* userdata) {
        std::unique_ptr<LaterReply> self(static_cast<LaterReply*>(userdata));
        self->call->reply(json{{"text", self->text}});
        sd_event_source_unref(source);
        return 0;
    }
};

inline Interface echo_interface(EchoState& state) {
    Interface iface{kEchoInterface, kEchoDescription, {}, "io.test.Echo.InternalError"};
    iface.methods = {
        Method{"Echo",
               {{"text", Type::kString},
                {"number", Type::kInt, true},
                {"flag", Type::kBool, true},
                {"object", Type::kObject, true},
                {"list", Type::kArray, true},
                {"anything", Type::kAny, true}},
               [](Call& call) { call.reply(call.parameters()); }},
        Method{"Count",
               {{"n", Type::kInt}},
               [](Call& call) {
                   if (!call.more())
                       return call.error(kErrorExpectedMore);
                   const int n = call.parameters()["n"].get<int>();
                   for (int i = 0; i + 1 < n; i++)
                       call.reply_continues(json{{"i", i}});
                   call.reply(json{{"i", n - 1}});
               }},
        Method{"Touch", {}, [&state](Call& call) {
                   state.touches++;
                   call.reply();
               }},
        Method{"Touches", {}, [&state](Call& call) {
                   call.reply(json{{"touches", state.touches.load()}});
               }},
        Method{"Silent", {}, [](Call&) {}},
        Method{"Throw", {}, [](Call&) { throw std::runtime_error("handler failed on purpose"); }},
        Method{"ContinuesWithoutMore", {}, [](Call& call) {
                   call.reply_continues(json{{"x", 1}});
                   call.reply(json{{"x", 2}});  // ignored: the call is over
               }},
        Method{"ReadFd", {}, [](Call& call) {
                   if (call.fd_count() == 0)
                       return call.error("io.test.Echo.NoFd");
                   base::UniqueFd fd = call.take_fd(0);
                   std::string data;
                   char buf[256];
                   ssize_t n;
                   while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0)
                       data.append(buf, static_cast<std::size_t>(n));
                   call.reply(json{{"data", data}, {"fds", call.fd_count()}});
               }},
        Method{"Peer", {}, [](Call& call) {
                   call.reply(json{{"uid", call.peer().uid}, {"pid", call.peer().pid}});
               }},
        Method{"Big", {{"size", Type::kInt}}, [](Call& call) {
                   const auto size = call.parameters()["size"].get<std::size_t>();
                   call.reply(json{{"data", std::string(size, 'x')}});
               }},
        Method{"Defer", {{"text", Type::kString}}, [&state](Call& call) {
                   state.deferred.push_back(call.defer());
               }},
        Method{"DeferAndDrop", {}, [](Call& call) { call.defer(); }},
        Method{"Nap", {}, [](Call& call) {
                   ::usleep(2000);  // a handler that takes its time, for fairness tests
                   call.reply();
               }},
        Method{"Later", {{"text", Type::kString}, {"usec", Type::kInt}}, [&state](Call& call) {
                   auto later = std::make_unique<LaterReply>();
                   later->text = call.parameters()["text"].get<std::string>();
                   sd_event_source* timer = nullptr;
                   if (state.event == nullptr ||
                       sd_event_add_time_relative(state.event, &timer, CLOCK_MONOTONIC,
                                                  call.parameters()["usec"].get<uint64_t>(), 0,
                                                  LaterReply::on_timer, later.get()) < 0)
                       return call.reply(json{{"text", "no timer"}});
                   later->call = call.defer();
                   later.release();  // the timer owns it now
               }},
    };
    return iface;
}

}  // namespace transient::varlink::testing
