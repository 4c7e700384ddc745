#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# demo.sh - builds transient (installing what is missing) and shows it working, without changing
# anything on the host: in a private mount namespace (scripts/sandbox.sh) with a private /run and
# a private nsswitch.conf ("passwd: files transient", "group: files transient"), it starts
# transient-allocd, allocates a 64K range and a single UID with transientctl, and shows what
# getent, id, ls -l and stat make of them, then lists, releases and stops.
#
#   scripts/demo.sh              build into ./build (or $BUILD_DIR), then run the demo
#   scripts/demo.sh --no-build   run the demo on an existing build
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" != __inner ]; then
    BUILD_DIR=${BUILD_DIR:-$ROOT/build}
    if [ "${1:-}" != --no-build ]; then
        echo "== building transient in $BUILD_DIR (log: $BUILD_DIR/demo-build.log)"
        mkdir -p "$BUILD_DIR"
        if ! BUILD_DIR=$BUILD_DIR "$ROOT/scripts/build.sh" >"$BUILD_DIR/demo-build.log" 2>&1; then
            tail -n 40 "$BUILD_DIR/demo-build.log"
            echo "demo.sh: the build failed (full log: $BUILD_DIR/demo-build.log)" >&2
            exit 1
        fi
    fi
    exec "$ROOT/scripts/sandbox.sh" --build "$BUILD_DIR" -- "$0" __inner
fi

# ---- inside the sandbox ----
S=$TRANSIENT_SANDBOX
RUNTIME=$TRANSIENT_SANDBOX_RUNTIME_DIR
bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
[ -t 1 ] || bold="" dim="" off=""
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
# quote ARG...: the arguments as one would type them in a shell.
quote() {
    local a out=""
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+="$a "
        else
            out+="'${a//\'/\'\\\'\'}' "
        fi
    done
    printf '%s' "${out% }"
}
# run CMD...: prints the command like a shell prompt would, then runs it.
run() { printf '%s$ %s%s\n' "$dim" "$(quote "$@")" "$off"; "$@"; }
# pipe 'CMD | CMD': the same for a pipeline, given as one string.
pipe() { printf '%s$ %s%s\n' "$dim" "$1" "$off"; bash -o pipefail -c "$1"; }

step "A private sandbox: nothing here touches the host"
echo "mount + PID namespace, private tmpfs /run, libnss_transient.so.2 overlaid into $TRANSIENT_SANDBOX_LIBDIR"
run grep -E '^(passwd|group):' /etc/nsswitch.conf

step "Start the allocator daemon"
run transient-allocd --version || true
echo "$ transient-allocd &    ${dim}(runtime dir $RUNTIME, log in the sandbox)$off"
transient-allocd </dev/null >>"$S/log/allocd.log" 2>&1 &
daemon=$!
for _ in $(seq 200); do
    [ -S "$RUNTIME/io.transient.Allocator" ] && transientctl list >/dev/null 2>&1 && break
    kill -0 $daemon 2>/dev/null || { cat "$S/log/allocd.log"; exit 1; }
    sleep 0.05
done
run ls -l "$RUNTIME"

step "Allocate a 64K range for a container and a single UID for a service"
run transientctl allocate web
run transientctl allocate ci-runner --size 1
B=$(transientctl show web --json | jq -r .start)
U=$(transientctl show ci-runner --json | jq -r .start)
echo "web starts at $B; ci-runner is UID $U"

step "The name service knows them (getent, id)"
run getent passwd vu-web-0 $((B + 1000)) $((B + 65535)) "$U"
run getent group vg-web-0 $((B + 1000))
run id $((B + 1000))
run id vu-ci-runner-0
echo "one past the end of web, UID $((B + 65536)):"
run getent passwd $((B + 65536)) || echo "(not found, exit status $?)"

step "Files owned by container UIDs have names (ls -l, stat)"
mkdir -p "$S/files/rootfs/home"
touch "$S/files/rootfs/etc-passwd"
chown $B:$B "$S/files/rootfs"
chown $((B + 1000)):$((B + 1000)) "$S/files/rootfs/home"
chown $((B + 1000)):$((B + 1000)) "$S/files/rootfs/etc-passwd"
cd "$S/files"
run ls -ln rootfs
run ls -l rootfs
run stat -c '%n: %U %G (%u:%g)' rootfs rootfs/home

step "The foreign UID range is named as systemd names it"
run getent passwd 2147352576 foreign-42

step "Enumeration lists one entry per range"
pipe "getent passwd | grep '^vu-'"

step "What the allocator has handed out"
run transientctl list
run transientctl show web
run transientctl show $((B + 1000))
pipe 'transientctl list --json | jq -c ".[]"'

step "Release a range: its IDs stop resolving"
run transientctl release ci-runner
run getent passwd "$U" || echo "(not found, exit status $?)"
run transientctl list

step "Stop the daemon (SIGTERM)"
run kill -TERM $daemon
rc=0
wait $daemon || rc=$?
echo "transient-allocd exited with status $rc; its log:"
sed 's/^/  /' "$S/log/allocd.log"
echo
echo "The sandbox is gone once this script ends; the host's files were not touched:"
exit $rc
