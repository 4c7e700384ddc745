#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Hostile local users against the real daemons (issue 8): several unprivileged UIDs open as many
# connections as they can and pipeline requests without ever reading the replies, or just hold
# connections idle. During each attack (a few seconds) the daemon's RSS must stay bounded and
# bystanders (root's `transientctl list`, another user's raw calls) must get every answer, in a
# time relative to what a small client costs on the machine at that moment (the load of other
# builds is in the figures, a daemon that stalls is not); afterwards the memory must be given
# back. Prints the figures.
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
# Each attack floods for ATTACK_S seconds while bystanders call; the attackers then keep their
# connections (never reading) until the bystanders are done, so that a daemon stalled by one of
# them (blocked writing to a client that never reads, say) cannot be set free by their leaving:
# a bystander call not answered within BYSTANDER_TIMEOUT_S fails, at any load.
ATTACK_S=8
BYSTANDER_TIMEOUT_S=30  # transientctl's own
# What the limits allow four attacking UIDs (varlink/varlink.hpp): per UID, 64 connections with at
# most a read (64 KiB) and a partial message (128 KiB) of input each, 12 MiB, and 4 MiB of unread
# output, about 66 MiB for four; the rest is the heap's slack under churn (measured peaks 68-90
# MiB on a loaded machine). Before the limits: 5.4 GB. The bound catches growth per request or
# per connection, which is what an attacker could scale.
MAX_RSS_KB=$((128 * 1024))
# Once the attackers are gone (or their connections closed), the heap their buffers took goes
# back (varlink/server.cpp, trim_if_quiet()): at most this much above the RSS before the attack.
# Without the trim transient-allocd kept 50-67 MiB (8.5 MiB before); with it, 10-20 MiB.
MAX_RSS_KEPT_KB=$((32 * 1024))
# Latency, as a ratio to what a small client costs on this machine right now: the median of
# root's `transientctl list` (a whole process, as an admin runs it) timed just before each attack.
# At load 20-25 here that alone takes 0.2-7 s, and a flooded daemon gets a small share of the
# CPU, so bystander calls then take seconds (measured: up to 11 s, 35x that median). The worst of
# root's calls, and of UID 60100's raw calls timed inside one process from connect() to the reply
# (varlink_raw.py probe, one every 0.1 s), must stay under LATENCY_RATIO times that median, and
# under LATENCY_FLOOR_MS when the machine is quiet (a median of 10-20 ms): a daemon that stops
# serving others for 2 s (SIGSTOP) fails that on a quiet machine; one that stops for good fails
# the timeout above at any load.
LATENCY_RATIO=100
LATENCY_FLOOR_MS=2000
BASELINE_CALLS=5
# Once the attackers are dead the daemon must let go of their connections (and descriptors),
# and serve their UIDs again, within this long: it closes a connection as soon as it has run
# what its dead client had sent, or at once if the client left answers unread.
RELEASE_TIMEOUT_S=30

as_uid() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups "$@"; }
# spawn_as_uid UID CMD...: as_uid in the background, with $! the command's own PID: killing the
# subshell of `as_uid ... &` would leave the attacker running, and holding its connections.
spawn_as_uid() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups "$@" & }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# median_ms CMD...: the median wall time of BASELINE_CALLS runs of CMD (0 if any failed).
median_ms() {
    local i rc t times=()
    for i in $(seq "$BASELINE_CALLS"); do
        read -r rc t < <(it_ms "$@")
        [ "$rc" -ne 0 ] && { echo 0; return; }
        times+=("$t")
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((BASELINE_CALLS + 1) / 2))p"
}

# latency_limit BASELINE_MS: what the worst bystander call during an attack may take.
latency_limit() {
    local l=$((LATENCY_RATIO * $1))
    [ "$l" -lt "$LATENCY_FLOOR_MS" ] && l=$LATENCY_FLOOR_MS
    echo "$l"
}

# probe SECONDS SOCKET METHOD: UID 60100's raw calls (varlink_raw.py probe), its output line.
probe() {
    as_uid 60100 "${RAW[@]}" probe "$2" "$3" --seconds "$1" --timeout "$BYSTANDER_TIMEOUT_S"
}

# field NAME LINE: the value of NAME=VALUE in LINE.
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$2"; }

# attack NAME PID BYSTANDER_SOCKET BYSTANDER_METHOD ATTACKER_ARGS...: runs the attacker as UIDs
# ATTACKERS+1 to ATTACKERS+4 in parallel, samples PID's RSS, times the bystanders, checks and prints figures.
attack() {
    local name=$1 pid=$2 bsock=$3 bmethod=$4
    shift 4
    local before peak=0 r rc t after i pids=() worst_root=0 fails=0 out
    local base_root base_probe during limit probe_pid worst_user fds_before fds_after waited
    base_root=$(median_ms "$CTL" list)
    base_probe=$(probe 2 "$bsock" "$bmethod")
    limit=$(latency_limit "$base_root")
    before=$(rss_kb "$pid")
    fds_before=$(fd_count "$pid")
    out=$TRANSIENT_SANDBOX/dos.$name
    for i in 1 2 3 4; do
        # Flooding until killed below, once the bystanders are done.
        spawn_as_uid $((ATTACKERS + i)) "${DOS[@]}" "$@" \
            --seconds $((ATTACK_S + 3 * BYSTANDER_TIMEOUT_S)) >"$out.$i" 2>&1
        pids+=($!)
    done
    local end=$((SECONDS + ATTACK_S))
    sleep 1.5  # the attackers are connected, and sending or about to
    probe $((ATTACK_S - 2)) "$bsock" "$bmethod" >"$out.probe" 2>&1 &
    probe_pid=$!
    while [ $SECONDS -lt "$end" ]; do
        r=$(rss_kb "$pid")
        [ "$r" -gt "$peak" ] && peak=$r
        read -r rc t < <(it_ms timeout "$BYSTANDER_TIMEOUT_S" "$CTL" list)
        [ "$rc" -ne 0 ] && fails=$((fails + 1))
        [ "$t" -gt "$worst_root" ] && worst_root=$t
        sleep 0.1
    done
    wait "$probe_pid" || true
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" || true
    during=$(cat "$out.probe")
    worst_user=$(field worst_ms "$during")
    # The attackers are dead: their connections go, down to the descriptors held before.
    local release_end=$((SECONDS + RELEASE_TIMEOUT_S)) release_start=$SECONDS
    while fds_after=$(fd_count "$pid") && [ "$fds_after" -gt "$fds_before" ] &&
        [ $SECONDS -lt $release_end ]; do
        sleep 0.2
    done
    waited=$((SECONDS - release_start))
    sleep 1
    after=$(rss_kb "$pid")
    printf 'FIGURES %s: RSS before %d KiB, peak during %d KiB, after %d KiB; ' \
        "$name" "$before" "$peak" "$after"
    printf 'root transientctl list: median before %d ms, worst during %d ms; ' \
        "$base_root" "$worst_root"
    printf 'descriptors before %d, %d about %d s after the attackers died; ' "$fds_before" \
        "$fds_after" "$waited"
    printf 'UID 60100 %s in-process: before %s, during %s; load %s; attackers: %s\n' "$bmethod" \
        "$base_probe" "$during" "$(cut -d' ' -f1 /proc/loadavg)" "$(cat "$out".[1-4] | tr '\n' ' ')"
    [ "$base_root" -gt 0 ] && [ "$(field failed "$base_probe")" = 0 ] &&
        it_pass "$name: bystanders answered before the attack" ||
        it_fail "$name: a bystander call failed before the attack" "$base_probe"
    it_expect_eq "$name: every root call answered within ${BYSTANDER_TIMEOUT_S} s" 0 "$fails"
    it_expect_match "$name: UID 60100 made calls, each answered within ${BYSTANDER_TIMEOUT_S} s" \
        '^calls=[1-9][0-9]* failed=0 ' "$during"
    [ "$peak" -lt "$MAX_RSS_KB" ] && it_pass "$name: RSS peak ${peak} KiB < $MAX_RSS_KB KiB" ||
        it_fail "$name: RSS peak ${peak} KiB >= $MAX_RSS_KB KiB"
    [ "$after" -lt $((before + MAX_RSS_KEPT_KB)) ] &&
        it_pass "$name: RSS after ${after} KiB, from ${before} KiB before" ||
        it_fail "$name: RSS after ${after} KiB, more than $MAX_RSS_KEPT_KB KiB above" \
            "the ${before} KiB before the attack"
    [ "$fds_after" -le "$fds_before" ] &&
        it_pass "$name: the daemon let go of the dead attackers' connections ($fds_after fds)" ||
        it_fail "$name: the daemon holds $fds_after fds ($fds_before before the attack)" \
            "$RELEASE_TIMEOUT_S s after the attackers died"
    it_expect_ok "$name: the attacking UID $((ATTACKERS + 1)) is served again" \
        as_uid $((ATTACKERS + 1)) "${RAW[@]}" call "$bsock" org.varlink.service.GetInfo
    [ "$worst_root" -lt "$limit" ] &&
        it_pass "$name: root answered in ${worst_root} ms (< $limit; ${base_root} before)" ||
        it_fail "$name: root waited ${worst_root} ms (>= $limit; ${base_root} before)"
    [ -n "$worst_user" ] && [ "$worst_user" -lt "$limit" ] &&
        it_pass "$name: UID 60100 answered in ${worst_user} ms (< $limit)" ||
        it_fail "$name: UID 60100 waited ${worst_user:-?} ms (>= $limit; ${base_root} before)"
    local k
    for k in "$out".[1-4]; do
        local open
        open=$(sed -n 's/^open=\([0-9]*\) of.*/\1/p' "$k")
        # Exactly the per-UID limit: fewer would be a UID locked out by connections the
        # daemon still holds from an earlier attack.
        if [ "$open" = 64 ]; then
            it_pass "$name: $(basename "$k") kept 64 connections, the per-UID limit"
        else
            it_fail "$name: $(basename "$k") kept ${open:-?} connections, not 64" "$(cat "$k")"
        fi
    done
}

# What the daemons allow a connection without progress (Limits::idle_timeout): a client that
# never reads the answers it has queued is closed this long after it last read or sent.
IDLE_TIMEOUT_S=60

# starve NAME UIDS CONNECTIONS: UIDs ATTACKERS+1 to ATTACKERS+UIDS each open CONNECTIONS
# connections to transient-allocd (pipelining GetInterfaceDescription) and as many to
# transient-userdbd (enumerating users), and never read: between them more unread output than
# either daemon's total budget (32 MiB; 4 MiB per UID). They stay alive throughout. UID 60100,
# with nothing queued, must be served by both meanwhile, in the time attack() allows; once the
# attackers' idle timeout passed, both daemons must have closed their connections (the
# attackers still alive) and given the memory back.
starve() {
    local name=$1 uids=$2 conns=$3 i u pids=() base_root limit out probes=() during t
    local fds_before_a fds_before_u fds_a fds_u peak=0 r start waited alive rc worst_root=0 pid
    base_root=$(median_ms "$CTL" list)
    limit=$(latency_limit "$base_root")
    fds_before_a=$(fd_count "$IT_DAEMON_PID")
    fds_before_u=$(fd_count "$USERDBD_PID")
    local -A rss_before=(["$IT_DAEMON_PID"]=$(rss_kb "$IT_DAEMON_PID")
        ["$USERDBD_PID"]=$(rss_kb "$USERDBD_PID"))
    out=$TRANSIENT_SANDBOX/dos.$name
    start=$SECONDS
    for i in $(seq "$uids"); do
        u=$((ATTACKERS + i))
        # Alive well past the idle timeout, so that only the daemons can end their connections.
        spawn_as_uid "$u" "${DOS[@]}" flood "$IT_SOCKET" --connections "$conns" \
            --seconds $((IDLE_TIMEOUT_S + 2 * RELEASE_TIMEOUT_S)) \
            --message '{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.transient.Allocator"}}' \
            >"$out.allocd.$i" 2>&1
        pids+=($!)
        spawn_as_uid "$u" "${DOS[@]}" flood "$USERDB_SOCKET" --connections "$conns" \
            --seconds $((IDLE_TIMEOUT_S + 2 * RELEASE_TIMEOUT_S)) \
            --message '{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"service":"io.transient.Ranges"},"more":true}' \
            >"$out.userdbd.$i" 2>&1
        pids+=($!)
    done
    sleep "$ATTACK_S"  # connected, flooding, and their budgets full
    probe $((ATTACK_S / 2)) "$IT_SOCKET" org.varlink.service.GetInfo >"$out.probe.allocd" 2>&1 &
    probes+=($!)
    probe $((ATTACK_S / 2)) "$USERDB_SOCKET" org.varlink.service.GetInfo \
        >"$out.probe.userdbd" 2>&1 &
    probes+=($!)
    for i in $(seq $((ATTACK_S * 5))); do
        r=$(rss_kb "$IT_DAEMON_PID")
        [ "$r" -gt "$peak" ] && peak=$r
        r=$(rss_kb "$USERDBD_PID")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.1
    done
    read -r rc t < <(it_ms timeout "$BYSTANDER_TIMEOUT_S" "$CTL" list)
    [ "$rc" -ne 0 ] && worst_root=$((BYSTANDER_TIMEOUT_S * 1000)) || worst_root=$t
    wait "${probes[@]}" || true
    # The attackers live on, never reading: the daemons must end their connections themselves.
    while fds_a=$(fd_count "$IT_DAEMON_PID") && fds_u=$(fd_count "$USERDBD_PID") &&
        { [ "$fds_a" -gt "$fds_before_a" ] || [ "$fds_u" -gt "$fds_before_u" ]; } &&
        [ $((SECONDS - start)) -lt $((IDLE_TIMEOUT_S + RELEASE_TIMEOUT_S)) ]; do
        sleep 0.5
    done
    waited=$((SECONDS - start))
    alive=0
    for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && alive=$((alive + 1)); done
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" || true
    printf 'FIGURES %s: %d UIDs x %d connections to each daemon; RSS peak %d KiB, after %d/%d KiB; ' \
        "$name" "$uids" "$conns" "$peak" "$(rss_kb "$IT_DAEMON_PID")" "$(rss_kb "$USERDBD_PID")"
    printf 'descriptors %d/%d before, %d/%d %d s after the attack began (%d of %d attackers alive); ' \
        "$fds_before_a" "$fds_before_u" "$fds_a" "$fds_u" "$waited" "$alive" "${#pids[@]}"
    printf 'UID 60100 GetInfo during: allocd %s, userdbd %s; root list %d ms (median before %d ms); ' \
        "$(cat "$out.probe.allocd")" "$(cat "$out.probe.userdbd")" "$worst_root" "$base_root"
    printf 'load %s\n' "$(cut -d' ' -f1 /proc/loadavg)"
    for t in allocd userdbd; do
        during=$(cat "$out.probe.$t")
        it_expect_match "$name: UID 60100, with nothing queued, was answered by $t" \
            '^calls=[1-9][0-9]* failed=0 ' "$during"
        r=$(field worst_ms "$during")
        [ -n "$r" ] && [ "$r" -lt "$limit" ] &&
            it_pass "$name: UID 60100 answered by $t in ${r} ms (< $limit)" ||
            it_fail "$name: UID 60100 waited ${r:-?} ms for $t (>= $limit; ${base_root} before)"
    done
    [ "$worst_root" -lt "$limit" ] &&
        it_pass "$name: root answered in ${worst_root} ms (< $limit; ${base_root} before)" ||
        it_fail "$name: root waited ${worst_root} ms (>= $limit; ${base_root} before)"
    it_expect_eq "$name: the attackers were alive until their connections were closed" \
        "${#pids[@]}" "$alive"
    [ "$fds_a" -le "$fds_before_a" ] && [ "$fds_u" -le "$fds_before_u" ] &&
        it_pass "$name: both daemons closed the idle connections of live attackers" ||
        it_fail "$name: descriptors $fds_a/$fds_u ($fds_before_a/$fds_before_u before)" \
            "$IDLE_TIMEOUT_S + $RELEASE_TIMEOUT_S s after the attack began"
    [ "$peak" -lt "$MAX_RSS_KB" ] && it_pass "$name: RSS peak ${peak} KiB < $MAX_RSS_KB KiB" ||
        it_fail "$name: RSS peak ${peak} KiB >= $MAX_RSS_KB KiB"
    for pid in "$IT_DAEMON_PID" "$USERDBD_PID"; do
        r=$(rss_kb "$pid")
        [ "$r" -lt $((rss_before[$pid] + MAX_RSS_KEPT_KB)) ] &&
            it_pass "$name: RSS of $pid after ${r} KiB, from ${rss_before[$pid]} KiB before" ||
            it_fail "$name: RSS of $pid after ${r} KiB, more than $MAX_RSS_KEPT_KB KiB above" \
                "the ${rss_before[$pid]} KiB before the attack"
    done
    it_expect_ok "$name: the attacking UID $((ATTACKERS + 1)) is served again" \
        as_uid $((ATTACKERS + 1)) "${RAW[@]}" call "$IT_SOCKET" org.varlink.service.GetInfo
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

ATTACKERS=60000
it_section "memory: 4 UIDs x 1024 connections pipelining GetInterfaceDescription, never reading"
attack allocd-describe "$IT_DAEMON_PID" "$IT_SOCKET" org.varlink.service.GetInfo \
    flood "$IT_SOCKET" --connections 1024 \
    --message '{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.transient.Allocator"}}'

it_section "memory: 4 UIDs x 200 connections enumerating users from transient-userdbd"
attack userdbd-enumerate "$USERDBD_PID" "$USERDB_SOCKET" org.varlink.service.GetInfo \
    flood "$USERDB_SOCKET" --connections 200 \
    --message '{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"service":"io.transient.Ranges"},"more":true}'

# The same UIDs as the floods: they must get all their connections again.
it_section "lock-out: 4 UIDs x 1025 idle connections"
attack allocd-idle "$IT_DAEMON_PID" "$IT_SOCKET" org.varlink.service.GetInfo \
    idle "$IT_SOCKET" --connections 1025

it_section "lock-out: 10 UIDs x 16 connections per daemon fill the output budget, alive"
starve total-budget 10 16

it_section "the logs say what happened"
it_expect_match "transient-allocd logged refused connections" "Too many Varlink connections" \
    "$(cat "$IT_LOG/allocd.log")"

it_daemon_stop
it_finish
