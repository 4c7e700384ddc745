#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# runtime_dir.sh - CMake's TRANSIENT_RUNTIME_DIR is the one source of the runtime directory:
# configures a build tree of its own with a value other than /run/transient and checks that
#   - values that cannot work (relative, a space, a systemd specifier, too long for sun_path,
#     the old TRANSIENT_UNIT_RUNTIME_DIR set to something else) stop the configure with a message;
#   - the installed units and tmpfiles.d entry name that directory and never /run/transient;
#   - the --help of transient-allocd, transient-userdbd and transientctl show it as the default;
#   - in scripts/sandbox.sh, with no $TRANSIENT_RUNTIME_DIR: transient-allocd creates its socket
#     and table there, transientctl finds the daemon, libnss_transient resolves the range from
#     there (getent) and transient-userdbd serves it (GetUserRecord); /run/transient never appears.
#
# Usage: runtime_dir.sh SOURCE_DIR WORK_DIR    (root; WORK_DIR is reused: the build is incremental)
# Environment: JOBS (build parallelism, default: CPUs).
set -euo pipefail

RD=/run/transient-rd-check
SELF=$(readlink -f "$0")

# ---- inside scripts/sandbox.sh ----
if [ "${1:-}" = __inner ]; then
    USERDBD=$2
    . "$(dirname "$SELF")/../integration/lib.sh"
    RAW="python3 $(dirname "$SELF")/../integration/varlink_raw.py"

    it_section "the daemons, the client and the module use $RD by default"
    it_expect_eq "TRANSIENT_RUNTIME_DIR is not set" "" "${TRANSIENT_RUNTIME_DIR:-}"
    it_daemon_start
    it_expect_eq "transient-allocd listens in $RD" socket \
        "$(stat -c %F "$RD/io.transient.Allocator" 2>&1)"
    it_expect_ok "transientctl allocate web (no --socket)" "$CTL" allocate web
    it_expect_eq "the table is $RD/ranges.table" "regular file" \
        "$(stat -c %F "$RD/ranges.table" 2>&1)"
    B=$(it_range_start web)
    it_run getent passwd vu-web-7
    it_expect_eq "libnss_transient resolves from $RD" \
        "vu-web-7:x:$((B + 7)):$((B + 7)):UID 7 of transient range web:/:/usr/sbin/nologin" \
        "$IT_OUT"
    mkdir -p /run/rd-userdb
    TRANSIENT_USERDB_DIR=/run/rd-userdb "$USERDBD" </dev/null >>"$IT_LOG/userdbd.log" 2>&1 &
    userdbd=$!
    for _ in $(seq 250); do [ -S /run/rd-userdb/io.transient.Ranges ] && break; sleep 0.02; done
    it_run $RAW call /run/rd-userdb/io.transient.Ranges io.systemd.UserDatabase.GetUserRecord \
        '{"uid":'"$((B + 3))"',"service":"io.transient.Ranges"}' --timeout 10
    it_expect_eq "transient-userdbd serves the range from $RD" vu-web-3 \
        "$(jq -r '.parameters.record.userName' <<<"$IT_OUT" 2>/dev/null || echo "$IT_OUT $IT_ERR")"
    kill -TERM "$userdbd"
    wait "$userdbd" || true
    it_expect_eq "nothing created /run/transient" absent \
        "$([ -e /run/transient ] && echo present || echo absent)"
    it_finish
fi

# ---- on the host ----
SRC=$(readlink -f "${1:?usage: runtime_dir.sh SOURCE_DIR WORK_DIR}")
WORK=${2:?usage: runtime_dir.sh SOURCE_DIR WORK_DIR}
mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")
JOBS=${JOBS:-$(nproc)}
# shellcheck source=tests/lib/checks.sh
. "$(dirname "$SELF")/../lib/checks.sh"
[ "$(id -u)" -eq 0 ] || { echo "runtime_dir.sh: skipped: needs root (sandbox.sh)"; exit 77; }

echo "== values that cannot work are refused at configure time"
bad=$WORK/bad
long=/run/$(printf 'x%.0s' $(seq 80))
for value in run/relative "/run/with space" /run/%n /run/trailing/ "$long"; do
    out=$(cmake -S "$SRC" -B "$bad" -DTRANSIENT_BUILD_TESTS=OFF "-DTRANSIENT_RUNTIME_DIR=$value" \
          2>&1) && rc=0 || rc=$?
    expect_match "configure refuses TRANSIENT_RUNTIME_DIR='${value:0:24}'" \
        "^1 .*TRANSIENT_RUNTIME_DIR='.*':[[:space:]]+must be an absolute path" \
        "$rc $(tr '\n' ' ' <<<"$out")"
done
out=$(cmake -S "$SRC" -B "$bad" -DTRANSIENT_BUILD_TESTS=OFF -DTRANSIENT_RUNTIME_DIR=/run/a \
      -DTRANSIENT_UNIT_RUNTIME_DIR=/run/b 2>&1) && rc=0 || rc=$?
expect_match "configure refuses the old TRANSIENT_UNIT_RUNTIME_DIR with another value" \
    "^1 .*TRANSIENT_UNIT_RUNTIME_DIR is gone" "$rc $(tr '\n' ' ' <<<"$out")"
rm -rf "$bad"

echo "== a build with TRANSIENT_RUNTIME_DIR=$RD"
build=$WORK/build
t0=$SECONDS
cmake -S "$SRC" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DTRANSIENT_BUILD_TESTS=OFF "-DTRANSIENT_RUNTIME_DIR=$RD" >"$WORK/configure.log" 2>&1 ||
    { cat "$WORK/configure.log"; echo "runtime_dir.sh: configure failed" >&2; exit 1; }
cmake --build "$build" -j "$JOBS" >"$WORK/build.log" 2>&1 ||
    { tail -n 60 "$WORK/build.log"; echo "runtime_dir.sh: build failed" >&2; exit 1; }
echo "(configured and built in $((SECONDS - t0)) s)"
root=$WORK/root
rm -rf "$root"
DESTDIR=$root cmake --install "$build" >"$WORK/install.log" 2>&1 ||
    { cat "$WORK/install.log"; echo "runtime_dir.sh: install failed" >&2; exit 1; }

echo "== the units and tmpfiles.d"
units=$root/usr/lib/systemd/system
expect_eq "transient-allocd.socket listens in $RD" "ListenStream=$RD/io.transient.Allocator" \
    "$(grep '^ListenStream=' "$units/transient-allocd.socket")"
expect_eq "transient-allocd.service may write $RD" "ReadWritePaths=$RD" \
    "$(grep "^ReadWritePaths=/" "$units/transient-allocd.service")"
expect_eq "tmpfiles.d creates $RD" "d $RD 0755 root root -" \
    "$(grep -m1 '^d ' "$root/usr/lib/tmpfiles.d/transient.conf")"
expect_eq "no installed unit or tmpfiles.d entry names /run/transient" "" \
    "$(grep -rlE '/run/transient([/ ]|$)' "$units"/transient-* "$root/usr/lib/tmpfiles.d" || true)"

echo "== the binaries' --help"
for b in "$build/allocator/transient-allocd" "$build/userdb/transient-userdbd" \
         "$build/ctl/transientctl"; do
    h=$(env -u TRANSIENT_RUNTIME_DIR "$b" --help 2>&1 || true)
    expect_match "$(basename "$b") --help shows $RD as the default" "\\(default $RD|\\($RD/" "$h"
    expect_eq "$(basename "$b") --help does not mention /run/transient" "" \
        "$(grep -E '/run/transient([/) ]|$)' <<<"$h" || true)"
done

echo "== the binaries at run time, in scripts/sandbox.sh"
rc=0
"$SRC/scripts/sandbox.sh" --allocd "$build/allocator/transient-allocd" \
    --ctl "$build/ctl/transientctl" --module "$build/nss/libnss_transient.so.2" \
    --runtime-dir "$RD" -- "$SELF" __inner "$build/userdb/transient-userdbd" || rc=$?
expect_eq "the sandboxed checks passed" 0 "$rc"

checks_summary runtime_dir
