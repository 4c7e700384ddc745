// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Test scaffolding for the Varlink suites: a Server on its own sd_event running in a background
// thread (everything that touches the server after start() runs on that thread via run()), a
// raw socket for sending bytes no well-behaved client would send, and a private temporary
// directory for the sockets.

#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>

#include <gtest/gtest.h>
#include <systemd/sd-event.h>

#include "tests/lib/temp_dir.hpp"
#include "varlink/varlink.hpp"

namespace transient::varlink::testing {

using namespace std::chrono_literals;

// A directory under /tmp that disappears with the object.
class TempDir : public transient::testing::TempDir {
public:
    TempDir() : transient::testing::TempDir("transient-varlink-test") {}
};

class ServerThread {
public:
    explicit ServerThread(ServiceInfo info = {"transient", "test", "1", "https://example.org"},
                          Limits limits = {}) {
        sd_event_new(&event_);
        server_ = std::make_unique<Server>(event_, std::move(info), limits);
        wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        sd_event_add_io(event_, nullptr, wake_.get(), EPOLLIN, on_wake, this);
    }
    ~ServerThread() {
        stop();
        server_.reset();
        sd_event_unref(event_);
    }
    ServerThread(const ServerThread&) = delete;
    ServerThread& operator=(const ServerThread&) = delete;

    // Before start() the server may be used directly; afterwards only through run().
    Server& server() { return *server_; }
    sd_event* event() { return event_; }

    void start() {
        thread_ = std::thread([this] { sd_event_loop(event_); });
    }
    void stop() {
        if (!thread_.joinable())
            return;
        run([this] { sd_event_exit(event_, 0); });
        thread_.join();
    }

    // Stops the loop and destroys the server (and its connections) before the object goes.
    void destroy_server() {
        stop();
        server_.reset();
    }

    // Runs `fn` on the event loop thread and returns its result.
    template <typename F>
    auto run(F&& fn) -> std::invoke_result_t<F> {
        using R = std::invoke_result_t<F>;
        if (!thread_.joinable())
            return fn();
        std::packaged_task<R()> task(std::forward<F>(fn));
        auto result = task.get_future();
        {
            std::lock_guard lock(mutex_);
            tasks_.emplace_back([&task] { task(); });
        }
        const uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof(one));
        return result.get();
    }

    std::size_t connection_count() {
        return run([this] { return server_->connection_count(); });
    }

    // Polls connection_count() until it equals `n` or a second passes.
    bool wait_for_connections(std::size_t n) {
        const auto deadline = std::chrono::steady_clock::now() + 2s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (connection_count() == n)
                return true;
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }

private:
    static int on_wake(sd_event_source*, int fd, uint32_t, void* userdata) noexcept {
        auto* self = static_cast<ServerThread*>(userdata);
        uint64_t value;
        [[maybe_unused]] auto n = ::read(fd, &value, sizeof(value));
        std::deque<std::function<void()>> tasks;
        {
            std::lock_guard lock(self->mutex_);
            tasks.swap(self->tasks_);
        }
        for (auto& task : tasks)
            task();
        return 0;
    }

    sd_event* event_ = nullptr;
    std::unique_ptr<Server> server_;
    base::UniqueFd wake_;
    std::thread thread_;
    std::mutex mutex_;
    std::deque<std::function<void()>> tasks_;
};

// A client socket that sends whatever bytes a test wants and reads NUL-terminated messages.
class RawConnection {
public:
    explicit RawConnection(const std::string& path) {
        fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
        if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0)
            fd_.reset();
    }

    bool connected() const { return bool(fd_); }
    int fd() const { return fd_.get(); }

    bool send(std::string_view bytes) {
        while (!bytes.empty()) {
            const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n <= 0)
                return false;
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }
    // Sends a message and its terminating NUL.
    bool send_message(std::string_view text) {
        return send(std::string(text) + '\0');
    }

    // The next NUL-terminated message, or nothing on EOF, error or timeout.
    std::optional<std::string> read_message(std::chrono::milliseconds timeout = 2s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto nul = buffer_.find('\0'); nul != std::string::npos) {
                std::string message = buffer_.substr(0, nul);
                buffer_.erase(0, nul + 1);
                return message;
            }
            if (!fill(deadline))
                return std::nullopt;
        }
    }

    // True if the server closes the connection within `timeout`; messages are discarded.
    bool closed_by_peer(std::chrono::milliseconds timeout = 2s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (fill(deadline))
            buffer_.clear();
        return eof_;
    }

private:
    // Reads what is available, waiting until the deadline. False on EOF, error or timeout.
    bool fill(std::chrono::steady_clock::time_point deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{fd_.get(), POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
            return false;
        char chunk[65536];
        const ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n <= 0) {
            eof_ = n == 0 || errno == ECONNRESET;
            return false;
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
    }

    base::UniqueFd fd_;
    std::string buffer_;
    bool eof_ = false;
};

// Parses a message the test received; a test failure (not a crash) if it is not JSON.
inline json parse_message(const std::optional<std::string>& text) {
    if (!text)
        return json();
    return json::parse(*text, nullptr, false);
}

}  // namespace transient::varlink::testing
