// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The audit trail's formatting: the journal fields an event is sent with (base/log.hpp,
// allocator/events.hpp), when stderr counts as the journal ($JOURNAL_STREAM), the message ids,
// and the rate limit refusals go through.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "allocator/events.hpp"
#include "base/log.hpp"
#include "shm/layout.hpp"

namespace transient::allocator {
namespace {

TEST(EventsTest, JournalFieldsAreMessageIdPriorityThenTheFieldsInOrder) {
    const base::LogField fields[] = {
        {"TRANSIENT_RANGE", "web"},
        {"TRANSIENT_REASON", "two\nlines"},  // binary-safe: sent as one iovec
        {"lower_case", "dropped"},
        {"_SYSTEMD_UNIT", "dropped: trusted fields are journald's"},
        {"1DIGIT", "dropped"},
        {"", "dropped"},
    };
    EXPECT_EQ(base::journal_fields(6, events::kAllocated, "Allocated range 'web'.", fields),
              (std::vector<std::string>{"MESSAGE=Allocated range 'web'.",
                                        "MESSAGE_ID=5d3a0b2f8e6c4f1a9b7d2e4c6a8f0b13",
                                        "PRIORITY=6", "TRANSIENT_RANGE=web",
                                        "TRANSIENT_REASON=two\nlines"}));
    EXPECT_EQ(base::journal_fields(3, "", "no id", {}),
              (std::vector<std::string>{"MESSAGE=no id", "PRIORITY=3"}));
}

TEST(EventsTest, RangeFieldsNameRangeStartSizeOwnerCallerReason) {
    shm::RangeEntry r{"u1000-web", 524288, 65536, 1000, 0, 0, 0, 0};
    auto text = [](const std::vector<base::LogField>& fields) {
        std::string out;
        for (const auto& f : fields)
            out += std::string(f.name) + "=" + f.value + " ";
        return out;
    };
    EXPECT_EQ(text(events::range_fields(r, 0)),
              "TRANSIENT_RANGE=u1000-web TRANSIENT_START=524288 TRANSIENT_SIZE=65536 "
              "TRANSIENT_OWNER_UID=1000 TRANSIENT_CALLER_UID=0 ");
    r.flags = shm::kEntryFlagUserns;
    r.userns_ino = 4026532300;
    EXPECT_EQ(text(events::range_fields(r, std::nullopt, "userns-gone")),
              "TRANSIENT_RANGE=u1000-web TRANSIENT_START=524288 TRANSIENT_SIZE=65536 "
              "TRANSIENT_OWNER_UID=1000 TRANSIENT_REASON=userns-gone "
              "TRANSIENT_USERNS_INODE=4026532300 ");
}

TEST(EventsTest, MessageIdsAre128BitLowerCaseHexAndDistinct) {
    const std::set<std::string> ids{events::kAllocated, events::kReleased, events::kUsernsGone,
                                    events::kImported, events::kImportRemoved, events::kRefused};
    EXPECT_EQ(ids.size(), 6U);
    for (const std::string& id : ids) {
        EXPECT_EQ(id.size(), 32U) << id;
        EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    }
}

TEST(EventsTest, JournalStreamMatchesDeviceAndInodeOfTheFd) {
    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    struct stat st {};
    ASSERT_EQ(::fstat(::fileno(f), &st), 0);
    const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    EXPECT_TRUE(base::is_journal_stream(::fileno(f), mine.c_str()));
    const std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
    EXPECT_FALSE(base::is_journal_stream(::fileno(f), other.c_str()));
    EXPECT_FALSE(base::is_journal_stream(::fileno(f), (mine + "x").c_str()));
    EXPECT_FALSE(base::is_journal_stream(::fileno(f), ""));
    EXPECT_FALSE(base::is_journal_stream(::fileno(f), nullptr));
    EXPECT_FALSE(base::is_journal_stream(-1, mine.c_str()));
    std::fclose(f);
}

TEST(EventsTest, RateLimitAdmitsABurstPerWindowThenCountsWhatItHeldBack) {
    base::LogRateLimit limit(3, 1000);
    unsigned suppressed = 99;
    const std::uint64_t t0 = 5000;
    for (int i = 0; i < 3; i++) {
        EXPECT_TRUE(limit.admit(t0 + i, &suppressed));
        EXPECT_EQ(suppressed, 0U);
    }
    EXPECT_FALSE(limit.admit(t0 + 10, &suppressed));
    EXPECT_FALSE(limit.admit(t0 + 999, &suppressed));
    EXPECT_EQ(suppressed, 0U);
    EXPECT_TRUE(limit.admit(t0 + 1000, &suppressed));  // a new window says what it held back
    EXPECT_EQ(suppressed, 2U);
    EXPECT_TRUE(limit.admit(t0 + 1001, &suppressed));
    EXPECT_EQ(suppressed, 0U);
}

}  // namespace
}  // namespace transient::allocator
