#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What names cost whole processes (issue 11 §2). Runs inside scripts/sandbox.sh (private mount
# and PID namespaces, private /run, nsswitch.conf, /etc/passwd and /etc/group): allocates one
# 64K range, creates a directory of FILES files owned by FILES distinct UIDs (and GIDs) of it,
# starts PROCS `sleep` processes under distinct UIDs of it (setpriv), then times whole programs
# under each name-service setup, round after round, in a rotating order:
#
#   transient-files  passwd/group: transient files    (the module first)
#   files-transient  passwd/group: files transient    (what transient-nsswitch writes)
#   static           passwd/group: files, the same FILES users and groups as lines in private
#                    copies of /etc/passwd and /etc/group (what admins do today)
#   systemd          passwd/group: systemd, nss-systemd asking transient-userdbd over Varlink
#   trivial          passwd/group: benchtrivial, a module that finds nothing at once: glibc's
#                    own cost per lookup, the floor for any module (names stay numbers)
#
# The programs: ls -l and ls -ln (no lookups: the limit) over the directory, stat -c %U and
# stat -c %u over its files, ps -eo user,pid and ps -eo uid,pid, id for ID_USERS users one after
# the other and as many `id -u` (no lookup), and getent passwd (enumeration). The result is the
# median CPU time (user + system) and wall-clock time per program and setup, each with its ratio
# to the median of `ls -ln` in the same run; the load average is printed before and after.
#
# Usage (from the top of the source tree, after building transient-allocd, transientctl,
# transient-userdbd, libnss_transient.so.2 and libnss_benchtrivial.so.2):
#   scripts/sandbox.sh --build build -- tests/bench/bench_processes.sh [--rounds N] [--files N]
#       [--procs N] [--id-users N] [--userdbd PATH] [--trivial PATH] [--smoke]
# --smoke: 2 rounds over 300 files and 50 processes, for CI; its numbers mean nothing, but every
# setup must resolve the names it is supposed to (checked before timing; exit 1 otherwise).
. "$(dirname "$0")/../integration/lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=11 FILES=5000 PROCS=1000 ID_USERS=20
USERDBD=$ROOT/build/userdb/transient-userdbd
TRIVIAL=$ROOT/build/nss/libnss_benchtrivial.so.2
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --procs) PROCS=$2; shift 2 ;;
        --id-users) ID_USERS=$2; shift 2 ;;
        --userdbd) USERDBD=$2; shift 2 ;;
        --trivial) TRIVIAL=$2; shift 2 ;;
        --smoke) ROUNDS=2 FILES=300 PROCS=50 ID_USERS=5; shift ;;
        *) echo "bench_processes.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
for f in "$USERDBD" "$TRIVIAL"; do
    [ -f "$f" ] || { echo "bench_processes.sh: '$f' does not exist; build it first" >&2; exit 1; }
done
for c in setpriv python3 ps stat ls id getent findmnt; do
    command -v "$c" >/dev/null || { echo "bench_processes.sh: '$c' is missing (scripts/deps.sh)" >&2; exit 1; }
done
[ -f "$TRANSIENT_SANDBOX_LIBDIR/libnss_systemd.so.2" ] ||
    { echo "bench_processes.sh: libnss_systemd.so.2 is missing (libnss-systemd, scripts/deps.sh)" >&2; exit 1; }

S=$TRANSIENT_SANDBOX
DIR=$IT_FILES/owned
SLEEPERS=()
USERDBD_PID=""
cleanup() {
    local rc=$?
    local pids=("${SLEEPERS[@]}")
    [ -z "$USERDBD_PID" ] || pids+=("$USERDBD_PID")
    if [ ${#pids[@]} -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    it_daemon_stop_quietly
    return $rc
}
trap cleanup EXIT

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the set: one range, FILES owned files, PROCS processes ----
it_daemon_start
"$CTL" allocate bench >/dev/null
B=$(it_range_start bench)
mkdir -p "$DIR"
python3 - "$DIR" "$B" "$FILES" <<'EOF'
import os, sys
d, base, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    p = os.path.join(d, "f%05d" % i)
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
    os.chown(p, base + i, base + i)
EOF
for ((i = 0; i < PROCS; i++)); do
    u=$((B + i))
    setpriv --reuid="$u" --regid="$u" --clear-groups sleep 100000 </dev/null >/dev/null 2>&1 &
    SLEEPERS+=($!)
done
# setpriv changes its UIDs after the fork: wait until every sleeper runs under its own.
for _ in $(seq 600); do
    n=$(ps -o uid= -p "$(IFS=,; echo "${SLEEPERS[*]}")" | awk -v b="$B" '$1 >= b' | wc -l)
    [ "$n" -lt "$PROCS" ] || break
    sleep 0.05
done

# ---- the setups: nsswitch.conf, /etc/passwd and /etc/group are private bind mounts whose
# sources live in the sandbox's tmpfs; only those sources are ever written ----
NSS=$S/etc/nsswitch.conf  # sandbox.sh bind-mounted it over /etc/nsswitch.conf
for f in passwd group; do
    cp "/etc/$f" "$S/etc/$f.host"
    cp "/etc/$f" "$S/etc/$f"
    mount --bind "$S/etc/$f" "/etc/$f"
done
cp "$NSS" "$S/etc/nsswitch.host"
cp "$S/etc/passwd.host" "$S/etc/passwd.static"
cp "$S/etc/group.host" "$S/etc/group.static"
awk -v b="$B" -v n="$FILES" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "vu-bench-%d:x:%d:%d:UID %d of transient range bench:/:/usr/sbin/nologin\n", i, b + i, b + i, i
}' >>"$S/etc/passwd.static"
awk -v b="$B" -v n="$FILES" 'BEGIN { for (i = 0; i < n; i++) printf "vg-bench-%d:x:%d:\n", i, b + i }' \
    >>"$S/etc/group.static"

# The trivial module, next to ours in the overlay over the system library dir (never the host's).
[ "$(findmnt -n -o FSTYPE --target "$TRANSIENT_SANDBOX_LIBDIR")" = overlay ] ||
    { echo "bench_processes.sh: $TRANSIENT_SANDBOX_LIBDIR is not the sandbox's overlay" >&2; exit 1; }
cp "$TRIVIAL" "$TRANSIENT_SANDBOX_LIBDIR/libnss_benchtrivial.so.2"

# nss-systemd asks every socket in /run/systemd/userdb (the sandbox's private /run).
mkdir -p /run/systemd/userdb
"$USERDBD" </dev/null >>"$IT_LOG/userdbd.log" 2>&1 &
USERDBD_PID=$!
for _ in $(seq 200); do
    [ -S /run/systemd/userdb/io.transient.Ranges ] && break
    sleep 0.05
done

SETUPS=(transient-files files-transient static systemd trivial)
use_setup() {
    local sources passwd=host
    case "$1" in
        transient-files) sources="transient files" ;;
        files-transient) sources="files transient" ;;
        static) sources="files"; passwd=static ;;
        systemd) sources="systemd" ;;
        trivial) sources="benchtrivial" ;;
    esac
    awk -v s="$sources" '
        /^[[:space:]]*(passwd|group):/ { sub(/:.*/, ":"); printf "%-16s%s\n", $0, s; next }
        { print }' "$S/etc/nsswitch.host" >"$NSS"
    cat "$S/etc/passwd.$passwd" >"$S/etc/passwd"
    cat "$S/etc/group.$passwd" >"$S/etc/group"
}

# ---- every setup must resolve what it is meant to, or the timings below mean nothing ----
last=$((FILES - 1))
for setup in "${SETUPS[@]}"; do
    use_setup "$setup"
    want_user=vu-bench-$last want_group=vg-bench-$last stat_want=$want_user:$want_group
    if [ "$setup" = trivial ]; then
        want_user=$((B + last)) want_group=$((B + last)) stat_want=UNKNOWN:UNKNOWN
    fi
    it_expect_eq "$setup: stat -c %U:%G of the last file" "$stat_want" \
        "$(stat -c %U:%G "$DIR/f$(printf %05d "$last")")"
    it_expect_match "$setup: ls -l names the owners" " $want_user +$want_group " \
        "$(ls -l "$DIR" | tail -n 1)"
    p=$((B + PROCS - 1)) want=vu-bench-$((PROCS - 1))
    [ "$setup" != trivial ] || want=$p
    it_expect_match "$setup: ps shows the last sleeper's user" "^ *$want\$" \
        "$(ps -o user= -p "${SLEEPERS[$((PROCS - 1))]}")"
    if [ "$setup" != trivial ]; then
        it_expect_eq "$setup: id vu-bench-1" \
            "uid=$((B + 1))(vu-bench-1) gid=$((B + 1))(vg-bench-1) groups=$((B + 1))(vg-bench-1)" \
            "$(id vu-bench-1)"
        it_expect_match "$setup: getent passwd enumerates the users" "^vu-bench-0:" \
            "$(getent passwd | grep '^vu-bench-0:')"
    fi
done
[ "$CHECKS_FAILED" -eq 0 ] || it_finish

# ---- timing ----
ids() { local i; for ((i = 0; i < ID_USERS; i++)); do id "vu-bench-$((i * 7 % FILES))"; done; }
ids_none() { local i; for ((i = 0; i < ID_USERS; i++)); do id -u; done; }
PROGRAMS=(ls_ln ls_l stat_u stat_U ps_uid ps_user id_u id_user getent)
run() {
    case "$1" in
        ls_ln) ls -ln "$DIR" ;;
        ls_l) ls -l "$DIR" ;;
        stat_u) (cd "$DIR" && stat -c %u -- *) ;;
        stat_U) (cd "$DIR" && stat -c %U -- *) ;;
        ps_uid) ps -eo uid,pid ;;
        ps_user) ps -eo user,pid ;;
        id_u) ids_none ;;
        id_user) ids ;;
        getent) getent passwd ;;
    esac >/dev/null 2>&1 || true  # names the trivial setup cannot resolve are errors
}
label() {
    case "$1" in
        ls_ln) echo "ls -ln DIR (no lookups)" ;;
        ls_l) echo "ls -l DIR" ;;
        stat_u) echo "stat -c %u FILES (no lookups)" ;;
        stat_U) echo "stat -c %U FILES" ;;
        ps_uid) echo "ps -eo uid,pid (no lookups)" ;;
        ps_user) echo "ps -eo user,pid" ;;
        id_u) echo "id -u x$ID_USERS (no lookups)" ;;
        id_user) echo "id USER x$ID_USERS" ;;
        getent) echo "getent passwd" ;;
    esac
}

samples=$S/samples
: >"$samples"
TIMEFORMAT='%3R %3U %3S'
n=${#SETUPS[@]}
for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < n; k++)); do
        setup=${SETUPS[$(((r + k) % n))]}
        use_setup "$setup"
        for prog in "${PROGRAMS[@]}"; do
            # Wall-clock and CPU (user + system) seconds of the program and its children.
            { time run "$prog"; } 2>"$S/time"
            read -r wall user sys <"$S/time"
            echo "$setup $prog $wall $user $sys" >>"$samples"
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- report: median ms per program and setup, and its ratio to the median of ls -ln (all
# setups) of the same measure. CPU time (user + system) is what a program costs the machine and
# barely depends on the load; wall-clock time on a loaded machine also holds the wait for a CPU.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# measure: 1 = wall, 2 = CPU
values() { awk -v s="$1" -v p="$2" -v m="$3" '($1 == s || s == "*") && $2 == p {
    print (m == 1 ? $3 : $4 + $5) * 1000 }' "$samples"; }
table() {
    local measure=$1 base prog setup m
    printf '| %-30s |' "$2"
    for setup in "${SETUPS[@]}"; do printf ' %-17s |' "$setup"; done
    echo
    printf '|%s|' "$(printf -- '-%.0s' $(seq 32))"
    for setup in "${SETUPS[@]}"; do printf '%s:|' "$(printf -- '-%.0s' $(seq 18))"; done
    echo
    base=$(values '*' ls_ln "$measure" | median)
    for prog in "${PROGRAMS[@]}"; do
        printf '| %-30s |' "$(label "$prog")"
        for setup in "${SETUPS[@]}"; do
            m=$(values "$setup" "$prog" "$measure" | median)
            printf ' %17s |' "$(awk -v m="$m" -v b="$base" 'BEGIN { printf "%.0f (%.2fx)", m, (b > 0 ? m / b : 0) }')"
        done
        echo
    done
}
echo
echo "$ROUNDS rounds, $FILES files of $FILES owners, $PROCS processes of $PROCS users."
echo
table 2 "CPU ms, median (ratio to ls -ln)"
echo
table 1 "wall ms, median (ratio to ls -ln)"
it_finish
