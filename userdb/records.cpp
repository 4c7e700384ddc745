// SPDX-License-Identifier: LGPL-2.1-or-later

#include "userdb/records.hpp"

#include <algorithm>
#include <string_view>

#include "varlink/json_writer.hpp"

namespace transient::userdb {
namespace {

using varlink::ObjectWriter;
using varlink::plain;

// A string in lower case, in a fixed buffer: the names and descriptions of records are short.
class LowerCase {
public:
    explicit LowerCase(const char* s) {
        std::size_t i = 0;
        for (; i < sizeof buf_ && s[i] != '\0'; i++)
            buf_[i] = ascii_tolower(s[i]);
        n_ = i;
    }
    std::string_view view() const { return {buf_, n_}; }

private:
    static char ascii_tolower(char c) {
        return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    }

    char buf_[std::max(shm::kMaxNameBuffer, shm::kMaxDescriptionBuffer)];
    std::size_t n_ = 0;
};

std::string reply_of(const shm::Identity& id, bool user) {
    if (!plain(id.name) || !plain(id.description))
        return json{{"record", user ? user_record(id) : group_record(id)}, {"incomplete", false}}
                .dump(-1, ' ', false, json::error_handler_t::replace);
    std::string out;
    out.reserve(320);
    {
        ObjectWriter reply(out);
        reply.literal("incomplete", "false");
        reply.literal("record", "");
        ObjectWriter record(out);
        const char* disposition = shm::disposition_name(id.disposition);
        if (user) {
            record.string("disposition", disposition);
            record.number("gid", id.id);
            record.string("homeDirectory", shm::kHomeDirectory);
            record.literal("locked", "true");
            record.string("realName", id.description);
            record.string("service", kServiceName);
            record.string("shell", shm::kShell);
            record.number("uid", id.id);
            record.string("userName", id.name);
        } else {
            record.string("description", id.description);
            record.string("disposition", disposition);
            record.number("gid", id.id);
            record.string("groupName", id.name);
            record.string("service", kServiceName);
        }
    }  // both objects closed
    return out;
}

}  // namespace

std::string user_reply(const shm::Identity& id) {
    return reply_of(id, true);
}

std::string group_reply(const shm::Identity& id) {
    return reply_of(id, false);
}

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

json user_record(const shm::Identity& id) {
    return json{
            {"userName", id.name},
            {"uid", id.id},
            {"gid", id.id},
            {"realName", id.description},
            {"homeDirectory", shm::kHomeDirectory},
            {"shell", shm::kShell},
            {"locked", true},
            {"disposition", shm::disposition_name(id.disposition)},
            {"service", kServiceName},
    };
}

json group_record(const shm::Identity& id) {
    return json{
            {"groupName", id.name},
            {"gid", id.id},
            {"description", id.description},
            {"disposition", shm::disposition_name(id.disposition)},
            {"service", kServiceName},
    };
}

bool Filter::matches(const shm::Identity& id) const {
    if (uuid)
        return false;
    if (id_min && static_cast<std::int64_t>(id.id) < *id_min)
        return false;
    if (id_max && static_cast<std::int64_t>(id.id) > *id_max)
        return false;
    if (!dispositions.empty() &&
        std::find(dispositions.begin(), dispositions.end(),
                  shm::disposition_name(id.disposition)) == dispositions.end())
        return false;
    if (!fuzzy_names.empty()) {
        // Each side lowered once per record, then plain substring searches (memchr/memcmp):
        // this runs for every record and every fuzzy name.
        const LowerCase name(id.name), description(id.description);
        if (std::none_of(fuzzy_names.begin(), fuzzy_names.end(), [&](const std::string& n) {
                return name.view().find(n) != std::string_view::npos ||
                       description.view().find(n) != std::string_view::npos;
            }))
            return false;
    }
    return true;
}

}  // namespace transient::userdb
