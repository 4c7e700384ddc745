// SPDX-License-Identifier: LGPL-2.1-or-later
//
// TRANSIENT_RUNTIME_DIR and TRANSIENT_NSS_BYPASS are read once per process, at the first lookup
// (nss/environment.hpp). So each test here runs transient_nss_probe, a fresh process with an
// environment of the test's choosing, and reads its answers. (secure_getenv()'s refusal under
// AT_SECURE would need a setuid binary and is glibc's to test.)

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/layout.hpp"
#include "shm/writer.hpp"
#include "tests/lib/temp_dir.hpp"

#ifndef TRANSIENT_NSS_PROBE_PATH
#error "TRANSIENT_NSS_PROBE_PATH must name the built transient_nss_probe"
#endif
#ifndef TRANSIENT_NSS_MODULE_DIR
#error "TRANSIENT_NSS_MODULE_DIR must name the directory of the built module"
#endif

extern char** environ;

namespace transient::nss::testing {
namespace {

constexpr std::uint32_t kWeb = 0x00080000;
constexpr std::uint32_t kForeign0 = shm::kForeignBase;

class NssEnvironmentTest : public ::testing::Test {
protected:
    void SetUp() override {
        a_ = table_dir("a", "alpha");
        b_ = table_dir("b", "beta");
    }
    void TearDown() override { writers_.clear(); }

    // A runtime directory whose table has one range, `range`, at kWeb.
    std::string table_dir(const std::string& sub, const std::string& range) {
        const std::string d = root_ + "/" + sub;
        std::filesystem::create_directory(d);
        auto w = shm::TableWriter::open(d + "/" + shm::kTableFileName, 64);
        EXPECT_TRUE(w) << w.error().message();
        EXPECT_TRUE(w->publish(std::vector{shm::RangeEntry{range, kWeb, 0x10000, 0, 0, 0, 0, 0}}));
        writers_.push_back(std::move(*w));
        return d;
    }

    // Runs the probe with exactly `env` (plus PATH) and the given operations; one output line
    // per operation.
    static std::vector<std::string> probe(const std::vector<std::string>& env,
                                          const std::vector<std::string>& ops) {
        std::vector<std::string> args{TRANSIENT_NSS_PROBE_PATH};
        args.insert(args.end(), ops.begin(), ops.end());
        std::vector<char*> argv, envp;
        for (auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        std::vector<std::string> env_strings = env;
        env_strings.push_back("PATH=/usr/bin:/bin");
        for (auto& e : env_strings)
            envp.push_back(const_cast<char*>(e.c_str()));
        envp.push_back(nullptr);

        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0)
            return {"pipe failed"};
        posix_spawn_file_actions_t fa;
        ::posix_spawn_file_actions_init(&fa);
        ::posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        pid_t pid;
        const int r = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
        ::posix_spawn_file_actions_destroy(&fa);
        ::close(fds[1]);
        if (r != 0) {
            ::close(fds[0]);
            return {"spawn failed"};
        }
        std::string out;
        char chunk[4096];
        for (ssize_t n; (n = ::read(fds[0], chunk, sizeof chunk)) > 0;)
            out.append(chunk, static_cast<std::size_t>(n));
        ::close(fds[0]);
        int status = 0;
        ::waitpid(pid, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "probe failed: " << out;
        std::vector<std::string> lines;
        std::istringstream in(out);
        for (std::string line; std::getline(in, line);)
            lines.push_back(line);
        return lines;
    }

    static std::string found(const std::string& name) { return "SUCCESS " + name; }
    static std::string not_found() { return "NOTFOUND " + std::to_string(ENOENT); }

    transient::testing::TempDir tmp_{"transient-nss-env"};
    std::string root_ = tmp_.path(), a_, b_;
    std::vector<shm::TableWriter> writers_;
};

const std::string kWebUid = std::to_string(kWeb);
const std::string kForeignUid = std::to_string(kForeign0);

TEST_F(NssEnvironmentTest, ServesTheTableOfTheRuntimeDirectory) {
    EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + a_}, {"getpwuid", kWebUid}),
              std::vector{found("vu-alpha-0")});
    EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + b_}, {"getpwuid", kWebUid}),
              std::vector{found("vu-beta-0")});
}

TEST_F(NssEnvironmentTest, ReadsTheRuntimeDirectoryAtTheFirstLookupNotAtLoadTime) {
    EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + a_},
                    {"setenv", "TRANSIENT_RUNTIME_DIR", b_, "getpwuid", kWebUid}),
              (std::vector<std::string>{"OK", found("vu-beta-0")}));
}

TEST_F(NssEnvironmentTest, KeepsTheRuntimeDirectoryOfTheFirstLookup) {
    EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + a_},
                    {"getpwuid", kWebUid, "setenv", "TRANSIENT_RUNTIME_DIR", b_, "getpwuid",
                     kWebUid, "unsetenv", "TRANSIENT_RUNTIME_DIR", "getgrnam", "vg-alpha-1"}),
              (std::vector<std::string>{found("vu-alpha-0"), "OK", found("vu-alpha-0"), "OK",
                                        found("vg-alpha-1")}));
}

TEST_F(NssEnvironmentTest, AnEmptyRuntimeDirectoryMeansTheDefault) {
    const auto out = probe({"TRANSIENT_RUNTIME_DIR="}, {"getpwuid", kWebUid});
    ASSERT_EQ(out.size(), 1U);
    EXPECT_NE(out[0], found("vu-alpha-0"));  // whatever /run/transient holds on this host
}

TEST_F(NssEnvironmentTest, ARuntimeDirectoryTooLongForAPathIsUnavailable) {
    const std::string dir = std::string(5000, '/') + a_;
    EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + dir}, {"getpwuid", kWebUid, "getpwuid",
                                                       kForeignUid}),
              (std::vector<std::string>{"UNAVAIL " + std::to_string(ENAMETOOLONG),
                                        found("foreign-0")}));
}

TEST_F(NssEnvironmentTest, BypassAnswersNotFoundForEverything) {
    for (const char* value : {"1", "yes", "true", "on"}) {
        const std::string bypass = std::string("TRANSIENT_NSS_BYPASS=") + value;
        EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + a_, bypass},
                        {"getpwuid", kWebUid, "getpwnam", "vu-alpha-0", "getgrgid", kWebUid,
                         "getgrnam", "vg-alpha-0", "getpwuid", kForeignUid, "getpwent",
                         "initgroups", "vu-alpha-3", "100"}),
                  (std::vector<std::string>{not_found(), not_found(), not_found(), not_found(),
                                            not_found(), "NOTFOUND ", "NOTFOUND 1"}))
                << value;
    }
}

TEST_F(NssEnvironmentTest, OtherBypassValuesDoNotBypass) {
    for (const char* value : {"0", "no", "", "2"}) {
        const std::string bypass = std::string("TRANSIENT_NSS_BYPASS=") + value;
        EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + a_, bypass},
                        {"getpwuid", kWebUid, "getpwent"}),
                  (std::vector<std::string>{found("vu-alpha-0"), "SUCCESS vu-alpha-0"}))
                << value;
    }
}

TEST_F(NssEnvironmentTest, KeepsTheBypassOfTheFirstLookup) {
    // Set before the first lookup (as transient-allocd does in main()): honoured.
    EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + a_},
                    {"setenv", "TRANSIENT_NSS_BYPASS", "1", "getpwuid", kWebUid, "unsetenv",
                     "TRANSIENT_NSS_BYPASS", "getpwuid", kWebUid}),
              (std::vector<std::string>{"OK", not_found(), "OK", not_found()}));
    // Set after it: too late.
    EXPECT_EQ(probe({"TRANSIENT_RUNTIME_DIR=" + a_},
                    {"getpwuid", kWebUid, "setenv", "TRANSIENT_NSS_BYPASS", "1", "getpwuid",
                     kWebUid}),
              (std::vector<std::string>{found("vu-alpha-0"), "OK", found("vu-alpha-0")}));
}

TEST_F(NssEnvironmentTest, BypassHidesEverythingThroughGlibc) {
    const std::string ld = std::string("LD_LIBRARY_PATH=") + TRANSIENT_NSS_MODULE_DIR;
    EXPECT_EQ(probe({ld, "TRANSIENT_RUNTIME_DIR=" + a_}, {"glibc-getpwuid", kWebUid}),
              std::vector{found("vu-alpha-0")});
    EXPECT_EQ(probe({ld, "TRANSIENT_RUNTIME_DIR=" + a_, "TRANSIENT_NSS_BYPASS=1"},
                    {"glibc-getpwuid", kWebUid, "glibc-getpwuid", kForeignUid}),
              (std::vector<std::string>{"NONE", "NONE"}));
}

}  // namespace
}  // namespace transient::nss::testing
