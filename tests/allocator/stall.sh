#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# No stalls on the allocator's event loop, with the /proc scan probe (UserNamespaceProbe=scan,
# as on kernels without namespace ids) and a /proc made slow to walk by a few thousand
# processes: 200 pipelined over-quota AllocateRange calls of a UID whose ranges are bound to
# user namespaces (each of which used to walk all of /proc) must take about as long as 200 of
# a UID whose ranges are not bound (which never walk), and a bystander must be served
# meanwhile.
. "$(dirname "$0")/../integration/lib.sh"

AS_1000=(setpriv --reuid=1000 --regid=1000 --clear-groups)
AS_1001=(setpriv --reuid=1001 --regid=1001 --clear-groups)
FLOOD=$(dirname "$0")/flood.py
CONF=$IT_FILES/allocd.conf
export TRANSIENT_CONFIG=$CONF
PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

printf '[Allocator]\nMaxRangesPerUser=2\nUserNamespaceProbe=scan\nUserNamespaceCheckSec=1\n' >"$CONF"

it_section "a /proc that is slow to walk"
for i in $(seq 2000); do sleep infinity & PIDS+=($!); done
it_pass "2000 extra processes"

it_section "UID 1000 at its quota with bound ranges, UID 1001 with unbound ones"
it_daemon_start 30
for n in 1 2; do
    setpriv --reuid=1000 --regid=1000 --clear-groups unshare -U sleep infinity &
    PIDS+=($!)
    p=$!
    for i in $(seq 100); do
        [ "$(stat -L -c %i /proc/$p/ns/user)" != "$(stat -L -c %i /proc/self/ns/user)" ] && break
        sleep 0.01
    done
    it_expect_ok "UID 1000 binds b$n" \
        "${AS_1000[@]}" "$CTL" allocate "b$n" --size 1 --userns "/proc/$p/ns/user"
    it_expect_ok "UID 1001 allocates u$n" "${AS_1001[@]}" "$CTL" allocate "u$n" --size 1
done

it_section "200 pipelined over-quota calls each, and a bystander"
it_run "${AS_1001[@]}" /usr/bin/python3 "$FLOOD" "$IT_SOCKET" x 200
UNBOUND=$IT_OUT; [ "$IT_RC" = 0 ] || echo "$IT_ERR" >&2
it_run "${AS_1000[@]}" /usr/bin/python3 "$FLOOD" "$IT_SOCKET" x 200
BOUND=$IT_OUT; [ "$IT_RC" = 0 ] || echo "$IT_ERR" >&2
echo "unbound (never sweeps): $UNBOUND"
echo "bound (sweeps /proc):   $BOUND"
it_expect_eq "all 200 of UID 1000 are QuotaExceeded" 200 \
    "$(jq -r '.replies["io.transient.Allocator.QuotaExceeded"]' <<<"$BOUND")"
it_expect_eq "all 200 of UID 1001 are QuotaExceeded" 200 \
    "$(jq -r '.replies["io.transient.Allocator.QuotaExceeded"]' <<<"$UNBOUND")"
# Sweeps are shared: at most one per UserNamespaceCheckSec= for all requests, plus the timer's
# on a worker thread. Allowance: 4x the unbound flood plus 2 s for the few sweeps that may run.
ok=$(jq -n --argjson b "$BOUND" --argjson u "$UNBOUND" '$b.flood < 4 * $u.flood + 2')
it_expect_eq "the bound flood takes about as long as the unbound one" true "$ok"
ok=$(jq -n --argjson b "$BOUND" --argjson u "$UNBOUND" \
    '$b.bystander_max < 4 * $u.bystander_max + 2')
it_expect_eq "the bystander waits about as long in both" true "$ok"
it_daemon_stop
it_finish
