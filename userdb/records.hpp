// SPDX-License-Identifier: LGPL-2.1-or-later
//
// JSON user and group records (systemd's USER_RECORD.md / GROUP_RECORD.md) for the identities
// the range table stands for, and the v258 userdb filters (fuzzyNames, dispositionMask,
// uid/gid bounds) applied to them.

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shm/identity.hpp"

namespace transient::userdb {

using json = nlohmann::json;

inline constexpr char kServiceName[] = "io.transient.Ranges";

json user_record(const shm::Identity& id);
json group_record(const shm::Identity& id);

// The parameters of a GetUserRecord / GetGroupRecord reply, {"incomplete": false, "record": …},
// serialized: byte for byte what dump() makes of that object, without building it (an
// enumeration sends one per range, and the JSON tree cost more than everything else).
std::string user_reply(const shm::Identity& id);
std::string group_reply(const shm::Identity& id);

// How many entries a filter array may have. Every record is matched against every fuzzy name,
// so their count multiplies the cost of an enumeration on the daemon's one event loop; userdbctl
// sends the few words a person typed, and there are only eight dispositions. A longer array is
// InvalidParameter, on which systemd's clients retry without the filters and filter themselves.
inline constexpr std::size_t kMaxFuzzyNames = 64;
inline constexpr std::size_t kMaxDispositions = 16;

// ASCII lower case: what fuzzy names are compared in.
std::string ascii_lower(std::string_view s);

// The optional filters of a lookup. An absent filter matches everything.
struct Filter {
    // Substring match, ASCII case-insensitive; held in lower case (ascii_lower()).
    std::vector<std::string> fuzzy_names;
    std::vector<std::string> dispositions;    // "container", "dynamic", "foreign", …
    std::optional<std::int64_t> id_min;
    std::optional<std::int64_t> id_max;
    std::optional<std::string> uuid;          // our records have no uuid: never matches

    bool matches(const shm::Identity& id) const;
};

}  // namespace transient::userdb
