// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Hostile clients against the Varlink server: oversized, deeply nested, half-sent and malformed
// messages, too many descriptors, idle connections by the hundred, a client that floods
// requests and never reads, connection limits in all and per UID. Each test checks that only
// the offender suffers and that everybody else keeps getting prompt answers.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/varlink/echo_interface.hpp"
#include "tests/varlink/server_thread.hpp"
#include "varlink/wire.hpp"

namespace transient::varlink::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kEchoCall[] = R"({"method":"io.test.Echo.Echo","parameters":{"text":"x"}})";

class VarlinkLimitsTest : public ::testing::Test {
protected:
    void start(Limits limits) {
        ASSERT_FALSE(dir_.path().empty());
        path_ = dir_.path() + "/io.test.Echo";
        server_ = std::make_unique<ServerThread>(ServiceInfo{}, limits);
        server_->server().add_interface(echo_interface(state_));
        ASSERT_TRUE(server_->server().listen_path(path_, 0666));
        server_->start();
    }

    // The most output the server held queued, sampled over half a second.
    std::size_t peak_buffered_output() {
        std::size_t peak = 0;
        for (int i = 0; i < 20; i++) {
            peak = std::max(peak,
                            server_->run([this] { return server_->server().buffered_output(); }));
            std::this_thread::sleep_for(25ms);
        }
        return peak;
    }

    // A well-behaved client gets its answer, and quickly.
    void expect_served() {
        const auto begin = Clock::now();
        auto client = Client::connect(path_, 2s);
        ASSERT_TRUE(client) << client.error().message();
        auto reply = client->call("io.test.Echo.Echo", json{{"text", "still served"}});
        ASSERT_TRUE(reply) << reply.error().message();
        EXPECT_EQ(reply->parameters["text"], "still served");
        EXPECT_LT(Clock::now() - begin, 500ms);
    }

    // Starts with `limits` and has TotalHogs (below) fill the total output past `bytes`, their
    // requests read and held back. Needs root.
    bool start_with_full_total(Limits limits, std::size_t bytes);

    TempDir dir_;
    std::string path_;
    EchoState state_;
    std::unique_ptr<ServerThread> server_;
    std::shared_ptr<class TotalHogs> hogs_;
};

TEST_F(VarlinkLimitsTest, DisconnectsOnlyTheClientThatSendsAnOversizedMessage) {
    start(Limits{.max_message_size = 1024});
    RawConnection bystander(path_);
    RawConnection offender(path_);
    const std::string big = R"({"method":"io.test.Echo.Echo","parameters":{"text":")" +
                            std::string(2000, 'a') + "\"}}";
    ASSERT_TRUE(offender.send_message(big));
    EXPECT_TRUE(offender.closed_by_peer());

    ASSERT_TRUE(bystander.send_message(kEchoCall));
    EXPECT_EQ(parse_message(bystander.read_message())["parameters"]["text"], "x");
    expect_served();
}

TEST_F(VarlinkLimitsTest, DisconnectsAClientWhoseUnterminatedMessageOutgrowsTheLimit) {
    start(Limits{.max_message_size = 1024});
    RawConnection offender(path_);
    ASSERT_TRUE(offender.send(R"({"method":"io.test.Echo.Echo","parameters":{"text":")"));
    EXPECT_FALSE(offender.closed_by_peer(100ms)) << "a short partial message is fine";
    offender.send(std::string(64 * 1024, 'a'));  // may fail half-way: the server hangs up
    EXPECT_TRUE(offender.closed_by_peer());
    expect_served();
}

TEST_F(VarlinkLimitsTest, AcceptsAMessageOfExactlyTheMaximumSize) {
    start(Limits{.max_message_size = 1024});
    const std::string prefix = R"({"method":"io.test.Echo.Echo","parameters":{"text":")";
    const std::string payload(1024 - prefix.size() - 3, 'a');
    const std::string text = prefix + payload + "\"}}";
    ASSERT_EQ(text.size(), 1024U);
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(text));
    EXPECT_EQ(parse_message(raw.read_message())["parameters"]["text"], payload);

    RawConnection one_more(path_);
    ASSERT_TRUE(one_more.send_message(prefix + payload + "a\"}}"));
    EXPECT_TRUE(one_more.closed_by_peer());
}

TEST_F(VarlinkLimitsTest, RejectsDeeplyNestedJsonWithoutCrashing) {
    start(Limits{});
    RawConnection offender(path_);
    ASSERT_TRUE(offender.send_message(std::string(10000, '[')));
    EXPECT_TRUE(offender.closed_by_peer());

    RawConnection nested_parameters(path_);
    std::string deep = R"({"method":"io.test.Echo.Echo","parameters":{"text":"a","anything":)";
    deep += std::string(40, '[') + std::string(40, ']') + "}}";
    ASSERT_TRUE(nested_parameters.send_message(deep));
    EXPECT_TRUE(nested_parameters.closed_by_peer());
    expect_served();
}

TEST_F(VarlinkLimitsTest, IgnoresBracketsInsideStringsWhenCheckingDepth) {
    start(Limits{.max_depth = 8});
    RawConnection raw(path_);
    const std::string text = std::string(100, '[') + "\\\"{{{{{{{{{{{{";
    ASSERT_TRUE(raw.send_message(json{{"method", "io.test.Echo.Echo"},
                                      {"parameters", {{"text", text}}}}.dump()));
    EXPECT_EQ(parse_message(raw.read_message())["parameters"]["text"], text);
}

TEST_F(VarlinkLimitsTest, DisconnectsClientsThatSendSomethingOtherThanACall) {
    start(Limits{});
    const std::vector<std::string> bad{
        std::string("\xff\xfe garbage \x01\x02", 14),
        "",
        "[1, 2, 3]",
        "\"io.test.Echo.Echo\"",
        "42",
        "{}",
        R"({"method": 42})",
        R"({"method": null})",
        R"({"method": "io.test.Echo.Touch", "more": "yes"})",
        R"({"method": "io.test.Echo.Touch", "oneway": 1})",
        R"({"method": "io.test.Echo.Touch", "more": true, "oneway": true})",
        R"({"method": "io.test.Echo.Touch")",
        "{\"method\": \"io.test.Echo.T\xc3\x28uch\"}",  // invalid UTF-8
    };
    for (const auto& message : bad) {
        RawConnection raw(path_);
        ASSERT_TRUE(raw.send_message(message));
        EXPECT_TRUE(raw.closed_by_peer()) << message;
    }
    expect_served();
    EXPECT_TRUE(server_->wait_for_connections(0));
}

TEST_F(VarlinkLimitsTest, SurvivesRandomBytes) {
    start(Limits{.max_message_size = 4096});
    std::mt19937 random(12345);
    for (int i = 0; i < 200; i++) {
        RawConnection raw(path_);
        std::string bytes(random() % 300, '\0');
        for (char& c : bytes)
            c = static_cast<char>(random() % 4 == 0 ? "{}[]\":,\\"[random() % 8] : random());
        raw.send(bytes);
    }
    expect_served();
}

TEST_F(VarlinkLimitsTest, DisconnectsAClientThatSendsMoreFileDescriptorsThanAllowed) {
    start(Limits{.max_fds_per_message = 2});
    std::vector<base::UniqueFd> files;
    std::vector<int> fds;
    for (int i = 0; i < 3; i++) {
        files.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        fds.push_back(files.back().get());
    }
    auto client = Client::connect(path_, 2s);
    ASSERT_TRUE(client);
    auto reply = client->call("io.test.Echo.ReadFd", json::object(), fds);
    EXPECT_FALSE(reply) << "the connection is dropped, no reply";

    client = Client::connect(path_, 2s);
    ASSERT_TRUE(client);
    reply = client->call("io.test.Echo.ReadFd", json::object(), std::span(fds).first(2));
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters["fds"], 2);
}

TEST_F(VarlinkLimitsTest, KeepsAnsweringQuicklyWithAHalfSentMessageAndHundredsOfIdleConnections) {
    start(Limits{});
    RawConnection half(path_);
    ASSERT_TRUE(half.send(R"({"method":"io.test.Echo.Ec)"));
    std::vector<std::unique_ptr<RawConnection>> idle;
    for (int i = 0; i < 300; i++) {
        idle.push_back(std::make_unique<RawConnection>(path_));
        ASSERT_TRUE(idle.back()->connected());
    }
    EXPECT_TRUE(server_->wait_for_connections(301));

    auto client = Client::connect(path_, 2s);
    ASSERT_TRUE(client);
    const auto begin = Clock::now();
    for (int i = 0; i < 20; i++)
        ASSERT_TRUE(client->call("io.test.Echo.Echo", json{{"text", "quick"}}));
    EXPECT_LT(Clock::now() - begin, 500ms);

    // The half-sent call is answered once it is complete.
    ASSERT_TRUE(half.send_message(R"(ho","parameters":{"text":"late"}})"));
    EXPECT_EQ(parse_message(half.read_message())["parameters"]["text"], "late");
}

TEST_F(VarlinkLimitsTest, ThrottlesAClientThatFloodsRequestsWithoutReadingWhileServingOthers) {
    start(Limits{.max_output_buffer = 64 * 1024});
    RawConnection flooder(path_);
    ASSERT_EQ(::fcntl(flooder.fd(), F_SETFL, O_NONBLOCK), 0);

    const std::string request = std::string(kEchoCall) + '\0';
    constexpr std::size_t kGiveUpAfter = 256 * 1024 * 1024;
    std::size_t sent = 0;
    for (;;) {
        const std::size_t offset = sent % request.size();
        const ssize_t n = ::send(flooder.fd(), request.data() + offset, request.size() - offset,
                                 MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            ASSERT_LT(sent, kGiveUpAfter) << "the server never stopped reading";
            continue;
        }
        ASSERT_EQ(errno, EAGAIN);
        // Blocked: the server has stopped reading if the socket stays full for a while.
        pollfd p{flooder.fd(), POLLOUT, 0};
        if (::poll(&p, 1, 200) == 0)
            break;
    }
    EXPECT_LT(sent, 16U * 1024 * 1024);
    expect_served();

    // Once the flooder reads, the server catches up and answers every complete request.
    const std::size_t complete = sent / request.size();
    std::size_t unsent = (request.size() - sent % request.size()) % request.size();
    std::size_t replies = 0;
    const auto deadline = Clock::now() + 5s;
    while (replies < complete + (unsent > 0 ? 1 : 0) && Clock::now() < deadline) {
        if (unsent > 0) {
            const ssize_t n = ::send(flooder.fd(), request.data() + request.size() - unsent,
                                     unsent, MSG_NOSIGNAL);
            if (n > 0)
                unsent -= static_cast<std::size_t>(n);
        }
        pollfd p{flooder.fd(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0)
            continue;
        char buffer[65536];
        const ssize_t n = ::recv(flooder.fd(), buffer, sizeof(buffer), 0);
        ASSERT_GT(n, 0);
        replies += static_cast<std::size_t>(std::count(buffer, buffer + n, '\0'));
    }
    EXPECT_EQ(replies, complete + (sent % request.size() != 0 ? 1 : 0));
}

TEST_F(VarlinkLimitsTest, RefusesConnectionsBeyondMaxConnections) {
    start(Limits{.max_connections = 3});
    std::vector<std::unique_ptr<RawConnection>> held;
    for (int i = 0; i < 3; i++) {
        held.push_back(std::make_unique<RawConnection>(path_));
        ASSERT_TRUE(held.back()->send_message(kEchoCall));
        ASSERT_TRUE(held.back()->read_message());
    }
    RawConnection refused(path_);
    EXPECT_TRUE(refused.closed_by_peer());

    held.pop_back();
    EXPECT_TRUE(server_->wait_for_connections(2));
    expect_served();
}

TEST_F(VarlinkLimitsTest, ClosesEveryConnectionWhenDestroyed) {
    start(Limits{});
    RawConnection idle(path_), half(path_);
    ASSERT_TRUE(half.send(R"({"method":)"));
    EXPECT_TRUE(server_->wait_for_connections(2));
    server_.reset();
    EXPECT_TRUE(idle.closed_by_peer());
    EXPECT_TRUE(half.closed_by_peer());
}

// Runs `body` in a forked child as `uid` (the limits key on SO_PEERCRED) and returns what it
// returned: "setresuid failed" if the child could not become `uid`.
std::string run_as(uid_t uid, const std::function<std::string()>& body) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) < 0)
        return "pipe failed";
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(pipe_fds[0]);
        if (uid != ::geteuid() &&
            (::setresgid(uid, uid, uid) < 0 || ::setresuid(uid, uid, uid) < 0))
            ::_exit(2);
        const std::string result = body();
        [[maybe_unused]] auto n = ::write(pipe_fds[1], result.data(), result.size());
        ::_exit(0);
    }
    ::close(pipe_fds[1]);
    std::string result;
    char c;
    while (::read(pipe_fds[0], &c, 1) == 1)
        result += c;
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
        return "setresuid failed";
    return result;
}

// Connects `count` times as `uid` and reports per connection whether a call got an answer:
// "y" or "n".
std::string connections_as(uid_t uid, const std::string& path, int count) {
    return run_as(uid, [&] {
        std::vector<std::unique_ptr<RawConnection>> connections;
        for (int i = 0; i < count; i++)
            connections.push_back(std::make_unique<RawConnection>(path));
        std::string result;
        for (auto& c : connections) {
            const bool answered = c->send_message(kEchoCall) && c->read_message(2s).has_value();
            result += answered ? 'y' : 'n';
        }
        return result;
    });
}

TEST_F(VarlinkLimitsTest, RefusesConnectionsBeyondMaxConnectionsPerUid) {
    start(Limits{.max_connections_per_uid = 3});
    // The socket is 0666, the directory must be searchable for the unprivileged child too.
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
    const uid_t uid = ::geteuid() == 0 ? 65534 : ::geteuid();
    const std::string result = connections_as(uid, path_, 4);
    if (result == "setresuid failed")
        GTEST_SKIP() << "cannot switch to UID " << uid;
    EXPECT_EQ(result, "yyyn");
    expect_served();
}

TEST_F(VarlinkLimitsTest, ExemptsRootFromThePerUidLimit) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    start(Limits{.max_connections_per_uid = 2});
    EXPECT_EQ(connections_as(0, path_, 4), "yyyy");
}

// A child process, as `uid`, that opens `count` connections, sends `requests` (each message
// as given, pipelined) on each without reading any answer, and holds them until released.
class HostileChild {
public:
    HostileChild(uid_t uid, const std::string& path, int count, const std::string& request,
                 int requests) {
        int ready[2], release[2];
        if (::pipe2(ready, O_CLOEXEC) < 0 || ::pipe2(release, O_CLOEXEC) < 0)
            return;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(ready[0]);
            ::close(release[1]);
            if (uid != ::geteuid() &&
                (::setresgid(uid, uid, uid) < 0 || ::setresuid(uid, uid, uid) < 0))
                ::_exit(2);
            std::vector<std::unique_ptr<RawConnection>> connections;
            std::string answered;
            for (int i = 0; i < count; i++) {
                connections.push_back(std::make_unique<RawConnection>(path));
                ::fcntl(connections.back()->fd(), F_SETFL, O_NONBLOCK);
                bool ok = connections.back()->connected();
                for (int r = 0; ok && r < requests; r++)
                    ok = ::send(connections.back()->fd(), request.c_str(), request.size() + 1,
                                MSG_NOSIGNAL) > 0;
                answered += ok ? 'y' : 'n';
            }
            [[maybe_unused]] auto n = ::write(ready[1], answered.data(), answered.size());
            ::close(ready[1]);
            char c;
            while (::read(release[0], &c, 1) > 0) {
            }
            ::_exit(0);
        }
        ::close(ready[1]);
        ::close(release[0]);
        release_.reset(release[1]);
        char buffer[4096];
        ssize_t n;
        while ((n = ::read(ready[0], buffer, sizeof(buffer))) > 0)
            result_.append(buffer, static_cast<std::size_t>(n));
        ::close(ready[0]);
    }
    ~HostileChild() {
        release_.reset();
        if (pid_ > 0)
            ::waitpid(pid_, nullptr, 0);
    }
    // One letter per connection: 'y' if all its requests could be sent.
    const std::string& result() const { return result_; }

private:
    pid_t pid_ = -1;
    base::UniqueFd release_;
    std::string result_;
};

TEST_F(VarlinkLimitsTest, KeepsConnectionsInReserveForRootWhenOthersReachTheTotalCap) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    start(Limits{.max_connections = 6, .root_reserved_connections = 2});
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
    HostileChild nobody(65534, path_, 6, kEchoCall, 0);
    ASSERT_EQ(nobody.result().size(), 6U);
    EXPECT_TRUE(server_->wait_for_connections(4)) << "others get the total minus the reserve";
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(server_->connection_count(), 4U);
    expect_served();
}

TEST_F(VarlinkLimitsTest, ClosesAConnectionIdleForTooLongButNotOneWaitingForADeferredCall) {
    start(Limits{.idle_timeout = 300ms});
    RawConnection idle(path_);
    RawConnection waiting(path_);
    ASSERT_TRUE(
        waiting.send_message(R"({"method":"io.test.Echo.Defer","parameters":{"text":"a"}})"));
    const auto begin = Clock::now();
    EXPECT_TRUE(idle.closed_by_peer(3s));
    EXPECT_GE(Clock::now() - begin, 250ms);
    std::this_thread::sleep_for(400ms);
    server_->run([this] { state_.deferred.at(0)->reply(json{{"text", "a"}}); });
    EXPECT_EQ(parse_message(waiting.read_message())["parameters"]["text"], "a")
        << "a client waiting for a deferred answer is not idle";
    EXPECT_TRUE(waiting.closed_by_peer(3s)) << "but it is once it has its answer";
}

TEST_F(VarlinkLimitsTest, ClosesAConnectionThatDoesNotCompleteItsMessageInTime) {
    start(Limits{.partial_message_timeout = 300ms});
    RawConnection half(path_);
    RawConnection idle(path_);
    ASSERT_TRUE(half.send(R"({"method":"io.test.Echo.Ec)"));
    EXPECT_TRUE(half.closed_by_peer(3s));
    EXPECT_FALSE(idle.closed_by_peer(200ms)) << "an idle connection has a longer timeout";
    expect_served();
}

TEST_F(VarlinkLimitsTest, BoundsTheUnreadOutputOfAllConnectionsOfOneUid) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    start(Limits{.max_output_buffer = 1024 * 1024, .max_output_per_uid = 256 * 1024});
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
    // 8 connections asking for 100 replies of 16 KiB each and reading none: 12.5 MiB, of
    // which the kernel's socket buffers take a few hundred KiB per connection.
    HostileChild nobody(65534, path_, 8,
                        R"({"method":"io.test.Echo.Big","parameters":{"size":16384}})", 100);
    ASSERT_EQ(nobody.result(), "yyyyyyyy");
    const std::size_t peak = peak_buffered_output();
    std::printf("unread output of one UID with 8 connections: %zu KiB\n", peak / 1024);
    EXPECT_LT(peak, 256U * 1024 + 8 * 17 * 1024) << "the budget plus one reply per connection";
    expect_served();
}

// Clients that died while their requests were held back: their connections are closed and
// their budget given back, even while the UID stays over its budget because of other clients
// that are alive and do not read. Otherwise each dead client's connection would count against
// the UID's connection limit for as long as the others live, and eventually lock the UID out.
TEST_F(VarlinkLimitsTest, ClosesTheConnectionsOfClientsThatDiedWhileTheirRequestsWereHeldBack) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    start(Limits{.max_connections_per_uid = 16,
                 .max_output_buffer = 1024 * 1024,
                 .max_output_per_uid = 256 * 1024});
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
    const std::string big = R"({"method":"io.test.Echo.Big","parameters":{"size":16384}})";
    {
        // Alive and never reading: keeps the UID over its budget.
        HostileChild hog(65534, path_, 8, big, 100);
        ASSERT_EQ(hog.result(), "yyyyyyyy");
        ASSERT_TRUE(server_->wait_for_connections(8));
        // Until the UID is over its budget: the next connections get no answer at all, so
        // their clients leave nothing unread behind (which would make the kernel report an
        // error instead of a plain hang-up).
        const auto deadline = Clock::now() + 5s;
        while (server_->run([this] { return server_->server().buffered_output(); }) <=
                   256 * 1024 &&
               Clock::now() < deadline)
            std::this_thread::sleep_for(5ms);
        {
            HostileChild dying(65534, path_, 8, big, 20);
            ASSERT_EQ(dying.result(), "yyyyyyyy");
            ASSERT_TRUE(server_->wait_for_connections(16));
            std::this_thread::sleep_for(100ms);  // accepted, read from, held back
        }  // the child exits: its connections hang up
        EXPECT_TRUE(server_->wait_for_connections(8))
            << server_->connection_count() << " connections open, 8 of a dead client";
        expect_served();  // others (root) are served all along
    }
    EXPECT_TRUE(server_->wait_for_connections(0))
        << server_->connection_count() << " connections of dead clients still open";
    EXPECT_EQ(server_->run([this] { return server_->server().buffered_output(); }), 0U)
        << "the budget is given back";
    EXPECT_EQ(connections_as(65534, path_, 16), std::string(16, 'y'))
        << "the UID is served again, on as many connections as before";
}

// Polls the server's unread output until it is over `bytes`; false after 10 s.
bool wait_for_output_over(ServerThread& server, std::size_t bytes) {
    const auto deadline = Clock::now() + 10s;
    while (server.run([&server] { return server.server().buffered_output(); }) <= bytes) {
        if (Clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

constexpr char kBigCall[] = R"({"method":"io.test.Echo.Big","parameters":{"size":16384}})";

// Live clients of nine UIDs (60001-60009) that never read, each UID within its 256 KiB budget,
// filling a 1 MiB total between them; they are released newest first, since each child holds
// the release pipes of those forked before it.
class TotalHogs {
public:
    explicit TotalHogs(const std::string& path) {
        for (uid_t uid = 60001; uid <= 60009; uid++)
            hogs_.push_back(std::make_unique<HostileChild>(uid, path, 4, kBigCall, 50));
    }
    ~TotalHogs() {
        while (!hogs_.empty())
            hogs_.pop_back();
    }
    TotalHogs(const TotalHogs&) = delete;
    TotalHogs& operator=(const TotalHogs&) = delete;
    bool all_sent() const {
        return std::ranges::all_of(hogs_, [](const auto& h) { return h->result() == "yyyy"; });
    }

    static constexpr Limits kLimits{.max_output_buffer = 1024 * 1024,
                                    .max_output_per_uid = 256 * 1024,
                                    .max_output_total = 1024 * 1024,
                                    .output_reserve_per_uid = 64 * 1024};

private:
    std::vector<std::unique_ptr<HostileChild>> hogs_;
};

bool VarlinkLimitsTest::start_with_full_total(Limits limits, std::size_t bytes) {
    start(limits);
    if (::chmod(dir_.path().c_str(), 0755) != 0)
        return false;
    hogs_ = std::make_shared<TotalHogs>(path_);
    if (!hogs_->all_sent() || !wait_for_output_over(*server_, bytes))
        return false;
    std::this_thread::sleep_for(100ms);
    return true;
}

// A UID with nothing queued is not held back by the others' unread output: it is under its
// reserve, which the total does not hold.
TEST_F(VarlinkLimitsTest, ServesAUidWithNothingQueuedWhileOtherUidsFillTheTotalOutputBudget) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    ASSERT_TRUE(start_with_full_total(TotalHogs::kLimits, 1024 * 1024))
        << "the total never filled up";
    EXPECT_EQ(connections_as(60100, path_, 4), "yyyy")
        << "a UID with nothing queued was held back by the others' unread output";
    expect_served();
    const std::size_t peak = server_->run([this] { return server_->server().buffered_output(); });
    std::printf("unread output of 9 UIDs against a 1 MiB total: %zu KiB\n", peak / 1024);
    EXPECT_LT(peak, 1024U * 1024 + 10 * (64 + 17) * 1024)
        << "the total, plus a reserve and one reply per UID";
}

// As `uid`: one connection (X) pipelines 30 replies of 16 KiB without reading, enough to be
// held back past its reserve while others fill the total; a second one (Y), with nothing of its
// own queued, calls Echo and is held back with it; then X reads all its replies. Reports "y"
// for X's replies all read and "y" if Y got its answer once X had read ("n" otherwise).
std::string reader_as(uid_t uid, const std::string& path) {
    return run_as(uid, [&] {
        RawConnection x(path), y(path);
        std::string burst;
        for (int i = 0; i < 30; i++)
            burst += std::string(kBigCall) + '\0';
        bool ok = x.send(burst);
        std::this_thread::sleep_for(300ms);  // X's answers queued past the reserve
        ok = ok && y.send_message(kEchoCall);
        std::this_thread::sleep_for(300ms);  // Y's call read and held back
        for (int i = 0; ok && i < 30; i++)
            ok = x.read_message(5s).has_value();
        const bool answered = y.read_message(5s).has_value();
        return std::string(ok ? "y" : "n") + (answered ? "y" : "n");
    });
}

// A UID held back by the total because it has more than its reserve queued is let go as its
// client reads: once under its reserve, its connections that wait are woken, though the total
// is still full.
TEST_F(VarlinkLimitsTest, WakesTheWaitingConnectionsOfAUidThatReadsBelowItsReserve) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    ASSERT_TRUE(start_with_full_total(TotalHogs::kLimits, 1024 * 1024))
        << "the total never filled up";
    EXPECT_EQ(reader_as(60100, path_), "yy");
}

// However many UIDs queue answers under their reserves once the total is full, all of them
// together stop at the total plus output_reserve_total (and one reply). A UID with nothing
// queued is served even then: the connections that left answers unread longest make room.
TEST_F(VarlinkLimitsTest, BoundsTheReservesInAllAndMakesRoomForAUidWithNothingQueued) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    Limits limits = TotalHogs::kLimits;
    limits.max_output_total = 256 * 1024;
    limits.output_reserve_total = 64 * 1024;
    ASSERT_TRUE(start_with_full_total(limits, 256 * 1024)) << "the total never filled up";
    const std::size_t peak = peak_buffered_output();
    std::printf("unread output of 9 UIDs against 256 + 64 KiB: %zu KiB\n", peak / 1024);
    EXPECT_LT(peak, (256U + 64 + 17) * 1024) << "the total, the reserves and one reply";
    expect_served();  // root is exempt
    EXPECT_EQ(connections_as(60100, path_, 4), "yyyy")
        << "a UID with nothing queued was held back by the others' unread output";
}

// Live clients that never read, whose UID is over its budget while each of their connections is
// under its own: their idle clocks run (their own unread answers hold them, not the server), so
// they are closed and the budget given back while they are still alive.
TEST_F(VarlinkLimitsTest, ClosesIdleConnectionsOfLiveClientsThatNeverReadTheirAnswers) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs to run as root";
    start(Limits{.max_output_buffer = 1024 * 1024,
                 .max_output_per_uid = 256 * 1024,
                 .idle_timeout = 500ms});
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
    HostileChild hog(65534, path_, 8, kBigCall, 100);
    ASSERT_EQ(hog.result(), "yyyyyyyy");
    ASSERT_TRUE(wait_for_output_over(*server_, 256 * 1024)) << "the UID never filled its budget";
    const auto deadline = Clock::now() + 10s;
    while (server_->connection_count() > 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    EXPECT_EQ(server_->connection_count(), 0U) << "connections that never read are kept";
    EXPECT_EQ(server_->run([this] { return server_->server().buffered_output(); }), 0U)
        << "the budget is given back";
    EXPECT_EQ(connections_as(65534, path_, 8), std::string(8, 'y'))
        << "the UID is served again while the client that never read lives on";
}

TEST_F(VarlinkLimitsTest, LetsOtherConnectionsInAfterAFewRequestsOfOneConnection) {
    start(Limits{});
    RawConnection flooder(path_);
    std::string burst;
    for (int i = 0; i < 400; i++)  // 2 ms each: 0.8 s if handled in one go
        burst += std::string(R"({"method":"io.test.Echo.Nap"})") + '\0';
    ASSERT_TRUE(flooder.send(burst));
    std::this_thread::sleep_for(20ms);
    expect_served();  // within 500 ms
}

TEST_F(VarlinkLimitsTest, NeverGivesADescriptorToAnEarlierPipelinedCall) {
    start(Limits{});
    RawConnection raw(path_);
    ASSERT_TRUE(raw.send_message(kEchoCall));
    ASSERT_TRUE(raw.read_message());  // accepted and served
    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    base::UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    ASSERT_EQ(::write(write_end.get(), "secret", 6), 6);
    write_end.reset();

    // Keep the loop busy so that both calls are in the socket when the server reads.
    std::thread busy([this] { server_->run([] { std::this_thread::sleep_for(300ms); }); });
    std::this_thread::sleep_for(50ms);
    const std::string call = std::string(R"({"method":"io.test.Echo.ReadFd"})") + '\0';
    ASSERT_TRUE(raw.send(call));
    const int fds[] = {read_end.get()};
    ASSERT_EQ(detail::send_with_fds(raw.fd(), call, fds), static_cast<ssize_t>(call.size()));
    busy.join();

    // Either the server refuses the ambiguous descriptor (and says so by hanging up), or it
    // gives it to the second call: never to the first.
    auto first = raw.read_message();
    if (first) {
        EXPECT_EQ(parse_message(first)["error"], "io.test.Echo.NoFd");
        EXPECT_EQ(parse_message(raw.read_message())["parameters"]["data"], "secret");
    } else {
        EXPECT_TRUE(raw.closed_by_peer());
    }
}

TEST_F(VarlinkLimitsTest, LogsToStderrWithAPriorityPrefixByDefault) {
    start(Limits{});
    ::testing::internal::CaptureStderr();
    auto client = Client::connect(path_, 2s);
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->call("io.test.Echo.Throw"));
    const std::string logged = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(logged.find("<3>Varlink method io.test.Echo.Throw failed"), std::string::npos)
        << logged;
}

}  // namespace
}  // namespace transient::varlink::testing
