// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Coexistence with systemd's allocators: their locks (taken from other processes, as they
// would take them), nsresourced's registry, and subuid files — all in temporary directories.

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>

#include "allocator/collision.hpp"
#include "allocator/system_locks.hpp"

namespace transient::allocator {
namespace {

using namespace std::chrono_literals;

// Runs `fn` in a forked process and returns its exit status (0…255).
int in_other_process(const std::function<int()>& fn) {
    const pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(fn());
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

// A process that holds a lock (taken by `lock`, which returns 0 on success) until destroyed.
class Holder {
public:
    explicit Holder(const std::function<int()>& lock) {
        int p[2];
        EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
        pid_ = ::fork();
        if (pid_ == 0) {
            const char r = static_cast<char>(lock());
            (void)!::write(p[1], &r, 1);
            for (;;)
                ::pause();
        }
        ::close(p[1]);
        char r = 1;
        EXPECT_EQ(::read(p[0], &r, 1), 1);
        EXPECT_EQ(r, 0) << "the holder failed to take its lock";
        ::close(p[0]);
    }
    ~Holder() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }

private:
    pid_t pid_ = -1;
};

int hold_flock(const std::string& path) {
    const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    return fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : 1;
}

int hold_posix_lock(const std::string& path) {
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    return fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1;
}

// 0 if another process could flock() `path` right now.
int can_flock(const std::string& path) {
    return in_other_process([&] {
        const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        return fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : 1;
    });
}

int can_posix_lock(const std::string& path) {
    return in_other_process([&] { return hold_posix_lock(path); });
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

class CollisionTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/transient-collision-test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        run_ = dir_ + "/run/systemd";
        ASSERT_TRUE(make_directories(run_));
        sources_.subuid = dir_ + "/subuid";
        sources_.subgid = dir_ + "/subgid";
        sources_.passwd_lock = dir_ + "/.pwd.lock";
        sources_.systemd_run = run_;
        sources_.lock_timeout = 200ms;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string dir_, run_;
    CollisionSources sources_;
};

TEST_F(CollisionTest, WaitsForThePasswdLockAndGivesUp) {
    {
        Holder h([&] { return hold_posix_lock(sources_.passwd_lock); });
        auto r = take_passwd_lock(sources_.passwd_lock, 100ms);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().value(), ETIMEDOUT);
    }
    EXPECT_TRUE(take_passwd_lock(sources_.passwd_lock, 100ms));
}

TEST_F(CollisionTest, LockFilesAreBusyWhileHeldAndUnlinkedOnRelease) {
    const std::string path = run_ + "/lockfile";
    {
        Holder h([&] { return hold_flock(path); });
        auto r = LockFile::try_take(path);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().value(), EBUSY);
    }
    auto l = LockFile::try_take(path);
    ASSERT_TRUE(l);
    EXPECT_NE(can_flock(path), 0) << "we hold it now";
    l->release();
    EXPECT_FALSE(exists(path)) << "released like systemd's release_lock_file(): unlinked";
}

TEST_F(CollisionTest, HoldsThePasswdAndRegistryLocksForTheWholeChoice) {
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    const std::string registry_lock = run_ + "/nsresource/registry/lock";
    EXPECT_NE(can_posix_lock(sources_.passwd_lock), 0) << "lckpwdf() must wait for us";
    EXPECT_NE(can_flock(registry_lock), 0) << "nsresourced must wait for us";
    c.end_choice();
    EXPECT_EQ(can_posix_lock(sources_.passwd_lock), 0);
    EXPECT_EQ(can_flock(registry_lock), 0);
    EXPECT_TRUE(exists(registry_lock)) << "nsresourced's lock file is never removed";
}

TEST_F(CollisionTest, FailsTheChoiceWhileSomeoneHoldsTheRegistryLock) {
    ASSERT_TRUE(make_directories(run_ + "/nsresource/registry"));
    Holder h([&] { return hold_flock(run_ + "/nsresource/registry/lock"); });
    SystemCollisionChecker c(sources_);
    auto why = c.begin_choice();
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("registry/lock"), std::string::npos) << *why;
    EXPECT_EQ(can_posix_lock(sources_.passwd_lock), 0) << "the passwd lock was let go again";
}

TEST_F(CollisionTest, SkipsARangeNspawnHoldsAndKeepsTheLockOfAFreeOne) {
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    const std::string held = run_ + "/nspawn-uid/524288";
    ASSERT_TRUE(make_directories(run_ + "/nspawn-uid"));
    Holder h([&] { return hold_flock(held); });
    auto why = c.range_taken(524288, 65536);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("nspawn-uid/524288 is locked"), std::string::npos) << *why;
    EXPECT_TRUE(exists(held)) << "someone else's lock file stays";

    const std::string ours = run_ + "/nspawn-uid/589824";
    EXPECT_EQ(c.range_taken(589824, 65536), std::nullopt);
    EXPECT_NE(can_flock(ours), 0) << "nspawn must not pick it while we publish";
    c.end_choice();
    EXPECT_FALSE(exists(ours));
}

TEST_F(CollisionTest, SkipsAUidDynamicUserHolds) {
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    ASSERT_TRUE(make_directories(run_ + "/dynamic-uid"));
    Holder h([&] { return hold_flock(run_ + "/dynamic-uid/61184"); });
    auto why = c.range_taken(61184, 1);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("dynamic-uid/61184"), std::string::npos) << *why;
    // A lock file nobody holds is stale (PID 1 keeps its lock for the user's lifetime).
    std::ofstream(run_ + "/dynamic-uid/61185").put('x');
    EXPECT_EQ(c.range_taken(61185, 1), std::nullopt);
    c.end_choice();
}

TEST_F(CollisionTest, SkipsRangesInNsresourcedsRegistry) {
    const std::string registry = run_ + "/nsresource/registry/";
    ASSERT_TRUE(make_directories(registry));
    std::ofstream(registry + "u655360.userns") << "{}";
    std::ofstream(registry + "g720896.userns") << "{}";
    std::ofstream(registry + "u786432.delegate") << "{}";
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    for (std::uint32_t base : {655360U, 720896U, 786432U}) {
        auto why = c.range_taken(base, 65536);
        ASSERT_TRUE(why) << base;
        EXPECT_NE(why->find("systemd-nsresourced"), std::string::npos) << *why;
    }
    EXPECT_EQ(c.range_taken(851968, 65536), std::nullopt);
    c.end_choice();
}

TEST_F(CollisionTest, SkipsRangesOverlappingSubordinateIds) {
    std::ofstream(sources_.subuid) << "alice:600000:1000\n";
    std::ofstream(sources_.subgid) << "bob:700000:10\n";
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    auto u = c.range_taken(589824, 65536);
    ASSERT_TRUE(u);
    EXPECT_NE(u->find(sources_.subuid + ":1"), std::string::npos) << *u;
    auto g = c.range_taken(655360, 65536);
    ASSERT_TRUE(g);
    EXPECT_NE(g->find(sources_.subgid + ":1"), std::string::npos) << *g;
    EXPECT_FALSE(exists(run_ + "/nspawn-uid/655360")) << "a rejected candidate's lock goes";
    c.end_choice();
}

TEST_F(CollisionTest, LeavesSystemdsDirectoriesAloneWhereThereIsNoSystemd) {
    sources_.systemd_run = dir_ + "/no-systemd";
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    EXPECT_EQ(c.range_taken(524288, 65536), std::nullopt);
    c.end_choice();
    EXPECT_FALSE(exists(sources_.systemd_run));
}

TEST(SubidTest, FindsOverlappingLines) {
    char tmpl[] = "/tmp/transient-subuid.XXXXXX";
    const int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    std::ofstream(tmpl) << "# comment\nalice:100000:65536\nbroken line\nbob:655360:1\n";
    EXPECT_FALSE(subid_overlap(tmpl, 524288, 65536));
    EXPECT_EQ(subid_overlap(tmpl, 655360, 65536), std::string(tmpl) + ":4");
    EXPECT_EQ(subid_overlap(tmpl, 100000 + 65535, 1), std::string(tmpl) + ":2");
    EXPECT_FALSE(subid_overlap(tmpl, 100000 + 65536, 1));
    EXPECT_FALSE(subid_overlap("/nonexistent/subuid", 0, 65536));
    ::unlink(tmpl);
}

}  // namespace
}  // namespace transient::allocator
