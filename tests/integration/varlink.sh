#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The real daemon's Varlink endpoint against raw clients (varlink_raw.py, only the wire format):
# protocol errors it must name (MethodNotFound, InterfaceNotFound, InvalidParameter with the
# parameter, ExpectedMore), org.varlink.service introspection, pipelining; and clients that send
# garbage, an oversized message, half a message, or nothing at all (300 idle connections), while
# transientctl still gets its answers within a second.
. "$(dirname "$0")/lib.sh"

RAW=("${IT_RAW[@]}")
IFACE=io.transient.Allocator

# call METHOD [PARAMS] [--more]: one raw call; IT_OUT holds the reply lines.
call() { it_run "${RAW[@]}" call "$IT_SOCKET" "$@"; }
# jfield JQ_EXPR: applied to the first reply line in IT_OUT.
jfield() { head -n1 <<<"$IT_OUT" | jq -c "$1" 2>&1; }

it_section "start the daemon"
it_daemon_start
it_expect_ok "allocate web" "$CTL" allocate web
it_expect_ok "allocate solo --size 1" "$CTL" allocate solo --size 1

it_section "org.varlink.service"
call org.varlink.service.GetInfo
it_expect_eq "GetInfo answers" 0 "$IT_RC"
it_expect_eq "GetInfo lists io.transient.Allocator" true \
    "$(jfield '.parameters.interfaces | index("io.transient.Allocator") != null')"
it_expect_eq "GetInfo lists org.varlink.service" true \
    "$(jfield '.parameters.interfaces | index("org.varlink.service") != null')"
it_expect_eq "GetInfo names a product and a version" true \
    "$(jfield '(.parameters.product | length > 0) and (.parameters.version | length > 0)')"
call org.varlink.service.GetInterfaceDescription '{"interface":"io.transient.Allocator"}'
it_expect_match "GetInterfaceDescription returns the IDL" "interface io\\.transient\\.Allocator" \
    "$(jfield '.parameters.description')"
call org.varlink.service.GetInterfaceDescription '{"interface":"io.nope.Nothing"}'
it_expect_eq "GetInterfaceDescription of an unknown interface" '"org.varlink.service.InterfaceNotFound"' \
    "$(jfield '.error')"

it_section "protocol errors"
call $IFACE.Frobnicate
it_expect_eq "unknown method → MethodNotFound" '"org.varlink.service.MethodNotFound"' "$(jfield '.error')"
call io.nope.Nothing.Frobnicate
it_expect_eq "unknown interface → InterfaceNotFound" '"org.varlink.service.InterfaceNotFound"' \
    "$(jfield '.error')"
call $IFACE.AllocateRange '{"name":"extra","size":1,"colour":"blue"}'
it_expect_eq "unknown parameter → InvalidParameter naming it" \
    '{"error":"org.varlink.service.InvalidParameter","parameter":"colour"}' \
    "$(jfield '{error, parameter: .parameters.parameter}')"
call $IFACE.AllocateRange '{"name":42,"size":1}'
it_expect_eq "parameter of the wrong type → InvalidParameter naming it" \
    '{"error":"org.varlink.service.InvalidParameter","parameter":"name"}' \
    "$(jfield '{error, parameter: .parameters.parameter}')"
call $IFACE.AllocateRange '{"size":1}'
it_expect_eq "missing parameter → InvalidParameter naming it" \
    '{"error":"org.varlink.service.InvalidParameter","parameter":"name"}' \
    "$(jfield '{error, parameter: .parameters.parameter}')"
it_expect_fail "nothing was allocated by the bad calls" "$CTL" show extra
call $IFACE.ListRanges
it_expect_eq "ListRanges without more → ExpectedMore" '"org.varlink.service.ExpectedMore"' \
    "$(jfield '.error')"
call $IFACE.AllocateRange '{"name":"1bad","size":1}'
it_expect_eq "AllocateRange with a bad name → InvalidName" '"io.transient.Allocator.InvalidName"' \
    "$(jfield '.error')"
call $IFACE.AllocateRange '{"name":"seven","size":7}'
it_expect_eq "AllocateRange with size 7 → InvalidSize" '"io.transient.Allocator.InvalidSize"' \
    "$(jfield '.error')"

it_section "calls that work"
call $IFACE.ListRanges --more
it_expect_eq "ListRanges with more streams one reply per range" "solo web" \
    "$(jq -r '.parameters.range.name' <<<"$IT_OUT" | sort | xargs)"
it_expect_eq "... all but the last with continues" "true null" \
    "$(jq -c '.continues' <<<"$IT_OUT" | xargs)"
call $IFACE.GetRange '{"name":"web"}'
it_expect_eq "GetRange by name" '"web"' "$(jfield '.parameters.range.name')"
start=$(jfield '.parameters.range.start')
call $IFACE.GetRange "{\"uid\":$((start + 65535))}"
it_expect_eq "GetRange by UID" '"web"' "$(jfield '.parameters.range.name')"
it_run "${RAW[@]}" pipeline "$IT_SOCKET" \
    '{"method":"io.transient.Allocator.GetRange","parameters":{"name":"solo"}}' \
    '{"method":"io.transient.Allocator.Frobnicate"}' \
    '{"method":"io.transient.Allocator.GetRange","parameters":{"name":"web"}}'
it_expect_eq "three pipelined calls get three replies in order" \
    '"solo" "org.varlink.service.MethodNotFound" "web"' \
    "$(jq -c '.parameters.range.name // .error' <<<"$IT_OUT" | xargs -d '\n')"

it_section "misbehaving clients: garbage, oversized, half a message, 300 idle connections"
ready=$TRANSIENT_SANDBOX/abuse.ready report=$TRANSIENT_SANDBOX/abuse.report
"${RAW[@]}" abuse "$IT_SOCKET" --idle 300 --ready "$ready" --report "$report" \
    >"$IT_LOG/abuse.log" 2>&1 &
abuser=$!
for _ in $(seq 300); do [ -e "$ready" ] || sleep 0.05; done
if [ -e "$ready" ]; then
    it_pass "the abusive clients are connected ($(cat "$ready") connections)"
    sed 's/^/      server → /' "$report"
else
    it_fail "the abusive clients are connected" "$(cat "$IT_LOG/abuse.log")"
fi
it_expect_match "garbage gets an error or a hang-up" '^garbage: (error |closed|reset)' \
    "$(grep '^garbage:' "$report" 2>/dev/null)"
it_expect_match "an oversized message gets an error or a hang-up" '^oversized .*: (error |closed|reset)' \
    "$(grep '^oversized' "$report" 2>/dev/null)"
for i in 1 2 3; do
    read -r rc t < <(it_ms "$CTL" list)
    it_expect_eq "transientctl list #$i with them connected answers within 1 s (${t} ms)" "0 yes" \
        "$rc $( ((t < 1000)) && echo yes || echo no)"
done
read -r rc t < <(it_ms "$CTL" allocate during)
it_expect_eq "transientctl allocate with them connected answers within 1 s (${t} ms)" "0 yes" \
    "$rc $( ((t < 1000)) && echo yes || echo no)"
call org.varlink.service.GetInfo --timeout 1
it_expect_eq "a raw GetInfo with them connected answers" 0 "$IT_RC"
kill -TERM "$abuser"
wait "$abuser" || true
it_expect_eq "the daemon survived them" alive "$(kill -0 "$IT_DAEMON_PID" 2>/dev/null && echo alive || echo dead)"
it_run "$CTL" list
it_expect_eq "after they left, list shows the three ranges" "during solo web" \
    "$(it_ctl_json list | jq -r '.[].name' | sort | xargs)"

it_section "stop"
it_daemon_stop
it_finish
