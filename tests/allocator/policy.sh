#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Unprivileged callers through setpriv: the 0666 socket, name scopes (u<UID>-NAME), quotas,
# releasing and seeing only their own ranges' details, root's powers; and allocd.conf: pools,
# sizes, quota, errors that name file and line, --config and TRANSIENT_CONFIG.
. "$(dirname "$0")/../integration/lib.sh"

AS_1000=(setpriv --reuid=1000 --regid=1000 --clear-groups)
AS_1001=(setpriv --reuid=1001 --regid=1001 --clear-groups)
CONF=$IT_FILES/allocd.conf
export TRANSIENT_CONFIG=$CONF

printf '[Allocator]\n# three per user\nMaxRangesPerUser=3\n' >"$CONF"

it_section "an unprivileged caller allocates"
it_daemon_start
it_expect_eq "the socket is 0666" 666 "$(stat -c %a "$IT_SOCKET")"
it_run "${AS_1000[@]}" "$CTL" allocate web --json
it_expect_eq "UID 1000 allocates web and gets u1000-web" "0 u1000-web" "$IT_RC $(jq -r .name <<<"$IT_OUT")"
it_run it_ctl_json show u1000-web
it_expect_eq "its owner is 1000" 1000 "$(jq -r .owner <<<"$IT_OUT")"
it_expect_ok "vu-u1000-web-0 resolves" getent passwd vu-u1000-web-0
it_expect_ok "UID 1000 can show its range by its short name" "${AS_1000[@]}" "$CTL" show web
it_expect_match "... and sees the scoped name" "u1000-web" "$IT_OUT"
it_expect_ok "UID 1001 allocates its own web" "${AS_1001[@]}" "$CTL" allocate web --size 1
it_expect_ok "root allocates a plain web" "$CTL" allocate web
it_expect_eq "three webs, none squatting another" "u1000-web u1001-web web" \
    "$(it_ctl_json list | jq -r '[.[].name] | sort | join(" ")')"

it_section "names of other scopes"
it_expect_fail "UID 1001 cannot create a name in UID 1000's scope" \
    "${AS_1001[@]}" "$CTL" allocate u1000-evil
it_expect_match "... PermissionDenied" "PermissionDenied" "$IT_ERR"
it_expect_fail "nor in UID 10001's by prefix games" "${AS_1000[@]}" "$CTL" allocate u10001-x
it_expect_fail "a name too long once scoped is InvalidName" \
    "${AS_1000[@]}" "$CTL" allocate abcdefghijklmnopq
it_expect_match "... InvalidName" "InvalidName" "$IT_ERR"

it_section "release only your own"
it_expect_fail "UID 1001 cannot release u1000-web" "${AS_1001[@]}" "$CTL" release u1000-web
it_expect_match "... PermissionDenied" "PermissionDenied" "$IT_ERR"
it_expect_ok "UID 1000 releases its web by the short name" "${AS_1000[@]}" "$CTL" release web
it_expect_fail "u1000-web is gone" "$CTL" show u1000-web
it_expect_fail "releasing web again as UID 1000 does not reach root's web" \
    "${AS_1000[@]}" "$CTL" release web
it_expect_match "... NoSuchRange" "NoSuchRange" "$IT_ERR"
it_expect_ok "root's web is still there" "$CTL" show web
it_run "${AS_1000[@]}" "$CTL" show web --json
it_expect_eq "UID 1000, with no web of its own, shows root's web (as list does)" "0 web 0" \
    "$IT_RC $(jq -r '"\(.name) \(.owner)"' <<<"$IT_OUT")"
it_run "${AS_1001[@]}" "$CTL" show web --json
it_expect_eq "UID 1001 still gets its own web first" "0 u1001-web 1001" \
    "$IT_RC $(jq -r '"\(.name) \(.owner)"' <<<"$IT_OUT")"
it_expect_ok "root releases UID 1001's range" "$CTL" release u1001-web

it_section "quota"
for n in a b c; do
    it_expect_ok "UID 1000 allocates $n (of 3)" "${AS_1000[@]}" "$CTL" allocate "$n" --size 1
done
it_expect_fail "the 4th is refused" "${AS_1000[@]}" "$CTL" allocate d --size 1
it_expect_match "... QuotaExceeded" "QuotaExceeded" "$IT_ERR"
it_expect_ok "UID 1001 is not affected" "${AS_1001[@]}" "$CTL" allocate d --size 1
for n in r1 r2 r3 r4 r5; do
    it_run "$CTL" allocate "$n" --size 1
done
it_expect_eq "root has no quota" 0 "$IT_RC"
it_expect_ok "UID 1000 releases one" "${AS_1000[@]}" "$CTL" release a
it_expect_ok "... and may allocate again" "${AS_1000[@]}" "$CTL" allocate d --size 1

it_section "what others see"
unshare -U sleep infinity &
P=$!
sleep 0.2
exec 8<"/proc/$P/ns/user"
it_expect_ok "root binds rootbound" "$CTL" allocate rootbound --userns /dev/fd/8
exec 8<&-
it_run "${AS_1000[@]}" "$CTL" list --json
it_expect_eq "UID 1000 lists every range" 11 "$(jq length <<<"$IT_OUT")"
it_expect_eq "... but not the binding of root's range" null \
    "$(jq -c '.[] | select(.name == "rootbound") | .userNamespaceInode' <<<"$IT_OUT")"
# For UID 1000 "rootbound" means u1000-rootbound; other users' ranges are looked up by UID.
RB=$(it_range_start rootbound)
it_run "${AS_1000[@]}" "$CTL" show "$RB" --json
it_expect_eq "show UID $RB by UID 1000 names rootbound but hides its binding" "rootbound null" \
    "$(jq -r '"\(.name) \(.userNamespaceInode)"' <<<"$IT_OUT")"
it_run "$CTL" show rootbound --json
it_expect_eq "root sees it" "$(stat -L -c %i "/proc/$P/ns/user")" "$(jq -r .userNamespaceInode <<<"$IT_OUT")"
kill "$P"
wait "$P" 2>/dev/null || true
for n in b c d; do "${AS_1000[@]}" "$CTL" release "$n" >/dev/null; done
"$CTL" release u1001-d >/dev/null
for n in web rootbound r1 r2 r3 r4 r5; do "$CTL" release "$n" >/dev/null 2>&1 || true; done
it_expect_eq "everything released" "[]" "$(it_ctl_json list | jq -c .)"
it_daemon_stop

it_section "configuration: pools and sizes"
cat >"$CONF" <<'EOF'
[Allocator]
ContainerRange=1048576-1179647
DynamicRange=65000-65001
AllowedSizes=1 65536
MaxRangesPerUser=16
EOF
it_daemon_start
it_run it_ctl_json allocate c1
it_expect_eq "the first 64K range comes from ContainerRange=" 1048576 "$(jq -r .start <<<"$IT_OUT")"
it_run it_ctl_json allocate c2
it_expect_eq "the second too" 1114112 "$(jq -r .start <<<"$IT_OUT")"
it_expect_fail "the third exhausts the configured pool" "$CTL" allocate c3
it_run it_ctl_json allocate s1 --size 1
it_expect_eq "single UIDs come from DynamicRange=" 65000 "$(jq -r .start <<<"$IT_OUT")"
it_daemon_stop
printf '[Allocator]\nAllowedSizes=1\n' >"$CONF"
it_daemon_start
it_expect_fail "AllowedSizes=1 refuses 65536" "$CTL" allocate big
it_expect_match "... InvalidSize" "InvalidSize" "$IT_ERR"
it_daemon_stop

it_section "configuration: errors stop the daemon"
# start_bad WHAT EXPECTED-ERE [ENV...] -- [ARGS...]: the daemon must exit non-zero at once
# with a message matching EXPECTED-ERE.
start_bad() {
    local what=$1 ere=$2
    shift 2
    it_run timeout 10 env "$@"
    if [ "$IT_RC" -ne 0 ] && [ "$IT_RC" -ne 124 ] && [[ $IT_ERR =~ $ere ]]; then
        it_pass "$what (exit $IT_RC: $(grep -m1 -E "$ere" <<<"$IT_ERR"))"
    else
        it_fail "$what" "exit $IT_RC" "stderr: $IT_ERR"
    fi
    it_expect_eq "... and nothing listens" no "$([ -S "$IT_SOCKET" ] && "$CTL" list >/dev/null 2>&1 && echo yes || echo no)"
}
printf '[Allocator]\nMaxRangesPerUser=16\nContainerRange=0-4294967295\n' >"$IT_FILES/bad.conf"
start_bad "a pool outside systemd's ranges, via --config" \
    "$IT_FILES/bad.conf:3: ContainerRange= must lie within" "$ALLOCD" --config "$IT_FILES/bad.conf"
printf '[Allocator]\nMaxRangesPerUsr=16\n' >"$IT_FILES/typo.conf"
start_bad "a misspelt key, via TRANSIENT_CONFIG" "$IT_FILES/typo.conf:2: unknown key 'MaxRangesPerUsr'" \
    TRANSIENT_CONFIG="$IT_FILES/typo.conf" "$ALLOCD"
start_bad "a named file that does not exist" "Failed to open configuration file $IT_FILES/none.conf" \
    "$ALLOCD" --config "$IT_FILES/none.conf"
printf 'MaxRangesPerUser=1\n' >"$IT_FILES/nosection.conf"
start_bad "a key outside [Allocator]" "nosection.conf:1: " "$ALLOCD" --config "$IT_FILES/nosection.conf"

it_finish
