// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The synthetic users and groups the table stands for, shared by the NSS module and the userdb
// endpoint so that both give byte-identical answers:
//   UID B+n of range "web" (start B)  ->  user  vu-web-n, realName "UID n of transient range web"
//   GID B+n                           ->  group vg-web-n, "GID n of transient range web"
//   2147352576+N (systemd's foreign range) -> foreign-N, "Foreign System Image UID N" / "… GID N"
// The rules are written once, as templates over a writer (write_name(), write_description()),
// from the record constants below (home, shell, the words of names and descriptions): Identity
// formats them into fixed buffers, the NSS module straight into glibc's buffer.
// Freestanding like the reader: no heap, no exceptions, no stdio.

#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string.h>  // memrchr (GNU)

#include "shm/reader.hpp"

namespace transient::shm {

enum class Disposition { kDynamic, kContainer, kForeign };

enum class IdKind { kUser, kGroup };

// The record constants, the one source for the NSS module, transient-userdbd and the tests:
// every user has home "/" and cannot log in (DESIGN.md, "Records").
inline constexpr char kHomeDirectory[] = "/";
inline constexpr char kShell[] = "/usr/sbin/nologin";

// The words names and descriptions are made of (write_name(), write_description() below).
inline constexpr char kUserNamePrefix[] = "vu-";
inline constexpr char kGroupNamePrefix[] = "vg-";
inline constexpr char kOffsetSeparator[] = "-";  // between the range name and n
inline constexpr char kForeignNamePrefix[] = "foreign-";
inline constexpr char kUserIdWord[] = "UID ";
inline constexpr char kGroupIdWord[] = "GID ";
inline constexpr char kRangeWording[] = " of transient range ";
inline constexpr char kForeignWording[] = "Foreign System Image ";
// lookup_name() parses the prefix without knowing the kind yet.
static_assert(sizeof kUserNamePrefix == sizeof kGroupNamePrefix);
inline constexpr std::size_t kNamePrefixLength = sizeof kUserNamePrefix - 1;

// systemd's user-name limit is 31 bytes; the buffer has room for any number snprintf() may print.
inline constexpr std::size_t kMaxUserNameLength = 31;
inline constexpr std::size_t kMaxNameBuffer = 40;
inline constexpr std::size_t kMaxDescriptionBuffer = 64;
// The range-name limit exists for this: "vu-<name>-65535" fits systemd's limit.
static_assert(kNamePrefixLength + kMaxRangeNameLength + sizeof kOffsetSeparator - 1 + 5 <=
              kMaxUserNameLength);
// The longest description: any 32-bit offset (10 digits) of a range with the longest name.
inline constexpr std::size_t kMaxDescriptionLength =
        sizeof kUserIdWord - 1 + 10 + sizeof kRangeWording - 1 + kMaxRangeNameLength;
static_assert(sizeof kUserIdWord == sizeof kGroupIdWord);
static_assert(kMaxDescriptionLength >= sizeof kForeignWording - 1 + sizeof kUserIdWord - 1 + 10);
static_assert(kMaxDescriptionLength < kMaxDescriptionBuffer);

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

// A range's disposition (userdb's word; the same for its users and its groups): single IDs are
// dynamic, anything larger container, whatever its source.
inline Disposition range_disposition(std::uint32_t size) noexcept {
    return size == 1 ? Disposition::kDynamic : Disposition::kContainer;
}

inline bool is_foreign_id(std::uint32_t id) noexcept {
    return id >= kForeignBase && id - kForeignBase < kForeignCount;
}

// Whether a range has records of `kind`: a range imported from only one of /etc/subuid and
// /etc/subgid (kEntryFlagNoUid / kEntryFlagNoGid) has users only or groups only.
inline bool range_has_kind(const RangeRecord& r, IdKind kind) noexcept {
    return (r.flags & (kind == IdKind::kUser ? kEntryFlagNoUid : kEntryFlagNoGid)) == 0;
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

// A number in decimal, formatted once for the name and the description that both show it.
struct Decimal {
    char digits[12];  // not NUL-terminated; readable in full (writers may copy all 12 bytes)
    std::uint32_t length;

    explicit Decimal(std::uint32_t v) noexcept : digits{}, length(1) {
        static constexpr char kPairs[] =
                "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                "8081828384858687888990919293949596979899";
        // The number of digits without a loop ("Bit Twiddling Hacks", IntegerLog10): 1233/4096
        // approximates log10(2), so t is log10(v) or one more, and one compare settles which.
        // v | 1 keeps 0 at one digit and never crosses a power of ten (those are even).
        static constexpr std::uint32_t kPowers[] = {1,      10,      100,      1000,      10000,
                                                    100000, 1000000, 10000000, 100000000,
                                                    1000000000};
        const auto bits = 32 - static_cast<std::uint32_t>(__builtin_clz(v | 1));
        const std::uint32_t t = bits * 1233 >> 12;
        length = t + 1 - ((v | 1) < kPowers[t] ? 1 : 0);
        std::uint32_t i = length;
        for (; v >= 100; v /= 100) {
            i -= 2;
            std::memcpy(digits + i, kPairs + 2 * (v % 100), 2);
        }
        if (v >= 10)
            std::memcpy(digits + i - 2, kPairs + 2 * v, 2);
        else
            digits[i - 1] = static_cast<char>('0' + v);
    }
};

}  // namespace detail

// What an ID's name and description are made of. `range_name` points at the NUL-padded name of
// a validated RangeRecord, which must outlive this.
struct IdName {
    IdKind kind = IdKind::kUser;
    bool foreign = false;
    detail::Decimal n{0};  // the offset in the range, or N of foreign-N
    const char* range_name = nullptr;  // kNameWords * 8 readable bytes; unused if foreign
    std::size_t range_name_length = 0;
};

// REQUIRES: name_length = detail::padded_name_length(r.name) (find_by_id() reports it).
inline IdName ranged_id_name(const RangeRecord& r, std::uint32_t n, IdKind kind,
                             std::size_t name_length) noexcept {
    return IdName{kind, false, detail::Decimal(n), r.name, name_length};
}

inline IdName ranged_id_name(const RangeRecord& r, std::uint32_t n, IdKind kind) noexcept {
    return ranged_id_name(r, n, kind, detail::padded_name_length(r.name));
}

inline IdName foreign_id_name(std::uint32_t n, IdKind kind) noexcept {
    return IdName{kind, true, detail::Decimal(n), nullptr, 0};
}

// The naming rules. `Out` has lit(string literal), range(padded name, length) and dec(Decimal).
//   user/group name: vu-<range>-<n> / vg-<range>-<n>, or foreign-<N>
template <typename Out>
void write_name(Out&& out, const IdName& id) noexcept {
    if (id.foreign) {
        out.lit(kForeignNamePrefix).dec(id.n);
        return;
    }
    out.lit(id.kind == IdKind::kUser ? kUserNamePrefix : kGroupNamePrefix)
            .range(id.range_name, id.range_name_length)
            .lit(kOffsetSeparator)
            .dec(id.n);
}

//   realName / description: "UID <n> of transient range <range>" (GID for groups), or
//   "Foreign System Image UID <N>" (GID for groups), exactly as systemd words it
template <typename Out>
void write_description(Out&& out, const IdName& id) noexcept {
    const bool user = id.kind == IdKind::kUser;
    if (id.foreign) {
        out.lit(kForeignWording).lit(user ? kUserIdWord : kGroupIdWord).dec(id.n);
        return;
    }
    out.lit(user ? kUserIdWord : kGroupIdWord)
            .dec(id.n)
            .lit(kRangeWording)
            .range(id.range_name, id.range_name_length);
}

// An Out that only counts: the lengths write_name() and write_description() produce.
class LengthCounter {
public:
    template <std::size_t N>
    LengthCounter& lit(const char (&)[N]) noexcept {
        n_ += N - 1;
        return *this;
    }
    LengthCounter& range(const char*, std::size_t n) noexcept {
        n_ += n;
        return *this;
    }
    LengthCounter& dec(const detail::Decimal& d) noexcept {
        n_ += d.length;
        return *this;
    }
    std::size_t length() const noexcept { return n_; }

private:
    std::size_t n_ = 0;
};

template <typename Write>
std::size_t written_length(Write&& write, const IdName& id) noexcept {
    LengthCounter c;
    write(c, id);
    return c.length();
}

inline std::size_t name_length(const IdName& id) noexcept {
    return written_length([](auto& out, const IdName& i) { write_name(out, i); }, id);
}

inline std::size_t description_length(const IdName& id) noexcept {
    return written_length([](auto& out, const IdName& i) { write_description(out, i); }, id);
}

namespace detail {

// Formats into a fixed buffer like snprintf() (truncating, always NUL-terminated once the
// temporary dies), at a small fraction of its cost: snprintf() was more than half of the time
// of a getpwuid_r() call through the NSS module.
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
    FixedWriter& range(const char* s, std::size_t n) noexcept { return append(s, n); }
    FixedWriter& dec(const Decimal& d) noexcept { return append(d.digits, d.length); }
    FixedWriter& num(std::uint32_t v) noexcept { return dec(Decimal(v)); }

private:
    std::size_t room() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    // Truncated like snprintf(): the leading bytes are kept.
    FixedWriter& append(const char* s, std::size_t n) noexcept {
        n = n < room() ? n : room();
        std::memcpy(p_, s, n);
        p_ += n;
        return *this;
    }

    char* p_;
    char* end_;
};

inline void fill(const IdName& n, std::uint32_t id, std::uint32_t offset, Identity* ret) noexcept {
    ret->id = id;
    ret->offset = offset;
    write_name(FixedWriter(ret->name, sizeof ret->name), n);
    write_description(FixedWriter(ret->description, sizeof ret->description), n);
}

inline void fill_foreign(std::uint32_t n, IdKind kind, Identity* ret) noexcept {
    ret->disposition = Disposition::kForeign;
    ret->range = RangeRecord{};
    fill(foreign_id_name(n, kind), kForeignBase + n, n, ret);
}

inline void fill_ranged(const RangeRecord& r, std::uint32_t n, IdKind kind,
                        Identity* ret) noexcept {
    ret->disposition = range_disposition(r.size);
    ret->range = r;
    // Formats from the copy in *ret, which outlives the IdName.
    fill(ranged_id_name(ret->range, n, kind), r.start + n, n, ret);
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
    if (!range_has_kind(r, kind))
        return -ESRCH;
    detail::fill_ranged(r, id - r.start, kind, ret);
    return 0;
}

// Resolves "vu-<range>-<n>" (kUser), "vg-<range>-<n>" (kGroup) or "foreign-<N>" (both), given
// as the `len` bytes at `name`. Any other string, however long or odd, is -ESRCH; so is one with
// a NUL in it ("vu-web-1\0x" is not vu-web-1: callers with counted strings must not cut them).
inline int lookup_name(const TableView* v, const char* name, std::size_t len, IdKind kind,
                       Identity* ret) noexcept {
    if (name == nullptr || len > kMaxUserNameLength)
        return -ESRCH;
    constexpr std::size_t kForeignLength = sizeof kForeignNamePrefix - 1;
    if (len >= kForeignLength && std::memcmp(name, kForeignNamePrefix, kForeignLength) == 0) {
        std::uint32_t n;
        if (!detail::parse_decimal(name + kForeignLength, len - kForeignLength, &n) ||
            n >= kForeignCount)
            return -ESRCH;
        detail::fill_foreign(n, kind, ret);
        return 0;
    }
    const char* prefix = kind == IdKind::kUser ? kUserNamePrefix : kGroupNamePrefix;
    // The shortest name: the prefix, a one-character range name, the separator, one digit.
    static_assert(sizeof kOffsetSeparator == 2, "a single character, searched with memrchr()");
    if (v == nullptr || len < kNamePrefixLength + 3 ||
        std::memcmp(name, prefix, kNamePrefixLength) != 0)
        return -ESRCH;
    // The range name may itself contain '-': the offset follows the last one.
    const char* range = name + kNamePrefixLength;
    const char* dash = static_cast<const char*>(::memrchr(name, kOffsetSeparator[0], len));
    if (dash == nullptr || dash < range + 1)
        return -ESRCH;
    std::uint32_t n;
    if (!detail::parse_decimal(dash + 1, static_cast<std::size_t>(name + len - dash - 1), &n))
        return -ESRCH;
    RangeRecord r;
    const int e = find_by_name(*v, range, static_cast<std::size_t>(dash - range), &r);
    if (e < 0)
        return e;
    if (n >= r.size || !range_has_kind(r, kind))
        return -ESRCH;
    detail::fill_ranged(r, n, kind, ret);
    return 0;
}

// The same for a NUL-terminated name (what NSS callers have).
inline int lookup_name(const TableView* v, const char* name, IdKind kind, Identity* ret) noexcept {
    if (name == nullptr)
        return -ESRCH;
    return lookup_name(v, name, strnlen(name, kMaxUserNameLength + 1), kind, ret);
}

// The record enumeration shows for a range: its offset 0.
inline void identity_of_range(const RangeRecord& r, IdKind kind, Identity* ret) noexcept {
    detail::fill_ranged(r, 0, kind, ret);
}

}  // namespace transient::shm
