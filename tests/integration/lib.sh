# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# Shared harness of the integration tests. A test script runs inside scripts/sandbox.sh (private
# mount + PID namespaces, private tmpfs /run holding the binaries' compiled-in runtime dir
# ($TRANSIENT_SANDBOX_RUNTIME_DIR), private nsswitch.conf with "files transient", the module
# overlaid into the system library dir) and sources this file for:
#   - daemon control: it_daemon_start, it_daemon_stop (SIGTERM, expects a clean exit),
#     it_daemon_kill9, it_daemon_wait_ready;
#   - running commands: it_run CMD... sets IT_OUT, IT_ERR, IT_RC; it_ms CMD... times one;
#     "${IT_RAW[@]}" is the raw Varlink client (varlink_raw.py);
#   - checks that say what was expected and what came instead: it_expect_eq, it_expect_match,
#     it_expect_no_match, it_expect_rc, it_expect_ok, it_expect_fail, it_fail, it_pass;
#   - users and subordinate IDs: it_require, it_as_user, it_add_users, it_subid_setup,
#     it_subid_backend;
#   - it_finish: prints the tally, exits 1 if any check failed.
# The tests are registered in CMakeLists.txt beside this file.

set -euo pipefail

if [ -z "${TRANSIENT_SANDBOX:-}" ]; then
    echo "$(basename "$0"): run me through scripts/sandbox.sh (see tests/integration/CMakeLists.txt)" >&2
    exit 2
fi

IT_NAME=$(basename "$0" .sh)
IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IT_RUNTIME=$TRANSIENT_SANDBOX_RUNTIME_DIR
IT_SOCKET=$IT_RUNTIME/io.transient.Allocator
IT_LOG=$TRANSIENT_SANDBOX/log
IT_FILES=$TRANSIENT_SANDBOX/files
IT_DAEMON_PID=""
CTL=$TRANSIENT_CTL
ALLOCD=$TRANSIENT_ALLOCD

# shellcheck source=tests/lib/checks.sh
. "$IT_DIR/../lib/checks.sh"

# ---- output ----

it_section() { printf '\n== %s\n' "$*"; }
# The checks themselves are tests/lib/checks.sh's, shared with tests/system/.
it_pass() { pass "$@"; }
it_fail() { fail "$@"; }  # it_fail WHAT [DETAIL...]

it_finish() {
    it_daemon_stop_quietly
    local rc=0
    checks_summary "$IT_NAME" || rc=1
    exit $rc
}

# ---- running commands ----

# it_run CMD...: runs CMD with stdin from /dev/null; IT_OUT/IT_ERR get its output (without the
# final newline), IT_RC its exit status. Never fails itself.
it_run() {
    local o="$TRANSIENT_SANDBOX/.it_out" e="$TRANSIENT_SANDBOX/.it_err"
    IT_RC=0
    "$@" </dev/null >"$o" 2>"$e" || IT_RC=$?
    IT_OUT=$(cat "$o")
    IT_ERR=$(cat "$e")
}

# it_ms CMD...: runs CMD (no input, output discarded) and prints its exit status and its wall
# time in milliseconds, for `read -r rc t < <(it_ms CMD...)`. Never fails itself.
it_ms() {
    local t0 t1 rc=0
    t0=$(date +%s%N)
    "$@" </dev/null >/dev/null 2>&1 || rc=$?
    t1=$(date +%s%N)
    echo "$rc $(((t1 - t0) / 1000000))"
}

# A raw Varlink client that knows only the wire format: "${IT_RAW[@]}" call SOCKET METHOD ...
# shellcheck disable=SC2034  # for the scripts that source this file
IT_RAW=(python3 -B "$IT_DIR/varlink_raw.py")

# ---- checks ----

it_expect_eq() { expect_eq "$@"; }              # WHAT EXPECTED ACTUAL
it_expect_match() { expect_match "$@"; }        # WHAT ERE TEXT
it_expect_no_match() { expect_no_match "$@"; }  # WHAT ERE TEXT

# it_expect_rc WHAT RC CMD...: runs CMD (via it_run) and checks its exit status.
it_expect_rc() {
    local what=$1 want=$2
    shift 2
    it_run "$@"
    if [ "$IT_RC" -eq "$want" ]; then
        it_pass "$what"
    else
        it_fail "$what" "command:  $*" "expected exit status $want, got $IT_RC" \
            "stdout:   $IT_OUT" "stderr:   $IT_ERR"
    fi
}

it_expect_ok() {  # WHAT CMD...: exit status 0
    local what=$1
    shift
    it_expect_rc "$what" 0 "$@"
}

# it_expect_fail WHAT CMD...: a non-zero exit status and a message on stderr.
it_expect_fail() {
    local what=$1
    shift
    it_run "$@"
    if [ "$IT_RC" -ne 0 ] && [ -n "$IT_ERR" ]; then
        it_pass "$what (exit $IT_RC: $(head -n1 <<<"$IT_ERR"))"
    else
        it_fail "$what" "command:  $*" "expected a non-zero exit status and an error message" \
            "got exit status $IT_RC" "stdout:   $IT_OUT" "stderr:   $IT_ERR"
    fi
}

# ---- the daemon ----

# it_daemon_wait_ready [TIMEOUT_S]: until the socket exists and `transientctl list` answers.
it_daemon_wait_ready() {
    local deadline=$((SECONDS + ${1:-10}))
    while [ $SECONDS -le "$deadline" ]; do
        if [ -S "$IT_SOCKET" ] && "$CTL" list >/dev/null 2>&1; then
            return 0
        fi
        if [ -n "$IT_DAEMON_PID" ] && ! kill -0 "$IT_DAEMON_PID" 2>/dev/null; then
            echo "transient-allocd (pid $IT_DAEMON_PID) died during start-up; its log:" >&2
            tail -n 20 "$IT_LOG/allocd.log" >&2
            return 1
        fi
        sleep 0.02
    done
    echo "transient-allocd did not answer within ${1:-10} s; its log:" >&2
    tail -n 20 "$IT_LOG/allocd.log" >&2
    return 1
}

it_daemon_start() {
    "$ALLOCD" </dev/null >>"$IT_LOG/allocd.log" 2>&1 &
    IT_DAEMON_PID=$!
    it_daemon_wait_ready "$@"
}

# Stops the daemon with SIGTERM and checks that it exits with status 0 within 10 s.
it_daemon_stop() {
    [ -n "$IT_DAEMON_PID" ] || return 0
    local pid=$IT_DAEMON_PID rc=0 i
    IT_DAEMON_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 500); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        it_fail "transient-allocd exits on SIGTERM" "still running 10 s after SIGTERM"
        return 0
    fi
    wait "$pid" || rc=$?
    it_expect_eq "transient-allocd exits cleanly on SIGTERM (status)" 0 "$rc"
}

it_daemon_stop_quietly() {
    [ -n "$IT_DAEMON_PID" ] || return 0
    kill -TERM "$IT_DAEMON_PID" 2>/dev/null || true
    wait "$IT_DAEMON_PID" 2>/dev/null || true
    IT_DAEMON_PID=""
}

it_daemon_kill9() {
    [ -n "$IT_DAEMON_PID" ] || return 0
    kill -KILL "$IT_DAEMON_PID" 2>/dev/null || true
    wait "$IT_DAEMON_PID" 2>/dev/null || true
    IT_DAEMON_PID=""
}

# ---- helpers ----

# it_ctl_json ARGS...: transientctl ARGS --json, stdout only; fails like transientctl does.
it_ctl_json() { "$CTL" "$@" --json </dev/null; }

# it_range_start NAME: the start UID of a live range, from `transientctl show NAME --json`.
it_range_start() { it_ctl_json show "$1" | jq -er '.start'; }

# it_allocate_bench FROM TO: ranges bench-FROM … bench-(TO-1) of 65536 IDs, eight calls in
# flight on one connection (tests/allocator/bench_alloc.py's client), for the benchmarks that
# fill the table.
it_allocate_bench() {
    python3 -B - "$IT_SOCKET" "$1" "$2" "$IT_DIR/../allocator" <<'EOF'
import sys
sys.path.insert(0, sys.argv[4])
from bench_alloc import Connection, run_band
conn = Connection(sys.argv[1])
lo, hi = int(sys.argv[2]), int(sys.argv[3])
run_band(conn, "AllocateRange", [{"name": f"bench-{i}", "size": 65536} for i in range(lo, hi)], 8)
EOF
}

# ---- users and subordinate IDs ----

# it_require TOOL...: fails the test (exit 1, never a skip) naming the first missing program.
it_require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            { echo "$tool is missing: scripts/deps.sh installs it" >&2; exit 1; }
    done
}

# it_as_user UID CMD...: CMD as UID (its own GID, no supplementary groups), environment kept.
it_as_user() { local uid=$1; shift; setpriv --reuid "$uid" --regid "$uid" --clear-groups -- "$@"; }

# it_add_users NAME:UID[:HOME]...: private copies of /etc/passwd and /etc/group (the host's plus
# these users, each with a group NAME of GID UID unless that GID already has one, so a second
# name of a UID adds no group) bind-mounted over the real ones. HOME defaults to /.
it_add_users() {
    local e=$TRANSIENT_SANDBOX/etc spec name uid home
    if [ -z "${IT_USERS_ADDED:-}" ]; then
        cp /etc/passwd "$e/passwd"
        cp /etc/group "$e/group"
        mount --bind "$e/passwd" /etc/passwd
        mount --bind "$e/group" /etc/group
        IT_USERS_ADDED=1
    fi
    for spec in "$@"; do
        IFS=: read -r name uid home <<<"$spec"
        printf '%s:x:%s:%s::%s:/bin/sh\n' "$name" "$uid" "$uid" "${home:-/}" >>"$e/passwd"
        cut -d: -f3 "$e/group" | grep -qx "$uid" ||
            printf '%s:x:%s:\n' "$name" "$uid" >>"$e/group"
    done
}

# it_subid_setup: libsubid_transient.so ($TRANSIENT_SUBID_PROVIDER) where setuid newuidmap finds
# it (the sandbox's overlay of the system library dir: it ignores LD_LIBRARY_PATH), `subid:
# transient` in the private nsswitch.conf, and empty /etc/subuid and /etc/subgid, so that the
# files cannot be what grants a mapping. it_subid_backend files|transient switches the subid line.
it_subid_setup() {
    local e=$TRANSIENT_SANDBOX/etc f
    : "${TRANSIENT_SUBID_PROVIDER:?the built libsubid_transient.so}"
    local libdir=$TRANSIENT_SANDBOX_LIBDIR
    if [ "$(findmnt -n -o FSTYPE --target "$libdir" 2>/dev/null)" != overlay ]; then
        echo "the sandbox could not overlay $libdir: setuid programs cannot load the provider;" \
            "skipping" >&2
        exit 77
    fi
    for f in subuid subgid; do
        [ -e /etc/$f ] || { echo "/etc/$f is missing (uidmap installs it)" >&2; exit 1; }
        : >"$e/$f"
        mount --bind "$e/$f" /etc/$f
    done
    grep -v '^[[:space:]]*subid:' /etc/nsswitch.conf >"$e/nsswitch.files"
    cp "$e/nsswitch.files" "$e/nsswitch.transient"
    echo "subid:          transient" >>"$e/nsswitch.transient"
    cp "$e/nsswitch.transient" "$e/nsswitch.conf.subid"
    mount --bind "$e/nsswitch.conf.subid" /etc/nsswitch.conf
    cp "$TRANSIENT_SUBID_PROVIDER" "$libdir/libsubid_transient.so"
}

it_subid_backend() {
    cp "$TRANSIENT_SANDBOX/etc/nsswitch.$1" "$TRANSIENT_SANDBOX/etc/nsswitch.conf.subid"
}

# ---- userdb clients ----

# it_require_userdb_clients USERDBCTL: fails the test at once, naming what to install, unless
# nss-systemd and userdbctl are there: without them every comparison would fail for a reason that
# says nothing (an empty answer), or a missing package would pass as a skip.
it_require_userdb_clients() {
    if [ ! -e "$TRANSIENT_SANDBOX_LIBDIR/libnss_systemd.so.2" ]; then
        it_fail "nss-systemd is installed" "no libnss_systemd.so.2 in $TRANSIENT_SANDBOX_LIBDIR:" \
            "install package libnss-systemd (scripts/deps.sh does)"
        it_finish
    fi
    if [ ! -x "$1" ]; then
        it_fail "userdbctl is there" "no $1: scripts/fetch-userdbctl.sh unpacks it" \
            "(scripts/test.sh runs it; it needs package systemd and apt-get download)"
        it_finish
    fi
}

# it_userdbd_start USERDBD: starts transient-userdbd (pid in IT_USERDBD_PID) and waits for its
# socket in the sandbox's private /run.
IT_USERDB_SOCKET=/run/systemd/userdb/io.transient.Ranges
it_userdbd_start() {
    mkdir -p "$(dirname "$IT_USERDB_SOCKET")"
    "$1" </dev/null >>"$IT_LOG/userdbd.log" 2>&1 &
    IT_USERDBD_PID=$!
    local _
    for _ in $(seq 200); do [ -S "$IT_USERDB_SOCKET" ] && break; sleep 0.02; done
}

# it_userdbctl_names USERDBCTL user|group: the names userdbctl enumerates from
# io.transient.Ranges, sorted, on one line.
it_userdbctl_names() {
    "$1" --no-pager -N -s io.transient.Ranges --output=table "$2" 2>/dev/null |
        grep -oE '^ *v[ug]-[^ ]+' | tr -d ' ' | sort | tr '\n' ' ' | sed 's/ $//'
}

# it_nsswitch_systemd: from here on, passwd and group come from "files systemd": nss-systemd
# asks the userdb endpoint, the transient module is not listed.
it_nsswitch_systemd() {
    sed -E 's/^(passwd|group):.*/\1:         files systemd/' /etc/nsswitch.conf \
        >"$IT_FILES/nsswitch.systemd"
    mount --bind "$IT_FILES/nsswitch.systemd" /etc/nsswitch.conf
}

# Whatever way the test ends, the daemon gets SIGTERM (sandbox.sh prints the logs on failure).
it_on_exit() {
    local rc=$?
    it_daemon_stop_quietly
    return $rc
}
trap it_on_exit EXIT
