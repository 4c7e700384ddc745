// SPDX-License-Identifier: LGPL-2.1-or-later
//
// transientctl: the command-line client of io.transient.Allocator. It allocates, releases,
// lists and shows transient UID ranges by calling transient-allocd over Varlink, prints what
// it got as aligned text for people or as JSON for scripts, and turns every failure into one
// sentence on stderr that says what failed and why. `status` also reads the range table and
// /etc/nsswitch.conf itself, so it says something useful when the daemon is down. Exit status:
// 0 on success, 1 if an operation failed, 2 for a usage error, 3 if `status` could not reach
// the daemon.

#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <charconv>
#include <chrono>
#include <clocale>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "allocator/interface.hpp"
#include "base/paths.hpp"
#include "shm/identity.hpp"
#include "shm/table_reader.hpp"
#include "varlink/json_writer.hpp"
#include "varlink/varlink.hpp"

#ifndef PROJECT_VERSION
#define PROJECT_VERSION "unknown"
#endif

namespace transient::allocator {
namespace {

using varlink::json;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// transientctl status: the daemon could not be reached (what the table and files say is printed).
constexpr int kExitUnreachable = 3;

// Allocation runs collision checks against every other UID source, which can take a moment
// on a busy host; a daemon that does not answer at all is reported instead of waited for.
constexpr auto kCallTimeout = std::chrono::seconds(30);

// Messages go to a person at a terminal, so no SD_* priority prefixes here (unlike the daemons,
// whose stderr goes to the journal).
__attribute__((format(printf, 1, 2))) void log_error(const char* format, ...) {
    va_list ap;
    va_start(ap, format);
    std::vfprintf(stderr, format, ap);
    va_end(ap);
    std::fputc('\n', stderr);
}

int usage_error(const std::string& message);  // below, with the command line

// Strings from the daemon end up on a terminal: control characters could rewrite it.
std::string printable(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            c = '?';
    return out;
}

const char* ellipsis() {
    static const bool utf8 = std::strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    return utf8 ? "…" : "...";
}

std::optional<uint64_t> parse_uint(std::string_view s) {
    uint64_t value = 0;
    if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size())
        return std::nullopt;
    return value;
}

// ---- What the daemon sends -----------------------------------------------------------------

struct Range {
    std::string name;
    uint64_t start = 0;
    uint64_t size = 0;
    std::optional<uint64_t> owner;
    std::optional<int64_t> created;  // µs since the epoch
    // The user namespace the range is bound to (shown to its owner and root only).
    std::optional<uint64_t> userns_inode;
    std::optional<uint64_t> userns_id;
    bool imported = false;  // from /etc/subuid or /etc/subgid: read-only
    // Whether its UIDs / GIDs have names: an imported range may be in only one of the files.
    bool users = true;
    bool groups = true;
};

std::optional<uint64_t> get_uint(const json& object, const char* key) {
    auto it = object.find(key);
    if (it == object.end() || !it->is_number_integer() || *it < 0)
        return std::nullopt;
    return it->get<uint64_t>();
}

std::optional<Range> parse_range(const json& j) {
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string())
        return std::nullopt;
    Range r;
    r.name = j["name"].get<std::string>();
    auto start = get_uint(j, "start");
    auto size = get_uint(j, "size");
    if (!start || !size || *size == 0)
        return std::nullopt;
    r.start = *start;
    r.size = *size;
    r.owner = get_uint(j, "owner");
    if (auto it = j.find("created"); it != j.end() && it->is_number_integer())
        r.created = it->get<int64_t>();
    r.userns_inode = get_uint(j, "userNamespaceInode");
    r.userns_id = get_uint(j, "userNamespaceId");
    auto flag = [&](const char* key, bool* ret) {
        if (auto it = j.find(key); it != j.end() && it->is_boolean())
            *ret = it->get<bool>();
    };
    flag("imported", &r.imported);
    flag("users", &r.users);
    flag("groups", &r.groups);
    return r;
}

// One sentence for each error the daemon may send, so that nobody has to know the interface
// to understand what went wrong. The error name follows in parentheses for searching.
// `no_such_range` words NoSuchRange for the look-up at hand (by name or by UID).
std::string describe_error(const varlink::Client::Reply& reply,
                           std::string_view no_such_range = "there is no such range") {
    const std::string_view name = reply.error;
    const json& p = reply.parameters;
    std::string what;
    const auto kind = error_kind(name);
    if (kind && (*kind == ErrorKind::kInvalidName || *kind == ErrorKind::kInvalidSize ||
                 *kind == ErrorKind::kPermissionDenied ||
                 *kind == ErrorKind::kCannotMapUserNamespace) &&
        p.contains("message") && p["message"].is_string())
        what = printable(p["message"].get<std::string>());
    else if (kind) {
        switch (*kind) {
        case ErrorKind::kNameInUse:
            what = "a range with this name already exists";
            break;
        case ErrorKind::kNoSuchRange:
            what = no_such_range;
            break;
        case ErrorKind::kInvalidName:
            what = "invalid range name: it must start with a letter or '_', contain only "
                   "letters, digits, '_' and '-', and be at most 22 bytes long";
            break;
        case ErrorKind::kInvalidSize:
            what = "invalid size: a range has 1 UID or a multiple of 65536 (more than 65536: "
                   "root only)";
            break;
        case ErrorKind::kPoolExhausted:
            what = "no free UIDs are left in the pool";
            break;
        case ErrorKind::kPermissionDenied:
            what = "permission denied";
            break;
        case ErrorKind::kQuotaExceeded:
            what = "you have reached your quota of ranges";
            break;
        case ErrorKind::kNotUserNamespace:
            what = "--userns must name a user namespace other than the daemon's own";
            break;
        case ErrorKind::kCannotWatchUserNamespace:
            what = "the daemon cannot tell when that user namespace is gone (it lacks the "
                   "privileges to watch it), so it will not bind a range to it";
            break;
        case ErrorKind::kCannotMapUserNamespace:
            what = "the daemon could not write the user namespace's uid_map (a nested namespace "
                   "must be mapped from its parent)";
            break;
        case ErrorKind::kBusy:
            what = "another allocator kept " +
                   printable(p.value("lockFile", std::string("a lock"))) + " locked";
            if (p.contains("holderPid") && p["holderPid"].is_number_integer())
                what += " (PID " + std::to_string(p["holderPid"].get<std::int64_t>()) + ")";
            what += "; try again later";
            break;
        case ErrorKind::kImportedRange:
            what = "the range comes from /etc/subuid or /etc/subgid: edit those files to "
                   "change it";
            break;
        case ErrorKind::kInternal:
            what = "the daemon failed: " +
                   printable(p.value("message", std::string("its journal says why")));
            break;
        }
    } else if (name == varlink::kErrorPermissionDenied)
        what = "permission denied";
    else if (name == varlink::kErrorInterfaceNotFound)
        what = "the service does not implement io.transient.Allocator";
    else if (name == varlink::kErrorMethodNotFound || name == varlink::kErrorMethodNotImplemented)
        what = "the daemon does not support this operation (is it older than transientctl?)";
    else if (name == varlink::kErrorInvalidParameter)
        what = "the daemon rejected parameter '" +
               printable(p.value("parameter", std::string("?"))) + "'";
    else if (name == varlink::kErrorExpectedMore)
        what = "the daemon expected a streaming call";
    else if (name == varlink::kErrorSystem && p.contains("errno") && p["errno"].is_number_integer())
        what = "the daemon failed: " + errno_string(p["errno"].get<int>());
    else
        what = "the daemon reported an error";
    return what + " (" + printable(name) + ")";
}

// ---- Talking to the daemon -----------------------------------------------------------------

// Why a call got no answer at all.
std::string describe_transport_error(int e) {
    switch (e) {
    case EBADMSG:
    case EMSGSIZE:
        return "the daemon sent a malformed reply";
    case ECONNRESET:
    case EPIPE:
        return "the daemon closed the connection";
    case ETIMEDOUT:
        return "the daemon did not answer in time";
    default:
        return errno_string(e);
    }
}

struct Context {
    std::string socket;
    bool json_output = false;
    std::optional<uint64_t> size;
    std::string userns;  // --userns PATH
    std::string owner;   // --owner USER|UID
};

std::optional<varlink::Client> connect(const Context& ctx) {
    auto client = varlink::Client::connect(ctx.socket, kCallTimeout);
    if (!client) {
        const int e = client.error().value();
        const bool absent = e == ENOENT || e == ECONNREFUSED;
        log_error("Failed to connect to %s: %s%s", ctx.socket.c_str(), errno_string(e).c_str(),
                  absent ? " (is transient-allocd running?)" : "");
        return std::nullopt;
    }
    return std::move(*client);
}

// One call with one reply. `what` completes "Failed to ...". On failure, says so.
std::optional<json> call(const Context& ctx, std::string_view method, const json& parameters,
                         const std::string& what,
                         std::string_view no_such_range = "there is no such range",
                         std::span<const int> fds = {}) {
    auto client = connect(ctx);
    if (!client)
        return std::nullopt;
    auto reply = client->call(std::string(kInterfaceName) + "." + std::string(method), parameters,
                              fds);
    if (!reply) {
        log_error("Failed to %s: %s.", what.c_str(),
                  describe_transport_error(reply.error().value()).c_str());
        return std::nullopt;
    }
    if (!reply->error.empty()) {
        log_error("Failed to %s: %s.", what.c_str(),
                  describe_error(*reply, no_such_range).c_str());
        return std::nullopt;
    }
    return std::move(reply->parameters);
}

void print_json(const json& j) {
    // Indented for a person at a terminal, one line for a pipe.
    const int indent = ::isatty(STDOUT_FILENO) ? 2 : -1;
    std::puts(j.dump(indent, ' ', false, json::error_handler_t::replace).c_str());
}

// The owner's user name, if NSS knows one. (uid_t) -1 is no one: the owner an imported entry
// gets when its /etc/subuid name is no user. Asked once per UID: a list has a few owners and
// up to 28,000 ranges, and each getpwuid_r() reads /etc/passwd again.
std::optional<std::string> owner_name(const std::optional<uint64_t>& owner) {
    if (!owner || *owner >= UINT32_MAX)
        return std::nullopt;
    static std::unordered_map<uint64_t, std::optional<std::string>> known;
    if (auto it = known.find(*owner); it != known.end())
        return it->second;
    passwd pw{};
    passwd* result = nullptr;
    std::array<char, 4096> buf{};
    std::optional<std::string> name;
    if (::getpwuid_r(static_cast<uid_t>(*owner), &pw, buf.data(), buf.size(), &result) == 0 &&
        result != nullptr)
        name = printable(pw.pw_name);
    known.emplace(*owner, name);
    return name;
}

// "alice (1000)", the UID alone if it has no name, "-" if there is no owner.
std::string format_owner(const std::optional<uint64_t>& owner) {
    if (!owner || *owner >= UINT32_MAX)
        return "-";
    const auto name = owner_name(owner);
    return name ? *name + " (" + std::to_string(*owner) + ")" : std::to_string(*owner);
}

// How many 64K blocks a range is, if it is made of blocks (allocated ones of 65536 or more;
// an imported entry may have any size).
std::optional<uint64_t> blocks_of(const Range& r) {
    if (r.size < shm::kContainerRangeSize || r.size % shm::kContainerRangeSize != 0)
        return std::nullopt;
    return r.size / shm::kContainerRangeSize;
}

const char* source_name(const Range& r) { return r.imported ? "imported" : "allocated"; }

// Where an imported range comes from: the files that have its UIDs and its GIDs.
std::string import_files(const Range& r) {
    if (r.users && r.groups)
        return "/etc/subuid and /etc/subgid";
    return r.users ? "/etc/subuid only" : "/etc/subgid only";
}

// A range as `list --json` and `show --json` print it: the daemon's object, plus what this
// command works out for people the same way for both: the owner's name (NSS, as `ls -l` would
// show it), the source, the number of 64K blocks and the disposition of its users and groups
// (shm/identity.hpp's rule, which the NSS module and transient-userdbd use).
json describe_range(json raw, const Range& r) {
    if (auto name = owner_name(r.owner))
        raw["ownerName"] = *name;
    raw["source"] = source_name(r);
    if (auto blocks = blocks_of(r))
        raw["blocks"] = *blocks;
    raw["disposition"] =
            shm::disposition_name(shm::range_disposition(static_cast<std::uint32_t>(r.size)));
    raw["users"] = r.users;
    raw["groups"] = r.groups;
    return raw;
}

// A strict reader of the one layout the daemon writes ListRanges replies in: {"range":{…}} as
// compact JSON, members in sorted order, only the Range fields, with unsigned numbers, booleans
// and plain strings. It declines anything else (escapes, other keys or order, signs, fractions),
// which then goes through a JSON tree: what it takes is exactly one JSON object. A full pool
// lists 28,000 ranges, and a JSON tree per reply cost more than the rest of the listing.
class RangeText {
public:
    explicit RangeText(std::string_view text) : text_(text) {}

    // `ret_imported_sent`: whether the reply had "imported" (`list --json` keeps the member).
    std::optional<Range> read(bool& ret_imported_sent) {
        if (!literal(R"({"range":{)"))
            return std::nullopt;
        Range r;
        bool name = false, start = false, size = false, imported_sent = false;
        std::string_view last;
        for (bool first = true;; first = false) {
            if (literal("}"))
                break;
            if (!first && !literal(","))
                return std::nullopt;
            const auto key = string();
            // Strictly ascending: no key twice, and the order the members are written back in.
            if (!key || (!first && *key <= last) || !literal(":"))
                return std::nullopt;
            last = *key;
            bool ok = false;
            if (*key == "created") {
                const auto v = number();
                ok = v && *v <= static_cast<uint64_t>(INT64_MAX);
                if (ok)
                    r.created = static_cast<int64_t>(*v);
            } else if (*key == "name") {
                const auto v = string();
                ok = name = v.has_value();
                if (ok)
                    r.name = *v;
            } else if (*key == "start" || *key == "size") {
                const auto v = number();
                ok = v.has_value();
                (*key == "start" ? start : size) = ok;
                if (ok)
                    (*key == "start" ? r.start : r.size) = *v;
            } else if (*key == "owner" || *key == "userNamespaceId" ||
                       *key == "userNamespaceInode") {
                const auto v = number();
                ok = v.has_value();
                (*key == "owner" ? r.owner
                                 : *key == "userNamespaceId" ? r.userns_id : r.userns_inode) = v;
            } else if (*key == "imported" || *key == "users" || *key == "groups") {
                const auto v = boolean();
                ok = v.has_value();
                imported_sent = imported_sent || *key == "imported";
                if (ok)
                    (*key == "imported" ? r.imported : *key == "users" ? r.users : r.groups) = *v;
            }
            if (!ok)
                return std::nullopt;
        }
        if (!literal("}") || pos_ != text_.size() || !name || !start || !size || r.size == 0)
            return std::nullopt;
        ret_imported_sent = imported_sent;
        return r;
    }

private:
    bool literal(std::string_view s) {
        if (!text_.substr(pos_).starts_with(s))
            return false;
        pos_ += s.size();
        return true;
    }
    // A string without escapes: varlink::plain() text between quotes.
    std::optional<std::string_view> string() {
        if (!literal("\""))
            return std::nullopt;
        const std::size_t end = text_.find('"', pos_);
        if (end == std::string_view::npos || !varlink::plain(text_.substr(pos_, end - pos_)))
            return std::nullopt;
        const std::string_view s = text_.substr(pos_, end - pos_);
        pos_ = end + 1;
        return s;
    }
    std::optional<uint64_t> number() {
        std::size_t end = pos_;
        while (end < text_.size() && text_[end] >= '0' && text_[end] <= '9')
            end++;
        if (end - pos_ > 1 && text_[pos_] == '0')  // JSON has no leading zeros
            return std::nullopt;
        const auto v = parse_uint(text_.substr(pos_, end - pos_));  // nullopt if it overflows
        if (v)
            pos_ = end;
        return v;
    }
    std::optional<bool> boolean() {
        if (literal("true"))
            return true;
        if (literal("false"))
            return false;
        return std::nullopt;
    }

    std::string_view text_;
    std::size_t pos_ = 0;
};

// One range of a listing: read by RangeText, or from its JSON tree, whose `list --json` object
// (describe_range()) is then kept as it is.
struct Listed {
    Range range;
    std::optional<json> described;
    bool imported_sent = false;  // read by RangeText: whether the reply had "imported"
};

// `s` as a JSON string, as nlohmann writes it.
void append_json_string(std::string& out, std::string_view s) {
    if (!varlink::plain(s)) {
        out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
        return;
    }
    out += '"';
    out += s;
    out += '"';
}

// describe_range()'s object for a range RangeText read, byte for byte as nlohmann dumps it
// (members in sorted order), compact or indented as an element of the top-level array.
void append_described(std::string& out, const Range& r, bool imported_sent, bool indented) {
    bool first = true;
    auto key = [&](std::string_view k) {
        out += first ? (indented ? "{\n    " : "{") : (indented ? ",\n    " : ",");
        first = false;
        out += '"';
        out += k;
        out += indented ? "\": " : "\":";
    };
    auto number = [&](std::string_view k, uint64_t v) {
        key(k);
        out += std::to_string(v);
    };
    auto boolean = [&](std::string_view k, bool v) {
        key(k);
        out += v ? "true" : "false";
    };
    auto string = [&](std::string_view k, std::string_view v) {
        key(k);
        append_json_string(out, v);
    };
    if (auto blocks = blocks_of(r))
        number("blocks", *blocks);
    if (r.created)
        number("created", static_cast<uint64_t>(*r.created));
    string("disposition",
           shm::disposition_name(shm::range_disposition(static_cast<std::uint32_t>(r.size))));
    boolean("groups", r.groups);
    if (imported_sent)
        boolean("imported", r.imported);
    string("name", r.name);
    if (r.owner)
        number("owner", *r.owner);
    if (auto name = owner_name(r.owner))
        string("ownerName", *name);
    number("size", r.size);
    string("source", source_name(r));
    number("start", r.start);
    if (r.userns_id)
        number("userNamespaceId", *r.userns_id);
    if (r.userns_inode)
        number("userNamespaceInode", *r.userns_inode);
    boolean("users", r.users);
    out += indented ? "\n  }" : "}";
}

// `list --json`: what print_json() prints for the array of describe_range() objects.
void print_listing(const std::vector<Listed>& listed) {
    const bool indented = ::isatty(STDOUT_FILENO);
    std::string out = "[";
    for (std::size_t i = 0; i < listed.size(); i++) {
        out += i == 0 ? (indented ? "\n  " : "") : (indented ? ",\n  " : ",");
        const Listed& l = listed[i];
        if (!l.described) {
            append_described(out, l.range, l.imported_sent, indented);
            continue;
        }
        const std::string element =
                l.described->dump(indented ? 2 : -1, ' ', false, json::error_handler_t::replace);
        // One level deeper inside the array. A newline in JSON text is never inside a string.
        for (const char c : element) {
            out += c;
            if (c == '\n' && indented)
                out += "  ";
        }
    }
    out += indented && !listed.empty() ? "\n]" : "]";
    std::puts(out.c_str());
}

std::string format_created(const std::optional<int64_t>& usec) {
    if (!usec || *usec <= 0)
        return "-";
    const std::time_t t = static_cast<std::time_t>(*usec / 1000000);
    std::tm tm{};
    char buf[64];
    if (::localtime_r(&t, &tm) == nullptr ||
        std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
        return "-";
    return buf;
}

std::string format_names(const char* prefix, const Range& r) {
    if (!(prefix == shm::kUserNamePrefix ? r.users : r.groups))
        return std::string("none (the range is in ") +
               (r.users ? "/etc/subuid" : "/etc/subgid") + " only)";
    const std::string first = prefix + printable(r.name) + "-0";
    if (r.size == 1)
        return first;
    return first + ellipsis() + prefix + printable(r.name) + "-" + std::to_string(r.size - 1);
}

// ---- Commands -------------------------------------------------------------------------------

int do_allocate(const Context& ctx, std::span<const std::string> args) {
    const std::string& name = args[0];
    const uint64_t size = ctx.size.value_or(65536);
    json parameters{{"name", name}, {"size", size}};
    if (!ctx.owner.empty())
        parameters["owner"] = ctx.owner;  // the daemon resolves names (getpwnam_r)
    // The daemon binds the range to this namespace; our descriptor goes away when we exit.
    int userns_fd = -1;
    if (!ctx.userns.empty()) {
        userns_fd = ::open(ctx.userns.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (userns_fd < 0) {
            log_error("Failed to open user namespace %s: %s", printable(ctx.userns).c_str(),
                      errno_string(errno).c_str());
            return kExitFailure;
        }
        parameters[std::string(kUsernsFdParam)] = 0;
    }
    const int fds[] = {userns_fd};
    auto reply = call(ctx, kAllocateRange.name, parameters,
                      "allocate range '" + printable(name) + "'",
                      "there is no such range",
                      userns_fd >= 0 ? std::span<const int>(fds) : std::span<const int>());
    if (userns_fd >= 0)
        ::close(userns_fd);
    if (!reply)
        return kExitFailure;
    if (ctx.json_output) {
        print_json(*reply);
        return EXIT_SUCCESS;
    }
    auto r = parse_range(*reply);
    if (!r) {
        log_error("Failed to allocate range '%s': the daemon sent a malformed reply.",
                  printable(name).c_str());
        return kExitFailure;
    }
    const std::string users = format_names(shm::kUserNamePrefix, *r);
    if (r->size == 1)
        std::printf("Allocated range %s: UID %llu, user %s.\n", printable(r->name).c_str(),
                    static_cast<unsigned long long>(r->start), users.c_str());
    else
        std::printf("Allocated range %s: UIDs %llu%s%llu (%llu), users %s.\n",
                    printable(r->name).c_str(), static_cast<unsigned long long>(r->start),
                    ellipsis(), static_cast<unsigned long long>(r->start + r->size - 1),
                    static_cast<unsigned long long>(r->size), users.c_str());
    return EXIT_SUCCESS;
}

int do_release(const Context& ctx, std::span<const std::string> args) {
    const std::string& name = args[0];
    auto reply = call(ctx, kReleaseRange.name, json{{"name", name}},
                      "release range '" + printable(name) + "'");
    if (!reply)
        return kExitFailure;
    if (ctx.json_output)
        print_json(*reply);
    else
        std::printf("Released range %s.\n", printable(name).c_str());
    return EXIT_SUCCESS;
}

// Prints rows as columns separated by two spaces; numeric columns (`right`) align right.
void print_table(const std::vector<std::vector<std::string>>& rows, std::span<const bool> right) {
    std::vector<std::size_t> width(rows.front().size(), 0);
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); i++)
            width[i] = std::max(width[i], row[i].size());
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); i++) {
            const std::string pad(width[i] - row[i].size(), ' ');
            const bool last = i + 1 == row.size();
            line += right[i] ? pad + row[i] : (last ? row[i] : row[i] + pad);
            if (!last)
                line += "  ";
        }
        std::puts(line.c_str());
    }
}

int do_list(const Context& ctx, std::span<const std::string>) {
    auto client = connect(ctx);
    if (!client)
        return kExitFailure;
    std::vector<Listed> listed;
    std::string problem;  // the first error or malformed range: the listing fails
    auto read = [&](std::string_view text, bool) {
        bool imported_sent = false;
        auto r = RangeText(text).read(imported_sent);
        if (!r)
            return false;
        listed.push_back(Listed{std::move(*r), std::nullopt, imported_sent});
        return true;
    };
    auto each = [&](varlink::Client::Reply&& reply) {
        // An empty table is not an error to the user, however the daemon puts it.
        if (!problem.empty() || reply.error == error_name(ErrorKind::kNoSuchRange))
            return;
        if (!reply.error.empty()) {
            problem = describe_error(reply);
            return;
        }
        if (!reply.parameters.contains("range"))
            return;
        auto r = parse_range(reply.parameters["range"]);
        if (!r) {
            problem = "the daemon sent a malformed range";
            return;
        }
        json described = describe_range(reply.parameters["range"], *r);
        listed.push_back(Listed{std::move(*r), std::move(described)});
    };
    auto done = client->call_more(
            std::string(kInterfaceName) + "." + std::string(kListRanges.name), json::object(),
            read, each);
    if (!done) {
        log_error("Failed to list ranges: %s.",
                  describe_transport_error(done.error().value()).c_str());
        return kExitFailure;
    }
    if (!problem.empty()) {
        log_error("Failed to list ranges: %s.", problem.c_str());
        return kExitFailure;
    }

    if (ctx.json_output) {
        print_listing(listed);
        return EXIT_SUCCESS;
    }
    if (listed.empty()) {
        std::puts("No ranges.");
        return EXIT_SUCCESS;
    }
    std::vector<const Range*> ranges;
    ranges.reserve(listed.size());
    for (const Listed& l : listed)
        ranges.push_back(&l.range);
    std::sort(ranges.begin(), ranges.end(),
              [](const Range* a, const Range* b) { return a->start < b->start; });
    std::vector<std::vector<std::string>> rows{
        {"NAME", "START", "END", "SIZE", "BLOCKS", "OWNER", "SOURCE", "CREATED"}};
    rows.reserve(ranges.size() + 1);
    for (const Range* r : ranges) {
        const auto blocks = blocks_of(*r);
        rows.push_back({printable(r->name), std::to_string(r->start),
                        std::to_string(r->start + r->size - 1), std::to_string(r->size),
                        blocks ? std::to_string(*blocks) : "-", format_owner(r->owner),
                        source_name(*r), format_created(r->created)});
    }
    static constexpr bool kRight[] = {false, true, true, true, true, false, false, false};
    print_table(rows, kRight);
    std::printf("\n%zu %s listed.\n", ranges.size(), ranges.size() == 1 ? "range" : "ranges");
    return EXIT_SUCCESS;
}

// "Key: value" lines with the keys aligned right, as in systemd's status output.
void print_fields(const std::vector<std::pair<std::string, std::string>>& lines) {
    std::size_t width = 0;
    for (const auto& [key, value] : lines)
        width = std::max(width, key.size());
    for (const auto& [key, value] : lines)
        std::printf("%*s: %s\n", static_cast<int>(width), key.c_str(), value.c_str());
}

// A range as "Key: value" lines (print_fields()). `uid` is the
// UID the range was looked up by, if any.
void print_range(const Range& r, const std::optional<uint64_t>& uid) {
    std::string size = std::to_string(r.size);
    if (auto blocks = blocks_of(r); blocks && *blocks > 1)
        size += " (" + std::to_string(*blocks) + " blocks of " +
                std::to_string(shm::kContainerRangeSize) + ")";
    std::vector<std::pair<std::string, std::string>> lines{
        {"Name", printable(r.name)},
        {"Start", std::to_string(r.start)},
        {"End", std::to_string(r.start + r.size - 1)},
        {"Size", size},
        {"Users", format_names(shm::kUserNamePrefix, r)},
        {"Groups", format_names(shm::kGroupNamePrefix, r)},
        {"Disposition",
         shm::disposition_name(shm::range_disposition(static_cast<std::uint32_t>(r.size)))},
        {"Owner", format_owner(r.owner)},
        {"Source", r.imported ? "imported from " + import_files(r) + " (read-only)"
                              : std::string("allocated")},
        {"Created", format_created(r.created)},
    };
    if (r.userns_inode || r.userns_id) {
        std::string ns = "user namespace";
        if (r.userns_inode)
            ns += " inode " + std::to_string(*r.userns_inode);
        if (r.userns_id)
            ns += ", id " + std::to_string(*r.userns_id);
        lines.push_back({"Bound to", ns + " (released when it is gone)"});
    }
    if (uid && *uid >= r.start && *uid - r.start < r.size) {
        // What the ID is named as a UID and as a GID, as the NSS module names it.
        const std::string n = std::to_string(*uid - r.start);
        auto id_line = [&](const char* prefix, bool has) {
            return std::to_string(*uid) +
                   (has ? " (" + std::string(prefix) + printable(r.name) + "-" + n + ")"
                        : std::string(" (no name)"));
        };
        lines.insert(lines.begin(), {{"UID", id_line(shm::kUserNamePrefix, r.users)},
                                     {"GID", id_line(shm::kGroupNamePrefix, r.groups)}});
    }
    print_fields(lines);
}

int do_show(const Context& ctx, std::span<const std::string> args) {
    const std::string& key = args[0];
    // Range names cannot start with a digit, so all digits can only mean a UID.
    const bool by_uid = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return c >= '0' && c <= '9';
    });
    json parameters;
    std::string what;
    std::optional<uint64_t> uid;
    if (by_uid) {
        uid = parse_uint(key);
        if (!uid || *uid > UINT32_MAX)
            return usage_error("Invalid UID '" + printable(key) + "': a UID is at most " +
                               std::to_string(UINT32_MAX) + ".");
        parameters = json{{"uid", *uid}};
        what = "look up the range of UID " + key;
    } else {
        parameters = json{{"name", key}};
        what = "look up range '" + printable(key) + "'";
    }

    // The foreign range is systemd's, not the allocator's; say what the ID is all the same.
    std::string no_such_uid = "no range contains this UID";
    if (uid && shm::is_foreign_id(static_cast<std::uint32_t>(*uid)))
        no_such_uid += ": it is " + std::string(shm::kForeignNamePrefix) +
                       std::to_string(*uid - shm::kForeignBase) +
                       ", of systemd's foreign UID range, which is not allocated here";
    auto reply = call(ctx, kGetRange.name, parameters, what,
                      by_uid ? no_such_uid : "there is no such range");
    if (!reply)
        return kExitFailure;
    const json range = reply->value("range", json());
    auto r = parse_range(range);
    if (!r) {
        log_error("Failed to %s: the daemon sent a malformed reply.", what.c_str());
        return kExitFailure;
    }
    if (ctx.json_output)
        print_json(describe_range(range, *r));  // the range itself, as in "list --json"
    else
        print_range(*r, uid);
    return EXIT_SUCCESS;
}

// ---- status ---------------------------------------------------------------------------------

// The nsswitch.conf status reads; the integration tests' sandbox mounts its own over it.
constexpr char kNsswitchPath[] = "/etc/nsswitch.conf";

// What the daemon said in GetStatus, or nothing when it could not be asked.
struct DaemonStatus {
    bool reachable = false;
    std::string error;  // why not reachable, or why GetStatus failed
    json reply;         // GetStatus's parameters when it answered
};

DaemonStatus query_daemon(const Context& ctx) {
    DaemonStatus d;
    auto client = varlink::Client::connect(ctx.socket, kCallTimeout);
    if (!client) {
        d.error = "cannot connect to " + ctx.socket + ": " + errno_string(client.error().value());
        return d;
    }
    auto reply = client->call(std::string(kInterfaceName) + "." + std::string(kGetStatus.name),
                              json::object());
    if (!reply) {
        d.error = describe_transport_error(reply.error().value());
        return d;
    }
    d.reachable = true;
    if (!reply->error.empty())
        d.error = describe_error(*reply);
    else if (!reply->parameters.is_object())
        d.error = "the daemon sent a malformed reply";
    else
        d.reply = std::move(reply->parameters);
    return d;
}

// Whether a `database:` line of nsswitch.conf names `service` among its sources. Nothing if the
// file has no such line.
std::optional<bool> nsswitch_has(const std::string& text, std::string_view database,
                                 std::string_view service) {
    std::optional<bool> found;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string::npos)
            eol = text.size();
        std::string line = text.substr(pos, eol - pos);
        pos = eol + 1;
        line = line.substr(0, line.find('#'));
        for (char& c : line)
            if (c == '\t' || c == '\r')
                c = ' ';
        const std::size_t first = line.find_first_not_of(' ');
        if (first == std::string::npos || line.compare(first, database.size(), database) != 0 ||
            line.size() <= first + database.size() || line[first + database.size()] != ':')
            continue;
        // The last line for a database is the one glibc uses.
        found = false;
        std::string_view rest = std::string_view(line).substr(first + database.size() + 1);
        while (!rest.empty()) {
            const std::size_t b = rest.find_first_not_of(' ');
            if (b == std::string_view::npos)
                break;
            rest = rest.substr(b);
            const std::size_t e = std::min(rest.find(' '), rest.size());
            if (rest.substr(0, e) == service)
                found = true;
            rest = rest.substr(e);
        }
    }
    return found;
}

// Why the range table could not be read, and what that means for the admin reading `status`.
std::string describe_table_error(int e) {
    const std::string why = " (" + errno_string(e) + ")";
    switch (e) {
        case ENOENT:
            return "no table" + why +
                   ": the allocator has not run since boot, or TRANSIENT_RUNTIME_DIR names "
                   "another directory";
        case EACCES:
        case EPERM:
            return "cannot read it" + why +
                   ": whoever cannot read it sees no names for the ranges; the table must "
                   "be readable by all (mode 0644)";
        case EPROTONOSUPPORT:
            return "a table version this transientctl cannot read" + why +
                   ": written by another version of transient-allocd, which the installed one "
                   "replaces when it starts";
        case EBADMSG:
            return "not a range table, or a damaged one" + why;
        default:
            return errno_string(e);
    }
}

// Fill of the pools, from the table's records.
struct PoolFill {
    uint64_t container_blocks = 0, container_used = 0;
    uint64_t single_ids = 0, single_used = 0;
    uint64_t imported_ranges = 0, imported_ids = 0;
};

PoolFill pool_fill(std::span<const shm::RangeRecord> records, uint64_t cfirst, uint64_t clast,
                   uint64_t sfirst, uint64_t slast) {
    PoolFill f;
    const uint64_t aligned = (cfirst + 0xFFFF) & ~uint64_t{0xFFFF};
    if (clast + 1 > aligned)
        f.container_blocks = (clast + 1 - aligned) / shm::kContainerRangeSize;
    if (slast >= sfirst)
        f.single_ids = slast - sfirst + 1;
    for (const shm::RangeRecord& r : records) {
        if ((r.flags & shm::kEntryFlagImported) != 0) {
            f.imported_ranges++;
            f.imported_ids += r.size;
        } else if (r.size == 1 && r.start >= sfirst && r.start <= slast) {
            f.single_used++;
        } else if (r.size > 1 && r.start >= cfirst && r.start <= clast) {
            f.container_used += r.size / shm::kContainerRangeSize;
        }
    }
    return f;
}

std::string percent(uint64_t used, uint64_t total) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%%", total == 0 ? 0.0 : 100.0 * used / total);
    return buf;
}

std::string yes_no(const std::optional<bool>& v, const char* missing) {
    return !v ? missing : *v ? "transient" : "without transient";
}

// The first screen to read when something is off: the daemon, the table, the pools, the probe,
// the quotas and the nsswitch.conf lines. What the daemon cannot tell (it is down) comes from the
// table and the files. Exit status 0: the daemon answered; 3: it is unreachable (the rest is
// printed anyway); 1: it answered GetStatus with an error, or the table cannot be read.
int do_status(const Context& ctx, std::span<const std::string>) {
    const DaemonStatus daemon = query_daemon(ctx);
    const json& d = daemon.reply;
    auto num = [&](const char* key, uint64_t fallback) {
        return get_uint(d, key).value_or(fallback);
    };
    auto str = [&](const char* key) {
        auto it = d.find(key);
        return it != d.end() && it->is_string() ? printable(it->get<std::string>())
                                                : std::string();
    };

    // The table, read directly: it is there (and tells the truth) whether or not the daemon is.
    std::string table_path = str("tablePath");
    if (table_path.empty())
        table_path = shm::table_path();
    shm::TableReader reader(table_path);
    std::string table_error;
    std::vector<shm::RangeRecord> records;
    uint64_t generation = 0, table_size = 0, capacity = 0;
    if (auto view = reader.view(); !view) {
        table_error = describe_table_error(view.error().value());
    } else {
        const shm::TableView& v = **view;
        generation = shm::table_seq(v);
        table_size = v.size;
        capacity = v.capacity;
        records.resize(v.capacity);
        std::size_t count = 0;
        if (int r = shm::read_all(v, records.data(), records.size(), &count); r < 0) {
            table_error = errno_string(-r);
            count = 0;
        }
        records.resize(count);
    }

    const bool known = daemon.reachable && daemon.error.empty();
    const uint64_t cfirst = num("containerPoolFirst", shm::kContainerPoolFirst);
    const uint64_t clast = num("containerPoolLast", shm::kContainerPoolLast);
    const uint64_t sfirst = num("singlePoolFirst", shm::kDynamicPoolFirst);
    const uint64_t slast = num("singlePoolLast", shm::kDynamicPoolLast);
    const PoolFill fill = pool_fill(records, cfirst, clast, sfirst, slast);

    std::string nss_text;
    bool nss_readable = false;
    if (std::FILE* f = std::fopen(kNsswitchPath, "re")) {
        char buf[4096];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
            nss_text.append(buf, n);
        nss_readable = !std::ferror(f);
        std::fclose(f);
    }
    const auto nss_passwd = nsswitch_has(nss_text, "passwd", "transient");
    const auto nss_group = nsswitch_has(nss_text, "group", "transient");
    const auto nss_subid = nsswitch_has(nss_text, "subid", "transient");

    // A table nobody can read is a failure even while the daemon answers: names do not resolve.
    const int rc = !daemon.reachable                  ? kExitUnreachable
                   : known && table_error.empty() ? EXIT_SUCCESS
                                                  : kExitFailure;
    if (ctx.json_output) {
        json out;
        out["daemon"] = {{"socket", ctx.socket}, {"reachable", daemon.reachable}};
        if (known)
            out["daemon"]["version"] = str("version");
        if (!daemon.error.empty())
            out["daemon"]["error"] = daemon.error;
        out["table"] = {{"path", table_path}};
        if (table_error.empty()) {
            out["table"]["generation"] = generation;
            out["table"]["size"] = table_size;
            out["table"]["capacity"] = capacity;
            out["table"]["ranges"] = records.size();
        } else {
            out["table"]["error"] = table_error;
        }
        out["pools"] = {
            {"container", {{"first", cfirst}, {"last", clast},
                           {"blocks", fill.container_blocks}, {"used", fill.container_used}}},
            {"single", {{"first", sfirst}, {"last", slast}, {"ids", fill.single_ids},
                        {"used", fill.single_used}}},
            {"imported", {{"ranges", fill.imported_ranges}, {"ids", fill.imported_ids}}},
            {"configured", known},
        };
        out["probe"] = known ? json(str("probe")) : json();
        out["quotas"] = known ? json{{"maxRangesPerUser", num("maxRangesPerUser", 0)},
                                     {"maxRangeSize", num("maxRangeSize", 0)}}
                              : json();
        out["nsswitch"] = {{"path", kNsswitchPath}, {"readable", nss_readable}};
        for (auto [key, v] : {std::pair{"passwd", nss_passwd}, std::pair{"group", nss_group},
                              std::pair{"subid", nss_subid}})
            out["nsswitch"][key] = v ? json(*v) : json();
        print_json(out);
        return rc;
    }

    const std::string unknown = known ? "" : "unknown (the daemon is unreachable)";
    std::vector<std::pair<std::string, std::string>> lines;
    if (known)
        lines.push_back({"Daemon", "reachable, transient-allocd " + str("version")});
    else if (daemon.reachable)
        lines.push_back({"Daemon", "reachable, but status failed: " + daemon.error});
    else
        lines.push_back({"Daemon", "unreachable: " + daemon.error});
    lines.push_back({"Socket", printable(ctx.socket)});
    lines.push_back({"Table", printable(table_path)});
    if (table_error.empty()) {
        lines.push_back({"Generation", std::to_string(generation)});
        lines.push_back({"Size", std::to_string(table_size) + " bytes, " +
                                         std::to_string(records.size()) + " of " +
                                         std::to_string(capacity) + " entries used"});
    } else {
        lines.push_back({"Table error", table_error});
    }
    const std::string pools_from = known ? "" : " (built-in default; allocd.conf may differ)";
    lines.push_back({"64K pool", std::to_string(cfirst) + ellipsis() + std::to_string(clast) +
                                         ": " + std::to_string(fill.container_used) + " of " +
                                         std::to_string(fill.container_blocks) +
                                         " blocks used (" +
                                         percent(fill.container_used, fill.container_blocks) +
                                         ")" + pools_from});
    lines.push_back({"Single-UID pool",
                     std::to_string(sfirst) + ellipsis() + std::to_string(slast) + ": " +
                             std::to_string(fill.single_used) + " of " +
                             std::to_string(fill.single_ids) + " UIDs used (" +
                             percent(fill.single_used, fill.single_ids) + ")" + pools_from});
    lines.push_back({"Imported", std::to_string(fill.imported_ranges) +
                                         (fill.imported_ranges == 1 ? " range, " : " ranges, ") +
                                         std::to_string(fill.imported_ids) +
                                         " IDs (/etc/subuid, /etc/subgid)"});
    lines.push_back({"Probe", known ? str("probe") : unknown});
    lines.push_back({"Quotas", known ? "MaxRangesPerUser=" +
                                               std::to_string(num("maxRangesPerUser", 0)) +
                                               ", MaxRangeSize=" +
                                               std::to_string(num("maxRangeSize", 0))
                                     : unknown});
    if (!nss_readable)
        lines.push_back({"nsswitch.conf", std::string(kNsswitchPath) + " is not readable"});
    else
        lines.push_back({"nsswitch.conf",
                         "passwd: " + yes_no(nss_passwd, "no line") +
                                 ", group: " + yes_no(nss_group, "no line") +
                                 ", subid: " + yes_no(nss_subid, "no line")});
    print_fields(lines);
    return rc;
}

// ---- Command line ---------------------------------------------------------------------------

void help() {
    std::printf(
        "transientctl [OPTIONS...] COMMAND ...\n"
        "\n"
        "Allocate and inspect transient UID/GID ranges of transient-allocd.\n"
        "\n"
        "Commands:\n"
        "  allocate NAME [--size N] [--owner USER] [--userns PATH]\n"
        "                                  Allocate a range of 65536 (default) or N UIDs\n"
        "  release NAME                    Release a range\n"
        "  list                            List the live ranges (default)\n"
        "  show NAME|UID                   Show a range, by name or by one of its UIDs\n"
        "  status                          Show the daemon, the range table, pools, probe,\n"
        "                                  quotas and nsswitch.conf lines (exit status 3:\n"
        "                                  the daemon is unreachable; 1: it failed, or the\n"
        "                                  table cannot be read)\n"
        "\n"
        "Options:\n"
        "  -h --help            Show this help\n"
        "     --version         Show the package version\n"
        "     --json            Print JSON instead of text\n"
        "     --socket PATH     Talk to the daemon at PATH instead of\n"
        "                       $TRANSIENT_RUNTIME_DIR/io.transient.Allocator\n"
        "                       (%s/io.transient.Allocator if unset)\n"
        "     --size N          Number of UIDs to allocate: 1 or 65536; root: any multiple\n"
        "                       of 65536 up to MaxRangeSize= (allocd.conf, default 8388608)\n"
        "     --owner USER      Allocate for USER (a name or UID; root only): whose quota,\n"
        "                       release right and subordinate IDs the range is\n"
        "     --userns PATH     Release the allocated range automatically once the user\n"
        "                       namespace PATH (e.g. /proc/PID/ns/user) is gone\n",
        base::kDefaultRuntimeDir);
}

struct Command {
    const char* name;
    std::size_t args;  // exactly this many operands
    const char* usage;
    int (*run)(const Context&, std::span<const std::string>);
};

constexpr Command kCommands[] = {
    {"allocate", 1, "allocate NAME [--size N] [--owner USER] [--userns PATH]", do_allocate},
    {"release", 1, "release NAME", do_release},
    {"list", 0, "list", do_list},
    {"show", 1, "show NAME|UID", do_show},
    {"status", 0, "status", do_status},
};

// `message` may be empty when getopt_long() has already described the problem.
int usage_error(const std::string& message) {
    if (!message.empty())
        log_error("%s", message.c_str());
    log_error("Try 'transientctl --help' for more information.");
    return kExitUsage;
}

// Fills `ctx` from the options. Returns an exit status if there is nothing more to do (help,
// version, a usage error), nothing if the command is to run; optind points at its name.
std::optional<int> parse_options(int argc, char** argv, Context& ctx) {
    enum { kArgVersion = 0x100, kArgJson, kArgSocket, kArgSize, kArgUserns, kArgOwner };
    static const option kOptions[] = {
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, kArgVersion},
        {"json", no_argument, nullptr, kArgJson},
        {"socket", required_argument, nullptr, kArgSocket},
        {"size", required_argument, nullptr, kArgSize},
        {"userns", required_argument, nullptr, kArgUserns},
        {"owner", required_argument, nullptr, kArgOwner},
        {},
    };
    int c;
    while ((c = ::getopt_long(argc, argv, "h", kOptions, nullptr)) >= 0) {
        switch (c) {
        case 'h':
            help();
            return EXIT_SUCCESS;
        case kArgVersion:
            std::puts("transientctl " PROJECT_VERSION);
            return EXIT_SUCCESS;
        case kArgJson:
            ctx.json_output = true;
            break;
        case kArgSocket:
            if (*optarg == '\0')
                return usage_error("The socket path must not be empty.");
            ctx.socket = optarg;
            break;
        case kArgSize:
            ctx.size = parse_uint(optarg);
            if (!ctx.size || *ctx.size > UINT32_MAX)
                return usage_error("Invalid size '" + printable(optarg) +
                                   "', expected 1 or a multiple of 65536.");
            break;
        case kArgUserns:
            if (*optarg == '\0')
                return usage_error("The user namespace path must not be empty.");
            ctx.userns = optarg;
            break;
        case kArgOwner:
            if (*optarg == '\0')
                return usage_error("The owner must not be empty.");
            ctx.owner = optarg;
            break;
        default:  // getopt_long() has described the problem
            return usage_error("");
        }
    }
    return std::nullopt;
}

int run(int argc, char** argv) {
    std::setlocale(LC_ALL, "");
    Context ctx;
    if (auto done = parse_options(argc, argv, ctx))
        return *done;

    const std::vector<std::string> operands(argv + optind, argv + argc);
    const std::string verb = operands.empty() ? "list" : operands[0];
    const auto args = operands.empty() ? std::span<const std::string>()
                                       : std::span(operands).subspan(1);
    const Command* command = std::find_if(std::begin(kCommands), std::end(kCommands),
                                          [&](const Command& cmd) { return verb == cmd.name; });
    if (command == std::end(kCommands))
        return usage_error("Unknown command '" + printable(verb) + "'.");
    if (args.size() != command->args)
        return usage_error(std::string(args.size() < command->args ? "Missing" : "Too many") +
                           " arguments. Usage: transientctl " + command->usage);
    if (ctx.size && verb != "allocate")
        return usage_error("--size is only meaningful for allocate.");
    if (!ctx.userns.empty() && verb != "allocate")
        return usage_error("--userns is only meaningful for allocate.");
    if (!ctx.owner.empty() && verb != "allocate")
        return usage_error("--owner is only meaningful for allocate.");

    if (ctx.socket.empty())
        ctx.socket = base::runtime_path(kInterfaceName);

    int r = command->run(ctx, args);
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
        log_error("Failed to write output: %s", errno_string(errno).c_str());
        r = kExitFailure;
    }
    return r;
}

}  // namespace
}  // namespace transient::allocator

int main(int argc, char** argv) {
    try {
        return transient::allocator::run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "transientctl: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "transientctl: unexpected failure\n");
    }
    return EXIT_FAILURE;
}
