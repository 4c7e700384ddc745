#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# /etc/subuid and /etc/subgid entries resolve as ranges sub-<owner> (DESIGN.md "Subordinate
# IDs"): private copies of both files are bind-mounted over the originals inside the sandbox's
# mount namespace, then edited in place while the daemon runs.
. "$(dirname "$0")/../integration/lib.sh"
trap it_on_exit EXIT

for f in subuid subgid; do
    copy=$IT_FILES/$f
    : >"$copy"
    [ -e /etc/$f ] || { it_fail "/etc/$f exists to bind over" "missing"; it_finish; }
    mount --bind "$copy" /etc/$f
done
echo "alice:100000:65536" >"$IT_FILES/subuid"
echo "alice:100000:65536" >"$IT_FILES/subgid"

# wait_for WHAT EXPECTED CMD...: CMD's output becomes EXPECTED within 10 s (the daemon checks the
# files every second).
wait_for() {
    local what=$1 want=$2 got="" deadline=$((SECONDS + 10))
    shift 2
    while [ $SECONDS -le $deadline ]; do
        got=$("$@" 2>/dev/null || true)
        [ "$got" = "$want" ] && break
        sleep 0.1
    done
    it_expect_eq "$what" "$want" "$got"
}

it_section "import at start"
it_daemon_start
it_expect_eq "getent passwd 100000" vu-sub-alice-0 "$(getent passwd 100000 | cut -d: -f1)"
it_expect_eq "getent group 100000" vg-sub-alice-0 "$(getent group 100000 | cut -d: -f1)"
it_expect_eq "getent passwd vu-sub-alice-65535" 165535 \
    "$(getent passwd vu-sub-alice-65535 | cut -d: -f3)"
it_expect_rc "165536 is not alice's" 2 getent passwd 165536
it_run it_ctl_json show sub-alice
it_expect_eq "transientctl show marks it imported" true "$(jq -r .imported <<<"$IT_OUT")"
it_run "$CTL" list
it_expect_match "transientctl list marks it imported" 'sub-alice .* imported ' "$IT_OUT"
it_expect_fail "ReleaseRange refuses an imported range" "$CTL" release sub-alice
it_expect_match "... saying where it comes from" '/etc/subuid.*ImportedRange' "$IT_ERR"
it_expect_fail "names starting with sub- are reserved" "$CTL" allocate sub-mine

it_section "an edit shows up within seconds"
printf '%s\n' "alice:100000:65536" "bob:300000:100000" >>"$IT_FILES/subuid.new"
cat "$IT_FILES/subuid.new" >"$IT_FILES/subuid"   # in place: the bind mount keeps the inode
wait_for "UID-only entry: getent passwd 350000" vu-sub-bob-50000 \
    sh -c 'getent passwd 350000 | cut -d: -f1'
it_expect_rc "UID-only entry: no group 350000" 2 getent group 350000
it_expect_rc "UID-only entry: no group vg-sub-bob-0" 2 getent group vg-sub-bob-0
: >"$IT_FILES/subgid"
wait_for "alice's GIDs are gone with her subgid line" "" sh -c 'getent group 100000 | cut -d: -f1'
it_expect_eq "her UIDs stay" vu-sub-alice-0 "$(getent passwd 100000 | cut -d: -f1)"

it_section "overlapping or malformed entries are skipped, nothing crashes"
printf '%s\n' "alice:100000:65536" "carol:100005:10" "garbage" "dave:0:5" >"$IT_FILES/subuid"
wait_for "bob is gone after the edit" "" sh -c 'getent passwd 350000 | cut -d: -f1'
it_expect_eq "alice's entry stays" vu-sub-alice-5 "$(getent passwd 100005 | cut -d: -f1)"
it_expect_match "the overlap is logged" 'carol|subuid:2' "$(cat "$IT_LOG/allocd.log")"
it_expect_ok "the daemon still answers" "$CTL" list

it_section "ImportSubordinateIDs=no drops them"
it_daemon_stop
printf '[Allocator]\nImportSubordinateIDs=no\n' >"$IT_FILES/allocd.conf"
"$ALLOCD" --config "$IT_FILES/allocd.conf" </dev/null >>"$IT_LOG/allocd.log" 2>&1 &
IT_DAEMON_PID=$!
it_daemon_wait_ready
it_expect_rc "no import: getent passwd 100000" 2 getent passwd 100000
it_finish
