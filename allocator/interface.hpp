// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The Varlink interface io.transient.Allocator, declared once as data: its name, types, methods
// with their parameters, and every error with its ErrorKind. The service builds its method
// table (parameter checking) and prints the IDL it serves from these tables (service.cpp,
// interface_description()), and transientctl and the tests name errors through them, so no
// second copy of a name or a signature is written by hand anywhere.
//
// Dependency-free (no nlohmann, no Varlink, no allocator types): transientctl includes it
// without linking the allocator.

#pragma once

#include <cstddef>
#include <iterator>
#include <optional>
#include <span>
#include <string_view>

namespace transient::allocator {

inline constexpr char kInterfaceName[] = "io.transient.Allocator";

// What went wrong, as the interface tells a caller: one declared error per kind (kErrors).
enum class ErrorKind {
    kNameInUse,
    kNoSuchRange,
    kInvalidName,
    kInvalidSize,
    kPoolExhausted,
    kPermissionDenied,
    kQuotaExceeded,
    kNotUserNamespace,
    kCannotWatchUserNamespace,
    // The namespace has no uid_map and the allocator cannot write it (a nested namespace).
    kCannotMapUserNamespace,
    // Another allocator holds a lock we must take to choose (/etc/.pwd.lock, nsresourced's
    // registry lock); try again later.
    kBusy,
    // The range comes from /etc/subuid or /etc/subgid: edit the file instead.
    kImportedRange,
    // The allocator's own failure; also what the Varlink server sends for a handler's failure.
    kInternal,
};

// The IDL types the interface uses; kRange is the interface's own type Range.
enum class FieldType { kString, kInt, kBool, kRange };

struct Field {
    std::string_view name;
    FieldType type;
    bool optional = false;  // "?type": may be absent or null
};

// `doc` is printed as "# " comment lines above the declaration, wrapped; '\n' ends a line.
struct TypeDecl {
    std::string_view name;
    std::string_view doc;
    std::span<const Field> fields;
};

struct MethodDecl {
    std::string_view name;  // bare, e.g. "AllocateRange"
    std::string_view doc;
    std::span<const Field> parameters;
    std::span<const Field> returns;
};

struct ErrorDecl {
    ErrorKind kind;
    std::string_view name;  // fully qualified, e.g. "io.transient.Allocator.NameInUse"
    std::string_view doc;
    std::span<const Field> parameters;
};

// AllocateRange's parameter naming the passed user namespace descriptor.
inline constexpr std::string_view kUsernsFdParam = "userNamespaceFileDescriptor";

namespace detail {

inline constexpr Field kRangeFields[] = {
    {"name", FieldType::kString},
    {"start", FieldType::kInt},
    {"size", FieldType::kInt},
    {"owner", FieldType::kInt},
    {"created", FieldType::kInt},
    {"userNamespaceInode", FieldType::kInt, true},
    {"userNamespaceId", FieldType::kInt, true},
    {"imported", FieldType::kBool, true},
    {"users", FieldType::kBool, true},
    {"groups", FieldType::kBool, true},
};
inline constexpr Field kAllocateRangeIn[] = {
    {"name", FieldType::kString},
    {"size", FieldType::kInt},
    {kUsernsFdParam, FieldType::kInt, true},
    {"owner", FieldType::kString, true},
};
inline constexpr Field kAllocateRangeOut[] = {
    {"name", FieldType::kString},
    {"start", FieldType::kInt},
    {"size", FieldType::kInt},
};
inline constexpr Field kReleaseRangeIn[] = {{"name", FieldType::kString}};
inline constexpr Field kGetRangeIn[] = {
    {"name", FieldType::kString, true},
    {"uid", FieldType::kInt, true},
};
inline constexpr Field kRangeOut[] = {{"range", FieldType::kRange}};
inline constexpr Field kNameParam[] = {{"name", FieldType::kString}};
inline constexpr Field kNameMessageParams[] = {
    {"name", FieldType::kString},
    {"message", FieldType::kString, true},
};
inline constexpr Field kSizeMessageParams[] = {
    {"size", FieldType::kInt},
    {"message", FieldType::kString, true},
};
inline constexpr Field kMessageParam[] = {{"message", FieldType::kString, true}};
inline constexpr Field kBusyParams[] = {
    {"lockFile", FieldType::kString},
    {"holderPid", FieldType::kInt, true},
};
inline constexpr Field kGetStatusOut[] = {
    {"version", FieldType::kString},
    {"tablePath", FieldType::kString},
    {"tableCapacity", FieldType::kInt},
    {"probe", FieldType::kString},
    {"maxRangesPerUser", FieldType::kInt},
    {"maxRangeSize", FieldType::kInt},
    {"allowSingle", FieldType::kBool},
    {"allowContainer", FieldType::kBool},
    {"containerPoolFirst", FieldType::kInt},
    {"containerPoolLast", FieldType::kInt},
    {"singlePoolFirst", FieldType::kInt},
    {"singlePoolLast", FieldType::kInt},
    {"ranges", FieldType::kInt},
    {"boundRanges", FieldType::kInt},
    {"importedRanges", FieldType::kInt},
};

}  // namespace detail

// The comment above the "interface" line of the IDL.
inline constexpr std::string_view kInterfaceDoc =
    "Transient UID/GID ranges: allocated here, published in the shared-memory range table that "
    "libnss_transient.so.2 and transient-userdbd read. UID start+n of range NAME is user "
    "vu-NAME-n, GID start+n is group vg-NAME-n.\n"
    "\n"
    "Anyone may call (the socket is 0666); a range is owned by the UID that allocated it, or by "
    "the owner root named for it. Root may do everything. Any other caller may own at "
    "most MaxRangesPerUser ranges at a time (/etc/transient/allocd.conf, default 16), may release "
    "only its own ranges, and works in its own name scope: a name of the form u<UID>-<rest> "
    "belongs to that UID, and a name without such a prefix, given by UID N, means u<N>-<name>. So "
    "\"web\" from UID 1000 is range u1000-web (users vu-u1000-web-0 …); replies and listings show "
    "the scoped name. Root's names are used as given. Every caller sees every range (the table is "
    "world-readable anyway); the user namespace a range is bound to is shown only to the range's "
    "owner and to root.";

inline constexpr TypeDecl kRangeType{
    "Range",
    "A live range. created is in microseconds since the epoch; owner is the UID it belongs to. "
    "userNamespaceInode and userNamespaceId identify the user namespace the range is bound to "
    "(owner and root only; the id only where the kernel has namespace ids, Linux 6.18+). "
    "imported is true for the read-only ranges imported from /etc/subuid and /etc/subgid "
    "(named sub-<owner>). users and groups say whether its UIDs and its GIDs have names: both "
    "do, except for an imported range found in only one of the two files.",
    detail::kRangeFields};

inline constexpr MethodDecl kAllocateRange{
    "AllocateRange",
    "Allocates size UIDs and the same GIDs: 1 or 65536 (unless allocd.conf allows only one of "
    "them), and for root any multiple of 65536 up to MaxRangeSize (allocd.conf, default "
    "8388608); a larger size from another caller is PermissionDenied. A name too long for the "
    "size (its last user vu-NAME-<size-1> over 31 bytes) is InvalidName. owner (a UID in decimal, "
    "or a user name) is whose range it is: its quota, its release right, its subordinate IDs; "
    "only root may name another user (PermissionDenied), and an unknown user is "
    "InvalidParameter. Root's names are used as given whatever the owner. Released IDs are "
    "handed out again last: never-used ones first, then the least recently released. Ranges of "
    "65536 IDs or more are 64K-aligned and contiguous, and come from 524288…1879048191, single "
    "IDs from 61184…65519 (or narrower pools set in allocd.conf). No ID of the range is known to "
    "another NSS or userdb source, overlaps /etc/subuid or /etc/subgid, or is held by "
    "systemd-nspawn, DynamicUser= or systemd-nsresourced.\n"
    "userNamespaceFileDescriptor is the index of a file descriptor passed with this call "
    "(SCM_RIGHTS) that refers to a user namespace, e.g. an open /proc/PID/ns/user; unless the "
    "caller is root, the caller must own that namespace. If the namespace has no uid_map yet, "
    "the allocator writes its uid_map and gid_map: IDs 0…size-1 inside are the range outside "
    "(only for a namespace whose parent is the allocator's own, else CannotMapUserNamespace); "
    "a namespace that is already mapped keeps its maps. The range is then released "
    "automatically within seconds after the namespace is gone; the allocator does not keep it "
    "alive. Without one, a range lives until it is released or the system reboots.",
    detail::kAllocateRangeIn, detail::kAllocateRangeOut};
inline constexpr MethodDecl kReleaseRange{
    "ReleaseRange",
    "Releases a range: its UIDs no longer resolve and may be handed out again. Ranges imported "
    "from /etc/subuid and /etc/subgid are released by editing those files, not here "
    "(ImportedRange).",
    detail::kReleaseRangeIn, {}};
inline constexpr MethodDecl kGetRange{
    "GetRange",
    "The range with that name, or containing that UID. A name is looked for in the caller's scope "
    "first (\"web\" from UID 1000: u1000-web), then as given (root's \"web\").",
    detail::kGetRangeIn, detail::kRangeOut};
inline constexpr MethodDecl kListRanges{
    "ListRanges", "One reply per live range, in UID order. Requires \"more\".", {},
    detail::kRangeOut};
inline constexpr MethodDecl kGetStatus{
    "GetStatus",
    "What the allocator runs with, for transientctl status: its version, the range table's path "
    "and capacity (entries), the user namespace probe in use (\"file-handle\", \"scan\" or "
    "\"none\"), the quotas and sizes of allocd.conf (MaxRangesPerUser=, MaxRangeSize=, whether "
    "single IDs and 64K ranges are handed out), the pools (first and last ID of each), and how "
    "many ranges are live, bound to a user namespace and imported. Anyone may call.",
    {}, detail::kGetStatusOut};

inline constexpr TypeDecl kTypes[] = {kRangeType};
inline constexpr MethodDecl kMethods[] = {kAllocateRange, kReleaseRange, kGetRange, kListRanges,
                                          kGetStatus};

// In ErrorKind order (checked below), as the IDL lists them.
inline constexpr ErrorDecl kErrors[] = {
    {ErrorKind::kNameInUse, "io.transient.Allocator.NameInUse", "", detail::kNameParam},
    {ErrorKind::kNoSuchRange, "io.transient.Allocator.NoSuchRange", "", {}},
    {ErrorKind::kInvalidName, "io.transient.Allocator.InvalidName",
     "message, where present, says what is wrong (e.g. how long the name may be for that size).",
     detail::kNameMessageParams},
    {ErrorKind::kInvalidSize, "io.transient.Allocator.InvalidSize", "",
     detail::kSizeMessageParams},
    {ErrorKind::kPoolExhausted, "io.transient.Allocator.PoolExhausted", "", {}},
    {ErrorKind::kPermissionDenied, "io.transient.Allocator.PermissionDenied", "",
     detail::kMessageParam},
    {ErrorKind::kQuotaExceeded, "io.transient.Allocator.QuotaExceeded", "", {}},
    {ErrorKind::kNotUserNamespace, "io.transient.Allocator.NotUserNamespace",
     "The file descriptor does not refer to a user namespace, or to the allocator's own.", {}},
    {ErrorKind::kCannotWatchUserNamespace, "io.transient.Allocator.CannotWatchUserNamespace",
     "The allocator lacks the privileges to tell when this user namespace is gone.", {}},
    {ErrorKind::kCannotMapUserNamespace, "io.transient.Allocator.CannotMapUserNamespace",
     "The user namespace has no uid_map yet and the allocator could not write it: only a "
     "namespace whose parent is the allocator's own can be mapped by it (map a nested one from "
     "its parent). Nothing was allocated, except when uid_map was written but gid_map could "
     "not be: then the range stays bound to the namespace and goes with it. message says why.",
     detail::kMessageParam},
    {ErrorKind::kBusy, "io.transient.Allocator.TemporarilyUnavailable",
     "Another allocator (lckpwdf(), PID 1 for DynamicUser=, systemd-nsresourced) held lockFile "
     "for the whole time the call waited for it (seconds); holderPid where known. Try again "
     "later.",
     detail::kBusyParams},
    {ErrorKind::kImportedRange, "io.transient.Allocator.ImportedRange",
     "The range comes from /etc/subuid or /etc/subgid (imported: true); edit those files "
     "instead.",
     detail::kNameParam},
    {ErrorKind::kInternal, "io.transient.Allocator.SystemError",
     "The allocator failed in a way the caller cannot fix (e.g. writing the range table); nothing "
     "was changed. message, where present, says what for the administrator; the journal says "
     "more.",
     detail::kMessageParam},
};

// The declared error of a kind, e.g. "io.transient.Allocator.NameInUse".
constexpr std::string_view error_name(ErrorKind kind) {
    return kErrors[static_cast<std::size_t>(kind)].name;
}

// The kind of a fully qualified error name; nothing for names this interface does not declare.
constexpr std::optional<ErrorKind> error_kind(std::string_view name) {
    for (const ErrorDecl& e : kErrors)
        if (e.name == name)
            return e.kind;
    return std::nullopt;
}

// The unqualified name the IDL declares ("NameInUse").
constexpr std::string_view bare_error_name(const ErrorDecl& e) {
    return e.name.substr(std::string_view(kInterfaceName).size() + 1);
}

namespace detail {

// Every kind has its entry at its own index, and every name is kInterfaceName + "." + a name
// without dots: error_name() indexes, bare_error_name() cuts the prefix off.
consteval bool errors_well_formed() {
    const std::string_view prefix = kInterfaceName;
    for (std::size_t i = 0; i < std::size(kErrors); i++) {
        const std::string_view n = kErrors[i].name;
        if (static_cast<std::size_t>(kErrors[i].kind) != i || n.size() <= prefix.size() + 1 ||
            n.substr(0, prefix.size()) != prefix || n[prefix.size()] != '.' ||
            n.substr(prefix.size() + 1).find('.') != std::string_view::npos)
            return false;
    }
    return std::size(kErrors) == static_cast<std::size_t>(ErrorKind::kInternal) + 1;
}
static_assert(errors_well_formed(), "kErrors must list every ErrorKind, in order, once");

}  // namespace detail

}  // namespace transient::allocator
