#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Crash test: kill transient-allocd with SIGKILL at random instants (also during start-up) and
# restart it, while a client allocates and releases ranges through transientctl and two readers
# resolve names and UIDs through the NSS module (one long-lived process using getpwuid() & co.,
# one running getent). Then check that nothing acknowledged was lost, nothing overlaps, and no
# reader saw a wrong name. See crash_tool.py for what each role logs and what is checked.
#
# TRANSIENT_CRASH_SECONDS (default 25) sets how long the kills go on.
. "$(dirname "$0")/lib.sh"

DURATION=${TRANSIENT_CRASH_SECONDS:-25}
TOOL=(python3 -B "$IT_DIR/crash_tool.py")
W=$TRANSIENT_SANDBOX/crash
mkdir -p "$W"
STOP=$W/stop

# A random duration below MAX_MS milliseconds, as sleep(1) wants it.
rand_s() { printf '0.%03d' $((RANDOM % $1)); }

it_section "start the daemon and the workers"
it_daemon_start
"${TOOL[@]}" client --ctl "$CTL" --socket "$IT_SOCKET" --log "$W/client.log" --stop "$STOP" \
    >"$W/client.out" 2>&1 &
client=$!
"${TOOL[@]}" reader --mode inproc --targets "$W/client.log" --log "$W/reader-inproc.log" \
    --stop "$STOP" >"$W/reader-inproc.out" 2>&1 &
reader1=$!
"${TOOL[@]}" reader --mode getent --targets "$W/client.log" --log "$W/reader-getent.log" \
    --stop "$STOP" >"$W/reader-getent.out" 2>&1 &
reader2=$!
echo "client pid $client, readers $reader1 $reader2; killing the daemon for $DURATION s"

it_section "kill -9 and restart"
kills=0 early=0 ready_ok=1
end=$((SECONDS + DURATION))
while [ $SECONDS -lt $end ]; do
    sleep "$(rand_s 1000)"
    it_daemon_kill9
    kills=$((kills + 1))
    [ $((RANDOM % 3)) -eq 0 ] && sleep "$(rand_s 300)"
    if [ $((RANDOM % 4)) -eq 0 ]; then
        # Kill it again while it is still starting up (opening or recovering the table).
        "$ALLOCD" </dev/null >>"$IT_LOG/allocd.log" 2>&1 &
        IT_DAEMON_PID=$!
        sleep "0.0$((RANDOM % 50 / 10))$((RANDOM % 10))"
        it_daemon_kill9
        kills=$((kills + 1)) early=$((early + 1))
    fi
    if ! it_daemon_start 20; then
        ready_ok=0
        break
    fi
    kill -0 "$client" 2>/dev/null || break
done
it_expect_eq "the daemon came back after every kill" 1 "$ready_ok"
echo "$kills kills ($early during start-up)"
it_expect_eq "at least 5 kills happened" yes "$( ((kills >= 5)) && echo yes || echo "no ($kills)")"

it_section "stop the workers"
touch "$STOP"
for p in "$client" "$reader1" "$reader2"; do
    rc=0
    wait "$p" || rc=$?
    case $p in
        "$client") what=client out=$W/client.out ;;
        "$reader1") what="in-process reader" out=$W/reader-inproc.out ;;
        *) what="getent reader" out=$W/reader-getent.out ;;
    esac
    cat "$out"
    it_expect_eq "the $what finished without error" 0 "$rc"
done

it_section "check"
if it_ctl_json list >"$W/final.json"; then
    it_pass "transientctl list --json after the last restart"
else
    it_fail "transientctl list --json after the last restart" "$(cat "$W/final.json")"
fi
touch "$W/reader-inproc.log" "$W/reader-getent.log"
it_run "${TOOL[@]}" check --client-log "$W/client.log" --final "$W/final.json" \
    --reader-log "$W/reader-inproc.log" "$W/reader-getent.log"
echo "$IT_OUT"
[ -z "$IT_ERR" ] || echo "$IT_ERR"
it_expect_eq "nothing acknowledged is lost, nothing overlaps, no reader saw a wrong name" 0 "$IT_RC"
# And the module agrees with the final list: the first and last UID of every live range.
bad=""
while read -r name start size; do
    for n in 0 $((size - 1)); do
        got=$(getent passwd $((start + n)) | cut -d: -f1) || true
        [ "$got" == "vu-$name-$n" ] || bad+="UID $((start + n)): expected vu-$name-$n, got '${got}'"$'\n'
    done
done < <(jq -r '.[] | "\(.name) \(.start) \(.size)"' "$W/final.json")
if [ -z "$bad" ]; then
    it_pass "getent resolves the first and last UID of all $(jq length "$W/final.json") live ranges"
else
    it_fail "getent resolves the first and last UID of every live range" "$bad"
fi

it_section "stop"
it_daemon_stop
it_finish
