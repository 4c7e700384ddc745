// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Ranges bound to a user namespace: how a namespace is identified, how that identity is kept in
// a table entry, and how the allocator later tells whether the namespace still exists — without
// ever holding a reference to it, which would keep it alive.
//
// Identity. Inode numbers of nsfs are recycled as soon as a namespace is freed (the lowest free
// number is handed out next), so an inode alone can name a different namespace a moment later;
// systemd-nsresourced released and kept wrong ranges because of this (systemd PRs #42070,
// #42224). Kernels with NS_GET_ID give every namespace a 64-bit id that is never reused while
// the system runs; that id, with the inode as a cross-check, is the identity. Where the kernel
// has no ids, the entry records a fingerprint instead: the nsfs device and the namespace's
// owner UID (kEntryFlagUsernsNoId), compared together with the inode.
//
// Liveness, two probes:
//   - FileHandleProbe (kernels whose nsfs supports file handles, 6.18+): open_by_handle_at() of
//     {id, CLONE_NEWUSER, inode} either opens the namespace (alive; closed at once) or fails
//     with ESTALE (gone). Exact, one system call per binding — but only with CAP_SYS_ADMIN over
//     the namespace: without it the kernel answers ESTALE for a live namespace too (nsfs's EPERM
//     becomes ESTALE in exportfs), so this probe requires CAP_SYS_ADMIN, and each binding is
//     checked once while the caller's fd still pins the namespace (watchable()).
//   - ScanProbe (everywhere else): a namespace is alive while something reachable from /proc
//     refers to it: a task's namespaces, an open nsfs fd, an nsfs bind mount, or a namespace
//     that it owns or is an ancestor of. Each found user namespace is identified as above and
//     compared with the entry. A sweep that could not look at everything (no CAP_SYS_PTRACE, so
//     other users' /proc entries are closed to it) declares nothing gone. Limits: a namespace
//     kept alive only by something /proc does not show (a credential of an open file or of a
//     zombie, an fd in flight in a socket, a task outside our PID namespace) counts as gone; and
//     without kernel ids a namespace of the same owner that got the same inode between two
//     sweeps keeps the range until it is gone too (a range is then kept too long, never released
//     while its namespace is visibly alive).

#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "shm/writer.hpp"

namespace transient::allocator {

// How the daemon finds out that a bound user namespace is gone.
enum class ProbeMode { kAuto, kFileHandle, kScan };

// Readers ignore this flag; its bit is defined with the others in shm/layout.hpp.
using shm::kEntryFlagUsernsNoId;

struct UsernsIdentity {
    std::uint64_t id = 0;   // NS_GET_ID, or 0 where the kernel has none
    std::uint64_t ino = 0;  // nsfs inode number
    std::uint32_t dev = 0;  // nsfs device, encoded like the kernel's new_encode_dev()
    uid_t owner = 0;        // NS_GET_OWNER_UID, as seen from the allocator's namespace

    friend bool operator==(const UsernsIdentity&, const UsernsIdentity&) = default;
};

// Identifies the namespace `fd` refers to. Errors: ENOTTY (not a namespace), EMEDIUMTYPE (a
// namespace, but not a user namespace), or what fstat()/ioctl() said.
Result<UsernsIdentity> identify_userns(int fd);

// The identity of the allocator's own user namespace (a binding to it would never end).
Result<UsernsIdentity> own_userns();

// Records the binding in the entry: kEntryFlagUserns, the inode, and the id or fingerprint.
void bind_entry(shm::RangeEntry& e, const UsernsIdentity& ns);
bool is_bound(const shm::RangeEntry& e);

// Whether live namespace `ns` is the one entry `e` was bound to. Different inodes: no. Both
// with kernel ids: the ids decide. Entry with an id but `ns` without (cannot tell): yes, so
// that a binding is kept rather than released in doubt. Fingerprint entries: device and owner.
bool same_namespace(const shm::RangeEntry& e, const UsernsIdentity& ns);

enum class Liveness { kAlive, kDead, kUnknown };

class UsernsProbe {
public:
    virtual ~UsernsProbe() = default;
    virtual const char* name() const = 0;
    // Starts a sweep over all bindings (a scanning probe takes its snapshot here). false: this
    // sweep can tell nothing; check() then answers kUnknown.
    virtual bool begin_sweep() { return true; }
    // REQUIRES: is_bound(e).
    virtual Liveness check(const shm::RangeEntry& e) = 0;
    // Whether later checks of namespace `fd` (alive: the caller holds it) can be trusted.
    virtual bool watchable(int fd) const {
        (void)fd;
        return true;
    }
    // Why the last sweep could not judge everything, or empty.
    virtual std::string problem() const { return {}; }
    // A new probe of the same kind, for a sweep on another thread (begin_sweep() there, then
    // check() on the event loop), when a sweep takes too long for the loop; else null.
    virtual std::unique_ptr<UsernsProbe> for_worker_thread() const { return nullptr; }
    // A new probe of the same kind for the timer's sweep on another thread (begin_sweep() and
    // every check() there), where a sweep of every binding is too long for the event loop,
    // though one check is not; else null.
    virtual std::unique_ptr<UsernsProbe> for_timer_thread() const { return for_worker_thread(); }
};

class FileHandleProbe : public UsernsProbe {
public:
    // Fails with EOPNOTSUPP unless the kernel has NS_GET_ID and opens nsfs file handles built
    // from {id, type, inode} (checked on the allocator's own namespace), and with EPERM without
    // CAP_SYS_ADMIN or when a seccomp filter forbids open_by_handle_at().
    static Result<std::unique_ptr<FileHandleProbe>> create();

    const char* name() const override { return "file-handle"; }
    Liveness check(const shm::RangeEntry& e) override;
    bool watchable(int fd) const override;
    // One open_by_handle_at() per binding: 16,000 bindings keep a thread busy for tens of ms.
    std::unique_ptr<UsernsProbe> for_timer_thread() const override;

private:
    explicit FileHandleProbe(shm::UniqueFd mount_fd) : mount_fd_(std::move(mount_fd)) {}
    shm::UniqueFd mount_fd_;  // any nsfs file: open_by_handle_at() needs one of that mount
};

class ScanProbe : public UsernsProbe {
public:
    explicit ScanProbe(std::string proc = "/proc") : proc_(std::move(proc)) {}

    const char* name() const override { return "scan"; }
    bool begin_sweep() override;
    Liveness check(const shm::RangeEntry& e) override;
    std::string problem() const override { return problem_; }
    // A sweep walks all of /proc: tens of milliseconds and more on a busy system.
    std::unique_ptr<UsernsProbe> for_worker_thread() const override {
        return std::make_unique<ScanProbe>(proc_);
    }

    // The live user namespaces found by the last sweep, by inode. Exposed for tests.
    const std::unordered_map<std::uint64_t, std::vector<UsernsIdentity>>& live() const {
        return live_;
    }

private:
    void scan_process(int proc_fd, const std::string& pid);
    void scan_tasks(int proc_fd, const std::string& pid);
    void scan_fds(int proc_fd, const std::string& pid);
    void scan_mounts(int proc_fd, const std::string& pid);
    void add_namespace(shm::UniqueFd fd);
    void add_user_namespace(shm::UniqueFd fd);
    // Records that something could not be looked at; `err` is errno.
    void note_failure(int err, const std::string& what);

    std::string proc_;
    std::string problem_;  // set when this sweep missed something (EACCES, EPERM)
    dev_t nsfs_dev_ = 0;
    std::unordered_map<std::uint64_t, std::vector<UsernsIdentity>> live_;
    std::unordered_set<std::uint64_t> seen_;       // namespace inodes looked at this sweep
    std::unordered_set<std::uint64_t> seen_mnt_;   // mount namespaces whose mounts were read
};

// The probe for `mode`; kAuto picks FileHandleProbe where the kernel supports it, else scan.
Result<std::unique_ptr<UsernsProbe>> make_userns_probe(ProbeMode mode);

// Mapping (userns_map.cpp). A namespace bound to a range that has no uid_map yet gets one from
// the allocator, as systemd-nsresourced does: IDs 0…size−1 inside are the range outside. The
// kernel's rules (user_namespaces(7)): a map is written once, through /proc/PID/uid_map of a
// task inside the namespace, by a writer in the parent namespace with CAP_SETUID there
// (gid_map: CAP_SETGID; setgroups may then stay "allow"); mapping outside UID 0 would also need
// CAP_SETFCAP, which ranges never contain. The caller's processes are usually not inside, so a
// forked child enters the namespace (setns() needs a single-threaded process and CAP_SYS_ADMIN
// over the namespace, which root in its parent has), the daemon writes the child's maps, and
// the child is killed and reaped. So only a child of the allocator's own namespace can be
// mapped; a nested one must be mapped from its own parent.

// The line written to uid_map and to gid_map: "0 <start> <size>\n".
std::string id_map_line(std::uint32_t start, std::uint32_t size);

// Whether the text of a uid_map or gid_map file holds no mapping (it was never written).
bool id_map_unset(std::string_view text);

// Whether user namespace `fd`'s parent is the allocator's own user namespace.
Result<bool> is_child_of_own_userns(int fd);

// A short-lived child process inside a user namespace, so that the namespace has a
// /proc/PID/uid_map. Killed and reaped when this object goes; no zombie is left.
class UsernsVisitor {
public:
    // Forks and enters namespace `fd`. Errors: what setns() said (EPERM: no CAP_SYS_ADMIN over
    // it), ETIMEDOUT when the child did not report within `timeout` (it is killed), or what
    // pipe2()/fork()/poll() said.
    static Result<UsernsVisitor> enter(int fd, std::chrono::milliseconds timeout);

    UsernsVisitor(UsernsVisitor&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
    UsernsVisitor& operator=(UsernsVisitor&&) = delete;
    ~UsernsVisitor();

    pid_t pid() const { return pid_; }
    // "uid_map" or "gid_map": whether it is still unset.
    Result<bool> unset(const char* map) const;
    // Writes "0 start size" to "uid_map" or "gid_map", in one write() as the kernel requires.
    Result<void> write(const char* map, std::uint32_t start, std::uint32_t size) const;

private:
    explicit UsernsVisitor(pid_t pid) : pid_(pid) {}
    pid_t pid_;
};

// What map_userns() did. kRefused: nothing was written (the range can go again). kPartial:
// uid_map was written but gid_map could not be: the range's UIDs are in use inside the
// namespace, so it must stay bound to it (and go with it), never be handed out again sooner.
enum class MapState { kWritten, kWasMapped, kRefused, kPartial };

struct MapReport {
    MapState state;
    std::string message;  // why, for kRefused and kPartial
};

// Maps namespace `fd` to [start, start + size) if its uid_map is unset; a namespace whose
// uid_map is set (by its owner, or by someone racing with us) is left alone. gid_map is
// written only together with uid_map, and only if it is unset too.
MapReport map_userns(int fd, std::uint32_t start, std::uint32_t size,
                     std::chrono::milliseconds timeout);

}  // namespace transient::allocator
