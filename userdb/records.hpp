// SPDX-License-Identifier: LGPL-2.1-or-later
//
// JSON user and group records (systemd's USER_RECORD.md / GROUP_RECORD.md) for the identities
// the range table stands for, and the v258 userdb filters (fuzzyNames, dispositionMask,
// uid/gid bounds) applied to them.

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shm/identity.hpp"

namespace transient::userdb {

using json = nlohmann::json;

inline constexpr char kServiceName[] = "io.transient.Ranges";

json user_record(const shm::Identity& id);
json group_record(const shm::Identity& id);

// The optional filters of a lookup. An absent filter matches everything.
struct Filter {
    std::vector<std::string> fuzzy_names;     // substring match, ASCII case-insensitive
    std::vector<std::string> dispositions;    // "container", "dynamic", "foreign", …
    std::optional<std::int64_t> id_min;
    std::optional<std::int64_t> id_max;
    std::optional<std::string> uuid;          // our records have no uuid: never matches

    bool matches(const shm::Identity& id) const;
};

}  // namespace transient::userdb
