// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Compact JSON written straight into a string, for replies streamed one per record (userdb
// enumerations, ListRanges) whose JSON trees would cost more to build and dump than the records
// themselves. What it writes is byte for byte what nlohmann's dump() makes of the same object,
// provided the caller keeps to two rules: members in the keys' sorted order (nlohmann's objects
// are std::maps), and strings that are plain() (anything else needs escaping or UTF-8 repair:
// send those through a JSON tree instead).

#pragma once

#include <charconv>
#include <concepts>
#include <string>
#include <string_view>

namespace transient::varlink {

// Text that JSON carries as it is: printable ASCII without '"' and '\\'.
inline bool plain(std::string_view s) {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

// A JSON object built by appending `"key":value` members in the caller's order, which must be
// the keys' sorted order. The object is closed when the writer goes out of scope; literal(key,
// "") starts a member whose value (e.g. a nested ObjectWriter) the caller writes next.
class ObjectWriter {
public:
    explicit ObjectWriter(std::string& out) : out_(out) { out_ += '{'; }
    ~ObjectWriter() { out_ += '}'; }
    ObjectWriter(const ObjectWriter&) = delete;
    ObjectWriter& operator=(const ObjectWriter&) = delete;

    // REQUIRES: plain(value).
    void string(std::string_view key, std::string_view value) {
        member(key);
        out_ += '"';
        out_ += value;
        out_ += '"';
    }
    void number(std::string_view key, std::unsigned_integral auto value) {
        member(key);
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, value);
        out_.append(buf, r.ptr);
    }
    void boolean(std::string_view key, bool value) { literal(key, value ? "true" : "false"); }
    void literal(std::string_view key, std::string_view value) {
        member(key);
        out_ += value;
    }

private:
    void member(std::string_view key) {
        if (!first_)
            out_ += ',';
        first_ = false;
        out_ += '"';
        out_ += key;
        out_ += "\":";
    }

    std::string& out_;
    bool first_ = true;
};

}  // namespace transient::varlink
