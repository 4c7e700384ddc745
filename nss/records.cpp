// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Record layout in the caller's buffer, as nss-systemd packs it: passwd strings end to end
// (name, passwd, gecos, dir, shell); for a group, first the NULL-terminated gr_mem array at the
// first pointer-aligned address (an unaligned char** faults on strict-alignment machines,
// systemd#21935), then name and passwd.

#include "nss/records.hpp"

#include <cstdint>
#include <cstring>

namespace transient::nss {
namespace {

// Appends NUL-terminated strings to a buffer whose size was checked beforehand.
class BufferWriter {
public:
    explicit BufferWriter(char* p) noexcept : p_(p) {}

    char* put(const char* s, std::size_t n) noexcept {  // n = strlen(s)
        char* r = p_;
        std::memcpy(p_, s, n + 1);
        p_ += n + 1;
        return r;
    }

private:
    char* p_;
};

std::size_t pointer_padding(const char* buffer) noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(buffer);
    return (alignof(char*) - a % alignof(char*)) % alignof(char*);
}

}  // namespace

std::size_t passwd_size(const shm::Identity& id) noexcept {
    return std::strlen(id.name) + 1 + sizeof kPasswordSeeShadow + std::strlen(id.description) +
           1 + sizeof kHomeDirectory + sizeof kNologinShell;
}

std::size_t group_size(const shm::Identity& id, const char* buffer) noexcept {
    return pointer_padding(buffer) + sizeof(char*) + std::strlen(id.name) + 1 +
           sizeof kPasswordSeeShadow;
}

int pack_passwd(const shm::Identity& id, passwd* ret, char* buffer, std::size_t buflen) noexcept {
    const std::size_t name_len = std::strlen(id.name);
    const std::size_t gecos_len = std::strlen(id.description);
    if (buffer == nullptr || buflen < passwd_size(id))
        return -ERANGE;
    BufferWriter w(buffer);
    passwd pw{};
    pw.pw_name = w.put(id.name, name_len);
    pw.pw_passwd = w.put(kPasswordSeeShadow, sizeof kPasswordSeeShadow - 1);
    pw.pw_uid = id.id;
    pw.pw_gid = id.id;  // UIDs and GIDs are allocated together: the primary group is GID B+n
    pw.pw_gecos = w.put(id.description, gecos_len);
    pw.pw_dir = w.put(kHomeDirectory, sizeof kHomeDirectory - 1);
    pw.pw_shell = w.put(kNologinShell, sizeof kNologinShell - 1);
    *ret = pw;
    return 0;
}

int pack_group(const shm::Identity& id, group* ret, char* buffer, std::size_t buflen) noexcept {
    if (buffer == nullptr || buflen < group_size(id, buffer))
        return -ERANGE;
    auto** members = reinterpret_cast<char**>(buffer + pointer_padding(buffer));
    members[0] = nullptr;  // our groups have no members: each user's group is its primary group
    BufferWriter w(reinterpret_cast<char*>(members + 1));
    group gr{};
    gr.gr_name = w.put(id.name, std::strlen(id.name));
    gr.gr_passwd = w.put(kPasswordSeeShadow, sizeof kPasswordSeeShadow - 1);
    gr.gr_gid = id.id;
    gr.gr_mem = members;
    *ret = gr;
    return 0;
}

}  // namespace transient::nss
