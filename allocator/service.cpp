// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/service.hpp"

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include <pwd.h>

#include <cstdio>
#include <limits>
#include <vector>

#include "allocator/policy.hpp"

namespace transient::allocator {

using varlink::Call;
using varlink::json;
using varlink::Param;
using varlink::Type;

const char kInterfaceDescription[] = R"(# Transient UID/GID ranges: allocated here, published in the shared-memory range table that
# libnss_transient.so.2 and transient-userdbd read. UID start+n of range NAME is user
# vu-NAME-n, GID start+n is group vg-NAME-n.
#
# Anyone may call (the socket is 0666); a range is owned by the UID that allocated it, or by the
# owner root named for it. Root may do everything. Any other caller may own at most
# MaxRangesPerUser ranges at a time
# (/etc/transient/allocd.conf, default 16), may release only its own ranges, and works in its
# own name scope: a name of the form u<UID>-<rest> belongs to that UID, and a name without such
# a prefix, given by UID N, means u<N>-<name>. So "web" from UID 1000 is range u1000-web (users
# vu-u1000-web-0 …); replies and listings show the scoped name. Root's names are used as given.
# Every caller sees every range (the table is world-readable anyway); the user namespace a
# range is bound to is shown only to the range's owner and to root.
interface io.transient.Allocator

# A live range. created is in microseconds since the epoch; owner is the UID it belongs to.
# userNamespaceInode and userNamespaceId identify the user namespace the range is bound to
# (owner and root only; the id only where the kernel has namespace ids, Linux 6.18+).
type Range (
  name: string,
  start: int,
  size: int,
  owner: int,
  created: int,
  userNamespaceInode: ?int,
  userNamespaceId: ?int
)

# Allocates size UIDs and the same GIDs: 1 or 65536 (unless allocd.conf allows only one of
# them), and for root any multiple of 65536 up to MaxRangeSize (allocd.conf, default 8388608);
# a larger size from another caller is PermissionDenied. A name too long for the size (its last
# user vu-NAME-<size-1> over 31 bytes) is InvalidName. owner (a UID, as a number or in decimal,
# or a user name) is whose range it is: its quota, its release right, its subordinate IDs; only
# root may name another user (PermissionDenied), and an unknown user is InvalidParameter.
# Root's names are used as given whatever the owner. Released IDs are handed out again last:
# never-used ones first, then the least recently released. 65536-ranges are 64K-aligned and
# contiguous, and come from 524288…1879048191,
# single IDs from 61184…65519 (or narrower pools set in allocd.conf). No ID of the range is
# known to another NSS or userdb source, overlaps /etc/subuid or /etc/subgid, or is held by
# systemd-nspawn, DynamicUser= or systemd-nsresourced.
# userNamespaceFileDescriptor is the index of a file descriptor passed with this call
# (SCM_RIGHTS) that refers to a user namespace, e.g. an open /proc/PID/ns/user; unless the
# caller is root, the caller must own that namespace. The range is then released automatically
# within seconds after the namespace is gone; the allocator does not keep it alive. Without
# one, a range lives until it is released or the system reboots.
method AllocateRange(
  name: string,
  size: int,
  userNamespaceFileDescriptor: ?int,
  owner: ?string
) -> (name: string, start: int, size: int)

# Releases a range: its UIDs no longer resolve and may be handed out again.
method ReleaseRange(name: string) -> ()

# The range with that name, or containing that UID. A name is looked for in the caller's scope
# first ("web" from UID 1000: u1000-web), then as given (root's "web").
method GetRange(name: ?string, uid: ?int) -> (range: Range)

# One reply per live range, in UID order. Requires "more".
method ListRanges() -> (range: Range)

error NameInUse (name: string)
error NoSuchRange ()
# message, where present, says what is wrong (e.g. how long the name may be for that size).
error InvalidName (name: string, message: ?string)
error InvalidSize (size: int, message: ?string)
error PoolExhausted ()
error PermissionDenied (message: ?string)
error QuotaExceeded ()
# The file descriptor does not refer to a user namespace, or to the allocator's own.
error NotUserNamespace ()
# The allocator lacks the privileges to tell when this user namespace is gone.
error CannotWatchUserNamespace ()
# Another allocator (lckpwdf(), PID 1 for DynamicUser=, systemd-nsresourced) held lockFile for
# the whole time the call waited for it (seconds); holderPid where known. Try again later.
error TemporarilyUnavailable (lockFile: string, holderPid: ?int)
# The allocator failed in a way the caller cannot fix (e.g. writing the range table); nothing
# was changed. message, where present, says what for the administrator; the journal says more.
error SystemError (message: ?string)
)";

namespace {

// Audit trail: one structured journal entry per change, plus a line on stderr.
constexpr char kMessageIdAllocated[] = "MESSAGE_ID=5d3a0b2f8e6c4f1a9b7d2e4c6a8f0b13";
constexpr char kMessageIdReleased[] = "MESSAGE_ID=a41c7e9d03b24f6f8e5a1d2c3b4e5f60";

// `why` completes the sentence, e.g. ": its user namespace is gone".
void audit(const char* message_id, const char* verb, const RangeEntry& r, uid_t caller,
           const char* why = "") {
    std::fprintf(stderr, SD_INFO "%s range '%s' (%u…%u, %u IDs) for UID %u%s%s.\n", verb,
                 r.name.c_str(), r.start, r.start + r.size - 1, r.size, caller,
                 is_bound(r) ? (", bound to user namespace " + std::to_string(r.userns_ino)).c_str()
                             : "",
                 why);
    sd_journal_send("MESSAGE=%s range '%s' (%u…%u) for UID %u", verb, r.name.c_str(), r.start,
                    r.start + r.size - 1, caller, message_id, "PRIORITY=6",
                    "TRANSIENT_RANGE=%s", r.name.c_str(), "TRANSIENT_START=%u", r.start,
                    "TRANSIENT_SIZE=%u", r.size, "TRANSIENT_CALLER_UID=%u", caller,
                    "TRANSIENT_USERNS_INODE=%llu",
                    static_cast<unsigned long long>(is_bound(r) ? r.userns_ino : 0), nullptr);
}

void reply_failure(Call& call, const Failure& f, json params = json::object()) {
    if (f.kind == ErrorKind::kInternal) {
        std::fprintf(stderr, SD_ERR "%s\n", f.message.c_str());
        params["message"] = f.message;
    } else if ((f.kind == ErrorKind::kInvalidName || f.kind == ErrorKind::kInvalidSize ||
                f.kind == ErrorKind::kPermissionDenied) &&
               !f.message.empty()) {
        params["message"] = f.message;
    } else if (f.kind == ErrorKind::kBusy) {
        std::fprintf(stderr, SD_WARNING "%s, giving up on this call.\n", f.message.c_str());
        params["lockFile"] = f.lock_file;
        if (f.holder > 0)
            params["holderPid"] = f.holder;
    }
    call.error(error_name(f.kind), params);
}

constexpr char kUsernsParam[] = "userNamespaceFileDescriptor";

// The user namespace passed with the call, identified; its fd is closed before this returns,
// so the allocator never holds the namespace. Returns false after answering the call.
bool take_userns(const Allocator& a, Call& call, std::optional<UsernsIdentity>& ret) {
    const json& p = call.parameters();
    auto it = p.find(kUsernsParam);
    if (it == p.end() || it->is_null())
        return true;
    const bool in_range = it->is_number_unsigned()
                                  ? it->get<std::uint64_t>() < call.fd_count()
                                  : it->get<std::int64_t>() >= 0 &&
                                            static_cast<std::uint64_t>(it->get<std::int64_t>()) <
                                                    call.fd_count();
    if (!in_range) {
        call.invalid_parameter(kUsernsParam);
        return false;
    }
    shm::UniqueFd fd = call.take_fd(static_cast<std::size_t>(it->get<std::uint64_t>()));
    auto ns = identify_userns(fd.get());
    // A binding to the allocator's own namespace would never end.
    auto own = own_userns();
    if (!ns || (own && own->ino == ns->ino && own->id == ns->id)) {
        call.error(std::string(kInterfaceName) + ".NotUserNamespace");
        return false;
    }
    // Checked while the caller's fd still pins the namespace: a probe that cannot see it now
    // would later take it for gone, or never find out.
    if (a.probe() != nullptr && !a.probe()->watchable(fd.get())) {
        std::fprintf(stderr, SD_WARNING "Cannot watch user namespace %llu of UID %u (%s probe), "
                                        "refusing to bind a range to it.\n",
                     static_cast<unsigned long long>(ns->ino), call.peer().uid,
                     a.probe()->name());
        call.error(std::string(kInterfaceName) + ".CannotWatchUserNamespace");
        return false;
    }
    ret = *ns;
    return true;
}

// Answers an AllocateRange call with the outcome of the allocation.
void answer_allocation(Call& call, const Outcome<RangeEntry>& r, const AllocateRequest& req,
                       const json& size_json) {
    if (!r) {
        json params = json::object();
        if (r.error().kind == ErrorKind::kNameInUse || r.error().kind == ErrorKind::kInvalidName)
            params["name"] = scoped_name(req.name, req.caller);
        else if (r.error().kind == ErrorKind::kInvalidSize)
            params["size"] = size_json;
        return reply_failure(call, r.error(), params);
    }
    audit(kMessageIdAllocated, "Allocated", *r, req.caller);
    call.reply(json{{"name", r->name}, {"start", r->start}, {"size", r->size}});
}

// An allocation waiting, deferred, for another allocator to let go of its lock. It retries
// from a timer, so the loop serves other clients meanwhile (this client's connection waits).
struct BusyRetry {
    Allocator& allocator;
    std::unique_ptr<Call> call;
    std::string name;  // AllocateRequest::name points here
    AllocateRequest request;
    json size_json;
    std::uint64_t deadline_usec = 0;
};

constexpr std::uint64_t kBusyRetryUsec = 20000;

int on_busy_retry(sd_event_source* source, uint64_t now, void* userdata) noexcept {
    auto* retry = static_cast<BusyRetry*>(userdata);
    try {
        auto r = retry->allocator.allocate(retry->request);
        if (!r && r.error().kind == ErrorKind::kBusy && now < retry->deadline_usec) {
            (void)sd_event_source_set_time(source, now + kBusyRetryUsec);
            return sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        }
        answer_allocation(*retry->call, r, retry->request, retry->size_json);
    } catch (const std::exception& e) {
        retry->call->error(std::string(kInterfaceName) + ".SystemError",
                           json{{"message", e.what()}});
    }
    delete retry;
    sd_event_source_disable_unref(source);
    return 0;
}

// The UID an `owner` parameter names: a number, a decimal string or a user name (looked up with
// getpwnam_r(); the allocator's own module is bypassed, so a vu-* user owns nothing).
std::optional<uid_t> resolve_owner(const json& j) {
    if (j.is_number_unsigned())
        return j.get<std::uint64_t>() < 0xFFFFFFFFULL
                       ? std::optional(static_cast<uid_t>(j.get<std::uint64_t>()))
                       : std::nullopt;
    if (!j.is_string())
        return std::nullopt;
    const std::string s = j.get<std::string>();
    if (s.empty() || s.size() > 256)
        return std::nullopt;
    if (s.find_first_not_of("0123456789") == std::string::npos) {
        if (s.size() > 10 || (s.size() > 1 && s[0] == '0'))
            return std::nullopt;
        const std::uint64_t v = std::stoull(s);
        return v < 0xFFFFFFFFULL ? std::optional(static_cast<uid_t>(v)) : std::nullopt;
    }
    std::vector<char> buf(4096);
    for (int i = 0; i < 6; i++) {
        passwd pw{};
        passwd* result = nullptr;
        const int r = ::getpwnam_r(s.c_str(), &pw, buf.data(), buf.size(), &result);
        if (r == ERANGE) {
            buf.resize(buf.size() * 4);
            continue;
        }
        if (r == 0 && result != nullptr)
            return pw.pw_uid;
        return std::nullopt;
    }
    return std::nullopt;
}

void vl_allocate_range(Allocator& a, sd_event* event, std::chrono::milliseconds busy_timeout,
                       Call& call) {
    const json& p = call.parameters();
    const std::string name = p.at("name").get<std::string>();
    const json& size_json = p.at("size");
    // Out-of-range sizes are InvalidSize, not a JSON conversion failure.
    const std::int64_t size = size_json.is_number_unsigned() &&
                                              size_json.get<std::uint64_t>() >
                                                      std::numeric_limits<std::int64_t>::max()
                                      ? -1
                                      : size_json.get<std::int64_t>();
    std::optional<uid_t> owner;
    if (auto it = p.find("owner"); it != p.end() && !it->is_null()) {
        owner = resolve_owner(*it);
        if (!owner)
            return call.invalid_parameter("owner");
    }
    std::optional<UsernsIdentity> userns;
    if (!take_userns(a, call, userns))
        return;
    const AllocateRequest req{name, size, call.peer().uid, userns, owner};
    auto r = a.allocate(req);
    if (!r && r.error().kind == ErrorKind::kBusy && event != nullptr && !call.oneway()) {
        uint64_t now = 0;
        (void)sd_event_now(event, CLOCK_MONOTONIC, &now);
        auto retry = std::make_unique<BusyRetry>(
                BusyRetry{a, nullptr, name, req, size_json,
                          now + static_cast<std::uint64_t>(busy_timeout.count()) * 1000});
        retry->request.name = retry->name;
        sd_event_source* timer = nullptr;  // unreferenced by on_busy_retry() when done
        if (sd_event_add_time(event, &timer, CLOCK_MONOTONIC, now + kBusyRetryUsec, 0,
                              on_busy_retry, retry.get()) >= 0) {
            retry->call = call.defer();
            (void)retry.release();  // on_busy_retry() deletes it
            return;
        }
    }
    answer_allocation(call, r, req, size_json);
}

void vl_release_range(Allocator& a, Call& call) {
    const std::string name = call.parameters().at("name").get<std::string>();
    auto r = a.release(name, call.peer().uid);
    if (!r)
        return reply_failure(call, r.error());
    audit(kMessageIdReleased, "Released", *r, call.peer().uid);
    call.reply();
}

void vl_get_range(Allocator& a, Call& call) {
    const json& p = call.parameters();
    std::optional<std::string> name;
    std::optional<std::int64_t> uid;
    if (p.contains("name") && !p["name"].is_null())
        name = p["name"].get<std::string>();
    if (p.contains("uid") && !p["uid"].is_null()) {
        const json& u = p["uid"];
        if (u.is_number_unsigned() ? u.get<std::uint64_t>() > 0xFFFFFFFFU
                                   : u.get<std::int64_t>() < 0)
            return call.invalid_parameter("uid");
        uid = u.get<std::int64_t>();
    }
    if (!name && !uid)
        return call.invalid_parameter("name");
    const uid_t caller = call.peer().uid;
    auto r = a.find(name, uid, caller);
    if (!r)
        return reply_failure(call, r.error());
    call.reply(json{{"range", range_to_json(*r, may_see_details(*r, caller))}});
}

void vl_list_ranges(Allocator& a, Call& call) {
    if (!call.more())
        return call.error(varlink::kErrorExpectedMore);
    const auto& ranges = a.ranges();
    if (ranges.empty())
        return reply_failure(call, Failure{ErrorKind::kNoSuchRange, {}});
    const uid_t caller = call.peer().uid;
    auto item = [&](const RangeEntry& r) {
        return json{{"range", range_to_json(r, may_see_details(r, caller))}};
    };
    for (std::size_t i = 0; i + 1 < ranges.size(); i++)
        call.reply_continues(item(ranges[i]));
    call.reply(item(ranges.back()));
}

}  // namespace

std::string error_name(ErrorKind kind) {
    const char* n = "NoSuchRange";
    switch (kind) {
    case ErrorKind::kNameInUse:
        n = "NameInUse";
        break;
    case ErrorKind::kNoSuchRange:
        n = "NoSuchRange";
        break;
    case ErrorKind::kInvalidName:
        n = "InvalidName";
        break;
    case ErrorKind::kInvalidSize:
        n = "InvalidSize";
        break;
    case ErrorKind::kPoolExhausted:
        n = "PoolExhausted";
        break;
    case ErrorKind::kPermissionDenied:
        n = "PermissionDenied";
        break;
    case ErrorKind::kQuotaExceeded:
        n = "QuotaExceeded";
        break;
    case ErrorKind::kBusy:
        n = "TemporarilyUnavailable";
        break;
    case ErrorKind::kInternal:
        n = "SystemError";
        break;
    }
    return std::string(kInterfaceName) + "." + n;
}

json range_to_json(const RangeEntry& r, bool details) {
    json j{{"name", r.name},   {"start", r.start},
           {"size", r.size},   {"owner", r.owner},
           {"created", r.created_usec}};
    if (details && is_bound(r)) {
        j["userNamespaceInode"] = r.userns_ino;
        if ((r.flags & kEntryFlagUsernsNoId) == 0)
            j["userNamespaceId"] = r.userns_id;
    }
    return j;
}

void log_automatic_release(const RangeEntry& r) {
    audit(kMessageIdReleased, "Released", r, r.owner, ": the namespace is gone");
}

varlink::Interface make_interface(Allocator& a, sd_event* event,
                                  std::chrono::milliseconds busy_timeout) {
    auto bind = [&a](void (*fn)(Allocator&, Call&)) {
        return [&a, fn](Call& call) { fn(a, call); };
    };
    return varlink::Interface{
            kInterfaceName,
            kInterfaceDescription,
            {
                    {"AllocateRange",
                     {{"name", Type::kString},
                      {"size", Type::kInt},
                      {kUsernsParam, Type::kInt, true},
                      {"owner", Type::kAny, true}},
                     [&a, event, busy_timeout](Call& call) {
                         vl_allocate_range(a, event, busy_timeout, call);
                     }},
                    {"ReleaseRange", {{"name", Type::kString}}, bind(vl_release_range)},
                    {"GetRange",
                     {{"name", Type::kString, true}, {"uid", Type::kInt, true}},
                     bind(vl_get_range)},
                    {"ListRanges", {}, bind(vl_list_ranges)},
            },
            "io.transient.Allocator.SystemError"};
}

}  // namespace transient::allocator
