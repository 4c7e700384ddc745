#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Hostile local users against the real daemons (issue 8): several unprivileged UIDs open as many
# connections as they can and pipeline requests without ever reading the replies, or just hold
# connections idle. During each attack (a few seconds) the daemon's RSS must stay bounded and
# bystanders (root's `transientctl list`, another user's raw call) must get answers promptly;
# afterwards the memory must be given back. Prints the figures.
. "$(dirname "$0")/lib.sh"

# The attackers are other users: the system's python and a copy of the scripts they can read.
PY=/usr/bin/python3
TOOLS=/run/dos-tools
mkdir -p -m 0755 "$TOOLS"
install -m 0644 "$IT_DIR/varlink_dos.py" "$IT_DIR/varlink_raw.py" "$TOOLS/"
DOS=("$PY" -B "$TOOLS/varlink_dos.py")
RAW=("$PY" -B "$TOOLS/varlink_raw.py")
USERDB_DIR=/run/systemd/userdb
USERDB_SOCKET=$USERDB_DIR/io.transient.Ranges
ATTACK_S=4
# What the limits allow four attacking UIDs (varlink/varlink.hpp): per UID, 64 connections with at
# most a read (64 KiB) and a partial message (128 KiB) of input each, 12 MiB, and 4 MiB of unread
# output, about 66 MiB for four; the rest is the heap's slack under churn (measured peaks 68-90
# MiB on a loaded machine). Before the limits: 5.4 GB. The bound catches growth per request or
# per connection, which is what an attacker could scale.
MAX_RSS_KB=$((128 * 1024))
MAX_LATENCY_MS=2000

as_uid() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups "$@"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# attack NAME PID BYSTANDER_SOCKET BYSTANDER_METHOD ATTACKER_ARGS...: runs the attacker as UIDs
# 60001-60004 in parallel, samples PID's RSS, times the bystanders, checks and prints figures.
attack() {
    local name=$1 pid=$2 bsock=$3 bmethod=$4
    shift 4
    local before peak=0 r after i pids=() worst_root=0 worst_user=0 fails=0 out
    before=$(rss_kb "$pid")
    out=$TRANSIENT_SANDBOX/dos.$name
    for i in 1 2 3 4; do
        as_uid $((60000 + i)) "${DOS[@]}" "$@" --seconds "$ATTACK_S" >"$out.$i" 2>&1 &
        pids+=($!)
    done
    local end=$((SECONDS + ATTACK_S))
    sleep 0.7  # the attackers are connected and sending
    while [ $SECONDS -lt "$end" ]; do
        r=$(rss_kb "$pid")
        [ "$r" -gt "$peak" ] && peak=$r
        read -r rc t < <(it_ms "$CTL" list)
        [ "$rc" -ne 0 ] && fails=$((fails + 1))
        [ "$t" -gt "$worst_root" ] && worst_root=$t
        read -r rc t < <(it_ms as_uid 60100 "${RAW[@]}" call "$bsock" "$bmethod" --timeout 5)
        [ "$rc" -ne 0 ] && fails=$((fails + 1))
        [ "$t" -gt "$worst_user" ] && worst_user=$t
        sleep 0.1
    done
    wait "${pids[@]}" || true
    sleep 1
    after=$(rss_kb "$pid")
    printf 'FIGURES %s: RSS before %d KiB, peak during %d KiB, after %d KiB; ' \
        "$name" "$before" "$peak" "$after"
    printf 'worst latency: root transientctl list %d ms, UID 60100 %s %d ms; attackers: %s\n' \
        "$worst_root" "$bmethod" "$worst_user" "$(cat "$out".* | tr '\n' ' ')"
    it_expect_eq "$name: every bystander call answered" 0 "$fails"
    [ "$peak" -lt "$MAX_RSS_KB" ] && it_pass "$name: RSS peak ${peak} KiB < $MAX_RSS_KB KiB" ||
        it_fail "$name: RSS peak ${peak} KiB >= $MAX_RSS_KB KiB"
    [ "$after" -lt "$MAX_RSS_KB" ] && it_pass "$name: RSS after ${after} KiB" ||
        it_fail "$name: RSS after ${after} KiB >= $MAX_RSS_KB KiB"
    [ "$worst_root" -lt "$MAX_LATENCY_MS" ] && it_pass "$name: root answered in ${worst_root} ms" ||
        it_fail "$name: root waited ${worst_root} ms"
    [ "$worst_user" -lt "$MAX_LATENCY_MS" ] && it_pass "$name: UID 60100 answered in ${worst_user} ms" ||
        it_fail "$name: UID 60100 waited ${worst_user} ms"
    local k
    for k in "$out".*; do
        local open
        open=$(sed -n 's/^open=\([0-9]*\) of.*/\1/p' "$k")
        if [ -n "$open" ] && [ "$open" -le 64 ]; then
            it_pass "$name: $(basename "$k") kept at most 64 connections ($open)"
        else
            it_fail "$name: $(basename "$k") kept too many connections" "$(cat "$k")"
        fi
    done
}

if [ -z "${TRANSIENT_USERDBD:-}" ] || ! command -v setpriv >/dev/null; then
    echo "needs TRANSIENT_USERDBD and setpriv"
    exit 77
fi
it_section "start the daemons"
it_daemon_start
chmod 0755 "$IT_RUNTIME"  # the attackers are other users
for i in $(seq 20); do "$CTL" allocate "r$i" >/dev/null; done
mkdir -p "$USERDB_DIR"
TRANSIENT_USERDB_DIR=$USERDB_DIR "$TRANSIENT_USERDBD" </dev/null >>"$IT_LOG/userdbd.log" 2>&1 &
USERDBD_PID=$!
trap 'kill $USERDBD_PID 2>/dev/null || true; it_on_exit' EXIT
for i in $(seq 250); do [ -S "$USERDB_SOCKET" ] && break; sleep 0.02; done
it_expect_ok "transient-userdbd serves" "${RAW[@]}" call "$USERDB_SOCKET" \
    org.varlink.service.GetInfo
kill -0 "$USERDBD_PID" 2>/dev/null || it_finish

it_section "memory: 4 UIDs x 1024 connections pipelining GetInterfaceDescription, never reading"
attack allocd-describe "$IT_DAEMON_PID" "$IT_SOCKET" org.varlink.service.GetInfo \
    flood "$IT_SOCKET" --connections 1024 \
    --message '{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.transient.Allocator"}}'

it_section "memory: 4 UIDs x 200 connections enumerating users from transient-userdbd"
attack userdbd-enumerate "$USERDBD_PID" "$USERDB_SOCKET" org.varlink.service.GetInfo \
    flood "$USERDB_SOCKET" --connections 200 \
    --message '{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"service":"io.transient.Ranges"},"more":true}'

it_section "lock-out: 4 UIDs x 1025 idle connections"
attack allocd-idle "$IT_DAEMON_PID" "$IT_SOCKET" org.varlink.service.GetInfo \
    idle "$IT_SOCKET" --connections 1025

it_section "the logs say what happened"
it_expect_match "transient-allocd logged refused connections" "Too many Varlink connections" \
    "$(cat "$IT_LOG/allocd.log")"

it_daemon_stop
it_finish
