#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libsubid_transient.so under the real shadow tools (package uidmap), inside scripts/sandbox.sh:
# a private /etc/passwd with test users (one UID with two names), a private nsswitch.conf with
# `subid: transient`, and the provider copied into the system library dir through the sandbox's
# overlay (setuid newuidmap ignores LD_LIBRARY_PATH). Ranges are allocated by the users
# themselves (setpriv + transientctl: u<UID>-name, owned by the caller).
#   - getsubids [-g] prints the owner's range, under its name, its other name and its UID;
#   - getsubids for a user without ranges fails exactly as with the files backend;
#   - unshare --map-users (through setuid newuidmap/newgidmap) maps the user's own block and is
#     refused another user's block, and a released one.
. "$(dirname "$0")/../integration/lib.sh"

PROVIDER=${TRANSIENT_SUBID_PROVIDER:?the built libsubid_transient.so}
LIBDIR=$TRANSIENT_SANDBOX_LIBDIR
for tool in getsubids newuidmap newgidmap setpriv unshare; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: scripts/deps.sh installs uidmap" >&2; exit 1; }
done
if [ "$(findmnt -n -o FSTYPE --target "$LIBDIR" 2>/dev/null)" != overlay ]; then
    echo "the sandbox could not overlay $LIBDIR: setuid newuidmap cannot load the provider; skipping" >&2
    exit 77
fi

ALICE=2101 BOB=2102
E=$TRANSIENT_SANDBOX/etc

it_section "set up: users, nsswitch.conf, provider"
cp /etc/passwd "$E/passwd"
cp /etc/group "$E/group"
cat >>"$E/passwd" <<EOF
subalice:x:$ALICE:$ALICE::/:/bin/sh
subalias:x:$ALICE:$ALICE::/:/bin/sh
subbob:x:$BOB:$BOB::/:/bin/sh
EOF
printf 'subalice:x:%s:\nsubbob:x:%s:\n' "$ALICE" "$BOB" >>"$E/group"
mount --bind "$E/passwd" /etc/passwd
mount --bind "$E/group" /etc/group
# Empty /etc/subuid and /etc/subgid, for the files backend's answers.
: >"$E/subuid"
: >"$E/subgid"
for f in subuid subgid; do
    [ -e /etc/$f ] || { echo "/etc/$f is missing (uidmap installs it)" >&2; exit 1; }
    mount --bind "$E/$f" /etc/$f
done
grep -v '^[[:space:]]*subid:' /etc/nsswitch.conf >"$E/nsswitch.files"
cp "$E/nsswitch.files" "$E/nsswitch.transient"
echo "subid:          transient" >>"$E/nsswitch.transient"
cp "$E/nsswitch.transient" "$E/nsswitch.conf.subid"
mount --bind "$E/nsswitch.conf.subid" /etc/nsswitch.conf
cp "$PROVIDER" "$LIBDIR/libsubid_transient.so"
it_expect_eq "subalias has subalice's UID" "$ALICE" "$(id -u subalias)"

# use_backend files|transient: what /etc/nsswitch.conf says for subid.
use_backend() { cp "$E/nsswitch.$1" "$E/nsswitch.conf.subid"; }
as_user() { local uid=$1; shift; setpriv --reuid "$uid" --regid "$uid" --clear-groups -- "$@"; }

it_section "a user without ranges, files backend first"
use_backend files
it_run getsubids subbob
files_rc=$IT_RC files_out=$IT_OUT files_err=$IT_ERR
it_run getsubids -g subbob
files_grc=$IT_RC
use_backend transient
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
it_expect_ok "subalice allocates a 64K range" as_user $ALICE "$CTL" allocate web --size 65536
it_expect_ok "subbob allocates a 64K range" as_user $BOB "$CTL" allocate web --size 65536
it_expect_ok "subalice allocates a single UID" as_user $ALICE "$CTL" allocate one --size 1
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
it_run as_user $ALICE unshare --user --map-users=$A,0,65536 --map-groups=$A,0,65536 \
    cat /proc/self/uid_map /proc/self/gid_map
it_expect_eq "subalice maps her own block (exit status; stderr: $IT_ERR)" 0 "$IT_RC"
it_expect_eq "... uid_map and gid_map are that block" \
    "0 $A 65536|0 $A 65536" "$(awk '{ print $1, $2, $3 }' <<<"$IT_OUT" | paste -sd'|')"
it_run as_user $ALICE unshare --user --map-users=$B,0,65536 --map-groups=$B,0,65536 true
it_expect_eq "subalice is refused subbob's block" 1 "$([ "$IT_RC" -ne 0 ] && echo 1 || echo 0)"
it_expect_match "... by newuidmap" "newuidmap|newgidmap" "$IT_ERR"
it_run as_user $ALICE unshare --user --map-users=$A,0,65537 --map-groups=$A,0,65537 true
it_expect_eq "subalice is refused one UID past her block" 1 "$([ "$IT_RC" -ne 0 ] && echo 1 || echo 0)"

it_section "a released range is nobody's"
it_expect_ok "subalice releases u$ALICE-web" as_user $ALICE "$CTL" release u$ALICE-web
it_run getsubids subalice
it_expect_eq "getsubids subalice now fails as for subbob before" "$files_rc" "$IT_RC"
it_run as_user $ALICE unshare --user --map-users=$A,0,65536 --map-groups=$A,0,65536 true
it_expect_eq "subalice can no longer map it" 1 "$([ "$IT_RC" -ne 0 ] && echo 1 || echo 0)"

it_daemon_stop
it_finish
