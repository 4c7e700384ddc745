// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The declared interface io.transient.Allocator (allocator/interface.hpp) and what the service
// makes of it: error names and kinds map one to one, the IDL it serves — parsed back here —
// declares exactly the types, methods, parameters and errors of the tables, and the method
// table the server checks calls against is the declared one.

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "allocator/interface.hpp"
#include "allocator/service.hpp"
#include "tests/lib/temp_dir.hpp"

namespace transient::allocator {
namespace {

TEST(InterfaceTest, EveryErrorKindHasOneDeclaredName) {
    std::set<std::string_view> names;
    for (const ErrorDecl& e : kErrors) {
        EXPECT_EQ(error_name(e.kind), e.name);
        EXPECT_EQ(error_kind(e.name), e.kind) << e.name;
        EXPECT_TRUE(e.name.starts_with(std::string(kInterfaceName) + ".")) << e.name;
        EXPECT_TRUE(names.insert(e.name).second) << "declared twice: " << e.name;
    }
    EXPECT_EQ(error_name(ErrorKind::kBusy), "io.transient.Allocator.TemporarilyUnavailable");
    EXPECT_EQ(error_name(ErrorKind::kInternal), "io.transient.Allocator.SystemError");
    EXPECT_FALSE(error_kind("io.transient.Allocator.Nope"));
    EXPECT_FALSE(error_kind("NameInUse"));
    EXPECT_FALSE(error_kind("org.varlink.service.PermissionDenied"));
}

// ---- A small reader of the IDL text, independent of the printer ------------------------------

struct ParsedField {
    std::string type;  // "string", "?int", "Range", …
    bool operator==(const ParsedField&) const = default;
};
using ParsedFields = std::vector<std::pair<std::string, ParsedField>>;

struct ParsedIdl {
    std::string interface;
    std::map<std::string, ParsedFields> types;
    std::map<std::string, std::pair<ParsedFields, ParsedFields>> methods;
    std::map<std::string, ParsedFields> errors;
};

std::string trim(const std::string& s) {
    const auto first = s.find_first_not_of(" \n");
    const auto last = s.find_last_not_of(" \n");
    return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

// "a: string, b: ?int" (line breaks allowed) into fields; false if malformed.
bool parse_fields(const std::string& text, ParsedFields& out) {
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        const auto colon = item.find(':');
        if (colon == std::string::npos)
            return trim(item).empty() && out.empty() && text.find(',') == std::string::npos;
        out.emplace_back(trim(item.substr(0, colon)), ParsedField{trim(item.substr(colon + 1))});
        if (out.back().first.empty() || out.back().second.type.empty())
            return false;
    }
    return true;
}

// Comments dropped, then declarations: "interface N", "type N (…)", "method N(…) -> (…)",
// "error N (…)", each possibly spread over lines.
::testing::AssertionResult parse_idl(const std::string& idl, ParsedIdl& out) {
    std::string text;
    std::stringstream lines(idl);
    for (std::string line; std::getline(lines, line);)
        if (!line.starts_with("#"))
            text += line + "\n";
    std::size_t pos = 0;
    auto fail = [&](const std::string& why) {
        return ::testing::AssertionFailure() << why << " at: " << text.substr(pos, 60);
    };
    // The text of a parenthesized list starting at text[pos] == '(', pos after it.
    auto group = [&](std::string& ret) {
        if (pos >= text.size() || text[pos] != '(')
            return false;
        const auto close = text.find(')', pos);
        if (close == std::string::npos)
            return false;
        ret = text.substr(pos + 1, close - pos - 1);
        pos = close + 1;
        return true;
    };
    auto word = [&] {
        const auto end = text.find_first_of(" (\n", pos);
        std::string w = text.substr(pos, end - pos);
        pos = end;
        return w;
    };
    while ((pos = text.find_first_not_of(" \n", pos)) != std::string::npos) {
        const std::string keyword = word();
        pos = text.find_first_not_of(' ', pos);
        const std::string name = word();
        if (keyword == "interface") {
            out.interface = name;
            continue;
        }
        if (keyword != "method" && text[pos] == ' ')
            pos++;
        std::string params;
        ParsedFields fields;
        if (!group(params) || !parse_fields(params, fields))
            return fail("bad parameter list of " + name);
        if (keyword == "type") {
            out.types[name] = fields;
        } else if (keyword == "error") {
            out.errors[name] = fields;
        } else if (keyword == "method") {
            if (text.compare(pos, 4, " -> ") != 0)
                return fail("no -> after method " + name);
            pos += 4;
            std::string returns;
            ParsedFields returned;
            if (!group(returns) || !parse_fields(returns, returned))
                return fail("bad return list of " + name);
            out.methods[name] = {fields, returned};
        } else {
            return fail("unknown keyword '" + keyword + "'");
        }
    }
    return ::testing::AssertionSuccess();
}

ParsedFields declared(std::span<const Field> fields) {
    ParsedFields out;
    for (const Field& f : fields) {
        const std::string type = f.type == FieldType::kString ? "string"
                                 : f.type == FieldType::kInt  ? "int"
                                 : f.type == FieldType::kBool ? "bool"
                                                              : std::string(kRangeType.name);
        out.emplace_back(std::string(f.name), ParsedField{(f.optional ? "?" : "") + type});
    }
    return out;
}

TEST(InterfaceTest, ServedIdlDeclaresExactlyTheTables) {
    const std::string idl = interface_description();
    ParsedIdl parsed;
    ASSERT_TRUE(parse_idl(idl, parsed)) << idl;
    EXPECT_EQ(parsed.interface, kInterfaceName);

    ASSERT_EQ(parsed.types.size(), std::size(kTypes));
    for (const TypeDecl& t : kTypes)
        EXPECT_EQ(parsed.types[std::string(t.name)], declared(t.fields)) << t.name;

    ASSERT_EQ(parsed.methods.size(), std::size(kMethods));
    for (const MethodDecl& m : kMethods) {
        const auto& [params, returns] = parsed.methods[std::string(m.name)];
        EXPECT_EQ(params, declared(m.parameters)) << m.name;
        EXPECT_EQ(returns, declared(m.returns)) << m.name;
    }

    ASSERT_EQ(parsed.errors.size(), std::size(kErrors));
    for (const ErrorDecl& e : kErrors)
        EXPECT_EQ(parsed.errors[std::string(bare_error_name(e))], declared(e.parameters))
                << e.name;

    // What a reader of GetInterfaceDescription relies on: comments kept, lines readable.
    EXPECT_NE(idl.find("# Releases a range: its UIDs no longer resolve"), std::string::npos);
    std::stringstream lines(idl);
    for (std::string line; std::getline(lines, line);)
        EXPECT_LE(line.size(), 100U) << line;
}

TEST(InterfaceTest, MakeInterfaceServesTheDeclaration) {
    const transient::testing::TempDir tmp("transient-interface-test");
    const std::string& dir = tmp.path();
    {
        struct NoCollisions : CollisionChecker {
            std::optional<std::string> range_taken(std::uint32_t, std::uint32_t) override {
                return std::nullopt;
            }
            std::optional<std::string> name_taken(std::string_view) override {
                return std::nullopt;
            }
        };
        auto writer = shm::TableWriter::open(dir + "/ranges.table");
        ASSERT_TRUE(writer);
        Allocator a(std::move(*writer), std::make_unique<NoCollisions>());
        const varlink::Interface iface = make_interface(a);

        EXPECT_EQ(iface.name, kInterfaceName);
        EXPECT_EQ(iface.description, interface_description());
        // The server's internal error is declared, and without required parameters.
        EXPECT_EQ(iface.internal_error, error_name(ErrorKind::kInternal));
        for (const Field& f : kErrors[static_cast<std::size_t>(ErrorKind::kInternal)].parameters)
            EXPECT_TRUE(f.optional) << f.name;

        ASSERT_EQ(iface.methods.size(), std::size(kMethods));
        for (std::size_t i = 0; i < iface.methods.size(); i++) {
            const varlink::Method& served = iface.methods[i];
            const MethodDecl& decl = kMethods[i];
            EXPECT_EQ(served.name, decl.name);
            EXPECT_TRUE(served.handler) << served.name;
            ASSERT_EQ(served.params.size(), decl.parameters.size()) << served.name;
            for (std::size_t j = 0; j < served.params.size(); j++) {
                EXPECT_EQ(served.params[j].name, decl.parameters[j].name) << served.name;
                EXPECT_EQ(served.params[j].optional, decl.parameters[j].optional)
                        << served.name << "." << served.params[j].name;
                const varlink::Type want = decl.parameters[j].type == FieldType::kString
                                                   ? varlink::Type::kString
                                           : decl.parameters[j].type == FieldType::kInt
                                                   ? varlink::Type::kInt
                                           : decl.parameters[j].type == FieldType::kBool
                                                   ? varlink::Type::kBool
                                                   : varlink::Type::kObject;
                EXPECT_EQ(served.params[j].type, want) << served.name;
            }
        }
    }
}

// ListRanges' serialized replies are byte for byte what nlohmann makes of {"range":
// range_to_json()}: for every flag, bound or not, with and without the owner's details, at the
// largest values, and for names that need escaping (imported ones come from /etc/subuid as they
// are), which take nlohmann's path.
TEST(InterfaceTest, SerializedRangeRepliesAreWhatTheJsonRangesDumpTo) {
    std::vector<RangeEntry> ranges;
    const char* names[] = {"web", "alice:c0ffee", "q\"uote\\", "bad\xff\x01",
                           "tab\there", "ü", ""};
    const std::uint32_t flag_sets[] = {
            0,
            shm::kEntryFlagImported,
            shm::kEntryFlagImported | shm::kEntryFlagNoUid,
            shm::kEntryFlagImported | shm::kEntryFlagNoGid,
            shm::kEntryFlagUserns,
            shm::kEntryFlagUserns | shm::kEntryFlagUsernsNoId,
    };
    for (const char* name : names)
        for (const std::uint32_t flags : flag_sets)
            ranges.push_back(RangeEntry{name, 524288, 65536, 1000, flags, 1764000000123456,
                                        4026531837, 4026532000});
    ranges.push_back(RangeEntry{"max", UINT32_MAX, UINT32_MAX, UINT32_MAX,
                                shm::kEntryFlagUserns, UINT64_MAX, UINT64_MAX, UINT64_MAX});
    ranges.push_back(RangeEntry{"zero", 0, 1, 0, 0, 0, 0, 0});
    for (const RangeEntry& r : ranges)
        for (const bool details : {false, true}) {
            SCOPED_TRACE(r.name + " flags " + std::to_string(r.flags) +
                         (details ? " details" : ""));
            const varlink::json tree{{"range", range_to_json(r, details)}};
            EXPECT_EQ(range_reply(r, details),
                      tree.dump(-1, ' ', false, varlink::json::error_handler_t::replace));
        }
}

}  // namespace
}  // namespace transient::allocator
