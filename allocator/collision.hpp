// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The production CollisionChecker: asks NSS (and through nss-systemd every userdb provider)
// about the IDs a candidate range would take, with our own module bypassed, and reads
// /etc/subuid and /etc/subgid. systemd's allocators only probe a range's base and base+0xFFFE
// (nspawn), so we probe at least those.

#pragma once

#include <string>

#include "allocator/allocator.hpp"

namespace transient::allocator {

struct CollisionSources {
    std::string subuid = "/etc/subuid";
    std::string subgid = "/etc/subgid";
};

class SystemCollisionChecker : public CollisionChecker {
public:
    explicit SystemCollisionChecker(CollisionSources sources = {});

    std::optional<std::string> range_taken(std::uint32_t start, std::uint32_t size) override;
    std::optional<std::string> name_taken(std::string_view name) override;

private:
    CollisionSources sources_;
};

// Makes this process's own NSS lookups skip libnss_transient and our userdb endpoint, so that
// the collision checks see only the other sources. Call before the first lookup.
void bypass_own_sources();

// The first line of a subuid-format file whose range overlaps [start, start + size), as
// "FILE:LINE", or nothing. Unreadable or missing files claim nothing.
std::optional<std::string> subid_overlap(const std::string& path, std::uint32_t start,
                                         std::uint32_t size);

}  // namespace transient::allocator
