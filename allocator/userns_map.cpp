// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Writing the uid_map and gid_map of a user namespace bound to a new range (userns.hpp).

#include <fcntl.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "allocator/userns.hpp"

namespace transient::allocator {
namespace {

std::string proc_path(pid_t pid, const char* map) {
    return "/proc/" + std::to_string(pid) + "/" + map;
}

// Reaps `pid`, retrying when a signal interrupts the wait.
void reap(pid_t pid) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
}

}  // namespace

std::string id_map_line(std::uint32_t start, std::uint32_t size) {
    return "0 " + std::to_string(start) + " " + std::to_string(size) + "\n";
}

bool id_map_unset(std::string_view text) {
    return text.find_first_not_of(" \t\n") == std::string_view::npos;
}

Result<bool> is_child_of_own_userns(int fd) {
    // EPERM: the parent is outside the allocator's namespace (fd is that namespace or above).
    shm::UniqueFd parent(::ioctl(fd, NS_GET_PARENT));
    if (!parent)
        return errno == EPERM ? Result<bool>(false) : errno_error(errno);
    auto ns = identify_userns(parent.get());
    if (!ns)
        return std::unexpected(ns.error());
    auto own = own_userns();
    if (!own)
        return std::unexpected(own.error());
    return *ns == *own;
}

Result<UsernsVisitor> UsernsVisitor::enter(int fd, std::chrono::milliseconds timeout) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0)
        return errno_error(errno);
    shm::UniqueFd rd(p[0]), wr(p[1]);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0)
        return errno_error(errno);
    if (pid == 0) {
        // The daemon has other threads: only async-signal-safe calls from here on, and no
        // destructors (_exit). The child dies with the daemon, and otherwise waits to be killed.
        (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
        int err = ::getppid() != parent ? ESRCH : 0;
        // CLONE_NEWUSER, not 0: RestrictNamespaces=user lets only that through.
        if (err == 0 && ::setns(fd, CLONE_NEWUSER) < 0)
            err = errno;
        (void)!::write(wr.get(), &err, sizeof err);
        if (err != 0)
            ::_exit(1);
        for (;;)
            ::pause();
    }
    UsernsVisitor visitor(pid);  // kills and reaps the child on every way out
    wr.reset();
    pollfd pfd{rd.get(), POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
        const int n = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
        if (n > 0)
            break;
        if (n == 0)
            return errno_error(ETIMEDOUT);
        if (errno != EINTR)
            return errno_error(errno);
    }
    int err = 0;
    const ssize_t got = ::read(rd.get(), &err, sizeof err);
    if (got != static_cast<ssize_t>(sizeof err))
        return errno_error(got < 0 ? errno : ECHILD);  // it died before it could say
    if (err != 0)
        return errno_error(err);
    return visitor;
}

UsernsVisitor::~UsernsVisitor() {
    if (pid_ <= 0)
        return;
    (void)::kill(pid_, SIGKILL);
    reap(pid_);
}

Result<bool> UsernsVisitor::unset(const char* map) const {
    shm::UniqueFd fd(::open(proc_path(pid_, map).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return errno_error(errno);
    char buf[64];
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0)
        return errno_error(errno);
    return id_map_unset(std::string_view(buf, static_cast<std::size_t>(n)));
}

Result<void> UsernsVisitor::write(const char* map, std::uint32_t start,
                                  std::uint32_t size) const {
    shm::UniqueFd fd(::open(proc_path(pid_, map).c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd)
        return errno_error(errno);
    const std::string line = id_map_line(start, size);
    const ssize_t n = ::write(fd.get(), line.data(), line.size());
    if (n < 0)
        return errno_error(errno);
    if (static_cast<std::size_t>(n) != line.size())
        return errno_error(EIO);
    return {};
}

MapReport map_userns(int fd, std::uint32_t start, std::uint32_t size,
                     std::chrono::milliseconds timeout) {
    auto refused = [](std::string why) { return MapReport{MapState::kRefused, std::move(why)}; };
    auto visitor = UsernsVisitor::enter(fd, timeout);
    if (!visitor)
        return refused("Cannot enter the user namespace to read its uid_map: " +
                       visitor.error().message());
    auto unset = visitor->unset("uid_map");
    if (!unset)
        return refused("Cannot read the user namespace's uid_map: " + unset.error().message());
    if (!*unset)
        return {MapState::kWasMapped, {}};
    auto child = is_child_of_own_userns(fd);
    if (!child)
        return refused("Cannot find the user namespace's parent: " + child.error().message());
    if (!*child)
        return refused("The user namespace has no uid_map and is nested: only its parent "
                       "namespace may write its maps, and that is not the allocator's; map it "
                       "from its parent, or pass the parent");
    if (auto w = visitor->write("uid_map", start, size); !w) {
        // Its owner may have written it meanwhile: then it is mapped, as above.
        if (auto again = visitor->unset("uid_map"); again && !*again)
            return {MapState::kWasMapped, {}};
        return refused("Cannot write the user namespace's uid_map: " + w.error().message());
    }
    auto gid_unset = visitor->unset("gid_map");
    if (gid_unset && !*gid_unset)
        return {MapState::kWritten, {}};
    if (gid_unset)
        if (auto w = visitor->write("gid_map", start, size); w)
            return {MapState::kWritten, {}};
    if (auto again = visitor->unset("gid_map"); again && !*again)
        return {MapState::kWritten, {}};
    return {MapState::kPartial, "Wrote the user namespace's uid_map, but not its gid_map"};
}

}  // namespace transient::allocator
