// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The production CollisionChecker. While the allocator chooses, it holds the locks systemd's
// allocators take (system_locks.hpp); for each candidate it takes the candidate's own lock file,
// looks for systemd-nsresourced's registry entries, asks NSS (and through nss-systemd every userdb
// provider) about the IDs with our own module bypassed, and reads /etc/subuid and /etc/subgid.
// systemd's allocators only probe a range's base and base+0xFFFE (nspawn), so we probe at least
// those, in every 64K block of a multi-block candidate, and take every block's nspawn lock file:
// nspawn sees each block as one of its own candidates. Where /run/systemd does not exist there is
// no systemd to coexist with, and its locks and registry are skipped.

#pragma once

#include <string>
#include <vector>

#include "allocator/allocator.hpp"
#include "allocator/system_locks.hpp"

namespace transient::allocator {

struct CollisionSources {
    std::string subuid = "/etc/subuid";
    std::string subgid = "/etc/subgid";
    std::string passwd_lock = "/etc/.pwd.lock";
    // Holds nspawn-uid/, dynamic-uid/ and nsresource/registry/.
    std::string systemd_run = "/run/systemd";
};

class SystemCollisionChecker : public CollisionChecker {
public:
    explicit SystemCollisionChecker(CollisionSources sources = {});

    std::optional<Failure> begin_choice() override;
    void end_choice() override;
    std::optional<std::string> range_taken(std::uint32_t start, std::uint32_t size) override;
    std::optional<std::string> name_taken(std::string_view name) override;

private:
    std::optional<std::string> lock_candidate(std::uint32_t start, std::uint32_t size);
    std::optional<std::string> registry_claims(std::uint32_t start) const;
    bool have_systemd() const;

    CollisionSources sources_;
    shm::UniqueFd passwd_lock_;
    shm::UniqueFd registry_lock_;
    std::vector<LockFile> candidate_locks_;  // one per 64K block of the candidate
};

// Makes this process's own NSS lookups skip libnss_transient and our userdb endpoint, so that
// the collision checks see only the other sources. Call before the first lookup.
void bypass_own_sources();

// The first line of a subuid-format file whose range overlaps [start, start + size), as
// "FILE:LINE", or nothing. Unreadable or missing files claim nothing.
std::optional<std::string> subid_overlap(const std::string& path, std::uint32_t start,
                                         std::uint32_t size);

}  // namespace transient::allocator
