// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The Varlink server against real sockets: calls and replies, streaming, oneway, the
// org.varlink.service errors and introspection, parameter checking, handlers that misbehave,
// fd passing, peer credentials, listening sockets.

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/varlink/echo_interface.hpp"
#include "tests/varlink/server_thread.hpp"

namespace transient::varlink::testing {
namespace {

class VarlinkServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        path_ = dir_.path() + "/io.test.Echo";
        server_.server().add_interface(echo_interface(state_));
        server_.server().set_log_handler([this](int priority, std::string_view) {
            if (priority <= LOG_ERR)
                errors_logged_++;
        });
        ASSERT_TRUE(server_.server().listen_path(path_, 0666));
        server_.start();
    }

    Client connect() {
        auto client = Client::connect(path_, 2s);
        EXPECT_TRUE(client) << client.error().message();
        return std::move(*client);
    }

    // One call on a fresh connection; the reply, which must arrive.
    Client::Reply call(std::string_view method, const json& parameters = json::object()) {
        Client client = connect();
        auto reply = client.call(method, parameters);
        EXPECT_TRUE(reply) << reply.error().message();
        return reply ? *reply : Client::Reply{"<transport error>"};
    }

    TempDir dir_;
    std::string path_;
    EchoState state_;
    std::atomic<int> errors_logged_{0};
    ServerThread server_;
};

TEST_F(VarlinkServerTest, RoundTripsParametersThroughAMethod) {
    const json parameters{{"text", "hello ☃"}, {"number", -42}, {"flag", true},
                          {"object", {{"a", {1, 2}}}}, {"list", {1, 2, 3}}};
    auto reply = call("io.test.Echo.Echo", parameters);
    EXPECT_EQ(reply.error, "");
    EXPECT_FALSE(reply.continues);
    EXPECT_EQ(reply.parameters, parameters);
}

TEST_F(VarlinkServerTest, AnswersManyCallsOnOneConnection) {
    Client client = connect();
    for (int i = 0; i < 100; i++) {
        auto reply = client.call("io.test.Echo.Echo", json{{"text", std::to_string(i)}});
        ASSERT_TRUE(reply);
        EXPECT_EQ(reply->parameters["text"], std::to_string(i));
    }
}

TEST_F(VarlinkServerTest, AnswersPipelinedRequestsInOrder) {
    RawConnection raw(path_);
    std::string batch;
    for (int i = 0; i < 50; i++) {
        const json call{{"method", "io.test.Echo.Echo"},
                        {"parameters", {{"text", std::to_string(i)}}}};
        batch += call.dump() + '\0';
    }
    ASSERT_TRUE(raw.send(batch));
    for (int i = 0; i < 50; i++) {
        json reply = parse_message(raw.read_message());
        ASSERT_TRUE(reply.is_object()) << "reply " << i;
        EXPECT_EQ(reply["parameters"]["text"], std::to_string(i));
    }
}

TEST_F(VarlinkServerTest, StreamsRepliesWithContinuesWhenCalledWithMore) {
    Client client = connect();
    auto replies = client.call_more("io.test.Echo.Count", json{{"n", 3}});
    ASSERT_TRUE(replies) << replies.error().message();
    ASSERT_EQ(replies->size(), 3U);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ((*replies)[i].parameters["i"], i);
        EXPECT_EQ((*replies)[i].continues, i < 2);
    }
}

TEST_F(VarlinkServerTest, SendsContinuesOnTheWireExactlyAsSpecified) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(
        R"({"method":"io.test.Echo.Count","parameters":{"n":2},"more":true})"));
    EXPECT_EQ(parse_message(raw.read_message()),
              json::parse(R"({"parameters":{"i":0},"continues":true})"));
    EXPECT_EQ(parse_message(raw.read_message()), json::parse(R"({"parameters":{"i":1}})"));
}

TEST_F(VarlinkServerTest, AnswersExpectedMoreWhenAStreamingMethodIsCalledWithoutMore) {
    auto reply = call("io.test.Echo.Count", json{{"n", 3}});
    EXPECT_EQ(reply.error, kErrorExpectedMore);
}

TEST_F(VarlinkServerTest, RunsOnewayCallsWithoutReplying) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touch","oneway":true})"));
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Nope","oneway":true})"));
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touches"})"));
    // The first thing to arrive is the answer to the third call: the oneway calls (the second
    // one an error) produced nothing.
    json reply = parse_message(raw.read_message());
    EXPECT_EQ(reply, json::parse(R"({"parameters":{"touches":1}})"));
}

TEST_F(VarlinkServerTest, RunsAOnewayCallSentJustBeforeHangingUp) {
    {
        RawConnection raw(path_);
        ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touch"})"));
        ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touch","oneway":true})"));
    }  // closed without reading the first answer
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (state_.touches < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    EXPECT_EQ(state_.touches, 2);
    EXPECT_TRUE(server_.wait_for_connections(0));
}

// The kernel tells a socket whose peer closed with data unread that the connection was reset
// (EPOLLERR, then ECONNRESET from recv() once the queue is read, EPIPE or ECONNRESET from send()):
// the requests that came before still run.
TEST_F(VarlinkServerTest, RunsAOnewayCallSentAfterAnAnswerLeftUnread) {
    {
        RawConnection raw(path_);
        ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touch"})"));
        pollfd answered{raw.fd(), POLLIN, 0};
        ASSERT_EQ(::poll(&answered, 1, 2000), 1);  // the answer waits in our socket, unread
        ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touch","oneway":true})"));
    }
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (state_.touches < 2 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    EXPECT_EQ(state_.touches, 2);
    EXPECT_TRUE(server_.wait_for_connections(0));
}

TEST_F(VarlinkServerTest, AnswersInterfaceNotFoundForUnknownInterface) {
    auto reply = call("io.test.Nothing.Echo");
    EXPECT_EQ(reply.error, kErrorInterfaceNotFound);
    EXPECT_EQ(reply.parameters, json({{"interface", "io.test.Nothing"}}));
}

TEST_F(VarlinkServerTest, AnswersMethodNotFoundForUnknownMethod) {
    auto reply = call("io.test.Echo.Shout");
    EXPECT_EQ(reply.error, kErrorMethodNotFound);
    EXPECT_EQ(reply.parameters, json({{"method", "io.test.Echo.Shout"}}));
}

TEST_F(VarlinkServerTest, AnswersMethodNotFoundForAMethodWithoutInterface) {
    auto reply = call("Echo");
    EXPECT_EQ(reply.error, kErrorMethodNotFound);
    EXPECT_EQ(reply.parameters, json({{"method", "Echo"}}));
}

TEST_F(VarlinkServerTest, AnswersInvalidParameterNamingAnUnknownKey) {
    auto reply = call("io.test.Echo.Echo", json{{"text", "a"}, {"colour", "red"}});
    EXPECT_EQ(reply.error, kErrorInvalidParameter);
    EXPECT_EQ(reply.parameters, json({{"parameter", "colour"}}));
}

TEST_F(VarlinkServerTest, AnswersInvalidParameterNamingAParameterOfTheWrongType) {
    const std::vector<std::pair<json, std::string>> cases{
        {json{{"text", 1}}, "text"},
        {json{{"text", "a"}, {"number", "1"}}, "number"},
        {json{{"text", "a"}, {"number", 1.5}}, "number"},
        {json{{"text", "a"}, {"number", true}}, "number"},
        {json{{"text", "a"}, {"flag", 0}}, "flag"},
        {json{{"text", "a"}, {"object", json::array()}}, "object"},
        {json{{"text", "a"}, {"list", json::object()}}, "list"},
    };
    for (const auto& [parameters, bad] : cases) {
        auto reply = call("io.test.Echo.Echo", parameters);
        EXPECT_EQ(reply.error, kErrorInvalidParameter) << parameters;
        EXPECT_EQ(reply.parameters, json({{"parameter", bad}})) << parameters;
    }
}

TEST_F(VarlinkServerTest, AcceptsAnyIntegerForIntParameters) {
    for (json number : {json(0), json(-9223372036854775807LL - 1), json(18446744073709551615ULL)}) {
        auto reply = call("io.test.Echo.Echo", json{{"text", "a"}, {"number", number}});
        EXPECT_EQ(reply.error, "") << number;
        EXPECT_EQ(reply.parameters["number"], number);
    }
}

TEST_F(VarlinkServerTest, AnswersInvalidParameterNamingAMissingRequiredParameter) {
    auto reply = call("io.test.Echo.Echo", json{{"number", 1}});
    EXPECT_EQ(reply.error, kErrorInvalidParameter);
    EXPECT_EQ(reply.parameters, json({{"parameter", "text"}}));
}

TEST_F(VarlinkServerTest, AcceptsNullForOptionalParametersButNotForRequiredOnes) {
    auto reply = call("io.test.Echo.Echo", json{{"text", "a"}, {"number", nullptr}});
    EXPECT_EQ(reply.error, "");
    reply = call("io.test.Echo.Echo", json{{"text", nullptr}});
    EXPECT_EQ(reply.error, kErrorInvalidParameter);
    EXPECT_EQ(reply.parameters, json({{"parameter", "text"}}));
}

TEST_F(VarlinkServerTest, TreatsAbsentOrNullParametersAsAnEmptyObject) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touches"})"));
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touches","parameters":null})"));
    EXPECT_TRUE(parse_message(raw.read_message())["parameters"].contains("touches"));
    EXPECT_TRUE(parse_message(raw.read_message())["parameters"].contains("touches"));
}

TEST_F(VarlinkServerTest, AnswersInvalidParameterWhenParametersIsNotAnObject) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touches","parameters":[1]})"));
    EXPECT_EQ(parse_message(raw.read_message()),
              json::parse(R"({"error":"org.varlink.service.InvalidParameter",
                              "parameters":{"parameter":"parameters"}})"));
}

TEST_F(VarlinkServerTest, DescribesItselfWithGetInfo) {
    auto reply = call("org.varlink.service.GetInfo");
    ASSERT_EQ(reply.error, "");
    EXPECT_EQ(reply.parameters["vendor"], "transient");
    EXPECT_EQ(reply.parameters["product"], "test");
    EXPECT_EQ(reply.parameters["version"], "1");
    EXPECT_EQ(reply.parameters["url"], "https://example.org");
    EXPECT_EQ(reply.parameters["interfaces"], json({"io.test.Echo", "org.varlink.service"}));
}

TEST_F(VarlinkServerTest, ReturnsTheDescriptionOfEachInterface) {
    auto reply = call("org.varlink.service.GetInterfaceDescription",
                      json{{"interface", "io.test.Echo"}});
    ASSERT_EQ(reply.error, "");
    EXPECT_EQ(reply.parameters["description"], kEchoDescription);

    reply = call("org.varlink.service.GetInterfaceDescription",
                 json{{"interface", "org.varlink.service"}});
    ASSERT_EQ(reply.error, "");
    const std::string description = reply.parameters["description"];
    EXPECT_NE(description.find("interface org.varlink.service\n"), std::string::npos);
    EXPECT_NE(description.find("method GetInfo() -> ("), std::string::npos);
    EXPECT_NE(description.find("error InvalidParameter (parameter: string)"), std::string::npos);
}

TEST_F(VarlinkServerTest, AnswersInterfaceNotFoundForTheDescriptionOfAnUnknownInterface) {
    auto reply = call("org.varlink.service.GetInterfaceDescription",
                      json{{"interface", "io.test.Nothing"}});
    EXPECT_EQ(reply.error, kErrorInterfaceNotFound);
    EXPECT_EQ(reply.parameters, json({{"interface", "io.test.Nothing"}}));
}

TEST_F(VarlinkServerTest, AnswersMethodNotImplementedWhenAHandlerDoesNotAnswer) {
    auto reply = call("io.test.Echo.Silent");
    EXPECT_EQ(reply.error, kErrorMethodNotImplemented);
    EXPECT_EQ(reply.parameters, json({{"method", "io.test.Echo.Silent"}}));
}

TEST_F(VarlinkServerTest, AnswersASystemErrorWhenAHandlerThrowsAndKeepsServing) {
    Client client = connect();
    auto reply = client.call("io.test.Echo.Throw");
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error, "io.test.Echo.InternalError") << "an error the interface declares";
    EXPECT_EQ(reply->parameters, json::object());
    EXPECT_EQ(errors_logged_.load(), 1) << "the failure goes to the log handler";
    reply = client.call("io.test.Echo.Echo", json{{"text", "still here"}});
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters["text"], "still here");
}

TEST_F(VarlinkServerTest, FallsBackToASystemErrorForAnInterfaceWithoutAnInternalError) {
    server_.run([this] {
        server_.server().add_interface(Interface{
            "io.test.Bare", "interface io.test.Bare\nmethod Throw() -> ()\n",
            {Method{"Throw", {}, [](Call&) { throw std::runtime_error("bare"); }}}});
    });
    auto reply = call("io.test.Bare.Throw");
    EXPECT_EQ(reply.error, kErrorSystem);
    EXPECT_EQ(reply.parameters, json({{"errno", EIO}}));
}

TEST_F(VarlinkServerTest, TurnsReplyContinuesWithoutMoreIntoOneFinalReply) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.ContinuesWithoutMore"})"));
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Touches"})"));
    EXPECT_EQ(parse_message(raw.read_message()), json::parse(R"({"parameters":{"x":1}})"));
    EXPECT_TRUE(parse_message(raw.read_message())["parameters"].contains("touches"))
        << "the ignored second reply must not take the next call's place";
}

TEST_F(VarlinkServerTest, ReplacesAReplyLargerThanTheMessageLimitWithAnError) {
    auto reply = call("io.test.Echo.Big", json{{"size", 200 * 1024}});
    EXPECT_EQ(reply.error, "io.test.Echo.InternalError");
    EXPECT_EQ(reply.parameters, json::object());
    reply = call("io.test.Echo.Big", json{{"size", 1024}});
    EXPECT_EQ(reply.error, "");
}

TEST_F(VarlinkServerTest, PassesFileDescriptorsToTheHandler) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    base::UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    ASSERT_EQ(::write(write_end.get(), "through a pipe", 14), 14);
    write_end.reset();

    Client client = connect();
    const int fds[] = {read_end.get()};
    auto reply = client.call("io.test.Echo.ReadFd", json::object(), fds);
    ASSERT_TRUE(reply) << reply.error().message();
    EXPECT_EQ(reply->error, "");
    EXPECT_EQ(reply->parameters["data"], "through a pipe");
    EXPECT_EQ(reply->parameters["fds"], 1);

    // The descriptors belong to the message they came with, not to the next one.
    reply = client.call("io.test.Echo.ReadFd");
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error, "io.test.Echo.NoFd");
}

TEST_F(VarlinkServerTest, ReportsThePeerCredentials) {
    auto reply = call("io.test.Echo.Peer");
    EXPECT_EQ(reply.parameters["uid"], ::getuid());
    EXPECT_EQ(reply.parameters["pid"], ::getpid());
}

TEST_F(VarlinkServerTest, AnswersPendingRequestsAfterTheClientShutsDownWriting) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Echo","parameters":{"text":"bye"}})"));
    ASSERT_EQ(::shutdown(raw.fd(), SHUT_WR), 0);
    EXPECT_EQ(parse_message(raw.read_message())["parameters"]["text"], "bye");
    EXPECT_TRUE(raw.closed_by_peer());
    EXPECT_TRUE(server_.wait_for_connections(0));
}

TEST_F(VarlinkServerTest, ForgetsConnectionsWhenClientsHangUp) {
    {
        Client a = connect(), b = connect();
        ASSERT_TRUE(a.call("io.test.Echo.Touch"));
        ASSERT_TRUE(b.call("io.test.Echo.Touch"));
        EXPECT_EQ(server_.connection_count(), 2U);
    }
    EXPECT_TRUE(server_.wait_for_connections(0));
}

TEST_F(VarlinkServerTest, ReplacesAStaleSocketAndAppliesTheMode) {
    // The fixture's socket is "stale" as far as a second listen_path() is concerned.
    auto result = server_.run([this] { return server_.server().listen_path(path_, 0600); });
    ASSERT_TRUE(result) << result.error().message();
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600U);
    EXPECT_EQ(call("io.test.Echo.Echo", json{{"text", "new socket"}}).parameters["text"],
              "new socket");
}

TEST_F(VarlinkServerTest, RefusesToReplaceSomethingThatIsNotASocket) {
    const std::string file = dir_.path() + "/regular";
    base::UniqueFd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    auto result = server_.run([&] { return server_.server().listen_path(file, 0600); });
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().value(), EADDRINUSE);
}

TEST_F(VarlinkServerTest, ServesAnAlreadyListeningSocket) {
    const std::string other = dir_.path() + "/passed";
    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));  // blocking, as systemd
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, other.c_str(), sizeof(sa.sun_path) - 1);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    ASSERT_EQ(::listen(fd.get(), 16), 0);
    auto result = server_.run([&] { return server_.server().listen_fd(std::move(fd)); });
    ASSERT_TRUE(result) << result.error().message();

    auto client = Client::connect(other, 2s);
    ASSERT_TRUE(client);
    auto reply = client->call("io.test.Echo.Echo", json{{"text", "passed"}});
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters["text"], "passed");
}

TEST_F(VarlinkServerTest, RefusesToServeASocketThatIsNotListening) {
    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto result = server_.run([&] { return server_.server().listen_fd(std::move(fd)); });
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().value(), EINVAL);

    base::UniqueFd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    result = server_.run([&] { return server_.server().listen_fd(std::move(file)); });
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().value(), ENOTSOCK);
}

}  // namespace
}  // namespace transient::varlink::testing
