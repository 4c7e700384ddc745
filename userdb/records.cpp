// SPDX-License-Identifier: LGPL-2.1-or-later

#include "userdb/records.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace transient::userdb {
namespace {

bool contains_nocase(std::string_view haystack, std::string_view needle) {
    auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                          [](char a, char b) {
                              return std::tolower(static_cast<unsigned char>(a)) ==
                                     std::tolower(static_cast<unsigned char>(b));
                          });
    return it != haystack.end();
}

}  // namespace

json user_record(const shm::Identity& id) {
    return json{
            {"userName", id.name},
            {"uid", id.id},
            {"gid", id.id},
            {"realName", id.description},
            {"homeDirectory", "/"},
            {"shell", "/usr/sbin/nologin"},
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
    if (!fuzzy_names.empty() &&
        std::none_of(fuzzy_names.begin(), fuzzy_names.end(), [&](const std::string& n) {
            return contains_nocase(id.name, n) || contains_nocase(id.description, n);
        }))
        return false;
    return true;
}

}  // namespace transient::userdb
