// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/userns.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>

namespace transient::allocator {
namespace {

// Linux 6.18 uapi, absent from older headers.
#ifndef NS_GET_ID
#define NS_GET_ID _IOR(NSIO, 13, __u64)
#endif
constexpr int kFileIdNsfs = 0xf1;  // FILEID_NSFS

// struct nsfs_file_handle (include/uapi/linux/nsfs.h, 6.18).
struct NsfsHandle {
    std::uint64_t ns_id;
    std::uint32_t ns_type;
    std::uint32_t ns_inum;
};
static_assert(sizeof(NsfsHandle) == 16);

struct HandleBuffer {
    file_handle fh;
    unsigned char bytes[sizeof(NsfsHandle)];
};

HandleBuffer make_handle(std::uint64_t id, std::uint64_t ino) {
    HandleBuffer h{};
    h.fh.handle_bytes = sizeof(NsfsHandle);
    h.fh.handle_type = kFileIdNsfs;
    const NsfsHandle nh{id, static_cast<std::uint32_t>(CLONE_NEWUSER),
                        static_cast<std::uint32_t>(ino)};
    std::memcpy(h.fh.f_handle, &nh, sizeof nh);
    return h;
}

// The kernel's new_encode_dev(): a dev_t in 32 bits.
std::uint32_t encode_dev(dev_t d) {
    const unsigned ma = major(d), mi = minor(d);
    return (mi & 0xff) | (ma << 8) | ((mi & ~0xffU) << 12);
}

std::uint64_t fingerprint(const UsernsIdentity& ns) {
    return (std::uint64_t{ns.dev} << 32) | ns.owner;
}

// Whether open_by_handle_at() of a handle we build ourselves gets our own namespace back, and
// the kernel's own handle for it has the layout we build. Returns 0 or an errno: EOPNOTSUPP
// for a kernel without nsfs handles, EPERM from a seccomp filter that forbids the calls.
int handles_work(int self_fd, const UsernsIdentity& self) {
    HandleBuffer theirs{};
    theirs.fh.handle_bytes = sizeof theirs.bytes;
    int mount_id = 0;
    if (::name_to_handle_at(self_fd, "", &theirs.fh, &mount_id, AT_EMPTY_PATH) < 0)
        return errno == EPERM ? EPERM : EOPNOTSUPP;
    HandleBuffer ours = make_handle(self.id, self.ino);
    if (theirs.fh.handle_type != kFileIdNsfs || theirs.fh.handle_bytes != sizeof(NsfsHandle) ||
        std::memcmp(theirs.fh.f_handle, ours.fh.f_handle, sizeof(NsfsHandle)) != 0)
        return EOPNOTSUPP;
    shm::UniqueFd fd(::open_by_handle_at(self_fd, &ours.fh, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return errno == EPERM ? EPERM : EOPNOTSUPP;
    auto again = identify_userns(fd.get());
    return again && *again == self ? 0 : EOPNOTSUPP;
}

bool have_cap_sys_admin() {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &hdr, data) < 0)
        return false;
    return (data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)) != 0;
}

}  // namespace

Result<UsernsIdentity> identify_userns(int fd) {
    const int type = ::ioctl(fd, NS_GET_NSTYPE);
    if (type < 0)
        return errno_error(errno == EINVAL ? ENOTTY : errno);
    if (type != CLONE_NEWUSER)
        return errno_error(EMEDIUMTYPE);
    struct stat st {};
    if (::fstat(fd, &st) < 0)
        return errno_error(errno);
    UsernsIdentity ns;
    ns.ino = st.st_ino;
    ns.dev = encode_dev(st.st_dev);
    uid_t owner = 0;
    if (::ioctl(fd, NS_GET_OWNER_UID, &owner) < 0)
        return errno_error(errno);
    ns.owner = owner;
    // Kernels before 6.18 answer ENOTTY: no id, the fingerprint stands in for it.
    std::uint64_t id = 0;
    if (::ioctl(fd, NS_GET_ID, &id) == 0)
        ns.id = id;
    return ns;
}

Result<UsernsIdentity> own_userns() {
    shm::UniqueFd fd(::open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC));
    if (!fd)
        return errno_error(errno);
    return identify_userns(fd.get());
}

void bind_entry(shm::RangeEntry& e, const UsernsIdentity& ns) {
    e.flags |= shm::kEntryFlagUserns;
    e.userns_ino = ns.ino;
    if (ns.id != 0) {
        e.flags &= ~kEntryFlagUsernsNoId;
        e.userns_id = ns.id;
    } else {
        e.flags |= kEntryFlagUsernsNoId;
        e.userns_id = fingerprint(ns);
    }
}

bool is_bound(const shm::RangeEntry& e) { return (e.flags & shm::kEntryFlagUserns) != 0; }

bool same_namespace(const shm::RangeEntry& e, const UsernsIdentity& ns) {
    if (e.userns_ino != ns.ino)
        return false;
    if ((e.flags & kEntryFlagUsernsNoId) != 0)
        return e.userns_id == fingerprint(ns);
    if (ns.id == 0)
        return true;  // cannot tell: keep the binding rather than release a live range
    return e.userns_id == ns.id;
}

Result<std::unique_ptr<FileHandleProbe>> FileHandleProbe::create() {
    shm::UniqueFd self(::open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC));
    if (!self)
        return errno_error(errno);
    auto id = identify_userns(self.get());
    if (!id)
        return std::unexpected(id.error());
    if (id->id == 0)
        return errno_error(EOPNOTSUPP);
    if (int e = handles_work(self.get(), *id); e != 0)
        return errno_error(e);
    // Without it, live namespaces of other owners would look gone (see userns.hpp).
    if (!have_cap_sys_admin())
        return errno_error(EPERM);
    return std::unique_ptr<FileHandleProbe>(new FileHandleProbe(std::move(self)));
}

bool FileHandleProbe::watchable(int fd) const {
    // The caller's fd keeps the namespace alive, so anything but success means that later
    // answers about it would be wrong.
    auto ns = identify_userns(fd);
    if (!ns || ns->id == 0)
        return false;
    HandleBuffer h = make_handle(ns->id, ns->ino);
    shm::UniqueFd again(::open_by_handle_at(mount_fd_.get(), &h.fh, O_RDONLY | O_CLOEXEC));
    return static_cast<bool>(again);
}

std::unique_ptr<UsernsProbe> FileHandleProbe::for_timer_thread() const {
    shm::UniqueFd fd(::fcntl(mount_fd_.get(), F_DUPFD_CLOEXEC, 3));
    if (!fd)
        return nullptr;  // the loop's sweep then checks them (in steps)
    return std::unique_ptr<UsernsProbe>(new FileHandleProbe(std::move(fd)));
}

Liveness FileHandleProbe::check(const shm::RangeEntry& e) {
    // A fingerprint entry cannot be turned into a handle; it was made on a kernel without ids,
    // which this one is not. Keep it rather than guess.
    if ((e.flags & kEntryFlagUsernsNoId) != 0 || e.userns_id == 0)
        return Liveness::kUnknown;
    HandleBuffer h = make_handle(e.userns_id, e.userns_ino);
    // The namespace is referenced only for the instant between these two calls.
    shm::UniqueFd fd(::open_by_handle_at(mount_fd_.get(), &h.fh, O_RDONLY | O_CLOEXEC));
    if (fd)
        return Liveness::kAlive;
    // ESTALE is the kernel's "no namespace with this id and inode"; anything else (EMFILE,
    // ENOMEM, EPERM) says nothing about the namespace.
    return errno == ESTALE ? Liveness::kDead : Liveness::kUnknown;
}

Result<std::unique_ptr<UsernsProbe>> make_userns_probe(ProbeMode mode) {
    if (mode != ProbeMode::kScan) {
        auto fh = FileHandleProbe::create();
        if (fh)
            return std::unique_ptr<UsernsProbe>(std::move(*fh));
        if (mode == ProbeMode::kFileHandle)
            return std::unexpected(fh.error());
    }
    return std::unique_ptr<UsernsProbe>(std::make_unique<ScanProbe>());
}

}  // namespace transient::allocator
