// SPDX-License-Identifier: LGPL-2.1-or-later

#include "shm/table_reader.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "base/paths.hpp"

namespace transient::shm {

std::string table_path() { return base::runtime_path(kTableFileName); }

Result<const TableView*> TableReader::view() {
    struct stat st;
    if (::stat(path_.c_str(), &st) < 0)
        return errno_error(errno);
    const bool same_file = !mappings_.empty() && st.st_dev == dev_ && st.st_ino == ino_;
    if (same_file && !table_retired(view_))
        return &view_;

    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd)
        return errno_error(errno);
    if (::fstat(fd.get(), &st) < 0)
        return errno_error(errno);
    if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(sizeof(FileHeader)))
        return errno_error(EBADMSG);
    const auto size = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED)
        return errno_error(errno);
    Mapping m(p, size);
    TableView v;
    if (int r = view_table(m.get(), m.size(), &v); r < 0)
        return errno_error(r);
    mappings_.push_back(std::move(m));
    view_ = v;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    return &view_;
}

}  // namespace transient::shm
