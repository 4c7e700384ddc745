#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A name is all of its bytes (issue 8): JSON strings may carry a NUL ("\u0000"), and no name
# path may cut such a name short there and answer for the name before the NUL. Asked of the
# real daemons over raw Varlink: transient-userdbd's userName/groupName, and transient-allocd's
# range names in AllocateRange, ReleaseRange and GetRange. (transientctl and getent take names
# from argv, which cannot hold a NUL; transientctl prints the daemon's names with control
# characters replaced, not cut.)
. "$(dirname "$0")/../integration/lib.sh"

USERDBD=${TRANSIENT_USERDBD:?}
SOCK=/run/systemd/userdb/io.transient.Ranges
RAW=(python3 -B "$(dirname "$0")/../integration/varlink_raw.py")
A=io.transient.Allocator
U=io.systemd.UserDatabase
SERVICE='"service":"io.transient.Ranges"'

# error SOCKET METHOD PARAMS: the error name of one raw call ("" for a reply).
error() {
    it_run "${RAW[@]}" call "$1" "$2" "$3"
    head -n1 <<<"$IT_OUT" | jq -r '.error // ""'
}

it_section "start transient-allocd and transient-userdbd"
it_daemon_start
it_expect_ok "transientctl allocate web" "$CTL" allocate web
mkdir -p /run/systemd/userdb
"$USERDBD" </dev/null >>"$IT_LOG/userdbd.log" 2>&1 &
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.02; done

it_section "transient-userdbd"
it_expect_eq "GetUserRecord vu-web-1 (the name itself)" "" \
    "$(error "$SOCK" $U.GetUserRecord "{\"userName\":\"vu-web-1\",$SERVICE}")"
for name in 'vu-web-1\u0000x' 'vu-web-1\u0000' 'vu-web\u0000-1' '\u0000vu-web-1' \
    'foreign-1\u0000x'; do
    it_expect_eq "GetUserRecord \"$name\" → NoRecordFound" "$U.NoRecordFound" \
        "$(error "$SOCK" $U.GetUserRecord "{\"userName\":\"$name\",$SERVICE}")"
    group=${name/vu-/vg-}
    it_expect_eq "GetGroupRecord \"$group\" → NoRecordFound" "$U.NoRecordFound" \
        "$(error "$SOCK" $U.GetGroupRecord "{\"groupName\":\"$group\",$SERVICE}")"
done

it_section "transient-allocd"
it_expect_eq "AllocateRange \"new\\u0000x\" → InvalidName" "$A.InvalidName" \
    "$(error "$IT_SOCKET" $A.AllocateRange '{"name":"new\u0000x","size":1}')"
it_expect_eq "AllocateRange \"new\\u0000\" → InvalidName" "$A.InvalidName" \
    "$(error "$IT_SOCKET" $A.AllocateRange '{"name":"new\u0000","size":1}')"
it_expect_fail "... and no range \"new\" was made" "$CTL" show new
it_expect_eq "GetRange \"web\\u0000x\" → NoSuchRange" "$A.NoSuchRange" \
    "$(error "$IT_SOCKET" $A.GetRange '{"name":"web\u0000x"}')"
it_expect_eq "ReleaseRange \"web\\u0000x\" → NoSuchRange" "$A.NoSuchRange" \
    "$(error "$IT_SOCKET" $A.ReleaseRange '{"name":"web\u0000x"}')"
it_expect_eq "ReleaseRange \"web\\u0000\" → NoSuchRange" "$A.NoSuchRange" \
    "$(error "$IT_SOCKET" $A.ReleaseRange '{"name":"web\u0000"}')"
it_expect_ok "... and web is still there" "$CTL" show web
it_expect_eq "GetRange \"web\" (the name itself)" "" \
    "$(error "$IT_SOCKET" $A.GetRange '{"name":"web"}')"

it_daemon_stop
it_finish
