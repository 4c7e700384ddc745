// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Shared fixture of the NSS tests: dlopen()s the built libnss_transient.so.2 (as systemd's
// test-nss-users does) and resolves every entry point with dlsym(); NssTest is
// tests/lib/table_fixture.hpp's TableTest (a private runtime directory, a table per test) with
// calls that check errno is kept.

#pragma once

#include <dlfcn.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/layout.hpp"
#include "shm/writer.hpp"
#include "tests/lib/table_fixture.hpp"

#ifndef TRANSIENT_NSS_MODULE_PATH
#error "TRANSIENT_NSS_MODULE_PATH must name the built libnss_transient.so.2"
#endif

namespace transient::nss::testing {

using transient::testing::bind_symbol;
using transient::testing::install_table;
using transient::testing::remove_table;
using transient::testing::retire_table;
using transient::testing::runtime_dir;
using transient::testing::table_path;

using GetpwuidR = nss_status (*)(uid_t, passwd*, char*, size_t, int*);
using GetpwnamR = nss_status (*)(const char*, passwd*, char*, size_t, int*);
using GetgrgidR = nss_status (*)(gid_t, group*, char*, size_t, int*);
using GetgrnamR = nss_status (*)(const char*, group*, char*, size_t, int*);
using Setent = nss_status (*)(int);
using GetpwentR = nss_status (*)(passwd*, char*, size_t, int*);
using GetgrentR = nss_status (*)(group*, char*, size_t, int*);
using Endent = nss_status (*)();
using InitgroupsDyn = nss_status (*)(const char*, gid_t, long*, long*, gid_t**, long, int*);

// The module's entry points. Loaded once per process; the module is NODELETE anyway.
struct Module {
    void* handle = nullptr;
    GetpwuidR getpwuid_r = nullptr;
    GetpwnamR getpwnam_r = nullptr;
    GetgrgidR getgrgid_r = nullptr;
    GetgrnamR getgrnam_r = nullptr;
    Setent setpwent = nullptr;
    GetpwentR getpwent_r = nullptr;
    Endent endpwent = nullptr;
    Setent setgrent = nullptr;
    GetgrentR getgrent_r = nullptr;
    Endent endgrent = nullptr;
    InitgroupsDyn initgroups_dyn = nullptr;

    static const Module& get() {
        static const Module m = load();
        return m;
    }

private:
    static Module load() {
        Module m;
        m.handle = ::dlopen(TRANSIENT_NSS_MODULE_PATH, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (m.handle == nullptr) {
            ADD_FAILURE() << "dlopen(" TRANSIENT_NSS_MODULE_PATH "): " << ::dlerror();
            return m;
        }
        bind_symbol(m.handle, &m.getpwuid_r, "_nss_transient_getpwuid_r");
        bind_symbol(m.handle, &m.getpwnam_r, "_nss_transient_getpwnam_r");
        bind_symbol(m.handle, &m.getgrgid_r, "_nss_transient_getgrgid_r");
        bind_symbol(m.handle, &m.getgrnam_r, "_nss_transient_getgrnam_r");
        bind_symbol(m.handle, &m.setpwent, "_nss_transient_setpwent");
        bind_symbol(m.handle, &m.getpwent_r, "_nss_transient_getpwent_r");
        bind_symbol(m.handle, &m.endpwent, "_nss_transient_endpwent");
        bind_symbol(m.handle, &m.setgrent, "_nss_transient_setgrent");
        bind_symbol(m.handle, &m.getgrent_r, "_nss_transient_getgrent_r");
        bind_symbol(m.handle, &m.endgrent, "_nss_transient_endgrent");
        bind_symbol(m.handle, &m.initgroups_dyn, "_nss_transient_initgroups_dyn");
        return m;
    }
};

inline constexpr std::uint32_t kWeb = 0x00080000;                // 524288, range "web"
inline constexpr std::uint32_t kDb1 = kWeb + 3 * 0x10000;         // range "db-1"
inline constexpr std::uint32_t kLong = kWeb + 7 * 0x10000;        // a 22-character name
inline constexpr std::uint32_t kSingle = shm::kDynamicPoolFirst;  // 61184, range "one", size 1
inline constexpr char kLongName[] = "abcdefghij_klmnopqr-st";
static_assert(sizeof kLongName - 1 == shm::kMaxRangeNameLength);

// errno before each call; entry points must hand it back unchanged.
inline constexpr int kErrnoSentinel = EDOM;

inline shm::RangeEntry container(std::string name, std::uint32_t start) {
    return shm::RangeEntry{std::move(name), start, shm::kContainerRangeSize, 1000, 0, 1, 0, 0};
}

inline shm::RangeEntry single(std::string name, std::uint32_t start) {
    return shm::RangeEntry{std::move(name), start, 1, 1000, 0, 1, 0, 0};
}

// The ranges most tests run against, sorted by start.
inline std::vector<shm::RangeEntry> default_ranges() {
    return {single("one", kSingle), container("web", kWeb), container("db-1", kDb1),
            container(kLongName, kLong)};
}

// True when [p, p + strlen(p)] lies inside [buf, buf + len).
inline bool inside(const char* p, const char* buf, std::size_t len) {
    return p != nullptr && p >= buf && p + std::strlen(p) < buf + len;
}

class NssTest : public transient::testing::TableTest {
protected:
    void SetUp() override {
        ASSERT_NE(nss().handle, nullptr);
        TableTest::SetUp();
    }

    static const Module& nss() { return Module::get(); }

    // Calls that also check errno is kept; `err` receives *errnop (left at -1 if untouched).
    nss_status getpwuid(uid_t uid, passwd* pw, char* buf, std::size_t len, int* err) {
        *err = -1;
        errno = kErrnoSentinel;
        const nss_status s = nss().getpwuid_r(uid, pw, buf, len, err);
        EXPECT_EQ(errno, kErrnoSentinel) << "getpwuid_r(" << uid << ") changed errno";
        return s;
    }
    nss_status getpwnam(const char* name, passwd* pw, char* buf, std::size_t len, int* err) {
        *err = -1;
        errno = kErrnoSentinel;
        const nss_status s = nss().getpwnam_r(name, pw, buf, len, err);
        EXPECT_EQ(errno, kErrnoSentinel) << "getpwnam_r changed errno";
        return s;
    }
    nss_status getgrgid(gid_t gid, group* gr, char* buf, std::size_t len, int* err) {
        *err = -1;
        errno = kErrnoSentinel;
        const nss_status s = nss().getgrgid_r(gid, gr, buf, len, err);
        EXPECT_EQ(errno, kErrnoSentinel) << "getgrgid_r(" << gid << ") changed errno";
        return s;
    }
    nss_status getgrnam(const char* name, group* gr, char* buf, std::size_t len, int* err) {
        *err = -1;
        errno = kErrnoSentinel;
        const nss_status s = nss().getgrnam_r(name, gr, buf, len, err);
        EXPECT_EQ(errno, kErrnoSentinel) << "getgrnam_r changed errno";
        return s;
    }

    // The user name for `uid`, "" if NOTFOUND, "<status N errno E>" otherwise.
    std::string user_name(uid_t uid) {
        passwd pw{};
        char buf[1024];
        int err;
        const nss_status s = getpwuid(uid, &pw, buf, sizeof buf, &err);
        if (s == NSS_STATUS_SUCCESS)
            return pw.pw_name;
        if (s == NSS_STATUS_NOTFOUND)
            return "";
        return "<status " + std::to_string(s) + " errno " + std::to_string(err) + ">";
    }
};

}  // namespace transient::nss::testing
