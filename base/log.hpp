// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The daemons' one way to log: a line on stderr with an sd-daemon(3) "<N>" priority prefix,
// which journald turns into the entry's priority when the unit sends stderr to the journal.
// The daemons' main code, and the Varlink server's default log handler, write through here.
// Libraries (shm/, the allocator core) return errors instead; the NSS module never logs.
//
// Events an administrator searches for (an allocation, a release, a refused request) carry
// structured fields as well: log_event() sends them with sd_journal_sendv() when stderr is the
// journal, so `journalctl TRANSIENT_RANGE=web` finds them, and writes the plain line otherwise.

#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace transient::base {

// `priority` is a syslog level (LOG_ERR ... LOG_DEBUG). Writes "<priority>message\n".
void log(int priority, std::string_view message) noexcept;

// log() with a printf format; messages longer than 4 KiB are cut.
__attribute__((format(printf, 2, 3))) void log_printf(int priority, const char* format,
                                                      ...) noexcept;

// One journal field of an event: `name` is upper case letters, digits and '_', not starting
// with '_' or a digit (journald's rule; others are dropped by journal_fields()).
struct LogField {
    std::string_view name;
    std::string value;
};

// The fields an event goes to the journal with, each "NAME=value": MESSAGE=, MESSAGE_ID= (32
// lower-case hex digits), PRIORITY=, then `fields` in order. Values are sent as they are
// (sd_journal_sendv() takes any bytes, newlines included).
std::vector<std::string> journal_fields(int priority, std::string_view message_id,
                                        std::string_view message,
                                        std::span<const LogField> fields);

// Whether `fd` is the stream `journal_stream` ($JOURNAL_STREAM, "DEVICE:INODE" in decimal, as
// systemd.exec(5) sets it) names: then its lines already go to the journal, and the structured
// entry should go there instead. Null or malformed: false.
bool is_journal_stream(int fd, const char* journal_stream) noexcept;

// Logs an event: with its fields through sd_journal_sendv() if stderr is connected to the
// journal (decided once, from $JOURNAL_STREAM), else the plain line log() writes.
void log_event(int priority, std::string_view message_id, std::string_view message,
               std::span<const LogField> fields) noexcept;

// A burst of `burst` messages per window of `window_usec`, for messages whose rate the clients
// decide (refused requests, protocol violations): they must not flood the journal.
class LogRateLimit {
public:
    static constexpr unsigned kDefaultBurst = 20;
    static constexpr std::uint64_t kDefaultWindowUsec = 5'000'000;

    explicit LogRateLimit(unsigned burst = kDefaultBurst,
                          std::uint64_t window_usec = kDefaultWindowUsec)
        : burst_(burst), window_usec_(window_usec) {}

    // Whether a message may go out at `now_usec` (a monotonic clock). When a window ends in
    // which messages were held back, *suppressed receives their number (to say so), else 0.
    bool admit(std::uint64_t now_usec, unsigned* suppressed) noexcept;

private:
    unsigned burst_;
    std::uint64_t window_usec_;
    std::uint64_t window_start_ = 0;
    unsigned in_window_ = 0;
    unsigned suppressed_ = 0;
};

// CLOCK_MONOTONIC in microseconds.
std::uint64_t monotonic_usec() noexcept;

}  // namespace transient::base
