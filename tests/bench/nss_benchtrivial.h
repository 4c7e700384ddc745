/* SPDX-License-Identifier: LGPL-2.1-or-later
 * The one user libnss_benchtrivial.so.2 knows; shared with transient-bench-nss. */
#pragma once

#define BENCHTRIVIAL_UID 4242U
#define BENCHTRIVIAL_NAME "bench-trivial"
