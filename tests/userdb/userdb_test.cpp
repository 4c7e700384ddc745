// SPDX-License-Identifier: LGPL-2.1-or-later
//
// io.systemd.UserDatabase as transient-userdbd serves it: a real server on a real socket, over a
// real table, answering the requests systemd's clients send (reference: USER_GROUP_API.md).

#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include "shm/table_reader.hpp"
#include "shm/writer.hpp"
#include "tests/lib/temp_dir.hpp"
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

    // The fixture's three ranges and `n` more container ranges r0, r1, ….
    void publish_many(std::uint32_t n) {
        std::vector<shm::RangeEntry> ranges{{"web", kWeb, 65536, 0, 0, 1, 0, 0},
                                            {"db-main", kDb, 65536, 0, 0, 1, 0, 0},
                                            {"one", 61184, 1, 0, 0, 1, 0, 0}};
        for (std::uint32_t i = 0; i < n; i++)
            ranges.push_back({"r" + std::to_string(i), kDb + 65536 * (1 + i), 65536, 0, 0, 1, 0,
                              0});
        publish(std::move(ranges));
    }

    // CPU time the server's thread has used so far.
    std::chrono::nanoseconds server_cpu() {
        clockid_t clock;
        EXPECT_EQ(pthread_getcpuclockid(thread_.native_handle(), &clock), 0);
        timespec ts{};
        EXPECT_EQ(clock_gettime(clock, &ts), 0);
        return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
    }

    // The server's CPU time for one enumeration with `params` (the fastest of `rounds`).
    std::chrono::nanoseconds enumeration_cpu(const json& params, int rounds = 5) {
        auto best = std::chrono::nanoseconds::max();
        for (int i = 0; i < rounds; i++) {
            const auto before = server_cpu();
            call_more("GetUserRecord", params);
            best = std::min(best, server_cpu() - before);
        }
        return best;
    }

    // Runs `change` on a writable mapping of the table file (both copies, as a corrupt writer
    // would leave them).
    void damage_table(const std::function<void(std::byte* copy)>& change) {
        shm::UniqueFd fd(::open((dir_ + "/ranges.table").c_str(), O_RDWR | O_CLOEXEC));
        ASSERT_TRUE(fd);
        struct stat st;
        ASSERT_EQ(::fstat(fd.get(), &st), 0);
        void* m = ::mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
        ASSERT_NE(m, MAP_FAILED);
        auto* base = static_cast<std::byte*>(m);
        const auto& h = *reinterpret_cast<const shm::FileHeader*>(base);
        for (int i = 0; i < 2; i++)
            change(base + h.copy_offset[i].load());
        ::munmap(m, st.st_size);
    }

    transient::testing::TempDir tmp_{"transient-userdb-test"};
    std::string dir_ = tmp_.path(), socket_;
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

TEST_F(UserdbTest, MatchesFuzzyNamesInTheDescriptionToo) {
    auto r = call_more("GetUserRecord", with_service({{"fuzzyNames", {"nothing", "Range WEB"}}}));
    ASSERT_EQ(r.size(), 1U);
    EXPECT_EQ(r[0].parameters["record"]["userName"], "vu-web-0");
    const json with_nul = json::array({std::string("web\0", 4)});
    EXPECT_EQ(call_more("GetUserRecord", with_service({{"fuzzyNames", with_nul}})).at(0).error,
              "io.systemd.UserDatabase.NoRecordFound");
}

// 24,000 fuzzy names in one request cost seconds of the one event loop (issue 8). Longer
// arrays than the limits are InvalidParameter naming the array, the answer on which systemd's
// clients retry without the filters; the limit itself is accepted.
TEST_F(UserdbTest, RejectsOversizedFilterArraysByName) {
    json names = json::array();
    for (std::size_t i = 0; i < kMaxFuzzyNames; i++)
        names.push_back(i == 7 ? "WEB" : "nomatch" + std::to_string(i));
    auto ok = call_more("GetUserRecord", with_service({{"fuzzyNames", names}}));
    ASSERT_EQ(ok.size(), 1U);
    EXPECT_EQ(ok[0].parameters["record"]["userName"], "vu-web-0");

    names.push_back("one-too-many");
    for (const json& p : {json{{"fuzzyNames", names}}, json{{"uid", kWeb}, {"fuzzyNames", names}},
                          json{{"userName", "vu-web-0"}, {"fuzzyNames", names}}}) {
        auto r = call_more("GetUserRecord", with_service(p));
        ASSERT_EQ(r.size(), 1U) << p.dump();
        EXPECT_EQ(r[0].error, "org.varlink.service.InvalidParameter") << p.dump();
        EXPECT_EQ(r[0].parameters["parameter"], "fuzzyNames") << p.dump();
    }
    json dispositions(kMaxDispositions + 1, "container");
    auto r = call_more("GetGroupRecord", with_service({{"dispositionMask", dispositions}}));
    ASSERT_EQ(r.size(), 1U);
    EXPECT_EQ(r[0].error, "org.varlink.service.InvalidParameter");
    EXPECT_EQ(r[0].parameters["parameter"], "dispositionMask");
    dispositions.erase(dispositions.begin());
    EXPECT_EQ(call_more("GetGroupRecord", with_service({{"dispositionMask", dispositions}})).size(),
              2U);
}

// Matching is linear in names x records, and cheap per pair: the worst filter allowed costs the
// server about as much CPU as the same enumeration without a filter (which formats every record
// and matches none): 0.9-1.1x here, interleaved. Issue 8's 24,000 names took seconds; 2x bounds
// it on a shared machine.
TEST_F(UserdbTest, TheWorstAllowedFilterCostsAboutAPlainEnumeration) {
    publish_many(2000);
    json worst = json::array();
    for (std::size_t i = 0; i < kMaxFuzzyNames; i++)
        worst.push_back("transient range " + std::to_string(100000 + i));
    // Interleaved, the fastest of each: five of one kind and then five of the other gave
    // 0.70-0.78x here (the first kind paid the warm-up) and once 1.10x in CI (the load moved).
    auto plain = std::chrono::nanoseconds::max(), filtered = plain;
    for (int round = 0; round < 7; round++) {
        plain = std::min(plain, enumeration_cpu(with_service({}), 1));
        filtered = std::min(filtered, enumeration_cpu(with_service({{"fuzzyNames", worst}}), 1));
    }
    std::printf("CPU per enumeration of 2003 records: %.2f ms plain, %.2f ms with %zu fuzzy "
                "names\n",
                plain.count() / 1e6, filtered.count() / 1e6, kMaxFuzzyNames);
    EXPECT_LT(filtered, 2 * plain);
}

// Eight connections sending the request of issue 8 (24,000 fuzzy names, 120 KB) and then the
// worst request allowed, over and over, while another client looks up a user: its lookups are
// answered within a second (they took 32 s).
TEST_F(UserdbTest, HostileFilterRequestsDoNotHoldUpOtherClients) {
    publish_many(200);
    json huge = json::array(), worst = json::array();
    // Two letters that no record has, so that every name is tried against every record.
    static constexpr char kLetters[] = "hjkqxyz";
    for (int i = 0; i < 24000; i++)
        huge.push_back(std::string{kLetters[i % 7], kLetters[i / 7 % 7]});
    for (std::size_t i = 0; i < kMaxFuzzyNames; i++)
        worst.push_back("transient range " + std::to_string(100000 + i));
    ASSERT_GE(huge.dump().size(), 120000U);

    const auto cpu_before = server_cpu();
    const auto huge_answer = call_more("GetUserRecord", with_service({{"fuzzyNames", huge}}));
    const auto huge_cpu = server_cpu() - cpu_before;
    std::printf("CPU for one request with 24000 fuzzy names: %.2f ms\n", huge_cpu.count() / 1e6);

    std::atomic<bool> done{false};
    std::atomic<int> hostile_requests{0};
    std::vector<std::thread> hostile;
    for (int c = 0; c < 8; c++)
        hostile.emplace_back([&] {
            auto client = varlink::Client::connect(socket_);
            if (!client)
                return;
            (void)client->call_more("io.systemd.UserDatabase.GetUserRecord",
                                    with_service({{"fuzzyNames", huge}}));
            hostile_requests++;
            for (int i = 0; i < 200 && !done; i++) {
                (void)client->call_more("io.systemd.UserDatabase.GetUserRecord",
                                        with_service({{"fuzzyNames", worst}}));
                hostile_requests++;
            }
        });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::vector<double> latencies;
    for (int i = 0; i < 40; i++) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = call("GetUserRecord", with_service({{"uid", kWeb + i}}));
        latencies.push_back(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        EXPECT_EQ(r.error, "");
    }
    done = true;
    for (auto& t : hostile)
        t.join();
    std::sort(latencies.begin(), latencies.end());
    std::printf("another client's lookup under 8 hostile connections (%d requests): median "
                "%.1f ms, max %.1f ms\n",
                hostile_requests.load(), latencies[latencies.size() / 2] * 1e3,
                latencies.back() * 1e3);
    EXPECT_LT(latencies.back(), 1.0) << "seconds";
    ASSERT_EQ(huge_answer.size(), 1U);
    EXPECT_EQ(huge_answer[0].error, "org.varlink.service.InvalidParameter");
}

// "vu-web-1\0x" is not vu-web-1: a name is all of its bytes, NULs included.
TEST_F(UserdbTest, NamesWithANulInsideFindNothing) {
    using namespace std::string_literals;
    for (const std::string& name :
         {"vu-web-1\0x"s, "vu-web-1\0"s, "vu-web\0-1"s, "vu-web-\0001"s, "\0vu-web-1"s,
          "foreign-1\0x"s, "vu-db-main-1\0"s}) {
        const std::string group = name[0] == 'v' ? "vg" + name.substr(2) : name;
        EXPECT_EQ(call("GetUserRecord", with_service({{"userName", name}})).error,
                  "io.systemd.UserDatabase.NoRecordFound")
                << json(name).dump();
        EXPECT_EQ(call("GetGroupRecord", with_service({{"groupName", group}})).error,
                  "io.systemd.UserDatabase.NoRecordFound")
                << json(group).dump();
    }
    EXPECT_EQ(call("GetUserRecord", with_service({{"uid", kWeb + 1}, {"userName", "vu-web-1\0x"s}}))
                      .error,
              "io.systemd.UserDatabase.ConflictingRecordFound");
    EXPECT_EQ(call("GetUserRecord", with_service({{"userName", "vu-web-1"}})).error, "");
}

// A reader error in the middle of an enumeration (here a corrupt entry: -EBADMSG) ends it with
// an error after what was sent, never as a complete listing.
TEST_F(UserdbTest, EnumerationStoppedByACorruptEntryEndsWithAnError) {
    // Entries in start order: one, web, db-main (and, around "one", removed entries holding the
    // dynamic pool's free IDs). Break web's name.
    auto named = [](std::byte* copy, const char* name) -> shm::EntryWords& {
        auto* e = reinterpret_cast<shm::EntryWords*>(copy + shm::entries_offset());
        std::uint64_t word = 0;
        std::memcpy(&word, name, std::min<std::size_t>(std::strlen(name) + 1, 8));
        while (e->name[0].load() != word)
            e++;
        return *e;
    };
    damage_table([&](std::byte* copy) {
        named(copy, "web").name[0].store(0x2F2F2F2F2F2F2F2FULL);  // "////////"
    });
    auto replies = call_more("GetUserRecord", with_service({}));
    ASSERT_EQ(replies.size(), 2U);
    EXPECT_EQ(replies[0].parameters["record"]["userName"], "vu-one-0");
    EXPECT_TRUE(replies[0].continues);
    EXPECT_EQ(replies[1].error, "io.systemd.UserDatabase.ServiceNotAvailable");
    // Entirely unreadable: the error alone, not NoRecordFound (which says there are none).
    damage_table([&](std::byte* copy) {
        named(copy, "one").name[0].store(0x2F2F2F2F2F2F2F2FULL);
    });
    replies = call_more("GetGroupRecord", with_service({}));
    ASSERT_EQ(replies.size(), 1U);
    EXPECT_EQ(replies[0].error, "io.systemd.UserDatabase.ServiceNotAvailable");
}

// The serialized replies (what every lookup and enumeration sends) are byte for byte what
// nlohmann makes of the records, for every disposition, and for text that needs escaping,
// which takes nlohmann's path.
TEST(UserdbRecordsTest, SerializedRepliesAreWhatTheJsonRecordsDumpTo) {
    auto dumped = [](const json& record) {
        return json{{"record", record}, {"incomplete", false}}.dump(
                -1, ' ', false, json::error_handler_t::replace);
    };
    std::vector<shm::Identity> ids(5);
    const char* names[] = {"vu-web-5", "foreign-7", "vu-x-65535", "q\"uote\\", "bad\xff\x01"};
    const shm::Disposition dispositions[] = {shm::Disposition::kContainer,
                                             shm::Disposition::kForeign,
                                             shm::Disposition::kDynamic,
                                             shm::Disposition::kContainer,
                                             shm::Disposition::kDynamic};
    for (std::size_t i = 0; i < ids.size(); i++) {
        ids[i].id = 524288U + static_cast<std::uint32_t>(i) * 4000000000U / 5;
        ids[i].disposition = dispositions[i];
        std::snprintf(ids[i].name, sizeof ids[i].name, "%s", names[i]);
        std::snprintf(ids[i].description, sizeof ids[i].description, "UID %zu of %s", i,
                      names[i]);
    }
    ids[0].description[0] = '\0';
    for (const auto& id : ids) {
        SCOPED_TRACE(id.name);
        EXPECT_EQ(user_reply(id), dumped(user_record(id)));
        EXPECT_EQ(group_reply(id), dumped(group_record(id)));
    }
}

}  // namespace
}  // namespace transient::userdb
