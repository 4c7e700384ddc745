// SPDX-License-Identifier: LGPL-2.1-or-later
//
// White-box tests of nss/table_cache.cpp, linked in statically: the cached fast path, and the
// private per-call mapping it falls back to when the remap mutex is busy (another thread, or a
// fork() child that inherited it locked) or when every slot is taken. Tests run in declaration
// order in one process; slot exhaustion comes last. The module reads TRANSIENT_RUNTIME_DIR once,
// so the process has one runtime directory, and a "new table" replaces the old one the way the
// allocator does it: retire the old file, rename the new one over it.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nss/table_cache.hpp"
#include "shm/identity.hpp"
#include "shm/layout.hpp"
#include "shm/writer.hpp"

namespace transient::nss {
namespace {

constexpr std::uint32_t kWeb = 0x00080000;

// Set before the first lookup of the process, which every test's SetUp() precedes.
const std::string& runtime_dir() {
    static const std::string dir = [] {
        char tmpl[] = "/tmp/transient-nss-cache.XXXXXX";
        if (::mkdtemp(tmpl) == nullptr)
            std::abort();
        ::setenv("TRANSIENT_RUNTIME_DIR", tmpl, 1);
        std::atexit([] { std::filesystem::remove_all(std::getenv("TRANSIENT_RUNTIME_DIR")); });
        return std::string(tmpl);
    }();
    return dir;
}

void retire(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    const auto retired = static_cast<std::uint64_t>(shm::TableState::kRetired);
    EXPECT_EQ(::pwrite(fd, &retired, sizeof retired, offsetof(shm::FileHeader, state)),
              static_cast<ssize_t>(sizeof retired));
    ::close(fd);
}

class TableCacheTest : public ::testing::Test {
protected:
    void SetUp() override { path_ = runtime_dir() + "/" + shm::kTableFileName; }
    void TearDown() override {
        writers_.clear();
        retire(path_);
        ::unlink(path_.c_str());
    }

    // A new table holding range `name` at kWeb, put in place of the current one.
    void use_new_table(const std::string& name) {
        const std::string p = runtime_dir() + "/next.table";
        auto w = shm::TableWriter::open(p, 64);
        ASSERT_TRUE(w);
        ASSERT_TRUE(w->publish(std::vector{shm::RangeEntry{name, kWeb, 0x10000, 0, 0, 0, 0, 0}}));
        writers_.push_back(std::move(*w));
        retire(path_);
        ASSERT_EQ(::rename(p.c_str(), path_.c_str()), 0);
        ::unlink((p + ".lock").c_str());
    }

    static std::string name_of_kweb(const TableLease& lease) {
        shm::Identity id;
        if (shm::lookup_id(lease.view(), kWeb, shm::IdKind::kUser, &id) < 0)
            return "";
        return id.name;
    }

    std::string path_;
    std::vector<shm::TableWriter> writers_;
};

TEST_F(TableCacheTest, ReusesOneMappingAcrossCalls) {
    use_new_table("first");
    TableLease a, b;
    ASSERT_EQ(acquire_table(&a), 0);
    ASSERT_EQ(acquire_table(&b), 0);
    EXPECT_TRUE(a.cached());
    EXPECT_EQ(a.view(), b.view());
    EXPECT_EQ(name_of_kweb(a), "vu-first-0");
}

TEST_F(TableCacheTest, MissingTableIsEnoent) {
    use_new_table("gone");
    TableLease before;
    ASSERT_EQ(acquire_table(&before), 0);
    retire(path_);
    ASSERT_EQ(::unlink(path_.c_str()), 0);
    TableLease lease;
    EXPECT_EQ(acquire_table(&lease), -ENOENT);
}

TEST_F(TableCacheTest, MapsPrivatelyInsteadOfWaitingForABusyRemap) {
    use_new_table("busy");
    ASSERT_TRUE(detail::try_lock_remap_for_testing());
    {
        TableLease lease;
        ASSERT_EQ(acquire_table(&lease), 0);
        EXPECT_FALSE(lease.cached());
        EXPECT_EQ(name_of_kweb(lease), "vu-busy-0");
    }
    detail::unlock_remap_for_testing();
    TableLease lease;
    ASSERT_EQ(acquire_table(&lease), 0);
    EXPECT_TRUE(lease.cached());
    EXPECT_EQ(name_of_kweb(lease), "vu-busy-0");
}

TEST_F(TableCacheTest, ForkChildOfALockedRemapStillAnswers) {
    use_new_table("parent");
    TableLease warm;
    ASSERT_EQ(acquire_table(&warm), 0);
    ASSERT_TRUE(detail::try_lock_remap_for_testing());  // as if another thread were remapping
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // Child: the mutex is locked for good. The cached table still serves, and a new one is
        // mapped per call rather than deadlocking.
        TableLease a;
        if (acquire_table(&a) != 0 || name_of_kweb(a) != "vu-parent-0")
            ::_exit(1);
        use_new_table("child");
        TableLease b;
        if (acquire_table(&b) != 0 || b.cached() || name_of_kweb(b) != "vu-child-0")
            ::_exit(2);
        ::_exit(0);
    }
    detail::unlock_remap_for_testing();
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(TableCacheTest, FallsBackToPrivateMappingsWhenSlotsRunOut) {
    for (int i = 0; i < 40; i++) {
        use_new_table("t" + std::to_string(i));
        TableLease lease;
        ASSERT_EQ(acquire_table(&lease), 0);
        EXPECT_EQ(name_of_kweb(lease), "vu-t" + std::to_string(i) + "-0");
    }
    EXPECT_EQ(detail::cache_slots_used(), 16U);
    TableLease lease;
    ASSERT_EQ(acquire_table(&lease), 0);
    EXPECT_FALSE(lease.cached());
}

}  // namespace
}  // namespace transient::nss
