// SPDX-License-Identifier: LGPL-2.1-or-later

#include "userdb/service.hpp"

#include <cerrno>
#include <limits>

#include "userdb/records.hpp"

namespace transient::userdb {

using varlink::Call;
using varlink::Param;
using varlink::Type;

const char kInterfaceDescription[] = R"(# User and group records of transient UID/GID ranges, as a userdb provider
# (https://systemd.io/USER_GROUP_API). Served by transient-userdbd from the range table.
interface io.systemd.UserDatabase

method GetUserRecord(
  uid: ?int,
  userName: ?string,
  fuzzyNames: ?[]string,
  dispositionMask: ?[]string,
  uidMin: ?int,
  uidMax: ?int,
  uuid: ?string,
  service: string
) -> (
  record: object,
  incomplete: ?bool
)

method GetGroupRecord(
  gid: ?int,
  groupName: ?string,
  fuzzyNames: ?[]string,
  dispositionMask: ?[]string,
  gidMin: ?int,
  gidMax: ?int,
  uuid: ?string,
  service: string
) -> (
  record: object,
  incomplete: ?bool
)

method GetMemberships(
  userName: ?string,
  groupName: ?string,
  service: string
) -> (
  userName: string,
  groupName: string
)

error NoRecordFound()
error BadService()
error ServiceNotAvailable()
error ConflictingRecordFound()
error EnumerationNotSupported()
error NonMatchingRecordFound()
)";

namespace {

constexpr char kErrorNoRecordFound[] = "io.systemd.UserDatabase.NoRecordFound";
constexpr char kErrorBadService[] = "io.systemd.UserDatabase.BadService";
constexpr char kErrorServiceNotAvailable[] = "io.systemd.UserDatabase.ServiceNotAvailable";
constexpr char kErrorConflictingRecordFound[] = "io.systemd.UserDatabase.ConflictingRecordFound";
constexpr char kErrorNonMatchingRecordFound[] = "io.systemd.UserDatabase.NonMatchingRecordFound";

// The names a record lookup uses: users or groups.
struct Keys {
    shm::IdKind kind;
    const char* id;        // "uid" / "gid"
    const char* name;      // "userName" / "groupName"
    const char* id_min;    // "uidMin" / "gidMin"
    const char* id_max;    // "uidMax" / "gidMax"
};

constexpr Keys kUserKeys{shm::IdKind::kUser, "uid", "userName", "uidMin", "uidMax"};
constexpr Keys kGroupKeys{shm::IdKind::kGroup, "gid", "groupName", "gidMin", "gidMax"};

bool is_set(const varlink::json& p, const char* key) {
    auto it = p.find(key);
    return it != p.end() && !it->is_null();
}

// A JSON integer as int64_t, huge unsigned values clamped.
std::int64_t saturating_i64(const varlink::json& v) {
    if (v.is_number_unsigned() &&
        v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return std::numeric_limits<std::int64_t>::max();
    return v.get<std::int64_t>();
}

// Fills `ret` from the filter parameters; on a malformed or oversized one returns its name.
const char* parse_filter(const varlink::json& p, const Keys& keys, Filter& ret) {
    const struct {
        const char* key;
        std::size_t max;
        std::vector<std::string>& out;
        bool lower;
    } arrays[] = {{"fuzzyNames", kMaxFuzzyNames, ret.fuzzy_names, true},
                  {"dispositionMask", kMaxDispositions, ret.dispositions, false}};
    for (const auto& a : arrays) {
        if (!is_set(p, a.key))
            continue;
        const varlink::json& values = p.at(a.key);
        if (values.size() > a.max)
            return a.key;
        for (const auto& v : values) {
            if (!v.is_string())
                return a.key;
            const std::string& text = v.get_ref<const std::string&>();
            a.out.push_back(a.lower ? ascii_lower(text) : text);
        }
    }
    if (is_set(p, keys.id_min))
        ret.id_min = saturating_i64(p.at(keys.id_min));
    if (is_set(p, keys.id_max))
        ret.id_max = saturating_i64(p.at(keys.id_max));
    if (is_set(p, "uuid"))
        ret.uuid = p.at("uuid").get<std::string>();
    return nullptr;
}

// Every lookup method checks the service first: clients put the socket's name there.
bool check_service(Call& call) {
    const auto& p = call.parameters();
    if (!is_set(p, "service") || !p.at("service").is_string() ||
        p.at("service").get<std::string>() != kServiceName) {
        call.error(kErrorBadService);
        return false;
    }
    return true;
}

// Sends the record of `id`, the last reply or one of more.
void send_record(Call& call, const shm::Identity& id, const Keys& keys, bool continues) {
    call.reply_serialized(keys.kind == shm::IdKind::kUser ? user_reply(id) : group_reply(id),
                          continues);
}

// An ID from the wire: anything outside uid_t's range (or (uid_t) -1) names no record.
std::optional<std::uint32_t> wire_id(const varlink::json& v) {
    if (v.is_number_unsigned())
        return v.get<std::uint64_t>() < 0xFFFFFFFFULL
                       ? std::optional<std::uint32_t>(v.get<std::uint32_t>())
                       : std::nullopt;
    const std::int64_t i = v.get<std::int64_t>();
    if (i < 0 || i >= 0xFFFFFFFFLL)
        return std::nullopt;
    return static_cast<std::uint32_t>(i);
}

void lookup_keyed(Call& call, const shm::TableView* view, const Keys& keys, const Filter& filter) {
    const auto& p = call.parameters();
    std::optional<shm::Identity> by_id, by_name;
    int error = 0;
    if (is_set(p, keys.id)) {
        shm::Identity id;
        const auto key = wire_id(p.at(keys.id));
        const int r = key ? shm::lookup_id(view, *key, keys.kind, &id) : -ESRCH;
        if (r == 0)
            by_id = id;
        else if (r != -ESRCH)
            error = r;
    }
    if (is_set(p, keys.name)) {
        shm::Identity id;
        // Counted: a name with a NUL in it is not the name before the NUL.
        const std::string& name = p.at(keys.name).get_ref<const std::string&>();
        const int r = shm::lookup_name(view, name.data(), name.size(), keys.kind, &id);
        if (r == 0)
            by_name = id;
        else if (r != -ESRCH)
            error = r;
    }
    const bool both = is_set(p, keys.id) && is_set(p, keys.name);
    if (both && (by_id.has_value() != by_name.has_value() ||
                 (by_id && by_name && by_id->id != by_name->id)))
        return call.error(kErrorConflictingRecordFound);
    const auto& found = by_id ? by_id : by_name;
    if (!found)
        return call.error(error != 0 ? kErrorServiceNotAvailable : kErrorNoRecordFound);
    if (!filter.matches(*found))
        return call.error(kErrorNonMatchingRecordFound);
    send_record(call, *found, keys, false);
}

void enumerate(Call& call, const shm::TableView* view, const Keys& keys, const Filter& filter) {
    if (!call.more())
        return call.error(varlink::kErrorExpectedMore);
    // Stream one record per range, offset 0, in UID order; hold back the last match so that
    // it can go out without "continues". The foreign range is never enumerated.
    std::optional<shm::Identity> pending;
    std::uint64_t next = 0;
    shm::RangeRecord r;
    while (view != nullptr) {
        const int e = shm::find_next(*view, next, &r);
        if (e == -ESRCH)
            break;  // the end: nothing was left out
        if (e < 0) {
            // A writer that kept flipping the table (-EAGAIN) or a corrupt entry (-EBADMSG): the
            // records after it are unknown, so the listing must not end as if complete. What
            // went out stays out; the error tells the client that it is not all there is.
            if (pending)
                send_record(call, *pending, keys, true);
            return call.error(kErrorServiceNotAvailable);
        }
        next = std::uint64_t{r.start} + 1;
        if (!shm::range_has_kind(r, keys.kind))
            continue;
        shm::Identity id;
        shm::identity_of_range(r, keys.kind, &id);
        if (!filter.matches(id))
            continue;
        if (pending)
            send_record(call, *pending, keys, true);
        pending = id;
    }
    if (!pending)
        return call.error(kErrorNoRecordFound);
    send_record(call, *pending, keys, false);
}

void vl_get_record(shm::TableReader& table, Call& call, const Keys& keys) {
    if (!check_service(call))
        return;
    Filter filter;
    if (const char* bad = parse_filter(call.parameters(), keys, filter))
        return call.invalid_parameter(bad);
    auto view = table.view();
    // No table yet means no ranges (the foreign range still resolves); a broken one means we
    // cannot say anything.
    if (!view && view.error().value() != ENOENT)
        return call.error(kErrorServiceNotAvailable);
    const shm::TableView* v = view ? *view : nullptr;
    const auto& p = call.parameters();
    if (is_set(p, keys.id) || is_set(p, keys.name))
        return lookup_keyed(call, v, keys, filter);
    enumerate(call, v, keys, filter);
}

void vl_get_memberships(Call& call) {
    if (!check_service(call))
        return;
    // Our groups have no members beyond the primary one, which is not a membership.
    call.error(kErrorNoRecordFound);
}

std::vector<Param> record_params(const Keys& keys) {
    return {
            {keys.id, Type::kInt, true},
            {keys.name, Type::kString, true},
            {"fuzzyNames", Type::kArray, true},
            {"dispositionMask", Type::kArray, true},
            {keys.id_min, Type::kInt, true},
            {keys.id_max, Type::kInt, true},
            {"uuid", Type::kString, true},
            // Checked by the handler, so that a missing one is BadService, as clients expect.
            {"service", Type::kAny, true},
    };
}

}  // namespace

varlink::Interface make_interface(shm::TableReader& table) {
    return varlink::Interface{
            kInterfaceName,
            kInterfaceDescription,
            {
                    {"GetUserRecord", record_params(kUserKeys),
                     [&table](Call& c) { vl_get_record(table, c, kUserKeys); }},
                    {"GetGroupRecord", record_params(kGroupKeys),
                     [&table](Call& c) { vl_get_record(table, c, kGroupKeys); }},
                    {"GetMemberships",
                     {{"userName", Type::kString, true},
                      {"groupName", Type::kString, true},
                      {"service", Type::kAny, true}},
                     vl_get_memberships},
            },
            // What clients (nss-systemd, userdbctl) take for "try the next source".
            kErrorServiceNotAvailable};
}

}  // namespace transient::userdb
