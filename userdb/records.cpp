// SPDX-License-Identifier: LGPL-2.1-or-later

#include "userdb/records.hpp"

#include <algorithm>
#include <string_view>

namespace transient::userdb {
namespace {

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

}  // namespace

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
