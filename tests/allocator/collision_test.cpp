// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Coexistence with systemd's allocators: their locks (taken from other processes, as they
// would take them), nsresourced's registry, and subuid files — all in temporary directories.

#include <dlfcn.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <shadow.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>

#include "allocator/collision.hpp"
#include "allocator/system_locks.hpp"
#include "tests/lib/temp_dir.hpp"

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
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
};

int hold_flock(const std::string& path) {
    const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    return fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : 1;
}

// systemd's own make_lock_file() (libsystemd-shared, systemd 252 as in Debian 12), the way
// systemd-nspawn --private-users=pick locks /run/systemd/nspawn-uid/<base>; null if that
// library is not installed.
using MakeLockFile = int (*)(const char* path, int operation, void* ret);
MakeLockFile systemd_make_lock_file() {
    glob_t g{};
    MakeLockFile fn = nullptr;
    if (::glob("/usr/lib/*/systemd/libsystemd-shared-*.so", 0, nullptr, &g) == 0 &&
        g.gl_pathc > 0)
        if (void* lib = ::dlopen(g.gl_pathv[0], RTLD_NOW | RTLD_LOCAL))
            fn = reinterpret_cast<MakeLockFile>(::dlsym(lib, "make_lock_file"));
    ::globfree(&g);
    return fn;
}

// 0 once make_lock_file(path, LOCK_EX|LOCK_NB) holds `path`, else its negative errno's value.
int hold_like_nspawn(const std::string& path) {
    MakeLockFile make_lock_file = systemd_make_lock_file();
    // struct LockFile { char *path; int fd; int operation; }, with room to spare.
    alignas(16) static char lock_file[64];
    const int r = make_lock_file != nullptr ? make_lock_file(path.c_str(), LOCK_EX | LOCK_NB,
                                                             lock_file)
                                            : -ENOSYS;
    return r == 0 ? 0 : 100 + (-r == EBUSY ? 1 : 2);
}

// 0 once glibc's lckpwdf() holds /etc/.pwd.lock — which is, in this process's own mount
// namespace only, `path` bind-mounted over it (the host's lock is never touched).
int hold_like_lckpwdf(const std::string& path) {
    if (::unshare(CLONE_NEWNS) < 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
        return 1;
    (void)::close(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    if (::access("/etc/.pwd.lock", F_OK) < 0 ||
        ::mount(path.c_str(), "/etc/.pwd.lock", nullptr, MS_BIND, nullptr) < 0)
        return 2;
    return ::lckpwdf() == 0 ? 0 : 3;
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
        run_ = dir_ + "/run/systemd";
        ASSERT_TRUE(make_directories(run_));
        sources_.subuid = dir_ + "/subuid";
        sources_.subgid = dir_ + "/subgid";
        sources_.passwd_lock = dir_ + "/.pwd.lock";
        sources_.systemd_run = run_;
        // Another source than the files: every lookup goes through glibc (as on this host).
        sources_.nsswitch = dir_ + "/nsswitch.conf";
        std::ofstream(sources_.nsswitch) << "passwd: files systemd\ngroup: files systemd\n";
    }
    transient::testing::TempDir tmp_{"transient-collision-test"};
    std::string dir_ = tmp_.path(), run_;
    CollisionSources sources_;
};

TEST_F(CollisionTest, TriesThePasswdLockWithoutWaitingAndNamesItsHolder) {
    {
        Holder h([&] { return hold_posix_lock(sources_.passwd_lock); });
        pid_t holder = 0;
        const auto t0 = std::chrono::steady_clock::now();
        auto r = try_passwd_lock(sources_.passwd_lock, &holder);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().value(), EBUSY);
        EXPECT_EQ(holder, h.pid());
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "no waiting on the event loop";
        SystemCollisionChecker c(sources_);
        auto why = c.begin_choice();
        ASSERT_TRUE(why);
        EXPECT_EQ(why->kind, ErrorKind::kBusy);
        EXPECT_EQ(why->lock_file, sources_.passwd_lock);
        EXPECT_EQ(why->holder, h.pid());
    }
    EXPECT_TRUE(try_passwd_lock(sources_.passwd_lock));
}

TEST_F(CollisionTest, LockFilesAreBusyWhileHeldAndUnlinkedOnRelease) {
    const std::string path = run_ + "/lockfile";
    {
        Holder h([&] { return hold_flock(path); });
        auto r = LockFile::try_take(path, LockKind::kBsd);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().value(), EBUSY);
    }
    auto l = LockFile::try_take(path, LockKind::kBsd);
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
    EXPECT_EQ(why->kind, ErrorKind::kBusy);
    EXPECT_EQ(why->lock_file, run_ + "/nsresource/registry/lock");
    EXPECT_NE(why->message.find("registry/lock"), std::string::npos) << why->message;
    EXPECT_EQ(can_posix_lock(sources_.passwd_lock), 0) << "the passwd lock was let go again";
}

TEST_F(CollisionTest, FindsThePasswdLockBusyWhileLckpwdfHoldsIt) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root for a private mount namespace";
    {
        Holder h([&] { return hold_like_lckpwdf(sources_.passwd_lock); });
        pid_t holder = 0;
        auto r = try_passwd_lock(sources_.passwd_lock, &holder);
        ASSERT_FALSE(r) << "glibc's lckpwdf() holds it";
        EXPECT_EQ(r.error().value(), EBUSY);
        EXPECT_EQ(holder, h.pid());
    }
    EXPECT_TRUE(try_passwd_lock(sources_.passwd_lock)) << "free once lckpwdf() let go";
}

TEST_F(CollisionTest, SkipsARangeNspawnHoldsAndKeepsTheLockOfAFreeOne) {
    if (systemd_make_lock_file() == nullptr)
        GTEST_SKIP() << "libsystemd-shared (systemd's make_lock_file()) is not installed";
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    const std::string held = run_ + "/nspawn-uid/524288";
    ASSERT_TRUE(make_directories(run_ + "/nspawn-uid"));
    Holder h([&] { return hold_like_nspawn(held); });
    auto why = c.range_taken(524288, 65536);
    ASSERT_TRUE(why) << "systemd's make_lock_file() holds it";
    EXPECT_NE(why->find("nspawn-uid/524288 is locked"), std::string::npos) << *why;
    EXPECT_TRUE(exists(held)) << "someone else's lock file stays";

    const std::string ours = run_ + "/nspawn-uid/589824";
    EXPECT_EQ(c.range_taken(589824, 65536), std::nullopt);
    EXPECT_EQ(in_other_process([&] { return hold_like_nspawn(ours); }), 101)
            << "nspawn's make_lock_file() must find it busy while we publish";
    c.end_choice();
    EXPECT_FALSE(exists(ours));
}

// A multi-block candidate is as many nspawn candidates: a lock held on any of its blocks, or a
// registry entry at any block's start, takes it; a free one holds every block's lock file.
TEST_F(CollisionTest, ChecksEveryBlockOfAMultiBlockRange) {
    const std::string registry = run_ + "/nsresource/registry/";
    ASSERT_TRUE(make_directories(registry));
    std::ofstream(registry + "u" + std::to_string(524288 + 2 * 65536) + ".userns") << "{}";
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    auto why = c.range_taken(524288, 3 * 65536);
    ASSERT_TRUE(why) << "the registry claims its third block";
    EXPECT_NE(why->find("systemd-nsresourced"), std::string::npos) << *why;
    EXPECT_FALSE(exists(run_ + "/nspawn-uid/524288")) << "a rejected candidate's locks go";

    const std::uint32_t base = 524288 + 3 * 65536;
    EXPECT_EQ(c.range_taken(base, 3 * 65536), std::nullopt);
    for (std::uint32_t b = 0; b < 3; b++)
        EXPECT_TRUE(exists(run_ + "/nspawn-uid/" + std::to_string(base + b * 65536))) << b;
    c.end_choice();
    EXPECT_FALSE(exists(run_ + "/nspawn-uid/" + std::to_string(base + 2 * 65536)));
}

TEST_F(CollisionTest, SkipsAMultiBlockRangeNspawnHoldsAnyBlockOf) {
    if (systemd_make_lock_file() == nullptr)
        GTEST_SKIP() << "libsystemd-shared (systemd's make_lock_file()) is not installed";
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    const std::string held = run_ + "/nspawn-uid/" + std::to_string(524288 + 65536);
    ASSERT_TRUE(make_directories(run_ + "/nspawn-uid"));
    Holder h([&] { return hold_like_nspawn(held); });
    auto why = c.range_taken(524288, 2 * 65536);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("is locked"), std::string::npos) << *why;
    EXPECT_FALSE(exists(run_ + "/nspawn-uid/524288")) << "the first block's lock was let go";
    c.end_choice();
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

TEST_F(CollisionTest, AsksNssNothingAboutACandidateTheLocalSourcesClaim) {
    // Each NSS lookup opens and reads a file or asks a daemon; the registry and the subid files
    // (parsed once per change) are looked at first, so a candidate they claim costs none.
    std::ofstream(sources_.subuid) << "alice:600000:1000\n";
    std::ofstream(sources_.subgid) << "bob:700000:10\n";
    const std::string registry = run_ + "/nsresource/registry/";
    ASSERT_TRUE(make_directories(registry));
    std::ofstream(registry + "u" + std::to_string(917504 + 2 * 65536) + ".userns") << "{}";
    SystemCollisionChecker c(sources_);
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    EXPECT_TRUE(c.range_taken(589824, 65536));     // subuid
    EXPECT_TRUE(c.range_taken(655360, 65536));     // subgid
    EXPECT_TRUE(c.range_taken(917504, 3 * 65536));  // the registry, at the third block
    EXPECT_EQ(c.lookups(), 0U);
    // A free block: its base and base+0xFFFE, each as a user and as a group.
    EXPECT_EQ(c.range_taken(524288, 65536), std::nullopt);
    EXPECT_EQ(c.lookups(), 4U);
    c.end_choice();
}

// What a candidate costs in NSS lookups when NSS knows a UID in its third block: in a forked
// process whose private mount namespace has `passwd` bind-mounted over /etc/passwd (the
// host's is never touched). Returns 0 if the checks below held, else the step that failed.
int count_lookups_with_a_user_at(const std::string& passwd, const CollisionSources& sources,
                                 std::uint32_t base) {
    if (::unshare(CLONE_NEWNS) < 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        ::mount(passwd.c_str(), "/etc/passwd", nullptr, MS_BIND, nullptr) < 0)
        return 1;
    SystemCollisionChecker c(sources);
    if (c.begin_choice())
        return 2;
    // Blocks 1 and 2 free (two lookups each of base and base+0xFFFE), block 3's base a user.
    auto why = c.range_taken(base, 3 * 65536);
    if (!why || why->find("has a user record") == std::string::npos || c.lookups() != 9)
        return 3;
    // The next candidate of the pool's walk: its first block and the user were asked about in
    // this choice already.
    if (!c.range_taken(base + 65536, 3 * 65536) || c.lookups() != 9)
        return 10 + static_cast<int>(c.lookups() - 9);
    c.end_choice();
    // A new choice asks again: nothing is kept from one call to the next.
    if (c.begin_choice() || !c.range_taken(base + 65536, 3 * 65536) || c.lookups() != 9 + 5)
        return 5;
    c.end_choice();
    return 0;
}

TEST_F(CollisionTest, AsksNssAboutAnIdOncePerChoice) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root for a private mount namespace";
    const std::uint32_t base = 524288;
    const std::string passwd = dir_ + "/passwd";
    {
        std::ifstream in("/etc/passwd");
        std::ofstream out(passwd);
        out << in.rdbuf() << "blocker:x:" << base + 2 * 65536 << ":65534::/:/bin/false\n";
    }
    // 3: the first candidate's count; 10 + n: the second candidate made n lookups.
    EXPECT_EQ(in_other_process(
                      [&] { return count_lookups_with_a_user_at(passwd, sources_, base); }),
              0);
}

TEST_F(CollisionTest, AnswersFromTheFilesWhereTheyAreTheOnlySource) {
    // nsswitch.conf naming only files: /etc/passwd and /etc/group are all there is to ask, read
    // once per change instead of by glibc for each lookup.
    std::ofstream(sources_.nsswitch) << "passwd: files\ngroup: files\n";
    sources_.passwd = dir_ + "/passwd";
    sources_.group = dir_ + "/group";
    std::ofstream(sources_.passwd) << "root:x:0:0::/root:/bin/sh\n"
                                   << "vu-web-0:x:100:100::/:/bin/false\n";
    std::ofstream(sources_.group) << "root:x:0:\nblocker:x:" << 589824 + 0xFFFE << ":\n";
    SystemCollisionChecker c(sources_);
    EXPECT_EQ(c.name_taken("db"), std::nullopt);
    EXPECT_EQ(c.name_taken("web"), "user vu-web-0 already exists");
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    EXPECT_EQ(c.range_taken(524288, 65536), std::nullopt);
    EXPECT_EQ(c.range_taken(589824, 65536), "GID 655358 has a group record");
    EXPECT_EQ(c.lookups(), 0U) << "glibc was asked";
    c.end_choice();
    // A source besides the files, and glibc answers again.
    std::ofstream(sources_.nsswitch) << "passwd: files sss\ngroup: files\n";
    ASSERT_EQ(c.begin_choice(), std::nullopt);
    EXPECT_EQ(c.range_taken(524288, 65536), std::nullopt);
    EXPECT_EQ(c.lookups(), 4U);
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

// Sets the file's times `ago` seconds into the past (its ctime stays now: see below).
void age(const std::string& path, int ago) {
    timespec times[2];
    ::clock_gettime(CLOCK_REALTIME, &times[0]);
    times[0].tv_sec -= ago;
    times[1] = times[0];
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

TEST(SubidTest, ParsesAFileOncePerChange) {
    char tmpl[] = "/tmp/transient-subuid.XXXXXX";
    const int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    std::ofstream(tmpl) << "alice:100000:65536\n";
    SubidFile f(tmpl);
    // Just written: its times are too recent to vouch for the parse, so every use reads it.
    EXPECT_TRUE(f.overlap(100000, 1));
    EXPECT_TRUE(f.overlap(100000, 1));
    EXPECT_EQ(f.reads(), 2U);
    // The ctime cannot be set back; a file whose times are older is read once, then kept.
    age(tmpl, 60);
    ::sleep(2);  // after age(), which set the ctime to now
    EXPECT_TRUE(f.overlap(100000, 1));
    EXPECT_FALSE(f.overlap(524288, 65536));
    EXPECT_TRUE(f.overlap(165535, 1));
    EXPECT_EQ(f.reads(), 3U);
    // Any change of the file is seen at the next use.
    std::ofstream(tmpl) << "bob:524288:65536\n";
    EXPECT_EQ(f.overlap(524288, 65536), std::string(tmpl) + ":1");
    EXPECT_FALSE(f.overlap(100000, 1));
    ::unlink(tmpl);
    EXPECT_FALSE(f.overlap(524288, 65536)) << "a removed file claims nothing";
}

class FilesDatabasesTest : public ::testing::Test {
protected:
    void SetUp() override {
        write("nsswitch.conf", "passwd: files\ngroup: files\n");
        write("passwd", "root:x:0:0:root:/root:/bin/bash\n");
        write("group", "root:x:0:\n");
    }
    void TearDown() override { ::unsetenv("TRANSIENT_NSS_BYPASS"); }
    void write(const std::string& name, const std::string& text) {
        std::ofstream(dir_ + "/" + name) << text;
    }
    // A new FilesDatabases over the three files, whether it is usable.
    bool usable() {
        FilesDatabases f(dir_ + "/nsswitch.conf", dir_ + "/passwd", dir_ + "/group");
        return f.usable();
    }
    transient::testing::TempDir tmp_{"transient-files-test"};
    std::string dir_ = tmp_.path();
};

TEST_F(FilesDatabasesTest, IsUsableOnlyWhereTheFilesAreEverySource) {
    EXPECT_TRUE(usable());
    write("nsswitch.conf", "# comment\n  passwd:   files   # ours\nGroup: files\nhosts: dns\n");
    EXPECT_TRUE(usable());
    for (const char* conf : {"passwd: files systemd\ngroup: files\n",
                             "passwd: files\ngroup: files [NOTFOUND=return] ldap\n",
                             "passwd: compat\ngroup: files\n",
                             "passwd: files\n",  // group: glibc's default
                             "passwd: files\ngroup: files\ngroup: files\n",
                             "passwd: files\ngroup: files\ngroup_compat: nis\n"}) {
        write("nsswitch.conf", conf);
        EXPECT_FALSE(usable()) << conf;
    }
    // Our own module answers nothing only while it is bypassed.
    write("nsswitch.conf", "passwd: files transient\ngroup: files transient\n");
    EXPECT_FALSE(usable());
    ::setenv("TRANSIENT_NSS_BYPASS", "1", 1);
    EXPECT_TRUE(usable());
    // A file that is not there is glibc's to report.
    std::filesystem::remove(dir_ + "/group");
    EXPECT_FALSE(usable());
    write("group", "root:x:0:\n");
    // Lines glibc's files module might read otherwise than we would.
    for (const char* passwd : {"+@admins::::::\n", "-bob:x:1:1::/:/bin/sh\n", "alice:x:1\n",
                               "alice:x:0x10:1::/:/bin/sh\n", "alice:x:99999999999:1::/:\n"}) {
        write("passwd", std::string("root:x:0:0::/root:/bin/sh\n") + passwd);
        EXPECT_FALSE(usable()) << passwd;
    }
}

TEST_F(FilesDatabasesTest, AnswersAsTheFilesSayAndSeesAChange) {
    write("passwd", "# users\n\n  alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:70000:1::/:\n");
    write("group", "staff:x:50:alice\nvg-web-0:x:655360:\n");
    FilesDatabases f(dir_ + "/nsswitch.conf", dir_ + "/passwd", dir_ + "/group");
    ASSERT_TRUE(f.usable());
    EXPECT_TRUE(f.has_uid(1000));
    EXPECT_TRUE(f.has_uid(70000));
    EXPECT_FALSE(f.has_uid(50)) << "a GID is not a UID";
    EXPECT_TRUE(f.has_gid(50));
    EXPECT_TRUE(f.has_gid(655360));
    EXPECT_TRUE(f.has_user("alice"));
    EXPECT_FALSE(f.has_user("staff"));
    EXPECT_TRUE(f.has_group("vg-web-0"));
    write("passwd", "carol:x:524288:1::/:\n");
    ASSERT_TRUE(f.usable());
    EXPECT_TRUE(f.has_uid(524288)) << "a change is seen at the next use";
    EXPECT_FALSE(f.has_uid(1000));
    EXPECT_FALSE(f.has_user("alice"));
}

// In a forked process whose private mount namespace has the three files bind-mounted over
// /etc's (the host's are never touched): 0 if glibc and FilesDatabases agree on every key.
int compare_with_glibc(const std::string& dir) {
    if (::unshare(CLONE_NEWNS) < 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
        return 1;
    for (const char* f : {"nsswitch.conf", "passwd", "group"})
        if (::mount((dir + "/" + f).c_str(), (std::string("/etc/") + f).c_str(), nullptr,
                    MS_BIND, nullptr) < 0)
            return 2;
    FilesDatabases files("/etc/nsswitch.conf", "/etc/passwd", "/etc/group");
    if (!files.usable())
        return 3;
    int step = 10;
    for (const std::uint32_t id : {0U, 1000U, 1001U, 50U, 65534U, 524288U, 655360U, 655361U}) {
        if ((::getpwuid(id) != nullptr) != files.has_uid(id))
            return step;
        if ((::getgrgid(id) != nullptr) != files.has_gid(id))
            return step + 1;
        step += 2;
    }
    for (const char* name : {"root", "alice", "  alice", "staff", "vg-web-0", "bob", "nobody"}) {
        if ((::getpwnam(name) != nullptr) != files.has_user(name))
            return step;
        if ((::getgrnam(name) != nullptr) != files.has_group(name))
            return step + 1;
        step += 2;
    }
    return 0;
}

TEST_F(FilesDatabasesTest, AgreesWithGlibcsFilesModule) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root for a private mount namespace";
    write("passwd", "root:x:0:0::/root:/bin/sh\n# alice:x:1001:1::/:\n\n"
                    "  alice:x:1000:1000::/home/alice:/bin/sh\nnobody:x:65534:65534::/:\n"
                    "bob:x:524288:1:::\n");
    write("group", "root:x:0:\nstaff:x:50:alice,bob\n\tvg-web-0:x:655360:\n");
    // 10 and up: the key where they disagreed (see compare_with_glibc()).
    EXPECT_EQ(in_other_process([&] { return compare_with_glibc(dir_); }), 0);
}

}  // namespace
}  // namespace transient::allocator
