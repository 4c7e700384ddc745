// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The subid provider ABI of shadow's libsubid (libsubid/subid.h and lib/prototypes.h, unchanged
// since shadow 4.11; shadow_subid_free added in 4.16), declared here because Debian 12 ships the
// header only in libsubid-dev, which nothing else needs. shadow dlopen()s
// "libsubid_<word>.so" for `subid: <word>` in /etc/nsswitch.conf and resolves these four names.
//
// Ownership: arrays handed out are malloc()ed; callers free() them (podman calls C.free), or call
// shadow_subid_free().

#pragma once

#include <sys/types.h>

extern "C" {

enum subid_type { ID_TYPE_UID = 1, ID_TYPE_GID = 2 };

enum subid_status {
    SUBID_STATUS_SUCCESS = 0,
    SUBID_STATUS_UNKNOWN_USER = 1,
    SUBID_STATUS_ERROR_CONN = 2,
    SUBID_STATUS_ERROR = 3,
};

struct subid_range {
    unsigned long start;
    unsigned long count;
};

// *result = true exactly when every ID of [start, start + count) lies in ranges `owner` holds.
// The only answer that authorizes newuidmap/newgidmap: anything but SUCCESS with true denies.
enum subid_status shadow_subid_has_range(const char* owner, unsigned long start,
                                         unsigned long count, enum subid_type t, bool* result);

// The owner's ranges of 65536 IDs or more, sorted by start, adjacent ones merged. No ranges:
// SUCCESS, *ranges = NULL, *count = 0 (getsubids then fails as with /etc/subuid).
enum subid_status shadow_subid_list_owner_ranges(const char* owner, enum subid_type t,
                                                 struct subid_range** ranges, int* count);

// The UIDs of the owners of the ranges that contain `id`.
enum subid_status shadow_subid_find_subid_owners(unsigned long id, enum subid_type t,
                                                 uid_t** uids, int* count);

void shadow_subid_free(void* ptr);

}  // extern "C"
