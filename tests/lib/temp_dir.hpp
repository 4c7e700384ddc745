// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A private directory for one test, removed with its contents when the object goes.

#pragma once

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace transient::testing {

class TempDir {
public:
    // `parent` is /tmp, or /dev/shm where a test wants tmpfs, as /run/transient is. A test
    // cannot go on without its directory, so failing to make one aborts the test program.
    explicit TempDir(std::string_view prefix = "transient-test", std::string_view parent = "/tmp") {
        std::string tmpl = std::string(parent) + "/" + std::string(prefix) + ".XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            std::perror("mkdtemp");
            std::abort();
        }
        path_ = std::move(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace transient::testing
