// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Record layout in the caller's buffer, as nss-systemd packs it: passwd strings end to end
// (name, passwd, gecos, dir, shell); for a group, first the NULL-terminated gr_mem array at the
// first pointer-aligned address (an unaligned char** faults on strict-alignment machines,
// systemd#21935), then name and passwd.
//
// This is the hot end of every lookup, so the writer copies the variable parts (range name,
// number) as fixed-size blocks whenever the buffer has room past the current position: a
// constant-size memcpy() is a few moves, a variable one a call. The over-copied bytes are
// overwritten by what follows or lie beyond the record, never beyond `buflen`.

#include "nss/records.hpp"

#include <cerrno>
#include <cstring>

namespace transient::nss {
namespace {

// Appends to a buffer whose size was checked beforehand (REQUIRES: the record fits).
class RecordWriter {
public:
    RecordWriter(char* p, char* end) noexcept : p_(p), end_(end) {}

    char* pos() const noexcept { return p_; }

    template <std::size_t N>
    RecordWriter& lit(const char (&s)[N]) noexcept {  // without its NUL
        std::memcpy(p_, s, N - 1);
        p_ += N - 1;
        return *this;
    }
    template <std::size_t N>
    char* string(const char (&s)[N]) noexcept {  // with its NUL; returns where it starts
        char* r = p_;
        std::memcpy(p_, s, N);
        p_ += N;
        return r;
    }
    RecordWriter& range(const char* padded, std::size_t n) noexcept {
        return copy<shm::kNameWords * 8>(padded, n);
    }
    RecordWriter& dec(const shm::detail::Decimal& d) noexcept {
        return copy<sizeof d.digits>(d.digits, d.length);
    }
    void nul() noexcept { *p_++ = '\0'; }

private:
    // The first n of `Block` readable bytes at s.
    template <std::size_t Block>
    RecordWriter& copy(const char* s, std::size_t n) noexcept {
        if (static_cast<std::size_t>(end_ - p_) >= Block)
            std::memcpy(p_, s, Block);
        else
            std::memcpy(p_, s, n);
        p_ += n;
        return *this;
    }

    char* p_;
    char* end_;
};

}  // namespace

std::size_t passwd_size(const shm::IdName& name) noexcept {
    return shm::name_length(name) + 1 + sizeof kPasswordSeeShadow + shm::description_length(name) +
           1 + sizeof shm::kHomeDirectory + sizeof shm::kShell;
}

std::size_t group_size(const shm::IdName& name, const char* buffer) noexcept {
    return group_text_offset(buffer) + shm::name_length(name) + 1 + sizeof kPasswordSeeShadow;
}

// Flattened: the size check and the name writer, called out of line otherwise, are half of
// the calls and the spills of a lookup that is not a repeat.
[[gnu::flatten]] int pack_passwd(const shm::IdName& name, std::uint32_t id, passwd* ret,
                                 char* buffer, std::size_t buflen) noexcept {
    if (buffer == nullptr || buflen < passwd_size(name))
        return -ERANGE;
    RecordWriter w(buffer, buffer + buflen);
    passwd pw;
    pw.pw_name = w.pos();
    shm::write_name(w, name);
    w.nul();
    pw.pw_passwd = w.string(kPasswordSeeShadow);
    pw.pw_uid = id;
    pw.pw_gid = id;  // UIDs and GIDs are allocated together: the primary group is GID B+n
    pw.pw_gecos = w.pos();
    shm::write_description(w, name);
    w.nul();
    pw.pw_dir = w.string(shm::kHomeDirectory);
    pw.pw_shell = w.string(shm::kShell);
    *ret = pw;
    return 0;
}

[[gnu::flatten]] int pack_group(const shm::IdName& name, std::uint32_t id, group* ret,
                                char* buffer, std::size_t buflen) noexcept {
    if (buffer == nullptr || buflen < group_size(name, buffer))
        return -ERANGE;
    auto** members = reinterpret_cast<char**>(buffer + group_members_padding(buffer));
    members[0] = nullptr;  // our groups have no members: each user's group is its primary group
    RecordWriter w(reinterpret_cast<char*>(members + 1), buffer + buflen);
    group gr;
    gr.gr_name = w.pos();
    shm::write_name(w, name);
    w.nul();
    gr.gr_passwd = w.string(kPasswordSeeShadow);
    gr.gr_gid = id;
    gr.gr_mem = members;
    *ret = gr;
    return 0;
}

shm::IdName id_name_of(const shm::Identity& id, shm::IdKind kind) noexcept {
    if (id.disposition == shm::Disposition::kForeign)
        return shm::foreign_id_name(id.offset, kind);
    return shm::ranged_id_name(id.range, id.offset, kind);
}

}  // namespace transient::nss
