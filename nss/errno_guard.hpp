// SPDX-License-Identifier: LGPL-2.1-or-later
//
// ErrnoGuard: our PROTECT_ERRNO. NSS entry points must leave errno as they found it, yet glibc
// passes `&errno` itself as `errnop` (nss/getXXbyYY_r.c: DL_CALL_FCT (fct, (..., &errno))) and
// reads the failure code back from errno. So the guard restores errno on scope exit, and a
// failure restores it early (restore_now()) *before* the code is written to *errnop, as systemd
// does since "nss: unprotect errno before writing to NSS' *errnop" (systemd#11321).

#pragma once

#include <cerrno>

namespace transient::nss {

class ErrnoGuard {
public:
    ErrnoGuard() noexcept : saved_(errno) {}
    ErrnoGuard(const ErrnoGuard&) = delete;
    ErrnoGuard& operator=(const ErrnoGuard&) = delete;
    ~ErrnoGuard() {
        if (armed_)
            errno = saved_;
    }

    // Restores errno now and stops guarding, so that what is written to errno (or *errnop, which
    // may be errno) afterwards reaches the caller.
    void restore_now() noexcept {
        errno = saved_;
        armed_ = false;
    }

private:
    int saved_;
    bool armed_ = true;
};

}  // namespace transient::nss
