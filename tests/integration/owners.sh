#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Owners, multi-block ranges and the reuse order (issue 10), as an administrator would use them,
# inside scripts/sandbox.sh with a private /etc/passwd (user kubelet), `subid: transient` in a
# private nsswitch.conf and the subid provider overlaid into the system library dir:
#   - root allocates a 110-block range kubelet for user kubelet (transientctl --owner); show
#     names the owner; getent resolves its first, middle and last UID and nothing past it;
#     getsubids kubelet and getsubids -g kubelet print one identical line;
#   - another user can neither allocate for kubelet nor a multi-block range; a name too long
#     for 7-digit offsets is refused saying how long it may be;
#   - the owner releases the range by root's name; a released block is handed out last.
. "$(dirname "$0")/lib.sh"

it_require getsubids setpriv getent jq

KUBELET=2201 OTHER=2202
SIZE=$((110 * 65536))

it_section "set up: users, nsswitch.conf, provider"
it_add_users kubelet:$KUBELET other:$OTHER
it_subid_setup
it_daemon_start

it_section "a 110-block range for user kubelet"
it_expect_fail "another user cannot allocate for kubelet" \
    it_as_user $OTHER "$CTL" allocate x --size 1 --owner kubelet
it_expect_match "... permission denied, saying why" "root" "$IT_ERR"
it_expect_fail "another user cannot allocate two blocks" \
    it_as_user $OTHER "$CTL" allocate x --size 131072
it_expect_fail "a name too long for 7-digit offsets is refused" \
    "$CTL" allocate abcdefghijklmnopqrstu --size 8388608
it_expect_match "... saying how long it may be" "at most 20 bytes" "$IT_ERR"
it_expect_ok "root allocates kubelet for kubelet" \
    "$CTL" allocate kubelet --size $SIZE --owner kubelet
S=$(it_range_start kubelet)
it_expect_eq "size" "$SIZE" "$(it_ctl_json show kubelet | jq -r .size)"
it_expect_eq "owner" "$KUBELET" "$(it_ctl_json show kubelet | jq -r .owner)"
it_expect_eq "64K-aligned" 0 $((S % 65536))
it_run "$CTL" show kubelet
it_expect_match "show names the owner" "Owner: +kubelet \\($KUBELET\\)" "$IT_OUT"
for n in 0 $((SIZE / 2 + 17)) $((SIZE - 1)); do
    it_run getent passwd $((S + n))
    want="vu-kubelet-$n:x:$((S + n)):$((S + n)):UID $n of transient range kubelet"
    it_expect_eq "getent passwd $((S + n))" "$want:/:/usr/sbin/nologin" "$IT_OUT"
done
it_run getent group $((S + SIZE - 1))
it_expect_match "getent group of the last GID" "^vg-kubelet-$((SIZE - 1)):" "$IT_OUT"
it_run getent passwd vu-kubelet-$((SIZE - 1))
it_expect_match "getent passwd vu-kubelet-$((SIZE - 1))" ":$((S + SIZE - 1)):" "$IT_OUT"
it_run getent passwd vu-kubelet-$SIZE
it_expect_eq "vu-kubelet-$SIZE does not exist" 2 "$IT_RC"
it_run getent passwd $((S + SIZE))
it_expect_eq "the UID past the range is not kubelet's" "" "$(grep kubelet <<<"$IT_OUT" || true)"
it_run getsubids kubelet
uids=$IT_OUT
it_expect_eq "getsubids kubelet" "0: kubelet $S $SIZE" "$uids"
it_run getsubids -g kubelet
it_expect_eq "getsubids -g kubelet prints the same line" "$uids" "$IT_OUT"

it_section "release by the owner, and the reuse order"
it_expect_fail "another user cannot release it" it_as_user $OTHER "$CTL" release kubelet
it_expect_ok "kubelet releases it by root's name" it_as_user $KUBELET "$CTL" release kubelet
it_run getent passwd $((S + 5))
it_expect_eq "its UIDs no longer resolve" 2 "$IT_RC"
it_expect_ok "allocate a 64K range" "$CTL" allocate next
N=$(it_range_start next)
it_expect_eq "it does not reuse a released block" 1 $((N < S || N >= S + SIZE))
it_daemon_stop
it_daemon_start
it_expect_ok "after a restart, allocate another" "$CTL" allocate after
A=$(it_range_start after)
it_expect_eq "... still not in the released blocks" 1 $((A < S || A >= S + SIZE))
it_finish
