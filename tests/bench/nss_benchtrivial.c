/* SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * libnss_benchtrivial.so.2: the baseline of transient-bench-nss. It answers exactly one UID,
 * copying a passwd record of the same shape as ours into the caller's buffer, so that timing
 * getpwuid_r() through glibc with "passwd: benchtrivial" measures glibc's NSS dispatch plus the
 * least work any module must do. Not installed. */

#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stddef.h>
#include <string.h>

#include "tests/bench/nss_benchtrivial.h"

static char *put(char **p, size_t *left, const char *s) {
    size_t n = strlen(s) + 1;
    char *r;
    if (n > *left)
        return NULL;
    r = memcpy(*p, s, n);
    *p += n;
    *left -= n;
    return r;
}

__attribute__((visibility("default"))) enum nss_status _nss_benchtrivial_getpwuid_r(
        uid_t uid, struct passwd *pw, char *buf, size_t len, int *errnop) {
    char *p = buf;
    struct passwd r;
    if (uid != BENCHTRIVIAL_UID)
        return NSS_STATUS_NOTFOUND;
    if (!(r.pw_name = put(&p, &len, BENCHTRIVIAL_NAME)) || !(r.pw_passwd = put(&p, &len, "x")) ||
        !(r.pw_gecos = put(&p, &len, "UID 0 of the trivial module")) ||
        !(r.pw_dir = put(&p, &len, "/")) || !(r.pw_shell = put(&p, &len, "/usr/sbin/nologin"))) {
        *errnop = ERANGE;
        return NSS_STATUS_TRYAGAIN;
    }
    r.pw_uid = uid;
    r.pw_gid = uid;
    *pw = r;
    return NSS_STATUS_SUCCESS;
}
