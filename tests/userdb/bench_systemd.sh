#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench_systemd.sh - transient-userdbd against systemd-userdbd (README, "Benchmark"). Boots the
# host's systemd as PID 1 of a throw-away container (tests/system/container.sh), installs
# Debian's systemd-userdbd there (unpacked by scripts/fetch-userdbctl.sh, the version of the
# installed systemd), and for each size N gives the container's /etc/passwd N static users and
# runs transient-bench-userdb-systemd, which publishes N ranges, starts transient-userdbd and
# times both side by side. Nothing is written outside the container.
#
# Usage: bench_systemd.sh BENCH USERDBD_ROOT [--smoke] [--sizes "N..."] [-- BENCH_ARGS...]
#   BENCH         the built transient-bench-userdb-systemd
#   USERDBD_ROOT  where scripts/fetch-userdbctl.sh unpacks systemd-userdbd (fetched if missing)
#   --smoke       100 records, one short round (CI: checks that every row runs and answers right)
# Needs root (exit 77 otherwise); without systemd, util-linux or bsdutils it fails naming them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CT=$ROOT/tests/system/container.sh
NAME=udbbench-$$
STATIC_FIRST=300000   # below the container pool (524288), above everything Debian allocates

fail() { echo "bench_systemd.sh: FAIL: $*" >&2; exit 1; }
[ $# -ge 2 ] || { sed -n '/^# Usage:/,/^# Needs root/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BENCH=$(readlink -f "$1")
UDB_ROOT=$(readlink -m "$2")
shift 2
sizes="1000 10000"
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) sizes=100; bench_args+=(--rounds 1 --seconds 0.05 --clients 4); shift ;;
        --sizes) sizes=$2; shift 2 ;;
        --) shift; bench_args+=("$@"); break ;;
        *) fail "unknown option '$1'" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || { echo "bench_systemd.sh: skipped: needs root"; exit 77; }
[ -x /lib/systemd/systemd ] || fail "no /lib/systemd/systemd: install package systemd (scripts/deps.sh)"
for tool in unshare:util-linux nsenter:util-linux setpriv:util-linux script:bsdutils; do
    command -v "${tool%%:*}" >/dev/null || fail "${tool%%:*} is missing: package ${tool#*:} (scripts/deps.sh)"
done
[ -x "$BENCH" ] || fail "no benchmark at $BENCH"
"$ROOT/scripts/fetch-userdbctl.sh" "$UDB_ROOT" >/dev/null ||
    fail "cannot unpack systemd-userdbd into $UDB_ROOT (scripts/fetch-userdbctl.sh)"
[ -x "$UDB_ROOT/lib/systemd/systemd-userdbd" ] || fail "no systemd-userdbd in $UDB_ROOT"

inside() { "$CT" exec "$NAME" -- "$@"; }
trap '"$CT" stop "$NAME"' EXIT
# The build tree, seen at its own path inside even when it is under /tmp.
"$CT" start "$NAME" --watch $$ --share "$(dirname "$UDB_ROOT")"

# The container's / is an overlay of the host's with a tmpfs upper layer: these copies, like the
# /etc/passwd lines below, exist only in the container.
inside sh -ec "
    cp '$UDB_ROOT/lib/systemd/systemd-userdbd' '$UDB_ROOT/lib/systemd/systemd-userwork' /lib/systemd/
    cp '$UDB_ROOT'/lib/systemd/system/systemd-userdbd.* /lib/systemd/system/
    systemctl daemon-reload
    systemctl start systemd-userdbd.socket systemd-userdbd.service
    cp /etc/passwd /etc/passwd.base
    cp /etc/group /etc/group.base"
[ "$(inside systemctl is-active systemd-userdbd.service)" = active ] ||
    fail "systemd-userdbd did not start in the container"

echo "systemd $(dpkg-query -W -f='${Version}' systemd), $(nproc) CPUs;" \
     "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $sizes; do
    # N users (and their groups) as an admin would write them, after the system's own.
    inside sh -ec "
        awk -v n=$n -v f=$STATIC_FIRST 'BEGIN { for (i = 0; i < n; i++)
            printf \"su%d:x:%d:%d:static user %d:/nonexistent:/usr/sbin/nologin\\n\", i, f+i, f+i, i }' |
            cat /etc/passwd.base - >/etc/passwd
        awk -v n=$n -v f=$STATIC_FIRST 'BEGIN { for (i = 0; i < n; i++)
            printf \"su%d:x:%d:\\n\", i, f+i }' | cat /etc/group.base - >/etc/group"
    echo
    inside "$BENCH" --ranges "$n" --static-first "$STATIC_FIRST" "${bench_args[@]}"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
