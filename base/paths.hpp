// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The daemons' and transientctl's paths in the runtime directory, as strings. The directory
// itself comes from base/runtime_dir.hpp, which the NSS module shares.

#pragma once

#include <string>
#include <string_view>

#include "base/runtime_dir.hpp"

namespace transient::base {

// $TRANSIENT_RUNTIME_DIR (getenv(), see runtime_dir.hpp), or the compiled-in default.
inline std::string runtime_dir() { return runtime_dir_c(); }

// runtime_dir() + "/" + name.
inline std::string runtime_path(std::string_view name) {
    std::string path = runtime_dir();
    path += '/';
    path += name;
    return path;
}

}  // namespace transient::base
