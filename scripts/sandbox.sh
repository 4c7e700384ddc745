#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# sandbox.sh - run a command with transient wired into the name service, without touching the
# host. The command runs in new mount and PID namespaces (unshare) where:
#   - /run is a private, empty tmpfs, so the daemon uses its compiled-in runtime dir
#     (/run/transient unless configured otherwise: CMake's TRANSIENT_RUNTIME_DIR; env-scrubbing
#     and setuid programs resolve through it too) and nothing reaches the host's /run (systemd's
#     state, nscd's socket, lock files);
#   - a tmpfs scratch dir ($TRANSIENT_SANDBOX) holds logs ($TRANSIENT_SANDBOX/log), a bin/ dir on
#     PATH with transient-allocd and transientctl, and room for files (e.g. to chown to
#     transient UIDs);
#   - transient-allocd runs with its built-in defaults ($TRANSIENT_CONFIG is an empty file);
#   - a private copy of the host's nsswitch.conf, with "passwd: files transient" and
#     "group: files transient", is bind-mounted over /etc/nsswitch.conf;
#   - libnss_transient.so.2 appears in the system library dir through a tmpfs-backed overlay, so
#     glibc finds it without LD_LIBRARY_PATH, also in env-scrubbing and setuid programs;
# All of it disappears when the command exits (the PID namespace takes every process with it).
# Afterwards the host's /etc/nsswitch.conf, /etc/passwd, /etc/group and system library dir are
# checked to be unchanged.
#
# Usage: sandbox.sh [--build DIR | --allocd PATH --ctl PATH --module PATH] [--runtime-dir DIR]
#                   [--daemon] -- CMD [ARG...]
#   --build DIR   take the three from a build dir (default: ./build of this checkout)
#   --runtime-dir DIR  the runtime dir the three were built with, below /run (default: the
#                 build dir's TRANSIENT_RUNTIME_DIR with --build, else /run/transient); exported
#                 as $TRANSIENT_SANDBOX_RUNTIME_DIR, never as $TRANSIENT_RUNTIME_DIR
#   --daemon      start transient-allocd before CMD (waiting until it answers) and stop it with
#                 SIGTERM afterwards; a daemon that does not exit cleanly fails the run
# Exit status: CMD's, 77 when not run as root, 1 when the host was changed.
#
# Example: scripts/sandbox.sh --daemon -- bash   # a shell to play in: transientctl allocate web
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/sandbox.sh"

usage() { sed -n '/^# Usage:/,/^# Example:/p' "$SELF" | sed 's/^# \{0,1\}//'; }

# The directory of the C library that getent really uses: where glibc looks for NSS modules.
system_libdir() {
    local libc
    libc=$(ldd "$(command -v getent)" | awk '$1 == "libc.so.6" { print $3 }')
    dirname "$(readlink -f "$libc")"
}

# What must be identical before and after a run: the files a careless test could clobber.
host_fingerprint() {
    local f lib
    lib="$(system_libdir)/libnss_transient.so.2"
    for f in /etc/nsswitch.conf /etc/passwd /etc/group "$lib"; do
        if [ -e "$f" ]; then
            printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
        else
            printf 'absent %s\n' "$f"
        fi
    done
}

# ---- outer part: runs on the host, enters the namespaces, checks the host afterwards ----
if [ "${1:-}" != __inner ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "sandbox.sh: needs root (mount namespaces, overlay and tmpfs mounts); skipping" >&2
        exit 77
    fi
    command -v unshare >/dev/null || { echo "sandbox.sh: unshare (util-linux) is missing" >&2; exit 1; }
    before=$(host_fingerprint)
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/transient-sandbox.XXXXXX")
    rc=0
    # --pid --fork --kill-child: the command's shell is PID 1 of a new PID namespace, so when it
    # ends (or unshare is killed) every process it started, the daemon included, dies with it.
    unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
        "$SELF" __inner "$scratch" "$@" || rc=$?
    rmdir "$scratch" 2>/dev/null || true
    after=$(host_fingerprint)
    if [ "$before" != "$after" ]; then
        echo "sandbox.sh: FAIL: the host changed during the run" >&2
        diff <(echo "$before") <(echo "$after") >&2 || true
        exit 1
    fi
    echo "sandbox.sh: host unchanged: /etc/nsswitch.conf, /etc/passwd, /etc/group, $(system_libdir)/libnss_transient.so.2" >&2
    exit $rc
fi

# ---- inner part: PID 1 of the new namespaces ----
shift
S=$1; shift
build="" allocd="" ctl="" module="" runtime_dir="" daemon=0
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=$2; shift 2 ;;
        --allocd) allocd=$2; shift 2 ;;
        --ctl) ctl=$2; shift 2 ;;
        --module) module=$2; shift 2 ;;
        --runtime-dir) runtime_dir=$2; shift 2 ;;
        --daemon) daemon=1; shift ;;
        --) shift; break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "sandbox.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }
if [ -z "$allocd$ctl$module" ]; then
    build=${build:-$ROOT/build}
    allocd=$build/allocator/transient-allocd
    ctl=$build/ctl/transientctl
    module=$build/nss/libnss_transient.so.2
    [ -n "$runtime_dir" ] ||
        runtime_dir=$(sed -n 's/^TRANSIENT_RUNTIME_DIR:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)
fi
runtime_dir=${runtime_dir:-/run/transient}
# Only /run is private here: a runtime dir anywhere else would be the host's.
case "$runtime_dir" in
    /run/?*) ;;
    *) echo "sandbox.sh: runtime dir '$runtime_dir' is not below /run, the only private place" >&2
       exit 2 ;;
esac
for f in "$allocd" "$ctl" "$module"; do
    [ -f "$f" ] || { echo "sandbox.sh: '$f' does not exist; build first (scripts/build.sh)" >&2; exit 1; }
done

mount -t tmpfs -o mode=0755,size=1g transient-sandbox "$S"
mkdir -p "$S/log" "$S/bin" "$S/files" "$S/lib/upper" "$S/lib/work" "$S/etc"
ln -s "$(readlink -f "$allocd")" "$S/bin/transient-allocd"
ln -s "$(readlink -f "$ctl")" "$S/bin/transientctl"

# nsswitch.conf: the host's file with our word on the passwd and group lines.
awk '
    /^[[:space:]]*passwd:/ { print "passwd:         files transient"; p = 1; next }
    /^[[:space:]]*group:/  { print "group:          files transient"; g = 1; next }
    { print }
    END {
        if (!p) print "passwd:         files transient"
        if (!g) print "group:          files transient"
    }' /etc/nsswitch.conf >"$S/etc/nsswitch.conf"
mount --bind "$S/etc/nsswitch.conf" /etc/nsswitch.conf

# A private /run: the runtime dir is the default one, and the host's systemd state, nscd socket
# and lock files are out of reach. (/var/run is normally a symlink to /run.)
mount -t tmpfs -o mode=0755,size=64m transient-sandbox /run
if [ -d /var/run/nscd ] && [ ! -L /var/run ]; then
    mount -t tmpfs -o mode=0755,size=1m transient-sandbox /var/run/nscd
fi

# The module, visible in the system library dir through an overlay whose upper layer is tmpfs.
libdir=$(system_libdir)
cp "$module" "$S/lib/upper/libnss_transient.so.2"
if ! mount -t overlay transient-sandbox \
        -o "lowerdir=$libdir,upperdir=$S/lib/upper,workdir=$S/lib/work" "$libdir" 2>"$S/log/overlay.err"; then
    echo "sandbox.sh: warning: overlay on $libdir failed ($(cat "$S/log/overlay.err")); using LD_LIBRARY_PATH," \
         "which setuid and env-scrubbing programs ignore" >&2
    export LD_LIBRARY_PATH="$S/lib/upper${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

export TRANSIENT_SANDBOX=$S
export TRANSIENT_SANDBOX_LIBDIR=$libdir
# The daemon's defaults, whatever /etc/transient/allocd.conf on this host says.
: >"$S/etc/allocd.conf"
export TRANSIENT_CONFIG=$S/etc/allocd.conf
# Not exported: every component must find its runtime dir by its compiled-in default.
unset TRANSIENT_RUNTIME_DIR
export TRANSIENT_SANDBOX_RUNTIME_DIR=$runtime_dir
export TRANSIENT_ALLOCD=$S/bin/transient-allocd
export TRANSIENT_CTL=$S/bin/transientctl
export PATH="$S/bin:$PATH"

# Starts the daemon in the background (log: $S/log/allocd.log) and waits until it answers.
daemon_pid=""
start_daemon() {
    "$TRANSIENT_ALLOCD" >>"$S/log/allocd.log" 2>&1 &
    daemon_pid=$!
    local i
    for i in $(seq 200); do
        if [ -S "$TRANSIENT_SANDBOX_RUNTIME_DIR/io.transient.Allocator" ] &&
                "$TRANSIENT_CTL" list >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "sandbox.sh: transient-allocd did not become ready; its log:" >&2
    tail -n 30 "$S/log/allocd.log" >&2
    return 1
}

rc=0
if [ $daemon = 1 ]; then
    start_daemon || exit 1
fi
"$@" || rc=$?
if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    drc=0
    wait "$daemon_pid" || drc=$?
    if [ $drc -ne 0 ]; then
        echo "sandbox.sh: transient-allocd exited with status $drc after SIGTERM" >&2
        [ $rc -ne 0 ] || rc=1
    fi
fi
if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    for f in "$S"/log/*.log; do
        [ -s "$f" ] || continue
        echo "---- last lines of $(basename "$f") ----" >&2
        tail -n 40 "$f" >&2
    done
fi
exit $rc
