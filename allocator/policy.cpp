// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/policy.hpp"

#include <charconv>

namespace transient::allocator {

std::optional<uid_t> name_scope(std::string_view name) {
    if (name.size() < 3 || name[0] != 'u')
        return std::nullopt;
    const auto dash = name.find('-');
    if (dash == std::string_view::npos || dash < 2)
        return std::nullopt;
    const std::string_view digits = name.substr(1, dash - 1);
    // Canonical only: "u01000-x" is not UID 1000's, or two spellings would share a scope.
    if (digits.size() > 1 && digits[0] == '0')
        return std::nullopt;
    std::uint32_t uid = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), uid);
    if (ec != std::errc{} || end != digits.data() + digits.size())
        return std::nullopt;
    return static_cast<uid_t>(uid);
}

std::string scoped_name(std::string_view name, uid_t caller) {
    if (caller == 0 || name_scope(name).has_value())
        return std::string(name);
    return "u" + std::to_string(caller) + "-" + std::string(name);
}

bool may_use_name(std::string_view scoped, uid_t caller) {
    return caller == 0 || name_scope(scoped) == caller;
}

bool may_see_details(const shm::RangeEntry& r, uid_t caller) {
    return caller == 0 || r.owner == caller;
}

}  // namespace transient::allocator
