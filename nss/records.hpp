// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Packs an ID into glibc's struct passwd / struct group, formatting the name and description
// (shm/identity.hpp's rules) straight into the caller's buffer: reentrant APIs, so nothing may
// point into our memory. A buffer that is too small gives -ERANGE and leaves both the buffer
// and the struct untouched; glibc then retries with a larger one. On success the record is at
// the start of the buffer and bytes after it may have been overwritten (the buffer is ours to
// use in full, glibc manual, "NSS Module Function Internals").
//
// The layout is known here only: pack_*() write it, packed_*() and unpack_*() (the answer
// cache's pair) read it back.

#pragma once

#include <grp.h>
#include <pwd.h>

#include <cstddef>
#include <cstdint>

#include "shm/identity.hpp"

namespace transient::nss {

inline constexpr char kPasswordSeeShadow[] = "x";  // systemd's PASSWORD_SEE_SHADOW

// Bytes pack_passwd() needs. Does not depend on the buffer's address.
std::size_t passwd_size(const shm::IdName& name) noexcept;
// Bytes pack_group() needs in `buffer`, which depends on its alignment (gr_mem is a char* array).
std::size_t group_size(const shm::IdName& name, const char* buffer) noexcept;

// The user/group `id`, named `name`. Returns 0 or -ERANGE.
int pack_passwd(const shm::IdName& name, std::uint32_t id, passwd* ret, char* buffer,
                std::size_t buflen) noexcept;
int pack_group(const shm::IdName& name, std::uint32_t id, group* ret, char* buffer,
               std::size_t buflen) noexcept;

// The IdName of an Identity that shm::lookup_name() resolved (its range stays in *id).
shm::IdName id_name_of(const shm::Identity& id, shm::IdKind kind) noexcept;

// The layout of a packed record, which the answer cache stores and copies back: all strings of
// a record lie end to end, so they are one block of text, and a record is rebuilt from that text,
// its size, the length of its name and the ID.
//   passwd: name\0 x\0 gecos\0 /\0 /usr/sbin/nologin\0, at the start of the buffer
//   group:  the gr_mem array {NULL} at the first pointer-aligned address, then name\0 x\0
struct PackedRecord {
    const char* text;         // the first string, the name
    std::size_t size;         // bytes of `text`, all NULs included
    std::size_t name_length;  // strlen of the name
};

// The longest text of a passwd record: the longest name and description. (A group's is shorter.)
inline constexpr std::size_t kMaxPasswdText = shm::kMaxUserNameLength + 1 +
                                              sizeof kPasswordSeeShadow +
                                              shm::kMaxDescriptionLength + 1 +
                                              sizeof shm::kHomeDirectory + sizeof shm::kShell;

// The text of a record pack_passwd() / pack_group() filled in.
inline PackedRecord packed_passwd(const passwd& pw) noexcept {
    return PackedRecord{pw.pw_name,
                        static_cast<std::size_t>(pw.pw_shell - pw.pw_name) + sizeof shm::kShell,
                        static_cast<std::size_t>(pw.pw_passwd - pw.pw_name) - 1};
}

inline PackedRecord packed_group(const group& gr) noexcept {
    return PackedRecord{gr.gr_name,
                        static_cast<std::size_t>(gr.gr_passwd - gr.gr_name) +
                                sizeof kPasswordSeeShadow,
                        static_cast<std::size_t>(gr.gr_passwd - gr.gr_name) - 1};
}

// Bytes before a group's gr_mem array in `buffer`: an unaligned char** faults on
// strict-alignment machines (systemd#21935).
inline std::size_t group_members_padding(const char* buffer) noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(buffer);
    return (alignof(char*) - a % alignof(char*)) % alignof(char*);
}

// Where a group's text starts in `buffer`: after the padding and the one-element gr_mem array.
inline std::size_t group_text_offset(const char* buffer) noexcept {
    return group_members_padding(buffer) + sizeof(char*);
}

// Rebuilds the passwd record of `uid` whose text (of `size` bytes, the name `name_length` long)
// is at the start of `buffer`. Returns false, touching nothing, if the sizes cannot be one.
// Inline: with the cache's copy, this is the whole of a repeated lookup.
[[gnu::always_inline]] inline bool unpack_passwd(char* buffer, std::size_t size,
                                                 std::size_t name_length, uid_t uid,
                                                 passwd* ret) noexcept {
    constexpr std::size_t kFixed = 1 + sizeof kPasswordSeeShadow + 1 +
                                   sizeof shm::kHomeDirectory + sizeof shm::kShell;
    if (size < name_length + kFixed)
        return false;
    char* shell = buffer + size - sizeof shm::kShell;
    ret->pw_name = buffer;
    ret->pw_passwd = buffer + name_length + 1;
    ret->pw_uid = uid;
    ret->pw_gid = uid;  // see pack_passwd()
    ret->pw_gecos = ret->pw_passwd + sizeof kPasswordSeeShadow;
    ret->pw_dir = shell - sizeof shm::kHomeDirectory;
    ret->pw_shell = shell;
    return true;
}

// The same for the group record of `gid` whose text is at group_text_offset(buffer).
[[gnu::always_inline]] inline bool unpack_group(char* buffer, std::size_t size,
                                                std::size_t name_length, gid_t gid,
                                                group* ret) noexcept {
    if (size != name_length + 1 + sizeof kPasswordSeeShadow)
        return false;
    auto** members = reinterpret_cast<char**>(buffer + group_members_padding(buffer));
    char* text = buffer + group_text_offset(buffer);
    members[0] = nullptr;
    ret->gr_name = text;
    ret->gr_passwd = text + name_length + 1;
    ret->gr_gid = gid;
    ret->gr_mem = members;
    return true;
}

}  // namespace transient::nss
