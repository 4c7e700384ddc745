// SPDX-License-Identifier: LGPL-2.1-or-later
//
// shm/identity.hpp formats names and descriptions without snprintf() (it was most of the cost
// of a lookup). These tests hold it to the snprintf() formats it replaced, byte for byte,
// including the truncation that the fixed buffers would apply.

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/identity.hpp"

namespace transient::shm {
namespace {

RangeRecord range(const char* name, std::uint32_t start, std::uint32_t size) {
    RangeRecord r{};
    std::strncpy(r.name, name, sizeof r.name - 1);
    r.start = start;
    r.size = size;
    return r;
}

std::string reference_name(const char* prefix, const char* range_name, std::uint32_t n) {
    char s[kMaxNameBuffer];
    std::snprintf(s, sizeof s, "%s-%s-%u", prefix, range_name, n);
    return s;
}

std::string reference_description(const char* kind, std::uint32_t n, const char* range_name) {
    char s[kMaxDescriptionBuffer];
    std::snprintf(s, sizeof s, "%s %u of transient range %s", kind, n, range_name);
    return s;
}

TEST(IdentityFormatTest, RangedNamesAndDescriptionsMatchSnprintf) {
    std::mt19937 rng(3);
    const char* names[] = {"a", "web", "db-1", "abcdefghij_klmnopqr-st", "ci-runner_9999999"};
    std::vector<std::uint32_t> offsets{0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535};
    for (int i = 0; i < 200; i++)
        offsets.push_back(rng() % 65536);
    for (const char* name : names)
        for (std::uint32_t n : offsets) {
            const RangeRecord r = range(name, 0x00080000, 0x10000);
            Identity u, g;
            detail::fill_ranged(r, n, IdKind::kUser, &u);
            detail::fill_ranged(r, n, IdKind::kGroup, &g);
            ASSERT_EQ(u.name, reference_name("vu", name, n));
            ASSERT_EQ(g.name, reference_name("vg", name, n));
            ASSERT_EQ(u.description, reference_description("UID", n, name));
            ASSERT_EQ(g.description, reference_description("GID", n, name));
            ASSERT_EQ(u.id, r.start + n);
            ASSERT_EQ(u.offset, n);
        }
}

TEST(IdentityFormatTest, ForeignNamesMatchSnprintf) {
    for (std::uint32_t n : {0U, 7U, 10U, 4242U, 65534U}) {
        Identity u, g;
        detail::fill_foreign(n, IdKind::kUser, &u);
        detail::fill_foreign(n, IdKind::kGroup, &g);
        char want[64];
        std::snprintf(want, sizeof want, "foreign-%u", n);
        EXPECT_STREQ(u.name, want);
        EXPECT_STREQ(g.name, want);
        std::snprintf(want, sizeof want, "Foreign System Image UID %u", n);
        EXPECT_STREQ(u.description, want);
        std::snprintf(want, sizeof want, "Foreign System Image GID %u", n);
        EXPECT_STREQ(g.description, want);
        EXPECT_EQ(u.disposition, Disposition::kForeign);
    }
}

// The buffers are sized so that valid records never truncate; the writer still truncates like
// snprintf() if a number ever were wider than a range offset.
TEST(IdentityFormatTest, TruncatesLikeSnprintf) {
    for (std::size_t size = 1; size < 24; size++)
        for (std::uint32_t v : {0U, 7U, 65535U, 4294967295U}) {
            char got[32], want[32];
            std::memset(got, 'X', sizeof got);
            std::memset(want, 'X', sizeof want);
            detail::FixedWriter(got, size).lit("vu-").str("name").lit("-").num(v);
            std::snprintf(want, size, "vu-%s-%u", "name", v);
            EXPECT_EQ(0, std::memcmp(got, want, sizeof got)) << size << " " << v;
        }
}

// Decimal counts its digits without a loop: every number of digits, at both edges of each
// power of ten, and random numbers of the whole 32-bit range.
TEST(IdentityFormatTest, DecimalMatchesSnprintf) {
    std::vector<std::uint32_t> values{0, 4294967295U};
    for (std::uint64_t p = 1; p <= 4294967295ULL; p *= 10)
        for (std::uint64_t v : {p - 1, p, p + 1, 2 * p - 1, 2 * p})
            if (v <= 4294967295ULL)
                values.push_back(static_cast<std::uint32_t>(v));
    for (int bit = 0; bit < 32; bit++)
        for (std::uint32_t v : {(1U << bit) - 1, 1U << bit, (1U << bit) + 1})
            values.push_back(v);
    std::mt19937 rng(11);
    for (int i = 0; i < 100000; i++)
        values.push_back(static_cast<std::uint32_t>(rng()) >> (rng() % 32));
    for (std::uint32_t v : values) {
        const detail::Decimal d(v);
        char want[16];
        const int n = std::snprintf(want, sizeof want, "%u", v);
        ASSERT_EQ(std::string(d.digits, d.length), std::string(want, static_cast<std::size_t>(n)))
                << v;
    }
}

// The vectorized name check every lookup runs must agree with the plain one the writer uses, for
// every name a table can hold: all lengths, every byte value at every position.
TEST(NameValidationTest, PaddedCheckAgreesWithThePlainOne) {
    auto agree = [](const char (&name)[kNameWords * 8]) {
        const std::size_t n = detail::padded_name_length(name);
        ASSERT_EQ(n, strnlen(name, sizeof name));
        const bool plain = n < sizeof name && is_valid_range_name(name, n);
        ASSERT_EQ(detail::is_valid_padded_name(name, n), plain)
                << std::string(name, n) << " (length " << n << ")";
    };
    char name[kNameWords * 8];
    for (std::size_t len = 0; len <= sizeof name; len++)
        for (int pos = 0; pos < static_cast<int>(std::max<std::size_t>(len, 1)); pos++)
            for (int byte = 0; byte < 256; byte++) {
                std::memset(name, 0, sizeof name);
                std::memset(name, 'a', len);
                if (len > 0)
                    name[pos] = static_cast<char>(byte);
                agree(name);
            }
    std::mt19937 rng(5);
    const char alphabet[] = "abcXYZ019_-/:.\x7f\x80\xff";
    for (int i = 0; i < 200000; i++) {
        std::memset(name, 0, sizeof name);
        const std::size_t len = rng() % 25;
        for (std::size_t k = 0; k < len; k++)
            name[k] = alphabet[rng() % (sizeof alphabet - 1)];
        if (rng() % 4 == 0)  // garbage after the terminator must not matter
            for (std::size_t k = len + 1; k < sizeof name; k++)
                name[k] = static_cast<char>(rng());
        agree(name);
    }
}

}  // namespace
}  // namespace transient::shm
