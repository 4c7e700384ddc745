// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Name scopes and visibility (allocator/policy.hpp).

#include <gtest/gtest.h>

#include "allocator/policy.hpp"

namespace transient::allocator {
namespace {

TEST(PolicyTest, FindsTheScopeOfAName) {
    EXPECT_EQ(name_scope("u1000-web"), 1000U);
    EXPECT_EQ(name_scope("u0-x"), 0U);
    EXPECT_EQ(name_scope("u4294967295-x"), 4294967295U);
    EXPECT_EQ(name_scope("web"), std::nullopt);
    EXPECT_EQ(name_scope("u-web"), std::nullopt);
    EXPECT_EQ(name_scope("u1000web"), std::nullopt);
    EXPECT_EQ(name_scope("u01000-web"), std::nullopt) << "only canonical decimal";
    EXPECT_EQ(name_scope("u4294967296-x"), std::nullopt) << "not a UID";
    EXPECT_EQ(name_scope("uabc-x"), std::nullopt);
    EXPECT_EQ(name_scope("U1000-x"), std::nullopt);
}

TEST(PolicyTest, ScopesOnlyNonRootNamesWithoutAScope) {
    EXPECT_EQ(scoped_name("web", 0), "web");
    EXPECT_EQ(scoped_name("web", 1000), "u1000-web");
    EXPECT_EQ(scoped_name("u1000-web", 1000), "u1000-web");
    EXPECT_EQ(scoped_name("u1001-web", 1000), "u1001-web");
    EXPECT_EQ(scoped_name("u01-web", 1000), "u1000-u01-web");
}

TEST(PolicyTest, LetsNonRootUseOnlyItsOwnScope) {
    EXPECT_TRUE(may_use_name("u1000-web", 1000));
    EXPECT_FALSE(may_use_name("u1001-web", 1000));
    EXPECT_FALSE(may_use_name("u10001-web", 1000));
    EXPECT_FALSE(may_use_name("web", 1000));
    EXPECT_TRUE(may_use_name("web", 0));
    EXPECT_TRUE(may_use_name("u1000-web", 0));
}

TEST(PolicyTest, NoNonRootCallerCanReachAnothersScope) {
    // Whatever two different non-root callers ask for, their scoped names differ.
    const char* inputs[] = {"web", "u1-web", "u10-web", "u1000-web", "u10001-web", "-web", "u"};
    for (uid_t a : {1U, 10U, 1000U, 10001U})
        for (uid_t b : {1U, 10U, 1000U, 10001U})
            for (const char* x : inputs)
                for (const char* y : inputs) {
                    if (a == b)
                        continue;
                    const std::string sx = scoped_name(x, a), sy = scoped_name(y, b);
                    EXPECT_FALSE(sx == sy && may_use_name(sx, a) && may_use_name(sy, b))
                            << a << ":" << x << " and " << b << ":" << y << " both get " << sx;
                }
}

TEST(PolicyTest, ShowsDetailsToOwnerAndRoot) {
    shm::RangeEntry r;
    r.owner = 1000;
    EXPECT_TRUE(may_see_details(r, 1000));
    EXPECT_TRUE(may_see_details(r, 0));
    EXPECT_FALSE(may_see_details(r, 1001));
}

}  // namespace
}  // namespace transient::allocator
