// SPDX-License-Identifier: LGPL-2.1-or-later
//
// ScanProbe: the liveness fallback for kernels whose nsfs has no file handles. It collects every
// user namespace that something visible in /proc keeps alive, and everything those keep alive
// in turn (their ancestors): see userns.hpp for what it can and cannot see.

#include <dirent.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>

#include "allocator/userns.hpp"

namespace transient::allocator {
namespace {

// Every namespace link of a task: a namespace of any type keeps its owning user namespace
// alive, so all of them lead to user namespaces.
constexpr const char* kNamespaceLinks[] = {
        "user", "mnt", "net", "uts", "ipc", "pid", "pid_for_children", "cgroup", "time",
        "time_for_children",
};

bool is_number(const char* s) {
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

// The names of the numeric entries of directory `path` under `dir_fd`; `*err` gets the errno
// of a failed open.
std::vector<std::string> numeric_entries(int dir_fd, const std::string& path, int* err = nullptr) {
    std::vector<std::string> out;
    const int fd = ::openat(dir_fd, path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (err != nullptr)
            *err = errno;
        return out;
    }
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
        ::close(fd);
        return out;
    }
    while (const dirent* de = ::readdir(d))
        if (is_number(de->d_name))
            out.emplace_back(de->d_name);
    ::closedir(d);
    return out;
}

// The inode in a namespace link text such as "user:[4026531837]", or 0.
std::uint64_t link_inode(std::string_view text) {
    const auto open = text.find(":[");
    if (open == std::string_view::npos || text.empty() || text.back() != ']')
        return 0;
    std::uint64_t ino = 0;
    const char* first = text.data() + open + 2;
    const char* last = text.data() + text.size() - 1;
    auto [end, ec] = std::from_chars(first, last, ino);
    return ec == std::errc{} && end == last ? ino : 0;
}

bool is_octal(char c) { return c >= '0' && c <= '7'; }

// Undoes mountinfo's octal escapes (\040 for a space, and so on).
std::string unescape_mountinfo(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); i++) {
        if (s[i] == '\\' && i + 3 < s.size() && is_octal(s[i + 1]) && is_octal(s[i + 2]) &&
            is_octal(s[i + 3])) {
            out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                                            (s[i + 3] - '0')));
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// Opens the namespace file `path` (under `dir_fd`) only if it is nsfs inode `ino` of device
// `dev`. Paths under /proc/PID/root and fd links of other processes can be swapped for a FIFO
// (which would block open()) or a device: the O_PATH open touches nothing, and the namespace is
// reopened through that very descriptor only once it proved to be the nsfs inode.
shm::UniqueFd open_namespace(int dir_fd, const std::string& path, dev_t dev, std::uint64_t ino,
                             int* err) {
    shm::UniqueFd p(::openat(dir_fd, path.c_str(), O_PATH | O_CLOEXEC));
    if (!p)
        *err = errno;
    struct stat st {};
    if (!p || ::fstat(p.get(), &st) < 0 || st.st_dev != dev || (ino != 0 && st.st_ino != ino) ||
        !S_ISREG(st.st_mode))
        return {};
    const std::string self = "/proc/self/fd/" + std::to_string(p.get());
    return shm::UniqueFd(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
}

}  // namespace

// A process or thread that exits while we look is not a failure; being kept out is.
void ScanProbe::note_failure(int err, const std::string& what) {
    if ((err == EACCES || err == EPERM) && problem_.empty())
        problem_ = "cannot look at " + proc_ + "/" + what + ": " + std::strerror(err);
}

bool ScanProbe::begin_sweep() {
    live_.clear();
    seen_.clear();
    seen_mnt_.clear();
    problem_.clear();
    shm::UniqueFd proc(::open(proc_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat self {};
    if (!proc || ::fstatat(proc.get(), "self/ns/user", &self, 0) < 0)
        return false;
    nsfs_dev_ = self.st_dev;
    const auto pids = numeric_entries(proc.get(), ".");
    if (pids.empty())
        return false;  // a /proc without processes is not a /proc we can judge by
    for (const std::string& pid : pids)
        scan_process(proc.get(), pid);
    return true;
}

Liveness ScanProbe::check(const shm::RangeEntry& e) {
    if (auto it = live_.find(e.userns_ino); it != live_.end())
        for (const UsernsIdentity& ns : it->second)
            if (same_namespace(e, ns))
                return Liveness::kAlive;
    // Not seen: gone, unless the sweep was kept out of something where it might be.
    return problem_.empty() ? Liveness::kDead : Liveness::kUnknown;
}

void ScanProbe::scan_process(int proc_fd, const std::string& pid) {
    // A process that exits meanwhile just yields nothing; its namespaces, if they live on, are
    // held by something else that this sweep sees.
    scan_tasks(proc_fd, pid);
    scan_fds(proc_fd, pid);
    scan_mounts(proc_fd, pid);
}

void ScanProbe::scan_tasks(int proc_fd, const std::string& pid) {
    // Threads may have namespaces of their own (unshare(CLONE_NEWNET) in one thread).
    for (const std::string& tid : numeric_entries(proc_fd, pid + "/task")) {
        for (const char* link : kNamespaceLinks) {
            const std::string path = pid + "/task/" + tid + "/ns/" + link;
            struct stat st {};
            if (::fstatat(proc_fd, path.c_str(), &st, 0) < 0) {
                // ENOENT: a namespace type this kernel does not have, or the task is gone.
                note_failure(errno, path);
                continue;
            }
            if (seen_.count(st.st_ino))
                continue;
            int err = 0;
            add_namespace(open_namespace(proc_fd, path, nsfs_dev_, st.st_ino, &err));
            note_failure(err, path);
        }
    }
}

void ScanProbe::scan_fds(int proc_fd, const std::string& pid) {
    const std::string dir = pid + "/fd/";
    int err = 0;
    const auto fds = numeric_entries(proc_fd, pid + "/fd", &err);
    note_failure(err, pid + "/fd");
    for (const std::string& n : fds) {
        char target[64];
        const ssize_t len = ::readlinkat(proc_fd, (dir + n).c_str(), target, sizeof target);
        if (len <= 0 || len == static_cast<ssize_t>(sizeof target))
            continue;
        const std::uint64_t ino = link_inode(std::string_view(target, static_cast<size_t>(len)));
        if (ino == 0 || seen_.count(ino))
            continue;
        int open_err = 0;
        add_namespace(open_namespace(proc_fd, dir + n, nsfs_dev_, ino, &open_err));
        note_failure(open_err, dir + n);
    }
}

void ScanProbe::scan_mounts(int proc_fd, const std::string& pid) {
    struct stat mnt {};
    if (::fstatat(proc_fd, (pid + "/ns/mnt").c_str(), &mnt, 0) < 0 ||
        !seen_mnt_.insert(mnt.st_ino).second)
        return;  // every process of a mount namespace sees the same mounts
    const std::string mountinfo = pid + "/mountinfo";
    shm::UniqueFd fd(::openat(proc_fd, mountinfo.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return note_failure(errno, mountinfo);
    std::string text;
    char buf[65536];
    for (ssize_t n; (n = ::read(fd.get(), buf, sizeof buf)) > 0;)
        text.append(buf, static_cast<std::size_t>(n));
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        const auto sep = line.find(" - ");
        if (sep == std::string::npos || line.compare(sep + 3, 5, "nsfs ") != 0)
            continue;
        std::istringstream fields(line.substr(0, sep));
        std::string id, parent, devno, root, mountpoint;
        fields >> id >> parent >> devno >> root >> mountpoint;
        const std::uint64_t ino = link_inode(root);
        if (ino == 0 || seen_.count(ino))
            continue;
        // Through the process's root: the mount point is a path in its mount namespace.
        const std::string path = pid + "/root" + unescape_mountinfo(mountpoint);
        int err = 0;
        add_namespace(open_namespace(proc_fd, path, nsfs_dev_, ino, &err));
        note_failure(err, path);
    }
}

void ScanProbe::add_namespace(shm::UniqueFd fd) {
    if (!fd)
        return;
    const int type = ::ioctl(fd.get(), NS_GET_NSTYPE);
    if (type == CLONE_NEWUSER)
        return add_user_namespace(std::move(fd));
    struct stat st {};
    if (type < 0 || ::fstat(fd.get(), &st) < 0 || !seen_.insert(st.st_ino).second)
        return;
    add_user_namespace(shm::UniqueFd(::ioctl(fd.get(), NS_GET_USERNS)));
}

void ScanProbe::add_user_namespace(shm::UniqueFd fd) {
    // A user namespace keeps its parent alive, and that one its own: walk up until a known one
    // or the top (EPERM: the parent is outside the allocator's namespace).
    while (fd) {
        auto ns = identify_userns(fd.get());
        if (!ns || !seen_.insert(ns->ino).second)
            return;
        live_[ns->ino].push_back(*ns);
        fd = shm::UniqueFd(::ioctl(fd.get(), NS_GET_PARENT));
    }
}

}  // namespace transient::allocator
