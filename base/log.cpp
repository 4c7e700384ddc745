// SPDX-License-Identifier: LGPL-2.1-or-later

#include "base/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace transient::base {

void log(int priority, std::string_view message) noexcept {
    // One fprintf() per message: stderr is unbuffered, and a line written in one piece is not
    // interleaved with another thread's.
    std::fprintf(stderr, "<%d>%.*s\n", priority, static_cast<int>(message.size()),
                 message.data());
}

void log_printf(int priority, const char* format, ...) noexcept {
    char buffer[4096];
    va_list ap;
    va_start(ap, format);
    const int n = std::vsnprintf(buffer, sizeof buffer, format, ap);
    va_end(ap);
    if (n < 0)
        return;
    log(priority, std::string_view(buffer, std::min<std::size_t>(n, sizeof buffer - 1)));
}

namespace {

bool is_field_name(std::string_view name) {
    if (name.empty() || name.size() > 64 || name[0] == '_' || (name[0] >= '0' && name[0] <= '9'))
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
}

}  // namespace

std::vector<std::string> journal_fields(int priority, std::string_view message_id,
                                        std::string_view message,
                                        std::span<const LogField> fields) {
    std::vector<std::string> out;
    out.reserve(fields.size() + 3);
    out.push_back("MESSAGE=" + std::string(message));
    if (!message_id.empty())
        out.push_back("MESSAGE_ID=" + std::string(message_id));
    out.push_back("PRIORITY=" + std::to_string(priority));
    for (const LogField& f : fields)
        if (is_field_name(f.name))
            out.push_back(std::string(f.name) + "=" + f.value);
    return out;
}

bool is_journal_stream(int fd, const char* journal_stream) noexcept {
    if (journal_stream == nullptr)
        return false;
    std::uintmax_t dev = 0, ino = 0;
    int end = 0;
    if (std::sscanf(journal_stream, "%ju:%ju%n", &dev, &ino, &end) != 2 ||
        journal_stream[end] != '\0')
        return false;
    struct stat st {};
    return ::fstat(fd, &st) == 0 && static_cast<std::uintmax_t>(st.st_dev) == dev &&
           static_cast<std::uintmax_t>(st.st_ino) == ino;
}

void log_event(int priority, std::string_view message_id, std::string_view message,
               std::span<const LogField> fields) noexcept {
    // Decided once: stderr is not redirected while a daemon runs.
    static const bool journal = is_journal_stream(STDERR_FILENO, std::getenv("JOURNAL_STREAM"));
    try {
        if (journal) {
            const std::vector<std::string> all =
                    journal_fields(priority, message_id, message, fields);
            std::vector<iovec> iov;
            iov.reserve(all.size());
            for (const std::string& s : all)
                iov.push_back({const_cast<char*>(s.data()), s.size()});
            if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0)
                return;
        }
    } catch (...) {
        // Out of memory: the plain line below still says what happened.
    }
    log(priority, message);
}

bool LogRateLimit::admit(std::uint64_t now_usec, unsigned* suppressed) noexcept {
    *suppressed = 0;
    if (now_usec - window_start_ >= window_usec_) {
        *suppressed = suppressed_;
        window_start_ = now_usec;
        in_window_ = 0;
        suppressed_ = 0;
    }
    if (in_window_ >= burst_) {
        suppressed_++;
        return false;
    }
    in_window_++;
    return true;
}

std::uint64_t monotonic_usec() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace transient::base
