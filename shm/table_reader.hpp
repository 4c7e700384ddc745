// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A read-only handle on the range table for daemons and tools (transient-userdbd, tests): maps
// the file PROT_READ, notices when the allocator retired or replaced it, and maps the new one.
// Old mappings are kept until the handle dies, so a view handed out stays valid while in use.
// The NSS module has its own, allocation-free variant of this (nss/table_cache.cpp).

#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "shm/reader.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace transient::shm {

// base::runtime_dir() + "/ranges.table".
std::string table_path();

class TableReader {
public:
    explicit TableReader(std::string path) : path_(std::move(path)) {}

    // The current view: remaps if the file was replaced or retired since the last call.
    // Errors: ENOENT (no table), EBADMSG, EPROTONOSUPPORT, ESTALE.
    Result<const TableView*> view();

    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::vector<Mapping> mappings_;  // the last one is current
    TableView view_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
};

}  // namespace transient::shm
