#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Installs the Debian 12 packages that building and testing transient needs, and only those that
# are missing. Quiet and quick when everything is there; runs `apt-get update` only when it has
# something to install. Needs root (or sudo) for the install step only.
#
#   scripts/deps.sh            build + test dependencies
#   scripts/deps.sh --check    list what is missing, exit 1 if anything is
set -euo pipefail

# Build: compiler, CMake, libsystemd (sd-event, sd-daemon, sd-journal), JSON, Boost.Interprocess,
# GoogleTest. (No GoogleMock: nothing is mocked. No Google Benchmark: the benchmarks alternate
# the measured path and its baseline round after round in one process and report their ratio,
# which its fixed-iteration runs do not do; see tests/bench/README.md.)
BUILD_PKGS=(cmake g++ make pkg-config libsystemd-dev nlohmann-json3-dev libboost-dev
            googletest libgtest-dev)
# Run and test, everything a test uses, so that no test is skipped or fails for a missing package
# on a minimal Debian 12 (debootstrap --variant=minbase, what scripts/minbase-check.sh checks):
#   util-linux, mount    unshare, nsenter, setpriv, setsid, flock, mount (sandbox.sh, container.sh)
#   bsdutils             script: the pty that is the system test container's /dev/console
#   libc-bin, coreutils  getent, id, ldd, ldconfig; ls, stat, timeout, sha256sum, od
#   binutils             nm, readelf for the abi test of the module
#   jq, python3          --json output; the raw Varlink clients and the crash checker
#   procps               ps, pgrep
#   libnss-systemd       nss-systemd, the real userdb client of integration.userdb_clients
#   systemd              systemd as PID 1 of the system test's container (system.package), and
#                        the version scripts/fetch-userdbctl.sh matches systemd-userdbd to
#   apt                  apt-get download in scripts/fetch-userdbctl.sh
#   dpkg-dev             dpkg-shlibdeps, dpkg-architecture, dpkg-buildflags for scripts/build-deb.sh
#   uidmap               getsubids, setuid newuidmap/newgidmap for the subid provider's test
#   podman, runc         rootless podman (4.3.1) on a transient range, integration.podman (conmon
#                        and containers-common come with it); runc, not crun, as its runtime:
#                        crun 1.8 refuses hybrid cgroup hierarchies (tests/integration/podman.sh)
#   busybox-static       the tiny root file system that integration.podman runs (no registry)
#   man-db, groff-base   man --warnings, lexgrog: the manual pages' check (docs.man)
#   bsdextrautils        col, to read rendered pages as plain text (docs.man)
#   bash-completion      loads the completion files in docs.man and integration.completion
#   lintian              system.lintian: the built .deb is lintian clean (overrides explained in
#                        packaging/debian/transient.lintian-overrides)
# Installing libnss-systemd adds "systemd" to the passwd: and group: lines of /etc/nsswitch.conf
# (its maintainer script does that, as on any Debian host with systemd).
RUN_PKGS=(util-linux mount bsdutils libc-bin coreutils binutils jq python3 procps
          libnss-systemd systemd apt dpkg-dev uidmap podman runc busybox-static
          man-db groff-base bsdextrautils bash-completion lintian)

check_only=0
[ "${1:-}" = --check ] && check_only=1

missing=()
for p in "${BUILD_PKGS[@]}" "${RUN_PKGS[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    # "ii " = installed; anything else (absent, half-configured, removed) counts as missing.
    [ "${status:0:2}" = ii ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ $check_only = 1 ]; then
    echo "missing packages: ${missing[*]}"
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
echo "deps.sh: done"
