// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The two sides of one record. getent (through libnss_transient) and userdbctl (through
// transient-userdbd) must show the same user for the same entry, byte for byte: the module is
// dlopen()ed and asked, the userdb record is built from the same table the way the daemon builds
// it, and every field is compared. Then the module's packed layout: what unpack_passwd() and
// unpack_group() rebuild from a record's text (the answer cache's copy) is the record
// pack_passwd() and pack_group() made, at every alignment of the buffer.

#include <cstring>
#include <string>

#include "nss/records.hpp"
#include "shm/table_reader.hpp"
#include "tests/nss/nss_test_util.hpp"
#include "userdb/records.hpp"

namespace transient::nss::testing {
namespace {

constexpr std::uint32_t kForeignLast = shm::kForeignBase + shm::kForeignCount - 1;

class NssRecordsTest : public NssTest {
protected:
    void SetUp() override {
        NssTest::SetUp();
        publish(default_ranges());
        reader_.emplace(path_);
    }

    shm::Identity identity(std::uint32_t id, shm::IdKind kind) {
        auto view = reader_->view();
        EXPECT_TRUE(view) << view.error().message();
        shm::Identity ident;
        EXPECT_EQ(shm::lookup_id(view ? *view : nullptr, id, kind, &ident), 0) << id;
        return ident;
    }

    // The module's passwd record against transient-userdbd's user record.
    void expect_same_user(const passwd& pw, const userdb::json& rec) {
        EXPECT_EQ(rec.at("userName"), pw.pw_name);
        EXPECT_EQ(rec.at("uid"), pw.pw_uid);
        EXPECT_EQ(rec.at("gid"), pw.pw_gid);
        EXPECT_EQ(rec.at("realName"), pw.pw_gecos);
        EXPECT_EQ(rec.at("homeDirectory"), pw.pw_dir);
        EXPECT_EQ(rec.at("shell"), pw.pw_shell);
    }

    std::optional<shm::TableReader> reader_;
};

TEST_F(NssRecordsTest, ModuleAndUserdbAgreeOnEveryUser) {
    for (std::uint32_t uid : {kWeb, kWeb + 9, kDb1 + 100, kLong + 65535, kSingle,
                              shm::kForeignBase, kForeignLast}) {
        SCOPED_TRACE(uid);
        const userdb::json rec = userdb::user_record(identity(uid, shm::IdKind::kUser));
        // Three times by UID: computed, stored in the answer cache, served from it.
        for (int i = 0; i < 3; i++) {
            passwd pw{};
            char buf[1024];
            int err;
            ASSERT_EQ(getpwuid(uid, &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
            expect_same_user(pw, rec);
        }
        passwd pw{};
        char buf[1024];
        int err;
        const std::string name = rec.at("userName");
        ASSERT_EQ(getpwnam(name.c_str(), &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
        expect_same_user(pw, rec);
    }
}

TEST_F(NssRecordsTest, ModuleAndUserdbAgreeOnEveryGroup) {
    for (std::uint32_t gid : {kWeb, kWeb + 9, kLong + 65535, kSingle, kForeignLast}) {
        SCOPED_TRACE(gid);
        const userdb::json rec = userdb::group_record(identity(gid, shm::IdKind::kGroup));
        for (int i = 0; i < 4; i++) {
            group gr{};
            alignas(char*) char buf[1024];
            int err;
            const std::string name = rec.at("groupName");
            const nss_status s = i < 3 ? getgrgid(gid, &gr, buf, sizeof buf, &err)
                                       : getgrnam(name.c_str(), &gr, buf, sizeof buf, &err);
            ASSERT_EQ(s, NSS_STATUS_SUCCESS);
            EXPECT_EQ(rec.at("groupName"), gr.gr_name);
            EXPECT_EQ(rec.at("gid"), gr.gr_gid);
            EXPECT_EQ(gr.gr_mem[0], nullptr);
        }
    }
}

// White-box: the pack/unpack pair of nss/records.hpp, linked in statically.
shm::RangeRecord range(const char* name, std::uint32_t start, std::uint32_t size) {
    shm::RangeRecord r{};
    std::strncpy(r.name, name, sizeof r.name - 1);
    r.start = start;
    r.size = size;
    return r;
}

TEST(NssRecordLayoutTest, UnpackRebuildsWhatPackMade) {
    const shm::RangeRecord ranges[] = {range("web", kWeb, 0x10000),
                                       range(kLongName, kLong, 0x10000)};
    for (const shm::RangeRecord& r : ranges)
        for (std::uint32_t n : {0U, 7U, 65535U})
            for (std::size_t shift = 0; shift < alignof(char*); shift++) {
                SCOPED_TRACE(std::string(r.name) + " " + std::to_string(n) + " shift " +
                             std::to_string(shift));
                const std::uint32_t id = r.start + n;
                alignas(char*) char buf[512], copy[512];
                char* b = buf + shift;
                char* c = copy + shift;
                std::memset(copy, '?', sizeof copy);

                passwd pw{}, unpacked{};
                const shm::IdName user = shm::ranged_id_name(r, n, shm::IdKind::kUser);
                ASSERT_EQ(pack_passwd(user, id, &pw, b, sizeof buf - shift), 0);
                const PackedRecord text = packed_passwd(pw);
                EXPECT_EQ(text.text, b);
                EXPECT_EQ(text.size, passwd_size(user));
                EXPECT_LE(text.size, kMaxPasswdText);
                EXPECT_EQ(text.name_length, std::strlen(pw.pw_name));
                std::memcpy(c, text.text, text.size);
                ASSERT_TRUE(unpack_passwd(c, text.size, text.name_length, id, &unpacked));
                EXPECT_STREQ(unpacked.pw_name, pw.pw_name);
                EXPECT_STREQ(unpacked.pw_passwd, kPasswordSeeShadow);
                EXPECT_EQ(unpacked.pw_uid, id);
                EXPECT_EQ(unpacked.pw_gid, id);
                EXPECT_STREQ(unpacked.pw_gecos, pw.pw_gecos);
                EXPECT_STREQ(unpacked.pw_dir, shm::kHomeDirectory);
                EXPECT_STREQ(unpacked.pw_shell, shm::kShell);
                // Each string where pack_passwd() put it, relative to the buffer.
                EXPECT_EQ(unpacked.pw_name - c, pw.pw_name - b);
                EXPECT_EQ(unpacked.pw_passwd - c, pw.pw_passwd - b);
                EXPECT_EQ(unpacked.pw_gecos - c, pw.pw_gecos - b);
                EXPECT_EQ(unpacked.pw_dir - c, pw.pw_dir - b);
                EXPECT_EQ(unpacked.pw_shell - c, pw.pw_shell - b);
                // A size too short for the fixed strings is no record.
                EXPECT_FALSE(unpack_passwd(c, text.name_length + 23, text.name_length, id,
                                           &unpacked));

                group gr{}, unpacked_group{};
                const shm::IdName grp = shm::ranged_id_name(r, n, shm::IdKind::kGroup);
                ASSERT_EQ(pack_group(grp, id, &gr, b, sizeof buf - shift), 0);
                const PackedRecord gtext = packed_group(gr);
                EXPECT_EQ(gtext.text, b + group_text_offset(b));
                EXPECT_EQ(group_text_offset(b) + gtext.size, group_size(grp, b));
                std::memcpy(c + group_text_offset(c), gtext.text, gtext.size);
                ASSERT_TRUE(unpack_group(c, gtext.size, gtext.name_length, id, &unpacked_group));
                EXPECT_STREQ(unpacked_group.gr_name, gr.gr_name);
                EXPECT_STREQ(unpacked_group.gr_passwd, kPasswordSeeShadow);
                EXPECT_EQ(unpacked_group.gr_gid, id);
                ASSERT_NE(unpacked_group.gr_mem, nullptr);
                EXPECT_EQ(unpacked_group.gr_mem[0], nullptr);
                EXPECT_EQ(reinterpret_cast<std::uintptr_t>(unpacked_group.gr_mem) %
                                  alignof(char*),
                          0U);
                EXPECT_EQ(unpacked_group.gr_name - c, gr.gr_name - b);
                EXPECT_EQ(unpacked_group.gr_passwd - c, gr.gr_passwd - b);
                EXPECT_EQ(reinterpret_cast<char*>(unpacked_group.gr_mem) - c,
                          reinterpret_cast<char*>(gr.gr_mem) - b);
                EXPECT_FALSE(unpack_group(c, gtext.size + 1, gtext.name_length, id,
                                          &unpacked_group));
            }
}

}  // namespace
}  // namespace transient::nss::testing
