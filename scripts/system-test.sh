#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# system-test.sh - builds the Debian package (scripts/build-deb.sh) and runs the system test
# tests/system/package.sh on it: the host's systemd booted as PID 1 of a throw-away container,
# dpkg -i inside, systemd-run User=/Group= on a transient range, removal. Changes nothing on
# the host. Needs root.
#
# Usage: scripts/system-test.sh [-B BUILD_DIR] [--no-deps]   (BUILD_DIR as for build-deb.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

out=$("$ROOT/scripts/build-deb.sh" "$@" | tee /dev/stderr | tail -n 1)
exec "$ROOT/tests/system/package.sh" "$out"
