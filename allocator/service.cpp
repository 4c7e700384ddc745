// SPDX-License-Identifier: LGPL-2.1-or-later

#include "allocator/service.hpp"

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include <cstdio>
#include <limits>

namespace transient::allocator {

using varlink::Call;
using varlink::json;
using varlink::Param;
using varlink::Type;

const char kInterfaceDescription[] = R"(# Transient UID/GID ranges: allocated here, published in the shared-memory range table that
# libnss_transient.so.2 and transient-userdbd read. UID start+n of range NAME is user
# vu-NAME-n, GID start+n is group vg-NAME-n.
interface io.transient.Allocator

# A live range. created is in microseconds since the epoch; owner is the allocating UID.
type Range (
  name: string,
  start: int,
  size: int,
  owner: int,
  created: int
)

# Allocates size (1 or 65536) UIDs and the same GIDs, owned by the caller. 65536-ranges are
# 64K-aligned and come from 524288…1879048191, single IDs from 61184…65519.
method AllocateRange(name: string, size: int) -> (name: string, start: int, size: int)

# Releases a range: its UIDs no longer resolve and may be handed out again.
method ReleaseRange(name: string) -> ()

# The range with that name, or containing that UID.
method GetRange(name: ?string, uid: ?int) -> (range: Range)

# One reply per live range, in UID order. Requires "more".
method ListRanges() -> (range: Range)

error NameInUse (name: string)
error NoSuchRange ()
error InvalidName (name: string)
error InvalidSize (size: int)
error PoolExhausted ()
error PermissionDenied ()
error QuotaExceeded ()
)";

namespace {

// Audit trail: one structured journal entry per change, plus a line on stderr.
constexpr char kMessageIdAllocated[] = "MESSAGE_ID=5d3a0b2f8e6c4f1a9b7d2e4c6a8f0b13";
constexpr char kMessageIdReleased[] = "MESSAGE_ID=a41c7e9d03b24f6f8e5a1d2c3b4e5f60";

void audit(const char* message_id, const char* verb, const RangeEntry& r, uid_t caller) {
    std::fprintf(stderr, SD_INFO "%s range '%s' (%u…%u, %u IDs) for UID %u.\n", verb,
                 r.name.c_str(), r.start, r.start + r.size - 1, r.size, caller);
    sd_journal_send("MESSAGE=%s range '%s' (%u…%u) for UID %u", verb, r.name.c_str(), r.start,
                    r.start + r.size - 1, caller, message_id, "PRIORITY=6",
                    "TRANSIENT_RANGE=%s", r.name.c_str(), "TRANSIENT_START=%u", r.start,
                    "TRANSIENT_SIZE=%u", r.size, "TRANSIENT_CALLER_UID=%u", caller, nullptr);
}

void reply_failure(Call& call, const Failure& f, const json& params = json::object()) {
    call.error(error_name(f.kind), params);
}

void vl_allocate_range(Allocator& a, Call& call) {
    const json& p = call.parameters();
    const std::string name = p.at("name").get<std::string>();
    const json& size_json = p.at("size");
    // Out-of-range sizes are InvalidSize, not a JSON conversion failure.
    const std::int64_t size = size_json.is_number_unsigned() &&
                                              size_json.get<std::uint64_t>() >
                                                      std::numeric_limits<std::int64_t>::max()
                                      ? -1
                                      : size_json.get<std::int64_t>();
    auto r = a.allocate(name, size, call.peer().uid);
    if (!r) {
        json params = json::object();
        if (r.error().kind == ErrorKind::kNameInUse || r.error().kind == ErrorKind::kInvalidName)
            params["name"] = name;
        else if (r.error().kind == ErrorKind::kInvalidSize)
            params["size"] = size_json;
        if (r.error().kind == ErrorKind::kInternal)
            std::fprintf(stderr, SD_ERR "%s\n", r.error().message.c_str());
        return reply_failure(call, r.error(), params);
    }
    audit(kMessageIdAllocated, "Allocated", *r, call.peer().uid);
    call.reply(json{{"name", r->name}, {"start", r->start}, {"size", r->size}});
}

void vl_release_range(Allocator& a, Call& call) {
    const std::string name = call.parameters().at("name").get<std::string>();
    auto found = a.find(name, std::nullopt);
    auto r = a.release(name, call.peer().uid);
    if (!r) {
        if (r.error().kind == ErrorKind::kInternal)
            std::fprintf(stderr, SD_ERR "%s\n", r.error().message.c_str());
        return reply_failure(call, r.error());
    }
    audit(kMessageIdReleased, "Released", *found, call.peer().uid);
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
    auto r = a.find(name, uid);
    if (!r)
        return reply_failure(call, r.error());
    call.reply(json{{"range", range_to_json(*r)}});
}

void vl_list_ranges(Allocator& a, Call& call) {
    if (!call.more())
        return call.error(varlink::kErrorExpectedMore);
    const auto& ranges = a.ranges();
    if (ranges.empty())
        return reply_failure(call, Failure{ErrorKind::kNoSuchRange, {}});
    for (std::size_t i = 0; i + 1 < ranges.size(); i++)
        call.reply_continues(json{{"range", range_to_json(ranges[i])}});
    call.reply(json{{"range", range_to_json(ranges.back())}});
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
    case ErrorKind::kInternal:
        return "org.varlink.service.InternalError";
    }
    return std::string(kInterfaceName) + "." + n;
}

json range_to_json(const RangeEntry& r) {
    return json{{"name", r.name},   {"start", r.start},
                {"size", r.size},   {"owner", r.owner},
                {"created", r.created_usec}};
}

varlink::Interface make_interface(Allocator& a) {
    auto bind = [&a](void (*fn)(Allocator&, Call&)) {
        return [&a, fn](Call& call) { fn(a, call); };
    };
    return varlink::Interface{
            kInterfaceName,
            kInterfaceDescription,
            {
                    {"AllocateRange",
                     {{"name", Type::kString}, {"size", Type::kInt}},
                     bind(vl_allocate_range)},
                    {"ReleaseRange", {{"name", Type::kString}}, bind(vl_release_range)},
                    {"GetRange",
                     {{"name", Type::kString, true}, {"uid", Type::kInt, true}},
                     bind(vl_get_range)},
                    {"ListRanges", {}, bind(vl_list_ranges)},
            }};
}

}  // namespace transient::allocator
