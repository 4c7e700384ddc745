// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The writer on a full file system (issue 8): the table lives on the tmpfs under /run, and a
// store through a shared mapping to a page the file system cannot supply is SIGBUS, not an
// error. Creating or opening a table there must fail with ENOSPC instead. Each case runs in a
// child process with a private mount namespace and a tiny tmpfs of its own, so that a SIGBUS
// kills only the child and the host sees no mount.

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "shm/reader.hpp"
#include "shm/table_reader.hpp"
#include "shm/writer.hpp"
#include "tests/lib/temp_dir.hpp"

namespace transient::shm {
namespace {

constexpr int kCannotSandbox = 77;

class FullFileSystemTest : public ::testing::Test {
protected:

    // Runs `body(mount point)` in a child with a tmpfs of `size` mounted over dir_ in a private
    // mount namespace. The child's exit code is body's: 0 for success, a step number otherwise.
    void in_tiny_tmpfs(const std::string& size,
                       const std::function<int(const std::string&)>& body) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            if (::unshare(CLONE_NEWNS) < 0 ||
                ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
                ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) < 0)
                ::_exit(kCannotSandbox);
            ::_exit(body(dir_));
        }
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == kCannotSandbox)
            GTEST_SKIP() << "needs root for a private mount namespace and a tmpfs";
        ASSERT_FALSE(WIFSIGNALED(status))
                << "killed by signal " << WTERMSIG(status) << " (" << strsignal(WTERMSIG(status))
                << ")";
        EXPECT_EQ(WEXITSTATUS(status), 0) << "failed at step " << WEXITSTATUS(status);
    }

    // Fills the file system under `dir` until a write fails with ENOSPC.
    static bool fill(const std::string& dir) {
        UniqueFd fd(::open((dir + "/filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        if (!fd)
            return false;
        static const std::vector<char> chunk(64 * 1024, 'x');
        for (;;) {
            const ssize_t n = ::write(fd.get(), chunk.data(), chunk.size());
            if (n < 0)
                return errno == ENOSPC;
            if (n == 0)
                return false;
        }
    }

    transient::testing::TempDir tmp_{"transient-fullfs-test"};
    std::string dir_ = tmp_.path();
};

TEST_F(FullFileSystemTest, CreatingATableOnAFullFileSystemIsEnospc) {
    in_tiny_tmpfs("1m", [](const std::string& dir) {
        if (!fill(dir))
            return 1;
        const std::string path = dir + "/ranges.table";
        auto w = TableWriter::open(path);
        if (w)
            return 2;
        if (w.error().value() != ENOSPC)
            return 3;
        struct stat st;
        if (::stat((path + ".new").c_str(), &st) == 0 || ::stat(path.c_str(), &st) == 0)
            return 4;  // no half-made table left behind
        return 0;
    });
}

// A table whose blocks were never all written (ftruncate()d by an older writer, or copied
// sparsely), opened once the file system is full: ENOSPC. (Its holes stay holes: on tmpfs even
// a reader's fault on one needs a page, which is why the writer reserves every block.)
TEST_F(FullFileSystemTest, OpeningASparseTableOnAFullFileSystemIsEnospc) {
    const std::string model = dir_ + "/model.table";
    {
        auto w = TableWriter::open(model);
        ASSERT_TRUE(w) << w.error().message();
        ASSERT_TRUE(w->publish(std::vector{
                RangeEntry{"web", 524288, kContainerRangeSize, 0, 0, 1, 0, 0}}));
    }
    std::string bytes;
    {
        UniqueFd fd(::open(model.c_str(), O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(fd);
        struct stat st;
        ASSERT_EQ(::fstat(fd.get(), &st), 0);
        bytes.resize(static_cast<std::size_t>(st.st_size));
        ASSERT_EQ(::pread(fd.get(), bytes.data(), bytes.size(), 0),
                  static_cast<ssize_t>(bytes.size()));
    }
    in_tiny_tmpfs("8m", [&bytes](const std::string& dir) {
        const std::string path = dir + "/ranges.table";
        {
            // Only the pages that hold something: the rest are holes.
            UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
            if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(bytes.size())) < 0)
                return 1;
            static const std::string zero(4096, '\0');
            for (std::size_t at = 0; at < bytes.size(); at += 4096) {
                const std::size_t n = std::min<std::size_t>(4096, bytes.size() - at);
                if (bytes.compare(at, n, zero, 0, n) == 0)
                    continue;
                if (::pwrite(fd.get(), bytes.data() + at, n, static_cast<off_t>(at)) !=
                    static_cast<ssize_t>(n))
                    return 2;
            }
            struct stat st;
            if (::fstat(fd.get(), &st) < 0 || st.st_blocks * 512 >= st.st_size)
                return 3;  // not sparse: the case is not what it claims
        }
        if (!fill(dir))
            return 4;
        auto w = TableWriter::open(path);
        if (w)
            return 5;
        if (w.error().value() != ENOSPC)
            return 6;
        return 0;
    });
}

// A table that has its blocks needs no more: it opens and takes updates on a full file system.
TEST_F(FullFileSystemTest, ATableWithItsBlocksWorksOnAFullFileSystem) {
    in_tiny_tmpfs("8m", [](const std::string& dir) {
        const std::string path = dir + "/ranges.table";
        {
            auto w = TableWriter::open(path);
            if (!w)
                return 1;
        }
        if (!fill(dir))
            return 2;
        auto w = TableWriter::open(path);
        if (!w)
            return 3;
        if (!w->publish(std::vector{
                    RangeEntry{"web", 524288, kContainerRangeSize, 0, 0, 1, 0, 0},
                    RangeEntry{"db", 524288 + 65536 * 9, kContainerRangeSize, 0, 0, 1, 0, 0}}))
            return 4;
        TableReader reader(path);
        auto v = reader.view();
        RangeRecord r;
        if (!v || find_by_id(**v, 524288 + 65536 * 9 + 5, &r) != 0 || std::strcmp(r.name, "db"))
            return 5;
        return 0;
    });
}

}  // namespace
}  // namespace transient::shm
