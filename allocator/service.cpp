// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/service.hpp"

#include <systemd/sd-daemon.h>

#include <pwd.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <span>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "allocator/events.hpp"
#include "allocator/policy.hpp"
#include "varlink/json_writer.hpp"

namespace transient::allocator {

using varlink::Call;
using varlink::json;
using varlink::Param;
using varlink::Type;

namespace {

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

// The user namespace passed with the call, identified; its fd is kept only until the call is
// answered (to map the namespace), so the allocator never keeps a namespace alive. Returns false
// after answering the call.
bool take_userns(const Allocator& a, Call& call, std::optional<UsernsIdentity>& ret,
                 shm::UniqueFd& ret_fd) {
    const json& p = call.parameters();
    auto it = p.find(kUsernsFdParam);
    if (it == p.end() || it->is_null())
        return true;
    const bool in_range = it->is_number_unsigned()
                                  ? it->get<std::uint64_t>() < call.fd_count()
                                  : it->get<std::int64_t>() >= 0 &&
                                            static_cast<std::uint64_t>(it->get<std::int64_t>()) <
                                                    call.fd_count();
    if (!in_range) {
        call.invalid_parameter(kUsernsFdParam);
        return false;
    }
    shm::UniqueFd fd = call.take_fd(static_cast<std::size_t>(it->get<std::uint64_t>()));
    auto ns = identify_userns(fd.get());
    // A binding to the allocator's own namespace would never end.
    auto own = own_userns();
    if (!ns || (own && own->ino == ns->ino && own->id == ns->id)) {
        events::refused(kAllocateRange.name, {}, 0, call.peer().uid,
                        error_name(ErrorKind::kNotUserNamespace), {});
        call.error(error_name(ErrorKind::kNotUserNamespace));
        return false;
    }
    // Checked while the caller's fd still pins the namespace: a probe that cannot see it now
    // would later take it for gone, or never find out.
    if (a.probe() != nullptr && !a.probe()->watchable(fd.get())) {
        // Through the refusals' rate limit: the caller decides how often this happens.
        events::refused(kAllocateRange.name, {}, 0, call.peer().uid,
                        error_name(ErrorKind::kCannotWatchUserNamespace),
                        "cannot watch user namespace " + std::to_string(ns->ino) + " with the " +
                                a.probe()->name() + " probe");
        call.error(error_name(ErrorKind::kCannotWatchUserNamespace));
        return false;
    }
    ret = *ns;
    ret_fd = std::move(fd);
    return true;
}

// How long mapping a namespace may hold up the event loop: the forked child only enters the
// namespace, which takes microseconds; this bounds a machine too loaded to schedule it.
constexpr std::chrono::milliseconds kMapTimeout{2000};

// Writes the maps of the namespace `r` was just bound to, if it has none. A failure before
// anything was written releases `r` again (the call then allocated nothing). Returns false
// after answering the call.
bool map_bound_userns(Allocator& a, Call& call, const RangeEntry& r, uid_t caller, int fd) {
    const MapReport m = map_userns(fd, r.start, r.size, kMapTimeout);
    if (m.state == MapState::kWritten || m.state == MapState::kWasMapped) {
        if (m.state == MapState::kWritten)
            std::fprintf(stderr, SD_INFO "Mapped user namespace %llu of UID %u to range '%s'.\n",
                         static_cast<unsigned long long>(r.userns_ino), caller, r.name.c_str());
        return true;
    }
    std::fprintf(stderr, SD_WARNING "Range '%s' for UID %u: %s.\n", r.name.c_str(), caller,
                 m.message.c_str());
    std::string message = m.message;
    if (m.state == MapState::kPartial) {
        // Its UIDs are in use inside the namespace: handing them out again would be unsafe.
        events::allocated(r, caller);
        message += "; the range stays bound to the namespace and goes with it";
    } else if (auto undone = a.release(r.name, 0); !undone) {
        std::fprintf(stderr, SD_ERR "Failed to release range '%s' again: %s\n", r.name.c_str(),
                     undone.error().message.c_str());
    }
    call.error(error_name(ErrorKind::kCannotMapUserNamespace), json{{"message", message}});
    return false;
}

// Answers an AllocateRange call with the outcome of the allocation.
void answer_allocation(Allocator& a, Call& call, const Outcome<RangeEntry>& r,
                       const AllocateRequest& req, const json& size_json, int userns_fd) {
    if (!r) {
        if (r.error().kind != ErrorKind::kInternal)
            events::refused(kAllocateRange.name, scoped_name(req.name, req.caller), req.size,
                            req.caller, error_name(r.error().kind), r.error().message);
        json params = json::object();
        if (r.error().kind == ErrorKind::kNameInUse || r.error().kind == ErrorKind::kInvalidName)
            params["name"] = scoped_name(req.name, req.caller);
        else if (r.error().kind == ErrorKind::kInvalidSize)
            params["size"] = size_json;
        return reply_failure(call, r.error(), params);
    }
    if (userns_fd >= 0 && !map_bound_userns(a, call, *r, req.caller, userns_fd))
        return;
    events::allocated(*r, req.caller);
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
    shm::UniqueFd userns_fd;  // held until answered: the namespace may need its maps
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
        answer_allocation(retry->allocator, *retry->call, r, retry->request, retry->size_json,
                          retry->userns_fd ? retry->userns_fd.get() : -1);
    } catch (const std::exception& e) {
        retry->call->error(error_name(ErrorKind::kInternal), json{{"message", e.what()}});
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
        if (!owner) {
            events::refused(kAllocateRange.name, scoped_name(name, call.peer().uid), size,
                            call.peer().uid, varlink::kErrorInvalidParameter, "unknown owner");
            return call.invalid_parameter("owner");
        }
    }
    std::optional<UsernsIdentity> userns;
    shm::UniqueFd userns_fd;
    if (!take_userns(a, call, userns, userns_fd))
        return;
    const AllocateRequest req{name, size, call.peer().uid, userns, owner};
    auto r = a.allocate(req);
    if (!r && r.error().kind == ErrorKind::kBusy && event != nullptr && !call.oneway()) {
        uint64_t now = 0;
        (void)sd_event_now(event, CLOCK_MONOTONIC, &now);
        auto retry = std::make_unique<BusyRetry>(
                BusyRetry{a, nullptr, name, req, size_json,
                          now + static_cast<std::uint64_t>(busy_timeout.count()) * 1000,
                          std::move(userns_fd)});
        retry->request.name = retry->name;
        sd_event_source* timer = nullptr;  // unreferenced by on_busy_retry() when done
        if (sd_event_add_time(event, &timer, CLOCK_MONOTONIC, now + kBusyRetryUsec, 0,
                              on_busy_retry, retry.get()) >= 0) {
            retry->call = call.defer();
            (void)retry.release();  // on_busy_retry() deletes it
            return;
        }
        userns_fd = std::move(retry->userns_fd);
    }
    answer_allocation(a, call, r, req, size_json, userns_fd ? userns_fd.get() : -1);
}

void vl_release_range(Allocator& a, Call& call) {
    const std::string name = call.parameters().at("name").get<std::string>();
    auto r = a.release(name, call.peer().uid);
    if (!r && r.error().kind != ErrorKind::kInternal)
        events::refused(kReleaseRange.name, scoped_name(name, call.peer().uid), 0,
                        call.peer().uid, error_name(r.error().kind), r.error().message);
    if (!r && r.error().kind == ErrorKind::kImportedRange)
        return reply_failure(call, r.error(), {{"name", name}});
    if (!r)
        return reply_failure(call, r.error());
    events::released(*r, call.peer().uid);
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
    // Written into the connection's output as they are made: the replies of the whole table
    // are queued at once (the server stops reading this client's further requests until it
    // has read them), so each costs its bytes and nothing more.
    for (std::size_t i = 0; i < ranges.size(); i++)
        call.reply_serialized(range_reply(ranges[i], may_see_details(ranges[i], caller)),
                              i + 1 < ranges.size());
}

void vl_get_status(Allocator& a, Call& call) {
    const Policy& p = a.policy();
    std::size_t bound = 0, imported = 0;
    for (const RangeEntry& r : a.ranges()) {
        bound += is_bound(r) ? 1 : 0;
        imported += (r.flags & shm::kEntryFlagImported) != 0 ? 1 : 0;
    }
    call.reply(json{{"version", PROJECT_VERSION},
                    {"tablePath", a.writer().path()},
                    {"tableCapacity", a.writer().capacity()},
                    {"probe", a.probe() != nullptr ? a.probe()->name() : "none"},
                    {"maxRangesPerUser", p.max_ranges_per_user},
                    {"maxRangeSize", p.max_range_size},
                    {"allowSingle", p.allow_single},
                    {"allowContainer", p.allow_container},
                    {"containerPoolFirst", p.pools.container_first},
                    {"containerPoolLast", p.pools.container_last},
                    {"singlePoolFirst", p.pools.dynamic_first},
                    {"singlePoolLast", p.pools.dynamic_last},
                    {"ranges", a.ranges().size()},
                    {"boundRanges", bound},
                    {"importedRanges", imported}});
}

// ---- The IDL, printed from interface.hpp ----------------------------------------------------

// Lines of the IDL text stay within this, where a word or a declaration allows.
constexpr std::size_t kIdlWidth = 96;

// `doc` as "# " comment lines: each of its lines wrapped at word boundaries, an empty one "#".
void append_doc(std::string& out, std::string_view doc) {
    if (doc.empty())
        return;
    for (std::size_t eol = 0; eol != std::string_view::npos;) {
        eol = doc.find('\n');
        std::string_view line = doc.substr(0, eol);
        if (line.empty())
            out += "#\n";
        while (!line.empty()) {
            std::size_t cut = line.size();
            if (line.size() + 2 > kIdlWidth) {
                cut = line.rfind(' ', kIdlWidth - 2);
                if (cut == std::string_view::npos || cut == 0)
                    cut = std::min(line.find(' '), line.size());  // a word wider than a line
            }
            out += "# ";
            out += line.substr(0, cut);
            out += '\n';
            line = line.substr(std::min(cut + 1, line.size()));
        }
        if (eol != std::string_view::npos)
            doc = doc.substr(eol + 1);
    }
}

std::string field_type(FieldType type) {
    switch (type) {
    case FieldType::kString:
        return "string";
    case FieldType::kInt:
        return "int";
    case FieldType::kBool:
        return "bool";
    case FieldType::kRange:
        return std::string(kRangeType.name);
    }
    return "object";
}

std::string field_list(std::span<const Field> fields, std::string_view separator = ", ") {
    std::string out;
    for (const Field& f : fields) {
        if (!out.empty())
            out += separator;
        out += std::string(f.name) + ": " + (f.optional ? "?" : "") + field_type(f.type);
    }
    return out;
}

// `head` fields `tail` on one line if it fits in kIdlWidth, else one field per line.
void append_declaration(std::string& out, const std::string& head, std::span<const Field> fields,
                        const std::string& tail) {
    const std::string line = head + field_list(fields) + tail;
    if (line.size() <= kIdlWidth || fields.empty())
        out += line;
    else
        out += head + "\n  " + field_list(fields, ",\n  ") + "\n" + tail;
    out += '\n';
}

varlink::Type param_type(FieldType type) {
    switch (type) {
    case FieldType::kString:
        return Type::kString;
    case FieldType::kInt:
        return Type::kInt;
    case FieldType::kBool:
        return Type::kBool;
    case FieldType::kRange:
        return Type::kObject;
    }
    return Type::kAny;
}

}  // namespace

std::string interface_description() {
    std::string out;
    append_doc(out, kInterfaceDoc);
    out += "interface ";
    out += kInterfaceName;
    out += '\n';
    for (const TypeDecl& t : kTypes) {
        out += '\n';
        append_doc(out, t.doc);
        append_declaration(out, "type " + std::string(t.name) + " (", t.fields, ")");
    }
    for (const MethodDecl& m : kMethods) {
        out += '\n';
        append_doc(out, m.doc);
        // A return list too long for a line (GetStatus's) gets one field per line as well.
        std::string returns = ") -> (" + field_list(m.returns) + ")";
        if (returns.size() > kIdlWidth)
            returns = ") -> (\n  " + field_list(m.returns, ",\n  ") + "\n)";
        append_declaration(out, "method " + std::string(m.name) + "(", m.parameters, returns);
    }
    out += '\n';
    for (const ErrorDecl& e : kErrors) {
        append_doc(out, e.doc);
        append_declaration(out, "error " + std::string(bare_error_name(e)) + " (", e.parameters,
                           ")");
    }
    return out;
}

json range_to_json(const RangeEntry& r, bool details) {
    json j{{"name", r.name},   {"start", r.start},
           {"size", r.size},   {"owner", r.owner},
           {"created", r.created_usec}};
    if ((r.flags & shm::kEntryFlagImported) != 0)
        j["imported"] = true;
    // An entry of only one of /etc/subuid and /etc/subgid has users only or groups only.
    j["users"] = (r.flags & shm::kEntryFlagNoUid) == 0;
    j["groups"] = (r.flags & shm::kEntryFlagNoGid) == 0;
    if (details && is_bound(r)) {
        j["userNamespaceInode"] = r.userns_ino;
        if ((r.flags & kEntryFlagUsernsNoId) == 0)
            j["userNamespaceId"] = r.userns_id;
    }
    return j;
}

std::string range_reply(const RangeEntry& r, bool details) {
    // Names are checked on allocation, but imported ones come from /etc/subuid as they are:
    // text that needs escaping goes through nlohmann, as every other reply does.
    if (!varlink::plain(r.name))
        return json{{"range", range_to_json(r, details)}}.dump(-1, ' ', false,
                                                               json::error_handler_t::replace);
    std::string out;
    out.reserve(256);
    {
        varlink::ObjectWriter reply(out);
        reply.literal("range", "");
        // range_to_json()'s members, in the sorted order nlohmann's objects keep.
        varlink::ObjectWriter range(out);
        range.number("created", r.created_usec);
        range.boolean("groups", (r.flags & shm::kEntryFlagNoGid) == 0);
        if ((r.flags & shm::kEntryFlagImported) != 0)
            range.boolean("imported", true);
        range.string("name", r.name);
        range.number("owner", r.owner);
        range.number("size", r.size);
        range.number("start", r.start);
        if (details && is_bound(r)) {
            if ((r.flags & kEntryFlagUsernsNoId) == 0)
                range.number("userNamespaceId", r.userns_id);
            range.number("userNamespaceInode", r.userns_ino);
        }
        range.boolean("users", (r.flags & shm::kEntryFlagNoUid) == 0);
    }  // both objects closed
    return out;
}

void log_automatic_release(const RangeEntry& r) {
    events::userns_gone(r);
}

varlink::Interface make_interface(Allocator& a, sd_event* event,
                                  std::chrono::milliseconds busy_timeout) {
    auto bind = [&a](void (*fn)(Allocator&, Call&)) -> varlink::Handler {
        return [&a, fn](Call& call) { fn(a, call); };
    };
    auto handler = [&](std::string_view method) -> varlink::Handler {
        if (method == kAllocateRange.name)
            return [&a, event, busy_timeout](Call& call) {
                vl_allocate_range(a, event, busy_timeout, call);
            };
        if (method == kReleaseRange.name)
            return bind(vl_release_range);
        if (method == kGetRange.name)
            return bind(vl_get_range);
        if (method == kListRanges.name)
            return bind(vl_list_ranges);
        if (method == kGetStatus.name)
            return bind(vl_get_status);
        throw std::logic_error("no handler for method " + std::string(method));
    };
    varlink::Interface iface{kInterfaceName, interface_description(), {},
                             std::string(error_name(ErrorKind::kInternal))};
    for (const MethodDecl& m : kMethods) {
        std::vector<varlink::Param> params;
        for (const Field& f : m.parameters)
            params.push_back({std::string(f.name), param_type(f.type), f.optional});
        iface.methods.push_back({std::string(m.name), std::move(params), handler(m.name)});
    }
    return iface;
}

}  // namespace transient::allocator
