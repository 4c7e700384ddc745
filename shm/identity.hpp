// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The synthetic users and groups the table stands for, shared by the NSS module and the userdb
// endpoint so that both give byte-identical answers:
//   UID B+n of range "web" (start B)  ->  user  vu-web-n, realName "UID n of transient range web"
//   GID B+n                           ->  group vg-web-n, description "GID n of transient range web"
//   2147352576+N (systemd's foreign range) -> foreign-N, "Foreign System Image UID N" / "… GID N"
// Freestanding like the reader: no heap, no exceptions.

#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string.h>  // memrchr (GNU)

#include "shm/reader.hpp"

namespace transient::shm {

enum class Disposition { kDynamic, kContainer, kForeign };

enum class IdKind { kUser, kGroup };

// systemd's user-name limit is 31 bytes; the buffer has room for any number snprintf() may print.
inline constexpr std::size_t kMaxUserNameLength = 31;
inline constexpr std::size_t kMaxNameBuffer = 40;
inline constexpr std::size_t kMaxDescriptionBuffer = 64;

struct Identity {
    std::uint32_t id = 0;  // UID for users, GID for groups (always equal here)
    std::uint32_t offset = 0;  // n: the ID's offset in its range
    Disposition disposition = Disposition::kDynamic;
    char name[kMaxNameBuffer] = {};
    char description[kMaxDescriptionBuffer] = {};  // realName of users, description of groups
    RangeRecord range = {};  // unset for the foreign range
};

inline const char* disposition_name(Disposition d) noexcept {
    switch (d) {
    case Disposition::kContainer:
        return "container";
    case Disposition::kForeign:
        return "foreign";
    case Disposition::kDynamic:
        break;
    }
    return "dynamic";
}

inline bool is_foreign_id(std::uint32_t id) noexcept {
    return id >= kForeignBase && id - kForeignBase < kForeignCount;
}

namespace detail {

// Parses a canonical decimal number (no sign, no leading zeros) of at most 10 digits.
inline bool parse_decimal(const char* s, std::size_t n, std::uint32_t* ret) noexcept {
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return false;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
    }
    if (v > 0xFFFFFFFFULL)
        return false;
    *ret = static_cast<std::uint32_t>(v);
    return true;
}

// Formats into a fixed buffer like snprintf() (truncating, always NUL-terminated once the
// temporary dies), at a small fraction of its cost: the NSS module formats two strings on every
// lookup, and snprintf() was more than half of the time of a getpwuid_r() call.
class FixedWriter {
public:
    FixedWriter(char* buf, std::size_t size) noexcept : p_(buf), end_(buf + size - 1) {}
    FixedWriter(const FixedWriter&) = delete;
    FixedWriter& operator=(const FixedWriter&) = delete;
    ~FixedWriter() { *p_ = '\0'; }

    template <std::size_t N>
    FixedWriter& lit(const char (&s)[N]) noexcept {  // a literal: its length is a constant
        return append(s, N - 1);
    }
    FixedWriter& str(const char* s) noexcept { return append(s, strnlen(s, room())); }
    FixedWriter& num(std::uint32_t v) noexcept {
        std::size_t n = 1;
        for (std::uint32_t t = v; t >= 10; t /= 10)
            n++;
        if (n > room()) {  // truncated: the leading digits, as snprintf() keeps them
            std::uint32_t div = 1;
            for (std::size_t i = 1; i < n; i++)
                div *= 10;
            for (; p_ < end_; div /= 10)
                *p_++ = static_cast<char>('0' + v / div % 10);
            return *this;
        }
        for (std::size_t i = n; i > 0; v /= 10)
            p_[--i] = static_cast<char>('0' + v % 10);
        p_ += n;
        return *this;
    }

private:
    std::size_t room() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    FixedWriter& append(const char* s, std::size_t n) noexcept {
        n = n < room() ? n : room();
        std::memcpy(p_, s, n);
        p_ += n;
        return *this;
    }

    char* p_;
    char* end_;
};

inline void fill_foreign(std::uint32_t n, IdKind kind, Identity* ret) noexcept {
    ret->id = kForeignBase + n;
    ret->offset = n;
    ret->disposition = Disposition::kForeign;
    ret->range = RangeRecord{};
    FixedWriter(ret->name, sizeof ret->name).lit("foreign-").num(n);  // "foreign-%u"
    FixedWriter(ret->description, sizeof ret->description)  // "Foreign System Image %s %u"
            .lit("Foreign System Image ")
            .lit(kind == IdKind::kUser ? "UID " : "GID ")
            .num(n);
}

inline void fill_ranged(const RangeRecord& r, std::uint32_t n, IdKind kind,
                        Identity* ret) noexcept {
    const bool user = kind == IdKind::kUser;
    ret->id = r.start + n;
    ret->offset = n;
    ret->disposition = r.size == 1 ? Disposition::kDynamic : Disposition::kContainer;
    ret->range = r;
    FixedWriter(ret->name, sizeof ret->name)  // "%s-%s-%u"
            .lit(user ? "vu-" : "vg-")
            .str(r.name)
            .lit("-")
            .num(n);
    FixedWriter(ret->description, sizeof ret->description)  // "%s %u of transient range %s"
            .lit(user ? "UID " : "GID ")
            .num(n)
            .lit(" of transient range ")
            .str(r.name);
}

}  // namespace detail

// Resolves a UID (kind kUser) or GID (kind kGroup). `v` may be null when there is no table: the
// foreign range still resolves. Returns 0, -ESRCH, -EAGAIN or -EBADMSG.
inline int lookup_id(const TableView* v, std::uint32_t id, IdKind kind, Identity* ret) noexcept {
    if (is_foreign_id(id)) {
        detail::fill_foreign(id - kForeignBase, kind, ret);
        return 0;
    }
    if (v == nullptr)
        return -ESRCH;
    RangeRecord r;
    const int e = find_by_id(*v, id, &r);
    if (e < 0)
        return e;
    detail::fill_ranged(r, id - r.start, kind, ret);
    return 0;
}

// Resolves "vu-<range>-<n>" (kUser), "vg-<range>-<n>" (kGroup) or "foreign-<N>" (both).
// Any other string, however long or odd, is -ESRCH.
inline int lookup_name(const TableView* v, const char* name, IdKind kind, Identity* ret) noexcept {
    if (name == nullptr)
        return -ESRCH;
    const std::size_t len = strnlen(name, kMaxUserNameLength + 1);
    if (len > kMaxUserNameLength)
        return -ESRCH;
    static constexpr char kForeign[] = "foreign-";
    if (std::strncmp(name, kForeign, sizeof kForeign - 1) == 0) {
        std::uint32_t n;
        const std::size_t p = sizeof kForeign - 1;
        if (!detail::parse_decimal(name + p, len - p, &n) || n >= kForeignCount)
            return -ESRCH;
        detail::fill_foreign(n, kind, ret);
        return 0;
    }
    const char* prefix = kind == IdKind::kUser ? "vu-" : "vg-";
    if (v == nullptr || len < 6 || std::strncmp(name, prefix, 3) != 0)
        return -ESRCH;
    // The range name may itself contain '-': the offset follows the last one.
    const char* dash = static_cast<const char*>(::memrchr(name, '-', len));
    if (dash == nullptr || dash < name + 4)
        return -ESRCH;
    std::uint32_t n;
    if (!detail::parse_decimal(dash + 1, static_cast<std::size_t>(name + len - dash - 1), &n))
        return -ESRCH;
    char range_name[kMaxRangeNameLength + 1];
    const auto range_len = static_cast<std::size_t>(dash - (name + 3));
    if (range_len > kMaxRangeNameLength)
        return -ESRCH;
    std::memcpy(range_name, name + 3, range_len);
    range_name[range_len] = '\0';
    RangeRecord r;
    const int e = find_by_name(*v, range_name, &r);
    if (e < 0)
        return e;
    if (n >= r.size)
        return -ESRCH;
    detail::fill_ranged(r, n, kind, ret);
    return 0;
}

// The record enumeration shows for a range: its offset 0.
inline void identity_of_range(const RangeRecord& r, IdKind kind, Identity* ret) noexcept {
    detail::fill_ranged(r, 0, kind, ret);
}

}  // namespace transient::shm
