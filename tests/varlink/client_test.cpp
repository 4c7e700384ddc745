// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The blocking Varlink client against a scripted server that answers with fixed bytes: what
// goes on the wire, connection failures, timeouts, and replies that are not Varlink.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/varlink/server_thread.hpp"

namespace transient::varlink::testing {
namespace {

using Clock = std::chrono::steady_clock;

base::UniqueFd listen_on(const std::string& path) {
    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
    ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 ||
        ::listen(fd.get(), 4) < 0)
        fd.reset();
    return fd;
}

// Accepts one connection, reads one request, answers with `response` (raw bytes), then either
// hangs up or keeps the connection open until destroyed.
class ScriptedServer {
public:
    ScriptedServer(const std::string& path, std::string response, bool hang_up = false)
        : listener_(listen_on(path)) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) == 0) {
            stop_read_.reset(fds[0]);
            stop_write_.reset(fds[1]);
        }
        thread_ = std::thread([this, response = std::move(response), hang_up] {
            serve(response, hang_up);
        });
    }
    ~ScriptedServer() {
        stop_write_.reset();  // EOF on the pipe wakes the thread
        thread_.join();
    }

    // The bytes of the first request, without its NUL.
    std::string request() { return request_.get_future().get(); }

private:
    // Waits for `fd` to become readable; false if told to stop first.
    bool wait(int fd) {
        pollfd p[2] = {{fd, POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
        return ::poll(p, 2, -1) > 0 && p[1].revents == 0;
    }

    void serve(const std::string& response, bool hang_up) {
        if (!wait(listener_.get()))
            return request_.set_value("");
        base::UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        std::string request;
        char c;
        while (wait(connection.get()) && ::read(connection.get(), &c, 1) == 1 && c != '\0')
            request += c;
        request_.set_value(request);
        ::send(connection.get(), response.data(), response.size(), MSG_NOSIGNAL);
        if (hang_up)
            return;
        wait(stop_read_.get());
    }

    base::UniqueFd listener_;
    base::UniqueFd stop_read_, stop_write_;
    std::promise<std::string> request_;
    std::thread thread_;
};

class VarlinkClientTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        path_ = dir_.path() + "/socket";
    }

    // Calls io.test.Echo.Echo on a server that answers with `response`.
    Result<Client::Reply> call_with_response(std::string response) {
        ScriptedServer server(path_, std::move(response));
        auto client = Client::connect(path_, 1s);
        if (!client)
            return std::unexpected(client.error());
        return client->call("io.test.Echo.Echo", json{{"text", "x"}});
    }

    TempDir dir_;
    std::string path_;
};

TEST_F(VarlinkClientTest, SendsACallAsANulTerminatedJsonObject) {
    ScriptedServer server(path_, std::string(R"({"parameters":{"ok":true}})") + '\0');
    auto client = Client::connect(path_, 1s);
    ASSERT_TRUE(client);
    auto reply = client->call("io.test.Echo.Echo", json{{"text", "x"}});
    ASSERT_TRUE(reply) << reply.error().message();
    EXPECT_EQ(reply->error, "");
    EXPECT_EQ(reply->parameters, json({{"ok", true}}));
    EXPECT_EQ(json::parse(server.request()),
              json({{"method", "io.test.Echo.Echo"}, {"parameters", {{"text", "x"}}}}));
}

TEST_F(VarlinkClientTest, AsksForMoreAndCollectsRepliesUntilOneWithoutContinues) {
    ScriptedServer server(path_, std::string(R"({"parameters":{"i":0},"continues":true})") +
                                     '\0' + R"({"parameters":{"i":1},"continues":false})" + '\0');
    auto client = Client::connect(path_, 1s);
    ASSERT_TRUE(client);
    auto replies = client->call_more("io.test.Echo.Count");
    ASSERT_TRUE(replies) << replies.error().message();
    ASSERT_EQ(replies->size(), 2U);
    EXPECT_TRUE((*replies)[0].continues);
    EXPECT_EQ((*replies)[1].parameters["i"], 1);
    EXPECT_EQ(json::parse(server.request())["more"], true);
}

TEST_F(VarlinkClientTest, EndsAStreamAtAnError) {
    ScriptedServer server(path_, std::string(R"({"parameters":{"i":0},"continues":true})") +
                                     '\0' + R"({"error":"io.test.Broken","continues":true})" +
                                     '\0');
    auto client = Client::connect(path_, 1s);
    ASSERT_TRUE(client);
    auto replies = client->call_more("io.test.Echo.Count");
    ASSERT_TRUE(replies);
    ASSERT_EQ(replies->size(), 2U);
    EXPECT_EQ(replies->back().error, "io.test.Broken");
    EXPECT_FALSE(replies->back().continues);
}

TEST_F(VarlinkClientTest, ReturnsVarlinkErrorsAsReplies) {
    auto reply = call_with_response(
        std::string(R"({"error":"io.test.Nope","parameters":{"why":"because"}})") + '\0');
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error, "io.test.Nope");
    EXPECT_EQ(reply->parameters["why"], "because");
}

TEST_F(VarlinkClientTest, AcceptsARepliesWithoutParameters) {
    auto reply = call_with_response(std::string("{}") + '\0');
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters, json::object());
}

TEST_F(VarlinkClientTest, ReportsMalformedRepliesAsBadMessages) {
    const std::vector<std::string> replies{
        "garbage",        "[1]",
        R"({"parameters":[1]})", R"({"error":5})",
        R"({"error":""})",       R"({"continues":"yes"})",
        std::string(1000, '[') + std::string(1000, ']'),
    };
    for (const std::string& bad : replies) {
        auto reply = call_with_response(bad + '\0');
        ASSERT_FALSE(reply) << bad.substr(0, 40);
        EXPECT_EQ(reply.error().value(), EBADMSG) << bad.substr(0, 40);
    }
}

TEST_F(VarlinkClientTest, ReportsAConnectionClosedBeforeTheReply) {
    ScriptedServer server(path_, R"({"parameters":)", /*hang_up=*/true);
    auto client = Client::connect(path_, 1s);
    ASSERT_TRUE(client);
    auto reply = client->call("io.test.Echo.Echo");
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().value(), ECONNRESET);
}

TEST_F(VarlinkClientTest, TimesOutWhenTheServerNeverAnswers) {
    ScriptedServer server(path_, "");
    auto client = Client::connect(path_, 200ms);
    ASSERT_TRUE(client);
    const auto begin = Clock::now();
    auto reply = client->call("io.test.Echo.Echo");
    const auto elapsed = Clock::now() - begin;
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().value(), ETIMEDOUT);
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 1s);
}

TEST_F(VarlinkClientTest, RefusesFurtherCallsAfterATransportError) {
    ScriptedServer server(path_, "");
    auto client = Client::connect(path_, 50ms);
    ASSERT_TRUE(client);
    ASSERT_FALSE(client->call("io.test.Echo.Echo"));
    // A late reply to the first call would be taken for the answer to the second one.
    auto again = client->call("io.test.Echo.Echo");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().value(), ETIMEDOUT);
}

TEST_F(VarlinkClientTest, FailsToConnectToAMissingSocket) {
    auto client = Client::connect(path_, 1s);
    ASSERT_FALSE(client);
    EXPECT_EQ(client.error().value(), ENOENT);
}

TEST_F(VarlinkClientTest, FailsToConnectWhenNobodyListens) {
    listen_on(path_);  // bound, then closed: the socket file stays behind
    auto client = Client::connect(path_, 1s);
    ASSERT_FALSE(client);
    EXPECT_EQ(client.error().value(), ECONNREFUSED);
}

TEST_F(VarlinkClientTest, RejectsAPathTooLongForASocketAddress) {
    auto client = Client::connect("/" + std::string(200, 'a'), 1s);
    ASSERT_FALSE(client);
    EXPECT_EQ(client.error().value(), ENAMETOOLONG);
}

TEST_F(VarlinkClientTest, RefusesCallsOnAMovedFromClient) {
    ScriptedServer server(path_, "");
    auto client = Client::connect(path_, 1s);
    ASSERT_TRUE(client);
    Client moved = std::move(*client);
    EXPECT_GE(moved.fd(), 0);
    EXPECT_EQ(client->fd(), -1);
    auto reply = client->call("io.test.Echo.Echo");
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().value(), EBADF);
}

}  // namespace
}  // namespace transient::varlink::testing
