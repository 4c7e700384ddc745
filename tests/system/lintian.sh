#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# lintian.sh - the built .deb is lintian clean: no error, warning or info tag that is not
# overridden (packaging/debian/transient.lintian-overrides, each with its reason). An override
# that matches nothing is named, to be removed, but does not fail the test: it hides nothing, and
# another branch (man pages, code that moves the bytes a spelling tag saw) may make one unused.
# A missing lintian is a failure that names the package.
#
# Usage: lintian.sh DEB|DIR    (DIR: its newest transient_*.deb, what build-deb.sh -o DIR made)
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: lintian.sh DEB|DIR" >&2; exit 2; }
DEB=$(readlink -f "$1")
if [ -d "$DEB" ]; then
    DEB=$(ls -t "$DEB"/transient_*.deb 2>/dev/null | head -n 1)
fi
[ -n "$DEB" ] && [ -f "$DEB" ] || { echo "lintian.sh: $1: no such .deb" >&2; exit 1; }
command -v lintian >/dev/null ||
    { echo "lintian.sh: FAIL: lintian is missing: package lintian (scripts/deps.sh installs it)" >&2; exit 1; }

# -I: info tags too; --show-overrides: overridden ones are listed with "O:", not failed on.
out=$(lintian -I --show-overrides --tag-display-limit 0 "$DEB" 2>&1) || true
echo "$out"
failed=0
if bad=$(echo "$out" | grep -E '^[EWI]: ' | grep -Ev ' (unused|mismatched)-override '); then
    echo "FAIL  lintian tags on $(basename "$DEB"):" >&2
    echo "$bad" >&2
    failed=1
fi
if unused=$(echo "$out" | grep -E ' (unused|mismatched)-override '); then
    echo "note  overrides that match nothing (remove them from the overrides file):" >&2
    echo "$unused" >&2
fi
[ $failed = 0 ] && echo "PASS  lintian: $(basename "$DEB") is clean ($(echo "$out" | grep -c '^O: ' || true) tags overridden, each explained)"
exit $failed
