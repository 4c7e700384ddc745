// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Result<T> for daemon-side code: a value or a std::error_code in std::system_category(), and
// the errno helpers around it.

#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <system_error>

namespace transient {

template <typename T>
using Result = std::expected<T, std::error_code>;

inline std::unexpected<std::error_code> errno_error(int e) {
    return std::unexpected(std::error_code(e < 0 ? -e : e, std::system_category()));
}

// strerror() without its static buffer: "No such file or directory" for ENOENT.
inline std::string errno_string(int e) {
    return std::error_code(e, std::system_category()).message();
}

}  // namespace transient
