// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Deferred calls (Call::defer()): answered after the handler returned, from a timer or by the
// test itself, in order with the requests behind them, and dropped quietly when the client is
// gone.

#include <string>

#include <gtest/gtest.h>

#include "tests/varlink/echo_interface.hpp"
#include "tests/varlink/server_thread.hpp"

namespace transient::varlink::testing {
namespace {

using Clock = std::chrono::steady_clock;

class VarlinkDeferredTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        path_ = dir_.path() + "/io.test.Echo";
        state_.event = server_.event();
        server_.server().add_interface(echo_interface(state_));
        ASSERT_TRUE(server_.server().listen_path(path_, 0666));
        server_.start();
    }

    std::size_t deferred_count() {
        return server_.run([this] { return state_.deferred.size(); });
    }

    // Waits until `n` calls have been deferred.
    bool wait_for_deferred(std::size_t n) {
        const auto deadline = Clock::now() + 2s;
        while (Clock::now() < deadline) {
            if (deferred_count() == n)
                return true;
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }

    TempDir dir_;
    std::string path_;
    EchoState state_;
    ServerThread server_;
};

TEST_F(VarlinkDeferredTest, AnswersFromATimerWithoutBlockingOtherClients) {
    auto slow = Client::connect(path_, 5s);
    ASSERT_TRUE(slow);
    std::thread waiter([&] {
        auto reply = slow->call("io.test.Echo.Later", json{{"text", "late"}, {"usec", 500'000}});
        ASSERT_TRUE(reply) << reply.error().message();
        EXPECT_EQ(reply->error, "");
        EXPECT_EQ(reply->parameters["text"], "late");
    });
    std::this_thread::sleep_for(50ms);
    // The loop is free while the deferred call waits for its timer.
    const auto begin = Clock::now();
    auto other = Client::connect(path_, 2s);
    ASSERT_TRUE(other);
    auto reply = other->call("io.test.Echo.Echo", json{{"text", "meanwhile"}});
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters["text"], "meanwhile");
    EXPECT_LT(Clock::now() - begin, 400ms);
    waiter.join();
}

TEST_F(VarlinkDeferredTest, HoldsLaterRequestsOfTheConnectionSoRepliesStayInOrder) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Defer","parameters":{"text":"a"}})"));
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Echo","parameters":{"text":"b"}})"));
    ASSERT_TRUE(wait_for_deferred(1));
    EXPECT_FALSE(raw.read_message(300ms)) << "the request behind the deferred one must wait";

    server_.run([this] { state_.deferred[0]->reply(json{{"text", "a"}}); });
    EXPECT_EQ(parse_message(raw.read_message())["parameters"]["text"], "a");
    EXPECT_EQ(parse_message(raw.read_message())["parameters"]["text"], "b");
}

TEST_F(VarlinkDeferredTest, StreamsContinuesFromADeferredCall) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(
        R"({"method":"io.test.Echo.Defer","parameters":{"text":"a"},"more":true})"));
    ASSERT_TRUE(wait_for_deferred(1));
    server_.run([this] { state_.deferred[0]->reply_continues(json{{"text", "1"}}); });
    EXPECT_EQ(parse_message(raw.read_message()),
              json::parse(R"({"parameters":{"text":"1"},"continues":true})"));
    server_.run([this] { state_.deferred[0]->error("io.test.Echo.NoFd"); });
    EXPECT_EQ(parse_message(raw.read_message())["error"], "io.test.Echo.NoFd");
}

TEST_F(VarlinkDeferredTest, DropsTheAnswerSilentlyWhenTheClientIsGone) {
    {
        RawConnection raw(path_);
        ASSERT_TRUE(
            raw.send_message(R"({"method":"io.test.Echo.Defer","parameters":{"text":"a"}})"));
        ASSERT_TRUE(wait_for_deferred(1));
    }
    EXPECT_TRUE(server_.wait_for_connections(0)) << "a hung-up client does not wait for us";
    server_.run([this] {
        state_.deferred[0]->reply(json{{"text", "nobody listens"}});
        state_.deferred.clear();
    });
    auto client = Client::connect(path_, 2s);
    ASSERT_TRUE(client);
    auto reply = client->call("io.test.Echo.Echo", json{{"text", "still here"}});
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters["text"], "still here");
}

TEST_F(VarlinkDeferredTest, AnswersADeferredCallDroppedWithoutAnswerWithAnError) {
    auto client = Client::connect(path_, 2s);
    ASSERT_TRUE(client);
    auto reply = client->call("io.test.Echo.DeferAndDrop");
    ASSERT_TRUE(reply) << reply.error().message();
    EXPECT_NE(reply->error, "");
    reply = client->call("io.test.Echo.Echo", json{{"text", "next"}});
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters["text"], "next");
}

TEST_F(VarlinkDeferredTest, DropsTheAnswerWhenTheServerIsGone) {
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(R"({"method":"io.test.Echo.Defer","parameters":{"text":"a"}})"));
    ASSERT_TRUE(wait_for_deferred(1));
    std::vector<std::unique_ptr<Call>> calls = server_.run([this] {
        return std::move(state_.deferred);
    });
    server_.destroy_server();  // its connections go with it
    calls[0]->reply(json{{"text", "too late"}});
    calls.clear();
    EXPECT_TRUE(raw.closed_by_peer());
}

}  // namespace
}  // namespace transient::varlink::testing
