// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/events.hpp"

#include <syslog.h>

#include <string>

#include "allocator/allocator.hpp"

namespace transient::allocator::events {

std::vector<base::LogField> range_fields(const shm::RangeEntry& r, std::optional<uid_t> caller,
                                         std::string_view reason) {
    std::vector<base::LogField> f{
        {"TRANSIENT_RANGE", r.name},
        {"TRANSIENT_START", std::to_string(r.start)},
        {"TRANSIENT_SIZE", std::to_string(r.size)},
        {"TRANSIENT_OWNER_UID", std::to_string(r.owner)},
    };
    if (caller)
        f.push_back({"TRANSIENT_CALLER_UID", std::to_string(*caller)});
    if (!reason.empty())
        f.push_back({"TRANSIENT_REASON", std::string(reason)});
    if (is_bound(r))
        f.push_back({"TRANSIENT_USERNS_INODE", std::to_string(r.userns_ino)});
    return f;
}

namespace {

// A name a caller sent, fit for a log line: at most 64 bytes, control characters as '?'.
std::string loggable(std::string_view s) {
    std::string out(s.substr(0, 64));
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            c = '?';
    if (s.size() > 64)
        out += "…";
    return out;
}

// "Allocated range 'web' (524288…589823, 65536 IDs, owner UID 1000) for UID 1000, bound to user
// namespace 4026532300" plus `why`.
std::string describe(const char* verb, const shm::RangeEntry& r, std::optional<uid_t> caller,
                     std::string_view why) {
    std::string s = std::string(verb) + " range '" + r.name + "' (" + std::to_string(r.start) +
                    "…" + std::to_string(r.start + r.size - 1) + ", " + std::to_string(r.size) +
                    " IDs, owner UID " + std::to_string(r.owner) + ")";
    if (caller)
        s += " for UID " + std::to_string(*caller);
    if (is_bound(r))
        s += ", bound to user namespace " + std::to_string(r.userns_ino);
    s += why;
    s += '.';
    return s;
}

void range_event(const char* id, const char* verb, const shm::RangeEntry& r,
                 std::optional<uid_t> caller, std::string_view reason, std::string_view why) {
    try {
        const auto fields = range_fields(r, caller, reason);
        base::log_event(LOG_INFO, id, describe(verb, r, caller, why), fields);
    } catch (...) {
        // Out of memory while logging: the change itself has been made and answered.
    }
}

}  // namespace

void allocated(const shm::RangeEntry& r, uid_t caller) {
    range_event(kAllocated, "Allocated", r, caller, {}, {});
}

void released(const shm::RangeEntry& r, uid_t caller) {
    range_event(kReleased, "Released", r, caller, {}, {});
}

void userns_gone(const shm::RangeEntry& r) {
    range_event(kUsernsGone, "Released", r, std::nullopt, "userns-gone",
                ": the namespace is gone");
}

void imported(const shm::RangeEntry& r) {
    range_event(kImported, "Imported", r, std::nullopt, "subid-file",
                " from /etc/subuid or /etc/subgid");
}

void import_removed(const shm::RangeEntry& r) {
    range_event(kImportRemoved, "Dropped imported", r, std::nullopt, "subid-file",
                ": its line left /etc/subuid or /etc/subgid");
}

void refused(std::string_view method, std::string_view name, std::int64_t size, uid_t caller,
             std::string_view error, std::string_view message) {
    // The event loop's thread only, so no lock.
    static base::LogRateLimit limit;
    try {
        unsigned suppressed = 0;
        const bool admitted = limit.admit(base::monotonic_usec(), &suppressed);
        if (suppressed > 0)
            base::log_printf(LOG_WARNING, "Suppressed %u messages about refused requests.",
                             suppressed);
        if (!admitted)
            return;
        const std::string shown = loggable(name);
        std::vector<base::LogField> f;
        if (!name.empty())
            f.push_back({"TRANSIENT_RANGE", shown});
        if (size > 0)
            f.push_back({"TRANSIENT_SIZE", std::to_string(size)});
        f.push_back({"TRANSIENT_CALLER_UID", std::to_string(caller)});
        f.push_back({"TRANSIENT_REASON", std::string(error)});
        std::string text = "Refused " + std::string(method) + " of UID " + std::to_string(caller);
        if (!name.empty())
            text += " for range '" + shown + "'";
        text += ": " + std::string(error);
        if (!message.empty())
            text += " (" + loggable(message) + ")";
        text += '.';
        base::log_event(LOG_NOTICE, kRefused, text, f);
    } catch (...) {
        // Out of memory while logging: the caller has its answer anyway.
    }
}

}  // namespace transient::allocator::events
