// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Identity and liveness of user namespaces, with real namespaces: processes that unshare()
// and are killed, namespaces kept alive by an fd, a bind mount or a child namespace, and an
// inode handed to a new namespace after the old one died. Both probes run every case. Mapping:
// the map line, and maps written into real namespaces with and without the capabilities.

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include "allocator/userns.hpp"
#include "tests/lib/temp_dir.hpp"

namespace transient::allocator {
namespace {

using namespace std::chrono_literals;

// A forked process that runs `setup` and then waits to be killed. `setup` returns a number to
// report back (a grandchild's PID, say) or -errno, after which the process exits at once. It
// dies with the process that forked it — or, where it must outlive that one, exits by itself
// once process `outlive_until_gone` is gone — so that no test leaves anything behind.
class Child {
public:
    explicit Child(const std::function<int()>& setup, pid_t outlive_until_gone = 0) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0)
            return;
        pid_ = ::fork();
        if (pid_ == 0) {
            if (outlive_until_gone == 0)
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            ::close(p[0]);
            const int v = setup();
            (void)!::write(p[1], &v, sizeof v);
            if (v < 0)
                ::_exit(1);
            while (outlive_until_gone == 0 || ::kill(outlive_until_gone, 0) == 0)
                ::usleep(50 * 1000);
            ::_exit(0);
        }
        ::close(p[1]);
        if (pid_ < 0 || ::read(p[0], &value_, sizeof value_) != sizeof value_)
            value_ = -EIO;
        ::close(p[0]);
    }
    ~Child() { kill(); }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    void kill() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    pid_t pid() const { return pid_; }
    int value() const { return value_; }
    std::string ns_path() const { return "/proc/" + std::to_string(pid_) + "/ns/user"; }

private:
    pid_t pid_ = -1;
    int value_ = -EIO;
};

int unshare_user() { return ::unshare(CLONE_NEWUSER) < 0 ? -errno : 0; }

Result<UsernsIdentity> identify_path(const std::string& path) {
    shm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return errno_error(errno);
    return identify_userns(fd.get());
}

shm::RangeEntry bound_to(const UsernsIdentity& ns) {
    shm::RangeEntry e{"web", 524288, 65536, 0, 0, 1, 0, 0};
    bind_entry(e, ns);
    return e;
}

// ---- identity and comparison --------------------------------------------------------------

TEST(UsernsIdentityTest, IdentifiesUserNamespacesAndRejectsOthers) {
    auto self = identify_path("/proc/self/ns/user");
    ASSERT_TRUE(self) << self.error().message();
    struct stat st {};
    ASSERT_EQ(::stat("/proc/self/ns/user", &st), 0);
    EXPECT_EQ(self->ino, st.st_ino);
    EXPECT_EQ(self->owner, 0U);
    auto net = identify_path("/proc/self/ns/net");
    ASSERT_FALSE(net);
    EXPECT_EQ(net.error().value(), EMEDIUMTYPE);
    auto file = identify_path("/proc/self/status");
    ASSERT_FALSE(file);
    EXPECT_EQ(file.error().value(), ENOTTY);
}

TEST(UsernsIdentityTest, ComparesKernelIdsNotJustInodes) {
    const UsernsIdentity ns{5, 4026532000, 4, 0};
    const shm::RangeEntry e = bound_to(ns);
    EXPECT_TRUE(same_namespace(e, ns));
    EXPECT_FALSE(same_namespace(e, {6, 4026532000, 4, 0})) << "reused inode, new namespace";
    EXPECT_FALSE(same_namespace(e, {5, 4026532001, 4, 0}));
    EXPECT_TRUE(same_namespace(e, {0, 4026532000, 4, 0})) << "cannot tell: keep";
}

TEST(UsernsIdentityTest, ComparesTheFingerprintWhereTheKernelHasNoIds) {
    const UsernsIdentity ns{0, 4026532000, 4, 1000};
    const shm::RangeEntry e = bound_to(ns);
    EXPECT_NE(e.flags & kEntryFlagUsernsNoId, 0U);
    EXPECT_TRUE(same_namespace(e, ns));
    EXPECT_TRUE(same_namespace(e, {77, 4026532000, 4, 1000})) << "ids unknown at binding time";
    EXPECT_FALSE(same_namespace(e, {0, 4026532000, 4, 1001})) << "reused by another owner";
    EXPECT_FALSE(same_namespace(e, {0, 4026532000, 5, 1000}));
    EXPECT_FALSE(same_namespace(e, {0, 4026532001, 4, 1000}));
}

// ---- liveness, real namespaces, both probes -------------------------------------------------

// What a full scan of /proc cannot look at here, or empty. Some environments hide processes
// even from root (a supervisor's PID 1); a scan that is kept out declares nothing gone, so the
// scan's cases then run only in the private PID namespace of the ctest entry
// allocator.scan_in_private_pid_namespace (tests/allocator/CMakeLists.txt).
std::string scan_blind_spot() {
    ScanProbe p;
    if (!p.begin_sweep())
        return "no /proc";
    return p.problem();
}

class UsernsProbeTest : public ::testing::TestWithParam<ProbeMode> {
protected:
    void SetUp() override {
        if (::geteuid() != 0)
            GTEST_SKIP() << "needs root";
        auto p = make_userns_probe(GetParam());
        if (!p)
            GTEST_SKIP() << "probe not supported here: " << p.error().message();
        if (GetParam() == ProbeMode::kScan)
            if (auto blind = scan_blind_spot(); !blind.empty())
                GTEST_SKIP() << "root cannot see all of /proc here (" << blind
                             << "); covered by allocator.scan_in_private_pid_namespace";
        probe_ = std::move(*p);
    }

    Liveness check(const shm::RangeEntry& e) {
        if (!probe_->begin_sweep())
            return Liveness::kUnknown;
        return probe_->check(e);
    }
    // Polls until `e` is reported kDead; returns how long that took, or nothing after 5 s.
    std::optional<std::chrono::milliseconds> time_to_death(const shm::RangeEntry& e) {
        const auto t0 = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - t0 < 5s) {
            if (check(e) == Liveness::kDead)
                return std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0);
            std::this_thread::sleep_for(10ms);
        }
        return std::nullopt;
    }
    // Checks that `e` stays alive for a while (death is asynchronous, so one look is not enough).
    void expect_stays_alive(const shm::RangeEntry& e, const char* why) {
        for (int i = 0; i < 10; i++) {
            ASSERT_EQ(check(e), Liveness::kAlive) << why << " (look " << i << ")";
            std::this_thread::sleep_for(30ms);
        }
    }

    std::unique_ptr<UsernsProbe> probe_;
    transient::testing::TempDir tmp_{"transient-userns-test"};
    std::string dir_ = tmp_.path();
};

TEST_P(UsernsProbeTest, ReportsAKilledNamespaceGone) {
    Child c(unshare_user);
    ASSERT_EQ(c.value(), 0);
    auto ns = identify_path(c.ns_path());
    ASSERT_TRUE(ns);
    const shm::RangeEntry e = bound_to(*ns);
    EXPECT_EQ(check(e), Liveness::kAlive);
    c.kill();
    auto t = time_to_death(e);
    ASSERT_TRUE(t) << probe_->name() << ": still alive 5 s after its only process died";
    std::printf("[ %s ] namespace reported gone %lld ms after its process was reaped\n",
                probe_->name(), static_cast<long long>(t->count()));
}

TEST_P(UsernsProbeTest, KeepsANamespaceHeldByAnOpenFd) {
    Child c(unshare_user);
    ASSERT_EQ(c.value(), 0);
    shm::UniqueFd held(::open(c.ns_path().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(held);
    auto ns = identify_userns(held.get());
    ASSERT_TRUE(ns);
    const shm::RangeEntry e = bound_to(*ns);
    c.kill();
    expect_stays_alive(e, "held by an fd of this process");
    held.reset();
    EXPECT_TRUE(time_to_death(e)) << "the fd was the last reference";
}

TEST_P(UsernsProbeTest, KeepsANamespaceHeldByABindMountInAnotherMountNamespace) {
    Child c(unshare_user);
    ASSERT_EQ(c.value(), 0);
    auto ns = identify_path(c.ns_path());
    ASSERT_TRUE(ns);
    const std::string target = dir_ + "/userns";
    std::ofstream(target).put('\n');
    const std::string source = c.ns_path();
    // The mount lives in the holder's private mount namespace only: nothing leaks to the host.
    Child holder([&] {
        if (::unshare(CLONE_NEWNS) < 0 ||
            ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
            ::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) < 0)
            return -errno;
        return 0;
    });
    ASSERT_EQ(holder.value(), 0) << std::strerror(-holder.value());
    const shm::RangeEntry e = bound_to(*ns);
    c.kill();
    expect_stays_alive(e, "held by a bind mount");
    holder.kill();
    EXPECT_TRUE(time_to_death(e)) << "the mount namespace with the bind mount is gone";
}

// Maps root of the parent namespace to root of the caller's new one, which a process may do
// for itself; a nested namespace can only be created by a mapped user.
int map_self_as_root() {
    for (const auto& [file, text] : {std::pair{"/proc/self/setgroups", "deny"},
                                     std::pair{"/proc/self/uid_map", "0 0 1"},
                                     std::pair{"/proc/self/gid_map", "0 0 1"}}) {
        const int fd = ::open(file, O_WRONLY | O_CLOEXEC);
        const bool ok = fd >= 0 && ::write(fd, text, std::strlen(text)) > 0;
        const int e = errno;
        if (fd >= 0)
            ::close(fd);
        if (!ok)
            return -e;
    }
    return 0;
}

// A Child setup: a new, mapped user namespace with a process in a nested, unmapped one, whose
// PID it returns. That grandchild outlives the Child, but not process `test`.
std::function<int()> make_nested_namespace(pid_t test) {
    return [test] {
        if (::unshare(CLONE_NEWUSER) < 0)
            return -errno;
        if (int r = map_self_as_root(); r < 0)
            return r;
        // Never destroyed: this process is killed.
        Child* nested = new Child(unshare_user, test);
        return nested->value() == 0 ? static_cast<int>(nested->pid()) : nested->value();
    };
}

TEST_P(UsernsProbeTest, KeepsANamespaceWhoseChildNamespaceLives) {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);  // so that we can reap the grandchild
    Child parent(make_nested_namespace(::getpid()));
    const pid_t grandchild = parent.value();
    struct Reap {
        pid_t pid;
        ~Reap() {
            if (pid > 0) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, nullptr, 0);
            }
            ::prctl(PR_SET_CHILD_SUBREAPER, 0);
        }
    } reap{grandchild};
    ASSERT_GT(grandchild, 0) << std::strerror(-grandchild);
    auto ns = identify_path(parent.ns_path());
    ASSERT_TRUE(ns);
    const shm::RangeEntry e = bound_to(*ns);
    parent.kill();
    expect_stays_alive(e, "the parent of a live namespace");
    ::kill(grandchild, SIGKILL);
    ::waitpid(grandchild, nullptr, 0);
    reap.pid = -1;
    EXPECT_TRUE(time_to_death(e));
}

// The kernel hands out the lowest free inode number, so a namespace created right after one
// died usually gets its inode. Returns the child that got `ino`, or null.
std::unique_ptr<Child> namespace_with_inode(std::uint64_t ino,
                                            const std::function<int()>& setup) {
    for (int attempt = 0; attempt < 200; attempt++) {
        auto c = std::make_unique<Child>(setup);
        auto ns = identify_path(c->ns_path());
        if (ns && ns->ino == ino)
            return c;
        c.reset();
        std::this_thread::sleep_for(5ms);
    }
    return nullptr;
}

TEST_P(UsernsProbeTest, NeverConfusesANamespaceWithTheOneThatGotItsInode) {
    Child old(unshare_user);
    auto old_ns = identify_path(old.ns_path());
    ASSERT_TRUE(old_ns);
    const shm::RangeEntry old_entry = bound_to(*old_ns);
    old.kill();
    ASSERT_TRUE(time_to_death(old_entry));
    auto reuser = namespace_with_inode(old_ns->ino, unshare_user);
    if (!reuser)
        GTEST_SKIP() << "could not provoke reuse of inode " << old_ns->ino;
    auto new_ns = identify_path(reuser->ns_path());
    ASSERT_TRUE(new_ns);
    const shm::RangeEntry new_entry = bound_to(*new_ns);
    if (old_ns->id == 0)
        GTEST_SKIP() << "no namespace ids: same owner and inode are indistinguishable";
    EXPECT_NE(old_ns->id, new_ns->id);
    EXPECT_EQ(check(old_entry), Liveness::kDead) << "inode " << old_ns->ino << " was reused";
    EXPECT_EQ(check(new_entry), Liveness::kAlive);
    reuser->kill();
    EXPECT_TRUE(time_to_death(new_entry));
}

TEST_P(UsernsProbeTest, FingerprintTellsAReusedInodeOfAnotherOwner) {
    if (GetParam() != ProbeMode::kScan)
        GTEST_SKIP() << "fingerprints are the scan probe's fallback";
    Child old(unshare_user);
    auto old_ns = identify_path(old.ns_path());
    ASSERT_TRUE(old_ns);
    UsernsIdentity no_id = *old_ns;
    no_id.id = 0;  // as on a kernel without NS_GET_ID
    const shm::RangeEntry old_entry = bound_to(no_id);
    old.kill();
    ASSERT_TRUE(time_to_death(old_entry));
    auto reuser = namespace_with_inode(old_ns->ino, [] {
        if (::setresgid(1000, 1000, 1000) < 0 || ::setresuid(1000, 1000, 1000) < 0)
            return -errno;
        return unshare_user();
    });
    if (!reuser)
        GTEST_SKIP() << "could not provoke reuse of inode " << old_ns->ino;
    EXPECT_EQ(check(old_entry), Liveness::kDead)
            << "same inode, but owned by UID 1000, not by root";
}

// ---- without privileges ------------------------------------------------------------------

// Runs `fn` in a forked process whose effective capabilities are `keep` only (a bit mask of
// CAP_* numbers < 32) and returns its exit status.
int with_capabilities(std::uint32_t keep, const std::function<int()>& fn) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
        if (::syscall(SYS_capget, &hdr, data) < 0)
            ::_exit(100);
        data[0].effective &= keep;
        data[1].effective = 0;
        if (::syscall(SYS_capset, &hdr, data) < 0)
            ::_exit(101);
        ::_exit(fn());
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

TEST(UsernsPrivilegeTest, FileHandleProbeNeedsCapSysAdmin) {
    if (::geteuid() != 0 || !FileHandleProbe::create())
        GTEST_SKIP() << "needs root and nsfs file handles";
    // Without CAP_SYS_ADMIN the kernel says ESTALE for live namespaces of other owners too.
    EXPECT_EQ(with_capabilities(0, [] {
                  auto p = FileHandleProbe::create();
                  return !p && p.error().value() == EPERM ? 0 : 1;
              }),
              0);
    EXPECT_EQ(with_capabilities(1U << CAP_SYS_ADMIN, [] { return FileHandleProbe::create() ? 0 : 1; }),
              0);
}

TEST(UsernsPrivilegeTest, ScanThatIsKeptOutDeclaresNothingGone) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root";
    if (auto blind = scan_blind_spot(); !blind.empty())
        GTEST_SKIP() << "root cannot see all of /proc here (" << blind
                     << "); covered by allocator.scan_in_private_pid_namespace";
    // A namespace of UID 1000, whose /proc entries root without CAP_SYS_PTRACE cannot open.
    Child c([] {
        if (::setresgid(1000, 1000, 1000) < 0 || ::setresuid(1000, 1000, 1000) < 0)
            return -errno;
        return unshare_user();
    });
    ASSERT_EQ(c.value(), 0);
    auto ns = identify_path(c.ns_path());
    ASSERT_TRUE(ns);
    const shm::RangeEntry e = bound_to(*ns);
    EXPECT_EQ(with_capabilities(0, [&] {
                  ScanProbe p;
                  if (!p.begin_sweep())
                      return 2;
                  if (p.problem().empty())
                      return 3;  // it should know it was kept out
                  return p.check(e) == Liveness::kUnknown ? 0 : 4;
              }),
              0);
    EXPECT_EQ(with_capabilities(1U << CAP_SYS_PTRACE, [&] {
                  ScanProbe p;
                  return p.begin_sweep() && p.problem().empty() && p.check(e) == Liveness::kAlive
                                 ? 0
                                 : 1;
              }),
              0) << "CAP_SYS_PTRACE is all the scan needs";
}

TEST(UsernsPrivilegeTest, FileHandleProbeWatchesWhatItCanOpen) {
    auto p = FileHandleProbe::create();
    if (!p)
        GTEST_SKIP() << "no file-handle probe here";
    Child c(unshare_user);
    shm::UniqueFd fd(::open(c.ns_path().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    EXPECT_TRUE((*p)->watchable(fd.get()));
    shm::UniqueFd net(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    EXPECT_FALSE((*p)->watchable(net.get()));
}

// ---- mapping a namespace ------------------------------------------------------------------

TEST(UsernsMapTest, FormatsTheMapLine) {
    EXPECT_EQ(id_map_line(524288, 65536), "0 524288 65536\n");
    EXPECT_EQ(id_map_line(61184, 1), "0 61184 1\n");
    EXPECT_EQ(id_map_line(0x7FFE0000, 8388608), "0 2147352576 8388608\n");
}

TEST(UsernsMapTest, TellsAnUnsetMapFromAWrittenOne) {
    EXPECT_TRUE(id_map_unset(""));
    EXPECT_TRUE(id_map_unset("\n"));
    EXPECT_FALSE(id_map_unset("         0     524288      65536\n"));
    EXPECT_FALSE(id_map_unset("0 0 4294967295"));
}

// The map of process `pid` as "inside outside count", blanks squeezed; "" when unset.
std::string read_map(pid_t pid, const char* map) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + map);
    std::uint64_t a = 0, b = 0, c = 0;
    if (!(in >> a >> b >> c))
        return "";
    return std::to_string(a) + " " + std::to_string(b) + " " + std::to_string(c);
}

shm::UniqueFd open_ns(const Child& c) {
    return shm::UniqueFd(::open(c.ns_path().c_str(), O_RDONLY | O_CLOEXEC));
}

TEST(UsernsMapTest, MapsAnUnmappedNamespaceOnceAndLeavesAMappedOneAlone) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root";
    Child c(unshare_user);
    ASSERT_EQ(c.value(), 0);
    shm::UniqueFd fd = open_ns(c);
    ASSERT_TRUE(fd);
    EXPECT_EQ(is_child_of_own_userns(fd.get()), Result<bool>(true));
    EXPECT_EQ(read_map(c.pid(), "uid_map"), "");
    MapReport m = map_userns(fd.get(), 524288, 65536, 5s);
    EXPECT_EQ(m.state, MapState::kWritten) << m.message;
    EXPECT_EQ(read_map(c.pid(), "uid_map"), "0 524288 65536");
    EXPECT_EQ(read_map(c.pid(), "gid_map"), "0 524288 65536");
    m = map_userns(fd.get(), 589824, 65536, 5s);
    EXPECT_EQ(m.state, MapState::kWasMapped) << m.message;
    EXPECT_EQ(read_map(c.pid(), "uid_map"), "0 524288 65536");

    Child self_mapped([] {
        const int r = unshare_user();
        return r < 0 ? r : map_self_as_root();
    });
    ASSERT_EQ(self_mapped.value(), 0);
    fd = open_ns(self_mapped);
    EXPECT_EQ(map_userns(fd.get(), 524288, 65536, 5s).state, MapState::kWasMapped);
    EXPECT_EQ(read_map(self_mapped.pid(), "uid_map"), "0 0 1");
}

// The packaged unit's capabilities are enough, and fewer are not (nothing is written then).
// The namespace is UID 1000's: in one that root owns, root has every capability anyway.
TEST(UsernsMapTest, NeedsCapSetuidAndCapSetgidBesidesCapSysAdmin) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root";
    Child c([] {
        if (::setresgid(1000, 1000, 1000) < 0 || ::setresuid(1000, 1000, 1000) < 0)
            return -errno;
        return unshare_user();
    });
    ASSERT_EQ(c.value(), 0);
    shm::UniqueFd fd = open_ns(c);
    ASSERT_TRUE(fd);
    auto map_with = [&](std::uint32_t caps) {
        return with_capabilities(caps, [&] {
            return static_cast<int>(map_userns(fd.get(), 524288, 65536, 5s).state);
        });
    };
    EXPECT_EQ(map_with(1U << CAP_SYS_ADMIN), static_cast<int>(MapState::kRefused));
    EXPECT_EQ(read_map(c.pid(), "uid_map"), "");
    EXPECT_EQ(map_with(1U << CAP_SETUID | 1U << CAP_SETGID), static_cast<int>(MapState::kRefused))
            << "setns() needs CAP_SYS_ADMIN over the namespace";
    EXPECT_EQ(map_with(1U << CAP_SYS_ADMIN | 1U << CAP_SETUID | 1U << CAP_SETGID),
              static_cast<int>(MapState::kWritten));
    EXPECT_EQ(read_map(c.pid(), "uid_map"), "0 524288 65536");
    EXPECT_EQ(read_map(c.pid(), "gid_map"), "0 524288 65536");
}

TEST(UsernsMapTest, RefusesANestedNamespace) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root";
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);  // so that we can reap the grandchild
    Child parent(make_nested_namespace(::getpid()));
    const pid_t grandchild = parent.value();
    ASSERT_GT(grandchild, 0) << std::strerror(-grandchild);
    shm::UniqueFd fd(::open(("/proc/" + std::to_string(grandchild) + "/ns/user").c_str(),
                            O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    EXPECT_EQ(is_child_of_own_userns(fd.get()), Result<bool>(false));
    const MapReport m = map_userns(fd.get(), 524288, 65536, 5s);
    EXPECT_EQ(m.state, MapState::kRefused);
    EXPECT_NE(m.message.find("nested"), std::string::npos) << m.message;
    EXPECT_EQ(read_map(grandchild, "uid_map"), "");
    ::kill(grandchild, SIGKILL);
    ::waitpid(grandchild, nullptr, 0);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);

    shm::UniqueFd own(::open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(is_child_of_own_userns(own.get()), Result<bool>(false));
}

TEST(UsernsMapTest, TheVisitorIsReapedAndReportsWhyItCannotEnter) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root";
    Child c(unshare_user);
    shm::UniqueFd fd = open_ns(c);
    ASSERT_TRUE(fd);
    pid_t pid = 0;
    {
        auto v = UsernsVisitor::enter(fd.get(), 5s);
        ASSERT_TRUE(v) << v.error().message();
        pid = v->pid();
        EXPECT_EQ(identify_path("/proc/" + std::to_string(pid) + "/ns/user"),
                  identify_path(c.ns_path()));
    }
    EXPECT_EQ(::kill(pid, 0), -1);
    EXPECT_EQ(errno, ESRCH) << "killed and reaped, no zombie";
    shm::UniqueFd net(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    auto v = UsernsVisitor::enter(net.get(), 5s);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().value(), EINVAL);
}

INSTANTIATE_TEST_SUITE_P(Probes, UsernsProbeTest,
                         ::testing::Values(ProbeMode::kFileHandle, ProbeMode::kScan),
                         [](const auto& param_info) {
                             return param_info.param == ProbeMode::kScan ? "Scan" : "FileHandle";
                         });

}  // namespace
}  // namespace transient::allocator
