// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Shared fixture of the NSS tests: dlopen()s the built libnss_transient.so.2 (as systemd's
// test-nss-users does), resolves every entry point with dlsym(), and gives the test process one
// private runtime directory (TRANSIENT_RUNTIME_DIR, set before the first lookup: the module reads
// it once per process). Each test starts without a table there and writes its own with
// shm::TableWriter; at its end the table is retired and removed, as the allocator would replace
// it, so that the module lets go of its mapping at the next lookup.

#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/layout.hpp"
#include "shm/writer.hpp"

#ifndef TRANSIENT_NSS_MODULE_PATH
#error "TRANSIENT_NSS_MODULE_PATH must name the built libnss_transient.so.2"
#endif

namespace transient::nss::testing {

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
    template <typename F>
    static void bind(void* h, F* f, const char* name) {
        *f = reinterpret_cast<F>(::dlsym(h, name));
        if (*f == nullptr)
            ADD_FAILURE() << "dlsym(" << name << "): " << ::dlerror();
    }

    static Module load() {
        Module m;
        m.handle = ::dlopen(TRANSIENT_NSS_MODULE_PATH, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (m.handle == nullptr) {
            ADD_FAILURE() << "dlopen(" TRANSIENT_NSS_MODULE_PATH "): " << ::dlerror();
            return m;
        }
        bind(m.handle, &m.getpwuid_r, "_nss_transient_getpwuid_r");
        bind(m.handle, &m.getpwnam_r, "_nss_transient_getpwnam_r");
        bind(m.handle, &m.getgrgid_r, "_nss_transient_getgrgid_r");
        bind(m.handle, &m.getgrnam_r, "_nss_transient_getgrnam_r");
        bind(m.handle, &m.setpwent, "_nss_transient_setpwent");
        bind(m.handle, &m.getpwent_r, "_nss_transient_getpwent_r");
        bind(m.handle, &m.endpwent, "_nss_transient_endpwent");
        bind(m.handle, &m.setgrent, "_nss_transient_setgrent");
        bind(m.handle, &m.getgrent_r, "_nss_transient_getgrent_r");
        bind(m.handle, &m.endgrent, "_nss_transient_endgrent");
        bind(m.handle, &m.initgroups_dyn, "_nss_transient_initgroups_dyn");
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

// The process's runtime directory: created, and exported in TRANSIENT_RUNTIME_DIR, on first use,
// which every test's SetUp() makes before its first lookup. Removed when the process exits.
inline const std::string& runtime_dir() {
    static const std::string dir = [] {
        char tmpl[] = "/tmp/transient-nss-test.XXXXXX";
        if (::mkdtemp(tmpl) == nullptr)
            std::abort();
        ::setenv("TRANSIENT_RUNTIME_DIR", tmpl, 1);
        ::unsetenv("TRANSIENT_NSS_BYPASS");
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(std::getenv("TRANSIENT_RUNTIME_DIR"), ec);
        });
        return std::string(tmpl);
    }();
    return dir;
}

inline std::string table_path() { return runtime_dir() + "/" + shm::kTableFileName; }

// Marks the table file at `path` retired if it is a table; the allocator does that before it
// replaces one. Anything else is left alone.
inline void retire_table(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return;
    std::uint64_t magic = 0;
    if (::pread(fd, &magic, sizeof magic, 0) == sizeof magic && magic == shm::kMagic) {
        const auto retired = static_cast<std::uint64_t>(shm::TableState::kRetired);
        if (::pwrite(fd, &retired, sizeof retired, offsetof(shm::FileHeader, state)) !=
            sizeof retired)
            ADD_FAILURE() << "cannot retire " << path;
    }
    ::close(fd);
}

// Retires whatever is at the table's path and removes it, and everything else the test left in
// the runtime directory.
inline void remove_table() {
    retire_table(table_path());
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(runtime_dir(), ec))
        std::filesystem::remove_all(e.path(), ec);
}

// Puts the file at `from` in the table's place, the way the allocator replaces a table: the old
// one is retired first, then the new one renamed over it.
inline void install_table(const std::string& from) {
    retire_table(table_path());
    if (::rename(from.c_str(), table_path().c_str()) < 0)
        ADD_FAILURE() << "rename " << from << ": " << std::strerror(errno);
}

class NssTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_NE(nss().handle, nullptr);
        dir_ = runtime_dir();
        path_ = table_path();
        remove_table();
    }

    void TearDown() override {
        writer_.reset();
        remove_table();
    }

    static const Module& nss() { return Module::get(); }

    // Creates the table (once) and publishes `ranges` as its complete content.
    void publish(const std::vector<shm::RangeEntry>& ranges,
                 std::uint32_t capacity = shm::kDefaultCapacity) {
        if (!writer_) {
            auto w = shm::TableWriter::open(path_, capacity);
            ASSERT_TRUE(w) << w.error().message();
            writer_.emplace(std::move(*w));
        }
        auto r = writer_->publish(ranges);
        ASSERT_TRUE(r) << r.error().message();
    }

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

    std::string dir_, path_;
    std::optional<shm::TableWriter> writer_;
};

}  // namespace transient::nss::testing
