// SPDX-License-Identifier: LGPL-2.1-or-later
//
// io.systemd.UserDatabase as transient-userdbd serves it: a real server on a real socket, over a
// real table, answering the requests systemd's clients send (reference: USER_GROUP_API.md).

#include <sys/eventfd.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "shm/table_reader.hpp"
#include "shm/writer.hpp"
#include "userdb/records.hpp"
#include "userdb/service.hpp"
#include "varlink/varlink.hpp"

namespace transient::userdb {
namespace {

using varlink::json;

constexpr std::uint32_t kWeb = 524288;
constexpr std::uint32_t kDb = 524288 + 65536 * 5;

class UserdbTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/transient-userdb-test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        auto w = shm::TableWriter::open(dir_ + "/ranges.table");
        ASSERT_TRUE(w);
        writer_.emplace(std::move(*w));
        publish({{"web", kWeb, 65536, 0, 0, 1, 0, 0},
                 {"db-main", kDb, 65536, 0, 0, 1, 0, 0},
                 {"one", 61184, 1, 0, 0, 1, 0, 0}});
        table_.emplace(dir_ + "/ranges.table");
        start_server(dir_ + "/io.transient.Ranges");
    }

    void TearDown() override {
        const std::uint64_t one = 1;
        (void)::write(stop_fd_, &one, sizeof one);
        if (thread_.joinable())
            thread_.join();
        server_.reset();
        sd_event_unref(event_);
        ::close(stop_fd_);
        std::filesystem::remove_all(dir_);
    }

    void publish(std::vector<shm::RangeEntry> ranges) {
        std::sort(ranges.begin(), ranges.end(),
                  [](const auto& a, const auto& b) { return a.start < b.start; });
        ASSERT_TRUE(writer_->publish(ranges));
    }

    void start_server(const std::string& path) {
        ASSERT_GE(sd_event_new(&event_), 0);
        stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        sd_event_add_io(
                event_, nullptr, stop_fd_, EPOLLIN,
                [](sd_event_source* s, int, uint32_t, void*) {
                    return sd_event_exit(sd_event_source_get_event(s), 0);
                },
                nullptr);
        server_ = std::make_unique<varlink::Server>(event_, varlink::ServiceInfo{});
        server_->add_interface(make_interface(*table_));
        ASSERT_TRUE(server_->listen_path(path, 0666));
        socket_ = path;
        thread_ = std::thread([this] { sd_event_loop(event_); });
    }

    varlink::Client::Reply call(const std::string& method, json params) {
        auto c = varlink::Client::connect(socket_);
        EXPECT_TRUE(c);
        auto r = c->call("io.systemd.UserDatabase." + method, params);
        EXPECT_TRUE(r);
        return *r;
    }

    std::vector<varlink::Client::Reply> call_more(const std::string& method, json params) {
        auto c = varlink::Client::connect(socket_);
        EXPECT_TRUE(c);
        auto r = c->call_more("io.systemd.UserDatabase." + method, params);
        EXPECT_TRUE(r);
        return *r;
    }

    static json with_service(json p) {
        p["service"] = kServiceName;
        return p;
    }

    std::string dir_, socket_;
    std::optional<shm::TableWriter> writer_;
    std::optional<shm::TableReader> table_;
    sd_event* event_ = nullptr;
    int stop_fd_ = -1;
    std::unique_ptr<varlink::Server> server_;
    std::thread thread_;
};

TEST_F(UserdbTest, ReturnsUserRecordsByUidAndByName) {
    auto r = call("GetUserRecord", with_service({{"uid", kWeb + 5}}));
    ASSERT_EQ(r.error, "");
    const json& rec = r.parameters.at("record");
    EXPECT_EQ(rec.at("userName"), "vu-web-5");
    EXPECT_EQ(rec.at("uid"), kWeb + 5);
    EXPECT_EQ(rec.at("gid"), kWeb + 5);
    EXPECT_EQ(rec.at("realName"), "UID 5 of transient range web");
    EXPECT_EQ(rec.at("homeDirectory"), "/");
    EXPECT_EQ(rec.at("shell"), "/usr/sbin/nologin");
    EXPECT_EQ(rec.at("locked"), true);
    EXPECT_EQ(rec.at("disposition"), "container");
    EXPECT_EQ(rec.at("service"), "io.transient.Ranges");
    EXPECT_EQ(r.parameters.at("incomplete"), false);

    auto n = call("GetUserRecord", with_service({{"userName", "vu-db-main-65535"}}));
    ASSERT_EQ(n.error, "");
    EXPECT_EQ(n.parameters["record"]["uid"], kDb + 65535);
    auto one = call("GetUserRecord", with_service({{"uid", 61184}}));
    EXPECT_EQ(one.parameters["record"]["disposition"], "dynamic");
}

TEST_F(UserdbTest, ReturnsGroupRecords) {
    auto r = call("GetGroupRecord", with_service({{"groupName", "vg-web-0"}}));
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.parameters["record"],
              (json{{"groupName", "vg-web-0"},
                    {"gid", kWeb},
                    {"description", "GID 0 of transient range web"},
                    {"disposition", "container"},
                    {"service", "io.transient.Ranges"}}));
    EXPECT_EQ(call("GetGroupRecord", with_service({{"groupName", "vu-web-0"}})).error,
              "io.systemd.UserDatabase.NoRecordFound");
}

TEST_F(UserdbTest, ServesTheForeignRangeAsSystemdNamesIt) {
    auto u = call("GetUserRecord", with_service({{"uid", 2147352576U + 7}}));
    ASSERT_EQ(u.error, "");
    EXPECT_EQ(u.parameters["record"]["userName"], "foreign-7");
    EXPECT_EQ(u.parameters["record"]["realName"], "Foreign System Image UID 7");
    EXPECT_EQ(u.parameters["record"]["disposition"], "foreign");
    auto g = call("GetGroupRecord", with_service({{"groupName", "foreign-65534"}}));
    ASSERT_EQ(g.error, "");
    EXPECT_EQ(g.parameters["record"]["description"], "Foreign System Image GID 65534");
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", 2147352576U + 65535}})).error,
              "io.systemd.UserDatabase.NoRecordFound");
}

TEST_F(UserdbTest, AnswersBadServiceForMissingOrWrongService) {
    EXPECT_EQ(call("GetUserRecord", {{"uid", kWeb}}).error, "io.systemd.UserDatabase.BadService");
    EXPECT_EQ(call("GetUserRecord", {{"uid", kWeb}, {"service", "io.systemd.Machine"}}).error,
              "io.systemd.UserDatabase.BadService");
    EXPECT_EQ(call("GetGroupRecord", {{"gid", kWeb}, {"service", 5}}).error,
              "io.systemd.UserDatabase.BadService");
    EXPECT_EQ(call("GetMemberships", {{"userName", "vu-web-0"}}).error,
              "io.systemd.UserDatabase.BadService");
}

TEST_F(UserdbTest, AnswersNoRecordFoundForWhatItDoesNotServe) {
    for (const json& p : {json{{"uid", 0}}, json{{"uid", kWeb - 1}}, json{{"uid", -1}},
                          json{{"uid", 4294967295U}}, json{{"uid", 1e3}},
                          json{{"uid", 18446744073709551615ULL}}, json{{"userName", "root"}},
                          json{{"userName", std::string(10000, 'v')}},
                          json{{"userName", "vu-web-65536"}}, json{{"userName", "vu--1"}},
                          json{{"userName", ""}}}) {
        auto r = call("GetUserRecord", with_service(p));
        EXPECT_TRUE(r.error == "io.systemd.UserDatabase.NoRecordFound" ||
                    r.error == "org.varlink.service.InvalidParameter")
                << p.dump() << " -> " << r.error;
    }
    EXPECT_EQ(call("GetMemberships", with_service({{"userName", "vu-web-0"}})).error,
              "io.systemd.UserDatabase.NoRecordFound");
}

TEST_F(UserdbTest, AnswersConflictingRecordFoundWhenKeysDisagree) {
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", kWeb + 1}, {"userName", "vu-web-2"}}))
                      .error,
              "io.systemd.UserDatabase.ConflictingRecordFound");
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", 1}, {"userName", "vu-web-2"}})).error,
              "io.systemd.UserDatabase.ConflictingRecordFound");
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", kWeb + 2}, {"userName", "vu-web-2"}}))
                      .error,
              "");
}

TEST_F(UserdbTest, EnumeratesOneRecordPerRangeWithMore) {
    auto replies = call_more("GetUserRecord", with_service({}));
    ASSERT_EQ(replies.size(), 3U);
    EXPECT_EQ(replies[0].parameters["record"]["userName"], "vu-one-0");
    EXPECT_EQ(replies[1].parameters["record"]["userName"], "vu-web-0");
    EXPECT_EQ(replies[2].parameters["record"]["userName"], "vu-db-main-0");
    EXPECT_TRUE(replies[0].continues);
    EXPECT_TRUE(replies[1].continues);
    EXPECT_FALSE(replies[2].continues);
    auto groups = call_more("GetGroupRecord", with_service({}));
    ASSERT_EQ(groups.size(), 3U);
    EXPECT_EQ(groups[2].parameters["record"]["groupName"], "vg-db-main-0");
    EXPECT_EQ(call("GetUserRecord", with_service({})).error, "org.varlink.service.ExpectedMore");
}

TEST_F(UserdbTest, AppliesTheV258Filters) {
    auto dyn = call_more("GetUserRecord", with_service({{"dispositionMask", {"dynamic"}}}));
    ASSERT_EQ(dyn.size(), 1U);
    EXPECT_EQ(dyn[0].parameters["record"]["userName"], "vu-one-0");
    auto fuzzy = call_more("GetUserRecord", with_service({{"fuzzyNames", {"DB-M"}}}));
    ASSERT_EQ(fuzzy.size(), 1U);
    EXPECT_EQ(fuzzy[0].parameters["record"]["userName"], "vu-db-main-0");
    auto bounded = call_more("GetGroupRecord", with_service({{"gidMin", kWeb}, {"gidMax", kWeb}}));
    ASSERT_EQ(bounded.size(), 1U);
    EXPECT_EQ(bounded[0].parameters["record"]["gid"], kWeb);
    auto none = call_more("GetUserRecord", with_service({{"uidMin", 4000000000U}}));
    ASSERT_EQ(none.size(), 1U);
    EXPECT_EQ(none[0].error, "io.systemd.UserDatabase.NoRecordFound");

    EXPECT_EQ(call("GetUserRecord",
                   with_service({{"uid", kWeb}, {"dispositionMask", {"dynamic"}}}))
                      .error,
              "io.systemd.UserDatabase.NonMatchingRecordFound");
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", kWeb}, {"uidMax", kWeb - 1}})).error,
              "io.systemd.UserDatabase.NonMatchingRecordFound");
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", kWeb}, {"uidMin", kWeb}})).error, "");
}

TEST_F(UserdbTest, RejectsUnknownAndMistypedParametersByName) {
    auto r = call("GetUserRecord", with_service({{"uid", kWeb}, {"bogus", 1}}));
    EXPECT_EQ(r.error, "org.varlink.service.InvalidParameter");
    EXPECT_EQ(r.parameters["parameter"], "bogus");
    r = call("GetUserRecord", with_service({{"gidMin", 1}}));
    EXPECT_EQ(r.parameters["parameter"], "gidMin");
    r = call("GetUserRecord", with_service({{"fuzzyNames", {1, 2}}}));
    EXPECT_EQ(r.parameters["parameter"], "fuzzyNames");
    r = call("GetGroupRecord", with_service({{"gid", "x"}}));
    EXPECT_EQ(r.parameters["parameter"], "gid");
}

TEST_F(UserdbTest, FollowsTheTableAsTheAllocatorChangesIt) {
    EXPECT_EQ(call("GetUserRecord", with_service({{"userName", "vu-new-0"}})).error,
              "io.systemd.UserDatabase.NoRecordFound");
    publish({{"new", 524288 + 65536 * 9, 65536, 0, 0, 1, 0, 0}});
    auto r = call("GetUserRecord", with_service({{"userName", "vu-new-0"}}));
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", kWeb}})).error,
              "io.systemd.UserDatabase.NoRecordFound");
}

TEST_F(UserdbTest, DescribesBothInterfaces) {
    auto info = call("GetUserRecord", with_service({{"uid", kWeb}}));  // warm up
    auto c = varlink::Client::connect(socket_);
    ASSERT_TRUE(c);
    auto r = c->call("org.varlink.service.GetInfo");
    ASSERT_TRUE(r);
    EXPECT_NE(std::find(r->parameters["interfaces"].begin(), r->parameters["interfaces"].end(),
                        "io.systemd.UserDatabase"),
              r->parameters["interfaces"].end());
    auto d = c->call("org.varlink.service.GetInterfaceDescription",
                     {{"interface", "io.systemd.UserDatabase"}});
    ASSERT_TRUE(d);
    EXPECT_NE(d->parameters["description"].get<std::string>().find("method GetUserRecord"),
              std::string::npos);
}

}  // namespace
}  // namespace transient::userdb
