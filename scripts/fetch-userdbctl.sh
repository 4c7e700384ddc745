#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# fetch-userdbctl.sh DIR - unpack Debian's userdbctl (package systemd-userdbd, the version that
# matches the installed systemd exactly) into DIR without installing it, for the tests that
# check that real userdb clients agree with libnss_transient. Prints the path of userdbctl.
# Idempotent: does nothing when DIR already holds the right version.
set -euo pipefail

dest=${1:?usage: fetch-userdbctl.sh DIR}
# DIR is replaced whole, so it must be ours: missing, empty, or an earlier unpack (.version).
if [ -d "$dest" ] && [ ! -e "$dest/.version" ] && [ -n "$(ls -A "$dest")" ]; then
    echo "fetch-userdbctl.sh: $dest is not empty and holds no earlier unpack; refusing to replace it" >&2
    echo "  (give a directory of its own, e.g. build/userdbd-root)" >&2
    exit 2
fi
version=$(dpkg-query -W -f='${Version}' systemd)
bin=$dest/usr/bin/userdbctl
if [ -x "$bin" ] && [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ]; then
    echo "$bin"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/transient-userdbctl.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt drops privileges to _apt for downloads; a private world-writable dir keeps it quiet.
chmod 0777 "$work"
if ! (cd "$work" && apt-get download -q "systemd-userdbd=$version" >"$work/apt.log" 2>&1); then
    # The package lists may be missing on a fresh machine.
    apt-get update -q >"$work/update.log" 2>&1 || true
    (cd "$work" && apt-get download -q "systemd-userdbd=$version" >"$work/apt.log" 2>&1) || {
        echo "fetch-userdbctl.sh: cannot download systemd-userdbd=$version:" >&2
        cat "$work/apt.log" >&2
        exit 1
    }
fi
rm -rf "$dest"
mkdir -p "$dest"
dpkg-deb -x "$work"/systemd-userdbd_*.deb "$dest"
echo "$version" >"$dest/.version"
echo "$bin"
