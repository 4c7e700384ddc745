// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transientctl, run as a separate process against a fake io.transient.Allocator served by the
// Varlink server in this process: text and JSON output of every command, the socket it picks,
// error messages in words with the error name, and exit codes (1 for failed operations, 2 for
// usage errors). Tests against the real daemon live in tests/integration.

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "allocator/interface.hpp"
#include "shm/writer.hpp"
#include "tests/varlink/server_thread.hpp"

extern char** environ;

namespace transient::varlink::testing {
namespace {

using allocator::error_name;
using allocator::ErrorKind;
constexpr const char* kAllocator = allocator::kInterfaceName;
constexpr int64_t kCreated = 1700000000000000;  // 2023-11-14 22:13:20 UTC
constexpr uint64_t kUnknownUid = 3999999999;    // no passwd entry anywhere

// A range of root's as list --json and show --json print it: the daemon's object and what
// transientctl works out (owner name, source, blocks, disposition, which IDs have names).
json described(json r) {
    const uint64_t size = r["size"];
    r["ownerName"] = "root";
    r["source"] = "allocated";
    if (size % 65536 == 0)
        r["blocks"] = size / 65536;
    r["disposition"] = size == 1 ? "dynamic" : "container";
    r["users"] = true;
    r["groups"] = true;
    return r;
}

// systemd's strict user-name rule, for range names: [A-Za-z_][A-Za-z0-9_-]*, at most 22 bytes.
bool valid_name(const std::string& name) {
    auto alpha = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    };
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (name.empty() || name.size() > 22 || !alpha(name[0]))
        return false;
    return std::all_of(name.begin(), name.end(),
                       [&](char c) { return alpha(c) || digit(c) || c == '-'; });
}

// An in-memory allocator with the daemon's interface, enough to drive transientctl.
struct FakeAllocator {
    std::map<std::string, json> ranges;  // name -> Range object
    uint32_t next_container = 524288;
    uint32_t next_single = 61184;
    std::string fail_with;  // when set, every method answers this error
    json fail_parameters = json::object();
    json override_reply;  // when not null, GetRange/AllocateRange answer this instead
    int userns_fds = 0;   // descriptors received for userNamespaceFileDescriptor

    void add(const std::string& name, uint64_t start, uint64_t size, uint64_t owner) {
        ranges[name] = json{{"name", name}, {"start", start}, {"size", size},
                            {"owner", owner}, {"created", kCreated}};
    }

    // Runs `fn` unless the test asked for an error or a canned reply.
    template <typename F>
    Handler method(F fn) {
        return [this, fn](Call& call) {
            if (!fail_with.empty())
                return call.error(fail_with, fail_parameters);
            if (!override_reply.is_null())
                return call.reply(override_reply);
            fn(call);
        };
    }

    Interface interface() {
        Interface iface{kAllocator, "interface io.transient.Allocator\n", {}};
        iface.methods.push_back(Method{
            "AllocateRange",
            {{"name", Type::kString},
             {"size", Type::kInt},
             {std::string(allocator::kUsernsFdParam), Type::kInt, true}},
            method([this](Call& call) {
                if (call.parameters().contains(allocator::kUsernsFdParam))
                    userns_fds += static_cast<int>(call.fd_count());
                const std::string name = call.parameters()["name"];
                const uint64_t size = call.parameters()["size"];
                if (!valid_name(name))
                    return call.error(error_name(ErrorKind::kInvalidName), json{{"name", name}});
                if (size != 1 && size != 65536)
                    return call.error(error_name(ErrorKind::kInvalidSize), json{{"size", size}});
                if (ranges.contains(name))
                    return call.error(error_name(ErrorKind::kNameInUse), json{{"name", name}});
                const uint32_t start = size == 1 ? next_single++ : next_container;
                if (size != 1)
                    next_container += 65536;
                add(name, start, size, call.peer().uid);
                call.reply(json{{"name", name}, {"start", start}, {"size", size}});
            })});
        iface.methods.push_back(Method{
            "ReleaseRange", {{"name", Type::kString}}, method([this](Call& call) {
                if (ranges.erase(call.parameters()["name"].get<std::string>()) == 0)
                    return call.error(error_name(ErrorKind::kNoSuchRange));
                call.reply();
            })});
        iface.methods.push_back(Method{
            "GetRange", {{"name", Type::kString, true}, {"uid", Type::kInt, true}},
            method([this](Call& call) {
                const json& p = call.parameters();
                for (const auto& [name, r] : ranges) {
                    const uint64_t start = r["start"], size = r["size"];
                    if ((p.contains("name") && p["name"] == name) ||
                        (p.contains("uid") && p["uid"] >= start && p["uid"] < start + size))
                        return call.reply(json{{"range", r}});
                }
                call.error(error_name(ErrorKind::kNoSuchRange));
            })});
        iface.methods.push_back(Method{"ListRanges", {}, method([this](Call& call) {
            if (!call.more())
                return call.error(kErrorExpectedMore);
            if (ranges.empty())
                return call.error(error_name(ErrorKind::kNoSuchRange));
            std::size_t i = 0;
            for (const auto& [name, r] : ranges) {
                if (++i < ranges.size())
                    call.reply_continues(json{{"range", r}});
                else
                    call.reply(json{{"range", r}});
            }
        })});
        iface.methods.push_back(Method{"GetStatus", {}, method([](Call& call) {
            call.reply(json{{"version", "9.8.7"},
                            {"tablePath", ""},  // replaced by the test's table
                            {"tableCapacity", 4096},
                            {"probe", "file-handle"},
                            {"maxRangesPerUser", 16},
                            {"maxRangeSize", 8388608},
                            {"allowSingle", true},
                            {"allowContainer", true},
                            {"containerPoolFirst", 524288},
                            {"containerPoolLast", 524288 + 10 * 65536 - 1},
                            {"singlePoolFirst", 61184},
                            {"singlePoolLast", 61184 + 99},
                            {"ranges", 3},
                            {"boundRanges", 0},
                            {"importedRanges", 1}});
        })});
        return iface;
    }
};

struct Outcome {
    int rc = -1;
    std::string out;
    std::string err;
};

class TransientctlTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        server_.server().add_interface(fake_.interface());
        ASSERT_TRUE(server_.server().listen_path(dir_.path() + "/" + kAllocator, 0666));
        server_.start();
    }

    // Runs transientctl with TRANSIENT_RUNTIME_DIR pointing at the fake daemon. The fake is
    // touched only while the server thread is idle: transientctl has exited by then.
    Outcome ctl(std::vector<std::string> args, const char* stdout_path = nullptr) {
        args.insert(args.begin(), TRANSIENTCTL_PATH);
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        std::vector<std::string> env_strings{"TRANSIENT_RUNTIME_DIR=" + dir_.path(),
                                             "LC_ALL=C.UTF-8", "TZ=UTC", "PATH=/usr/bin:/bin"};
        std::vector<char*> env;
        for (auto& e : env_strings)
            env.push_back(e.data());
        env.push_back(nullptr);

        int out[2], err[2];
        EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
        EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        if (stdout_path != nullptr)
            posix_spawn_file_actions_addopen(&actions, 1, stdout_path, O_WRONLY, 0);
        else
            posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        posix_spawn_file_actions_adddup2(&actions, err[1], 2);
        pid_t pid = -1;
        const int r = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), env.data());
        posix_spawn_file_actions_destroy(&actions);
        ::close(out[1]);
        ::close(err[1]);
        Outcome outcome;
        if (r == 0) {
            drain(out[0], err[0], outcome);
            int status = 0;
            ::waitpid(pid, &status, 0);
            outcome.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        ::close(out[0]);
        ::close(err[0]);
        return outcome;
    }

    // The fake lives on the server thread once it runs; these go through it.
    void add(const std::string& name, uint64_t start, uint64_t size, uint64_t owner) {
        server_.run([&] { fake_.add(name, start, size, owner); });
    }
    void fail_with(std::string error, json parameters = json::object()) {
        server_.run([&] {
            fake_.fail_with = std::move(error);
            fake_.fail_parameters = std::move(parameters);
        });
    }
    std::map<std::string, json> ranges() {
        return server_.run([&] { return fake_.ranges; });
    }

    static void drain(int out, int err, Outcome& outcome) {
        pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
        std::string* sinks[2] = {&outcome.out, &outcome.err};
        int open = 2;
        while (open > 0 && ::poll(fds, 2, 10000) > 0) {
            for (int i = 0; i < 2; i++) {
                if (fds[i].revents == 0)
                    continue;
                char buf[4096];
                const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
                if (n <= 0) {
                    fds[i].fd = -1;
                    open--;
                } else {
                    sinks[i]->append(buf, static_cast<std::size_t>(n));
                }
            }
        }
    }

    TempDir dir_;
    FakeAllocator fake_;
    ServerThread server_;
};

TEST_F(TransientctlTest, AllocatesARangeAndSaysWhichUidsAndUsersItGot) {
    auto r = ctl({"allocate", "web"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "Allocated range web: UIDs 524288…589823 (65536), "
                     "users vu-web-0…vu-web-65535.\n");
    EXPECT_EQ(r.err, "");
}

TEST_F(TransientctlTest, AllocatesASingleUidWithSizeOne) {
    auto r = ctl({"allocate", "--size", "1", "solo"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "Allocated range solo: UID 61184, user vu-solo-0.\n");
}

TEST_F(TransientctlTest, PrintsTheAllocationReplyAsJson) {
    auto r = ctl({"allocate", "web", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(json::parse(r.out), json({{"name", "web"}, {"start", 524288}, {"size", 65536}}));
}

TEST_F(TransientctlTest, PassesTheUserNamespaceToBindTheRangeTo) {
    auto r = ctl({"allocate", "web", "--userns", "/proc/self/ns/user"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(server_.run([&] { return fake_.userns_fds; }), 1);

    r = ctl({"allocate", "other", "--userns", dir_.path() + "/nope"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err.rfind("Failed to open user namespace ", 0), 0U) << r.err;
}

TEST_F(TransientctlTest, ListsRangesAsAnAlignedTableWithASummary) {
    add("web", 524288, 65536, kUnknownUid);
    add("solo", 61184, 1, 0);
    auto r = ctl({"list"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out,
              "NAME   START     END   SIZE  BLOCKS  OWNER       SOURCE     CREATED\n"
              "solo   61184   61184      1       -  root (0)    allocated  "
              "2023-11-14 22:13:20 UTC\n"
              "web   524288  589823  65536       1  3999999999  allocated  "
              "2023-11-14 22:13:20 UTC\n"
              "\n"
              "2 ranges listed.\n");
}

TEST_F(TransientctlTest, ListsWhenCalledWithoutACommand) {
    add("solo", 61184, 1, 0);
    auto r = ctl({});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("1 range listed.\n"), std::string::npos) << r.out;
}

TEST_F(TransientctlTest, SaysNoRangesWhenTheTableIsEmpty) {
    auto r = ctl({"list"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "No ranges.\n");
    r = ctl({"list", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(json::parse(r.out), json::array());
}

TEST_F(TransientctlTest, ListsRangesAsAJsonArrayOfRangeObjects) {
    add("web", 524288, 65536, 0);
    add("solo", 61184, 1, 0);
    auto r = ctl({"--json", "list"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(json::parse(r.out),
              json({described(ranges()["solo"]), described(ranges()["web"])}));
}

// `list --json` reads the daemon's usual replies from their text and writes their objects
// itself: byte for byte what nlohmann dumps of the JSON trees, in the order the daemon sent
// them, mixed with replies that need a tree (escapes, a member it does not know, a negative
// number), for every optional member.
TEST_F(TransientctlTest, ListsAsJsonByteForByteWhatTheJsonTreesDumpTo) {
    add("web", 524288, 65536, 0);
    add("big", 589824, 65536 * 3, 0);
    add("solo", 61184, 1, 0);
    add("q\"uote\\", 61185, 1, 0);
    add("bound", 786432, 65536, 0);
    add("sub-bob", 851968, 1000, 0);
    add("extra", 917504, 65536, 0);
    add("negative", 983040, 65536, 0);
    add("plain-false", 1048576, 65536, 0);
    server_.run([&] {
        auto& r = fake_.ranges;
        r["bound"]["userNamespaceInode"] = 4026532000;
        r["bound"]["userNamespaceId"] = 18446744073709551615ULL;
        r["sub-bob"]["imported"] = true;
        r["sub-bob"]["groups"] = false;
        r["sub-bob"].erase("created");
        r["extra"]["zzz"] = json::array({1});
        r["negative"]["created"] = -5;
        r["plain-false"]["imported"] = false;
        r["plain-false"]["users"] = true;
    });
    json expected = json::array();
    for (const auto& [name, range] : ranges()) {
        json d = described(range);
        if (range.contains("imported") && range["imported"] == true)
            d["source"] = "imported";
        d["groups"] = range.value("groups", true);
        expected.push_back(d);
    }
    auto r = ctl({"list", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, expected.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

TEST_F(TransientctlTest, ShowsARangeByNameAsKeyValueLines) {
    add("web", 524288, 65536, 0);
    auto r = ctl({"show", "web"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out,
              "       Name: web\n"
              "      Start: 524288\n"
              "        End: 589823\n"
              "       Size: 65536\n"
              "      Users: vu-web-0…vu-web-65535\n"
              "     Groups: vg-web-0…vg-web-65535\n"
              "Disposition: container\n"
              "      Owner: root (0)\n"
              "     Source: allocated\n"
              "    Created: 2023-11-14 22:13:20 UTC\n");
}

TEST_F(TransientctlTest, ShowsAnOwnerWithoutAUserNameAsANumber) {
    add("web", 524288, 65536, kUnknownUid);
    auto r = ctl({"show", "web"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("  Owner: 3999999999\n"), std::string::npos) << r.out;
}

TEST_F(TransientctlTest, ShowsTheRangeThatContainsAUid) {
    add("web", 524288, 65536, 0);
    auto r = ctl({"show", "524300"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out.substr(0, r.out.find("Name")),
              "        UID: 524300 (vu-web-12)\n"
              "        GID: 524300 (vg-web-12)\n"
              "       ");

    r = ctl({"show", "524300", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(json::parse(r.out), described(ranges()["web"]));
}

// An /etc/subuid entry without a /etc/subgid one has users and no groups: show names none, as the
// NSS module and transient-userdbd resolve none; show UID says the GID has no name.
TEST_F(TransientctlTest, ShowsOnlyTheNamesAnImportedRangeHas) {
    add("sub-bob", 300000, 196608, kUnknownUid);
    server_.run([&] {
        fake_.ranges["sub-bob"]["imported"] = true;
        fake_.ranges["sub-bob"]["groups"] = false;
    });
    auto r = ctl({"show", "300005"});
    EXPECT_EQ(r.rc, 0) << r.err;
    for (const char* line : {"        UID: 300005 (vu-sub-bob-5)\n",
                             "        GID: 300005 (no name)\n",
                             "       Size: 196608 (3 blocks of 65536)\n",
                             "     Groups: none (the range is in /etc/subuid only)\n",
                             "      Owner: 3999999999\n",
                             "     Source: imported from /etc/subuid only (read-only)\n"})
        EXPECT_NE(r.out.find(line), std::string::npos) << line << " in:\n" << r.out;
    r = ctl({"show", "sub-bob", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["source"], "imported");
    EXPECT_EQ(j["blocks"], 3);
    EXPECT_EQ(j["users"], true);
    EXPECT_EQ(j["groups"], false);
    EXPECT_FALSE(j.contains("ownerName"));
}

TEST_F(TransientctlTest, NamesAForeignUidThatIsNoRange) {
    auto r = ctl({"show", "2147352583"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("it is foreign-7, of systemd's foreign UID range"), std::string::npos)
            << r.err;
}

TEST_F(TransientctlTest, ReleasesARange) {
    add("web", 524288, 65536, 0);
    auto r = ctl({"release", "web"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "Released range web.\n");
    EXPECT_TRUE(ranges().empty());
}

TEST_F(TransientctlTest, UsesTheSocketGivenWithTheSocketOption) {
    const std::string other = dir_.path() + "/elsewhere";
    auto listening = server_.run([&] { return server_.server().listen_path(other, 0666); });
    ASSERT_TRUE(listening);
    ASSERT_EQ(::unlink((dir_.path() + "/" + kAllocator).c_str()), 0);
    EXPECT_EQ(ctl({"list"}).rc, 1);
    auto r = ctl({"--socket", other, "list"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, "No ranges.\n");
}

TEST_F(TransientctlTest, ReportsAMissingDaemonWithAHint) {
    const std::string missing = dir_.path() + "/missing";
    auto r = ctl({"--socket", missing, "allocate", "web"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "Failed to connect to " + missing +
                         ": No such file or directory (is transient-allocd running?)\n");
}

TEST_F(TransientctlTest, ExplainsEachAllocatorErrorInWordsWithItsName) {
    const std::vector<std::pair<ErrorKind, std::string>> cases{
        {ErrorKind::kNameInUse, "a range with this name already exists"},
        {ErrorKind::kNoSuchRange, "there is no such range"},
        {ErrorKind::kInvalidName, "invalid range name"},
        {ErrorKind::kInvalidSize, "invalid size"},
        {ErrorKind::kPoolExhausted, "no free UIDs are left"},
        {ErrorKind::kPermissionDenied, "permission denied"},
        {ErrorKind::kQuotaExceeded, "quota"},
    };
    for (const auto& [kind, words] : cases) {
        const std::string error(error_name(kind));
        fail_with(error);
        auto r = ctl({"allocate", "web"});
        EXPECT_EQ(r.rc, 1) << error;
        EXPECT_EQ(r.out, "") << error;
        EXPECT_EQ(r.err.rfind("Failed to allocate range 'web': ", 0), 0U) << r.err;
        EXPECT_NE(r.err.find(words), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("(" + error + ")"), std::string::npos) << r.err;
    }
}

// Every error the interface declares has its own sentence, not the fallback for names
// transientctl does not know.
TEST_F(TransientctlTest, HasWordsForEveryDeclaredError) {
    for (const allocator::ErrorDecl& e : allocator::kErrors) {
        const std::string error(e.name);
        fail_with(error);
        auto r = ctl({"allocate", "web"});
        EXPECT_EQ(r.rc, 1) << error;
        EXPECT_EQ(r.err.find("the daemon reported an error"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("(" + error + ")"), std::string::npos) << r.err;
    }
    fail_with(std::string(kAllocator) + ".NoSuchError");
    auto r = ctl({"allocate", "web"});
    EXPECT_NE(r.err.find("the daemon reported an error (io.transient.Allocator.NoSuchError)"),
              std::string::npos)
            << r.err;
}

TEST_F(TransientctlTest, SaysWhichUidHasNoRange) {
    auto r = ctl({"show", "4242"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "Failed to look up the range of UID 4242: no range contains this UID "
                     "(io.transient.Allocator.NoSuchRange).\n");
}

TEST_F(TransientctlTest, NamesTheParameterTheDaemonRejected) {
    fail_with(kErrorInvalidParameter, json{{"parameter", "size"}});
    auto r = ctl({"allocate", "web"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("rejected parameter 'size'"), std::string::npos) << r.err;
}

TEST_F(TransientctlTest, FailsListingWhenTheDaemonFails) {
    fail_with(kErrorSystem, json{{"errno", EIO}});
    auto r = ctl({"list"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "Failed to list ranges: the daemon failed: Input/output error "
                     "(io.systemd.System).\n");
}

TEST_F(TransientctlTest, ReportsMalformedRepliesInsteadOfPrintingNonsense) {
    server_.run([&] {
        fake_.override_reply = json{{"range", {{"name", "web"}, {"start", "524288"}}}};
    });
    auto r = ctl({"show", "web"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "Failed to look up range 'web': the daemon sent a malformed reply.\n");
}

TEST_F(TransientctlTest, KeepsControlCharactersFromTheDaemonOffTheTerminal) {
    add("ev\x1b[2Jil", 524288, 65536, 0);
    auto r = ctl({"list"});
    EXPECT_EQ(r.rc, 0);
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
    EXPECT_NE(r.out.find("ev?[2Jil"), std::string::npos) << r.out;
}

TEST_F(TransientctlTest, ExitsWithTwoOnUsageErrors) {
    const std::vector<std::vector<std::string>> cases{
        {"allocate"},
        {"allocate", "a", "b"},
        {"frobnicate"},
        {"--bogus", "list"},
        {"allocate", "web", "--size", "abc"},
        {"allocate", "web", "--size", "-1"},
        {"list", "--size", "1"},
        {"show"},
        {"show", "99999999999"},
        {"--socket"},
    };
    for (const auto& args : cases) {
        auto r = ctl(args);
        EXPECT_EQ(r.rc, 2) << args[0];
        EXPECT_EQ(r.out, "");
        EXPECT_NE(r.err, "") << args[0];
    }
    EXPECT_TRUE(ranges().empty()) << "nothing reached the daemon";
}

TEST_F(TransientctlTest, PrintsHelpAndVersion) {
    auto r = ctl({"--help"});
    EXPECT_EQ(r.rc, 0);
    EXPECT_EQ(r.out.rfind("transientctl [OPTIONS...] COMMAND ...\n", 0), 0U);
    r = ctl({"-h"});
    EXPECT_EQ(r.rc, 0);
    r = ctl({"--version"});
    EXPECT_EQ(r.rc, 0);
    EXPECT_EQ(r.out.rfind("transientctl ", 0), 0U);
}

TEST_F(TransientctlTest, FailsWhenItsOutputCannotBeWritten) {
    add("web", 524288, 65536, 0);
    auto r = ctl({"list"}, "/dev/full");
    EXPECT_EQ(r.rc, 1);
    EXPECT_EQ(r.err, "Failed to write output: No space left on device\n");
}

// ---- status ---------------------------------------------------------------------------------

// A real range table in the fake's runtime dir: two blocks and a single UID allocated, one
// imported range, as transientctl status reads it itself.
void write_table(const std::string& dir) {
    auto writer = shm::TableWriter::open(dir + "/ranges.table", 64);
    ASSERT_TRUE(writer);
    const shm::RangeEntry ranges[] = {
        {"one", 61184, 1, 1000, 0, kCreated, 0, 0},
        {"sub-alice", 100000, 65536, 1000, shm::kEntryFlagImported, kCreated, 0, 0},
        {"web", 524288, 2 * 65536, 0, 0, kCreated, 0, 0},
    };
    ASSERT_TRUE(writer->publish(ranges));
}

TEST_F(TransientctlTest, StatusShowsDaemonTablePoolsProbeQuotasAndNsswitch) {
    write_table(dir_.path());
    auto r = ctl({"status"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_NE(r.out.find("         Daemon: reachable, transient-allocd 9.8.7\n"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("          Table: " + dir_.path() + "/ranges.table\n"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("           Size: "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(" bytes, 3 of 64 entries used\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("       64K pool: 524288…1179647: 2 of 10 blocks used (20.0%)\n"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Single-UID pool: 61184…61283: 1 of 100 UIDs used (1.0%)\n"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("       Imported: 1 range, 65536 IDs"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("          Probe: file-handle\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("         Quotas: MaxRangesPerUser=16, MaxRangeSize=8388608\n"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("  nsswitch.conf: passwd: "), std::string::npos) << r.out;
}

TEST_F(TransientctlTest, StatusAsJsonHasEveryPart) {
    write_table(dir_.path());
    auto r = ctl({"status", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["daemon"]["reachable"], true);
    EXPECT_EQ(j["daemon"]["version"], "9.8.7");
    EXPECT_EQ(j["table"]["path"], dir_.path() + "/ranges.table");
    EXPECT_EQ(j["table"]["capacity"], 64);
    EXPECT_EQ(j["table"]["ranges"], 3);
    EXPECT_TRUE(j["table"]["generation"].is_number_unsigned());
    EXPECT_EQ(j["pools"]["container"],
              json({{"first", 524288}, {"last", 1179647}, {"blocks", 10}, {"used", 2}}));
    EXPECT_EQ(j["pools"]["single"],
              json({{"first", 61184}, {"last", 61283}, {"ids", 100}, {"used", 1}}));
    EXPECT_EQ(j["pools"]["imported"], json({{"ranges", 1}, {"ids", 65536}}));
    EXPECT_EQ(j["probe"], "file-handle");
    EXPECT_EQ(j["quotas"], json({{"maxRangesPerUser", 16}, {"maxRangeSize", 8388608}}));
    EXPECT_EQ(j["nsswitch"]["path"], "/etc/nsswitch.conf");
    for (const char* key : {"passwd", "group", "subid"})
        EXPECT_TRUE(j["nsswitch"][key].is_boolean() || j["nsswitch"][key].is_null()) << key;
}

TEST_F(TransientctlTest, StatusWithoutTheDaemonReadsTheTableAndExitsWithThree) {
    write_table(dir_.path());
    const std::string missing = dir_.path() + "/missing";
    auto r = ctl({"--socket", missing, "status"});
    EXPECT_EQ(r.rc, 3) << r.err;
    EXPECT_NE(r.out.find("Daemon: unreachable: cannot connect to " + missing +
                         ": No such file or directory\n"),
              std::string::npos) << r.out;
    // The table is read all the same; the pools are the built-in ones.
    EXPECT_NE(r.out.find(" bytes, 3 of 64 entries used\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("64K pool: 524288…1879048191: 2 of 28664 blocks used (0.0%) "
                         "(built-in default; allocd.conf may differ)\n"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Probe: unknown (the daemon is unreachable)\n"), std::string::npos)
            << r.out;

    r = ctl({"--socket", missing, "status", "--json"});
    EXPECT_EQ(r.rc, 3);
    const json j = json::parse(r.out);
    EXPECT_EQ(j["daemon"]["reachable"], false);
    EXPECT_EQ(j["table"]["ranges"], 3);
    EXPECT_TRUE(j["probe"].is_null());
    EXPECT_TRUE(j["quotas"].is_null());
}

// The daemon answers, but its table is gone: nothing resolves, so status fails (exit 1).
TEST_F(TransientctlTest, StatusSaysWhenThereIsNoTable) {
    auto r = ctl({"status"});
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_NE(r.out.find("Table error: no table (No such file or directory): the allocator has "
                         "not run since boot"),
              std::string::npos)
            << r.out;
}

TEST_F(TransientctlTest, StatusFailsWithOneWhenTheDaemonAnswersAnError) {
    fail_with(std::string(kErrorMethodNotFound), json{{"method", "GetStatus"}});
    auto r = ctl({"status"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.out.find("Daemon: reachable, but status failed: the daemon does not support "
                         "this operation"),
              std::string::npos) << r.out;
}

}  // namespace
}  // namespace transient::varlink::testing
