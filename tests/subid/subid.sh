#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libsubid_transient.so under the real shadow tools (package uidmap), inside scripts/sandbox.sh:
# a private /etc/passwd with test users (one UID with two names), a private nsswitch.conf with
# `subid: transient`, and the provider copied into the system library dir through the sandbox's
# overlay (setuid newuidmap ignores LD_LIBRARY_PATH), empty /etc/subuid and /etc/subgid (all of it
# lib.sh's it_add_users and it_subid_setup). Ranges are allocated by the users themselves
# (setpriv + transientctl: u<UID>-name, owned by the caller) and by root for one (--owner).
#   - getsubids [-g] prints the owner's range, under its name, its other name and its UID;
#   - getsubids for a user without ranges fails exactly as with the files backend;
#   - unshare --map-users (through setuid newuidmap/newgidmap) maps the user's own block and is
#     refused another user's block, and a released one; the same for a range root allocated
#     for the user (`unshare ... id` runs until root releases it).
. "$(dirname "$0")/../integration/lib.sh"

it_require getsubids newuidmap newgidmap setpriv unshare

ALICE=2101 BOB=2102 CAROL=2103

it_section "set up: users, nsswitch.conf, provider"
it_add_users subalice:$ALICE subalias:$ALICE subbob:$BOB subcarol:$CAROL
it_subid_setup
it_expect_eq "subalias has subalice's UID" "$ALICE" "$(id -u subalias)"

it_section "a user without ranges, files backend first"
it_subid_backend files
it_run getsubids subbob
files_rc=$IT_RC files_out=$IT_OUT files_err=$IT_ERR
it_run getsubids -g subbob
files_grc=$IT_RC
it_subid_backend transient
it_run getsubids subbob
it_expect_eq "getsubids subbob: exit status as with the files backend" "$files_rc" "$IT_RC"
it_expect_eq "... same stdout" "$files_out" "$IT_OUT"
it_expect_eq "... same stderr" "$files_err" "$IT_ERR"
it_expect_match "... which is an error" "Error" "$IT_ERR"
it_run getsubids -g subbob
it_expect_eq "getsubids -g subbob: exit status as with the files backend" "$files_grc" "$IT_RC"
it_expect_no_match "the provider loaded (no 'Error opening')" "Error opening" "$IT_ERR"

it_section "ranges allocated by the users themselves"
it_daemon_start
it_expect_ok "subalice allocates a 64K range" it_as_user $ALICE "$CTL" allocate web --size 65536
it_expect_ok "subbob allocates a 64K range" it_as_user $BOB "$CTL" allocate web --size 65536
it_expect_ok "subalice allocates a single UID" it_as_user $ALICE "$CTL" allocate one --size 1
A=$(it_range_start u$ALICE-web)
B=$(it_range_start u$BOB-web)
echo "u$ALICE-web starts at $A, u$BOB-web at $B"
it_expect_eq "u$ALICE-web belongs to subalice" "$ALICE" "$(it_ctl_json show u$ALICE-web | jq -r .owner)"

it_section "getsubids"
for owner in subalice subalias $ALICE; do
    it_expect_ok "getsubids $owner" getsubids $owner
    it_expect_eq "... prints the 64K range only" "0: $owner $A 65536" "$IT_OUT"
    it_expect_ok "getsubids -g $owner" getsubids -g $owner
    it_expect_eq "... the same for GIDs" "0: $owner $A 65536" "$IT_OUT"
done
it_expect_ok "getsubids subbob" getsubids subbob
it_expect_eq "... prints subbob's range" "0: subbob $B 65536" "$IT_OUT"
it_run getsubids no-such-user-here
it_expect_eq "getsubids for an unknown user fails" 1 "$IT_RC"

it_section "newuidmap/newgidmap through unshare --map-users, as subalice"
it_run it_as_user $ALICE unshare --user --map-users=$A,0,65536 --map-groups=$A,0,65536 \
    cat /proc/self/uid_map /proc/self/gid_map
it_expect_eq "subalice maps her own block (exit status; stderr: $IT_ERR)" 0 "$IT_RC"
it_expect_eq "... uid_map and gid_map are that block" \
    "0 $A 65536|0 $A 65536" "$(awk '{ print $1, $2, $3 }' <<<"$IT_OUT" | paste -sd'|')"
it_run it_as_user $ALICE unshare --user --map-users=$B,0,65536 --map-groups=$B,0,65536 true
it_expect_eq "subalice is refused subbob's block" 1 "$([ "$IT_RC" -ne 0 ] && echo 1 || echo 0)"
it_expect_match "... by newuidmap" "newuidmap|newgidmap" "$IT_ERR"
it_run it_as_user $ALICE unshare --user --map-users=$A,0,65537 --map-groups=$A,0,65537 true
it_expect_eq "subalice is refused one UID past her block" 1 "$([ "$IT_RC" -ne 0 ] && echo 1 || echo 0)"

it_section "a range root allocated for subcarol (--owner)"
it_expect_ok "root allocates carol for subcarol" "$CTL" allocate carol --size 65536 --owner subcarol
C=$(it_range_start carol)
it_expect_ok "getsubids subcarol" getsubids subcarol
it_expect_eq "... prints it" "0: subcarol $C 65536" "$IT_OUT"
it_expect_ok "subcarol runs id in a namespace mapped to it" \
    it_as_user $CAROL unshare --user --map-users=$C,0,65536 --map-groups=$C,0,65536 id
# subcarol's own UID is not in the map, so inside she is the overflow UID.
it_expect_match "... as nobody there" "^uid=65534\\(nobody\\) gid=65534\\(nogroup\\)" "$IT_OUT"
it_run it_as_user $CAROL unshare --user --map-users=$C,0,65536 --map-groups=$C,0,65536 \
    cat /proc/self/uid_map /proc/self/gid_map
it_expect_eq "... uid_map and gid_map are her block" \
    "0 $C 65536|0 $C 65536" "$(awk '{ print $1, $2, $3 }' <<<"$IT_OUT" | paste -sd'|')"
it_expect_fail "subalice is refused subcarol's block" \
    it_as_user $ALICE unshare --user --map-users=$C,0,65536 --map-groups=$C,0,65536 id
it_expect_match "... by newuidmap" "newuidmap|newgidmap" "$IT_ERR"
it_expect_ok "root releases carol" "$CTL" release carol
it_expect_fail "subcarol can no longer map it" \
    it_as_user $CAROL unshare --user --map-users=$C,0,65536 --map-groups=$C,0,65536 id
it_expect_match "... refused by newuidmap" "newuidmap|newgidmap" "$IT_ERR"

it_section "a released range is nobody's"
it_expect_ok "subalice releases u$ALICE-web" it_as_user $ALICE "$CTL" release u$ALICE-web
it_run getsubids subalice
it_expect_eq "getsubids subalice now fails as for subbob before" "$files_rc" "$IT_RC"
it_run it_as_user $ALICE unshare --user --map-users=$A,0,65536 --map-groups=$A,0,65536 true
it_expect_eq "subalice can no longer map it" 1 "$([ "$IT_RC" -ne 0 ] && echo 1 || echo 0)"
it_expect_match "... refused by newuidmap" "newuidmap|newgidmap" "$IT_ERR"

it_daemon_stop
it_finish
