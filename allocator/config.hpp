// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The configuration of transient-allocd: /etc/transient/allocd.conf, or the file named by
// --config or $TRANSIENT_CONFIG. systemd-style: one [Allocator] section of Key=Value lines,
// '#' and ';' start comments. Every key is optional; a missing default file means defaults.
// Anything the parser does not understand is an error naming the file and the line, and the
// daemon refuses to start on it: a typo must not silently widen a pool or drop a quota.
//
//   [Allocator]
//   ContainerRange=524288-1879048191   # 64K ranges; a sub-range of systemd's container range
//   DynamicRange=61184-65519           # single UIDs; a sub-range of systemd's dynamic range
//   AllowedSizes=1 65536               # what callers may ask for (65536: and multiples, root)
//   MaxRangeSize=8388608               # the largest range root may ask for, 64K multiples
//   MaxRangesPerUser=16                # per non-root owner UID; 0: only root may allocate
//   UserNamespaceCheckSec=2            # how often bindings to user namespaces are checked
//   UserNamespaceProbe=auto            # auto, file-handle or scan (see userns.hpp)
//   ImportSubordinateIDs=yes           # /etc/subuid and /etc/subgid as read-only ranges

#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "allocator/allocator.hpp"
#include "allocator/userns.hpp"

namespace transient::allocator {

inline constexpr char kDefaultConfigPath[] = "/etc/transient/allocd.conf";

struct Config {
    Policy policy;
    std::chrono::milliseconds userns_check_interval{2000};
    ProbeMode probe = ProbeMode::kAuto;
    bool import_subordinate_ids = true;
};

// Parses the text of a configuration file; `filename` only labels errors. A failure's message
// is "FILE:LINE: what is wrong", ready for the log; its kind is kInternal (no caller sees it).
Outcome<Config> parse_config(std::string_view text, std::string_view filename);

// Reads and parses `path`. A missing file gives the defaults only when `required` is false
// (the built-in default path); a file the administrator named explicitly must exist.
Outcome<Config> load_config(const std::string& path, bool required);

const char* probe_mode_name(ProbeMode mode);

}  // namespace transient::allocator
