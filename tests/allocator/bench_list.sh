#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Listing at scale (README "Benchmark", issue 11 §1): with N live 64K ranges, for each N of
# --sizes (default 1,000, 10,000 and 28,000, one run filling the table step by step), the wall
# time and peak memory of every way to enumerate them, as ratios against `getent passwd` timed
# in the same run:
#   ListRanges alone    the daemon and the transfer: one call timed inside a Python client that
#                       reads the replies without parsing them; memory: the rise of
#                       transient-allocd's peak RSS (VmHWM, reset through clear_refs) over its
#                       RSS before the call
#   list, list --json   `transientctl list` (text, to a pipe) and `transientctl list --json`
#   getent passwd       the whole passwd database through nss_files and the module
#   userdb alone        GetUserRecord with "more" to transient-userdbd, as ListRanges alone
#   userdbctl user      Debian's userdbctl -s io.transient.Ranges (with --userdbctl PATH)
# Times are the best of --rounds runs (default 3); the commands' peak memory is their max RSS
# (wait4()) in that run.
#
#   scripts/sandbox.sh --build build -- tests/allocator/bench_list.sh \
#       --userdbd build/userdb/transient-userdbd [--userdbctl PATH] [--sizes "1000 10000 28000"]
. "$(dirname "$0")/../integration/lib.sh"

sizes="1000 10000 28000" rounds=3 userdbd="" userdbctl=""
while [ $# -gt 0 ]; do
    case $1 in
    --sizes) sizes=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --userdbd) userdbd=$2; shift ;;
    --userdbctl) userdbctl=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$userdbd" ] ||
    { echo "--userdbd PATH (the built transient-userdbd) is required" >&2; exit 2; }
it_require python3 getent

# measure CMD...: "SECONDS MAXRSS_KIB LINES", the best time of $rounds runs of CMD (stdout
# counted, not kept) and that run's peak RSS.
measure() {
    python3 -B - "$rounds" "$@" <<'EOF'
import os, sys, time
rounds, cmd = int(sys.argv[1]), sys.argv[2:]
best = None
for _ in range(rounds):
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        os.close(r)
        os.close(w)
        os.execvp(cmd[0], cmd)
    os.close(w)
    lines = 0
    with os.fdopen(r, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            lines += chunk.count(b"\n")
    _, status, usage = os.wait4(pid, 0)
    secs = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed: {status}")
    if best is None or secs < best[0]:
        best = (secs, usage.ru_maxrss, lines)
print(f"{best[0]:.4f} {best[1]} {best[2]}")
EOF
}

# stream PID SOCKET METHOD PARAMS: "SECONDS KIB", one call with "more" timed inside the client
# (Python's start is not counted), its replies read up to the last one without parsing them,
# and the rise of the daemon PID's peak RSS (VmHWM, reset first) over its RSS before the call.
stream() {
    local rss0 t
    echo 5 >"/proc/$1/clear_refs"
    rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status")
    t=$(python3 -B - "$2" "$3" "$4" "$rounds" <<'EOF'
import json, socket, sys, time
path, method, params, rounds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
call = json.dumps({"method": method, "parameters": params, "more": True}).encode() + b"\0"
best = None
for _ in range(rounds):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    t0 = time.monotonic()
    s.sendall(call)
    tail = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            sys.exit(f"{method}: connection closed")
        tail = (tail + chunk)[-4096:]
        if tail.endswith(b"\0") and b'"continues":true' not in tail[:-1].rsplit(b"\0", 1)[-1]:
            break
    secs = time.monotonic() - t0
    s.close()
    best = secs if best is None else min(best, secs)
print(f"{best:.4f}")
EOF
)
    echo "$t $(($(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status") - rss0))"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
it_section "transient-allocd and transient-userdbd"
it_daemon_start 30
it_userdbd_start "$userdbd"
printf '%7s | %-16s | %9s %11s %8s | %s\n' ranges command seconds "peak KiB" ratio lines
have=0
for n in $sizes; do
    it_allocate_bench "$have" "$n"
    have=$n
    read -r g_s g_kib g_lines < <(measure getent passwd)
    row() {  # row LABEL SECONDS KIB LINES
        printf '%7s | %-16s | %9.3f %11s %7.1f× | %s\n' "$n" "$1" "$2" "$3" \
            "$(awk -v a="$2" -v b="$g_s" 'BEGIN { print a / b }')" "$4"
    }
    read -r l_s l_kib < <(stream "$IT_DAEMON_PID" "$IT_SOCKET" \
        io.transient.Allocator.ListRanges '{}')
    row "ListRanges alone" "$l_s" "+$l_kib" "-"
    row "list" $(measure "$CTL" list)
    row "list --json" $(measure "$CTL" list --json)
    row "getent passwd" "$g_s" "$g_kib" "$g_lines"
    read -r u_s u_kib < <(stream "$IT_USERDBD_PID" "$IT_USERDB_SOCKET" \
        io.systemd.UserDatabase.GetUserRecord '{"service":"io.transient.Ranges"}')
    row "userdb alone" "$u_s" "+$u_kib" "-"
    if [ -n "$userdbctl" ]; then
        row "userdbctl user" $(measure "$userdbctl" --no-pager -N -s io.transient.Ranges \
            --output=classic user)
    fi
    list_lines=$("$CTL" list | grep -c '^bench-')
    it_expect_eq "transientctl list lists every range ($n)" "$n" "$list_lines"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
it_daemon_stop
kill -TERM "$IT_USERDBD_PID" 2>/dev/null || true
wait "$IT_USERDBD_PID" 2>/dev/null || true
it_finish
