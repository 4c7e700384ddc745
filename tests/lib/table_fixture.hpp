// SPDX-License-Identifier: LGPL-2.1-or-later
//
// What the tests of the libc-only libraries (the NSS module, the subid provider) share: the built
// library dlopen()ed and its entry points bound with dlsym() (bind_symbol()), one private runtime
// directory per test process (TRANSIENT_RUNTIME_DIR, set before the first lookup: the libraries
// read it once per process), and TableTest, a fixture whose tests start without a table there
// and write their own with shm::TableWriter; at a test's end the table is retired and removed,
// as the allocator would replace it, so that the library lets go of its mapping at the next
// lookup.

#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
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

namespace transient::testing {

// *f = the symbol `name` of the library `h`; a missing one fails the test that asked.
template <typename F>
void bind_symbol(void* h, F* f, const char* name) {
    *f = reinterpret_cast<F>(::dlsym(h, name));
    if (*f == nullptr)
        ADD_FAILURE() << "dlsym(" << name << "): " << ::dlerror();
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

class TableTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = runtime_dir();  // exports TRANSIENT_RUNTIME_DIR before the library's first call
        path_ = table_path();
        remove_table();
    }

    void TearDown() override {
        writer_.reset();
        remove_table();
    }

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

    std::string dir_, path_;
    std::optional<shm::TableWriter> writer_;
};

}  // namespace transient::testing
