// SPDX-License-Identifier: LGPL-2.1-or-later
//
// io.systemd.UserDatabase over the range table, as systemd's userdb clients (nss-systemd,
// userdbctl, systemd-userwork) expect it: keyed lookups, enumeration with "more", the v258
// filters, and the error names those clients map to errno values.

#pragma once

#include "shm/table_reader.hpp"
#include "varlink/varlink.hpp"

namespace transient::userdb {

inline constexpr char kInterfaceName[] = "io.systemd.UserDatabase";
extern const char kInterfaceDescription[];

// REQUIRES: `table` outlives the returned interface's handlers.
varlink::Interface make_interface(shm::TableReader& table);

}  // namespace transient::userdb
