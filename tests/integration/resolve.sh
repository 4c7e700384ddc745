#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Resolution through the real clients: allocate a 64K range and a single UID with transientctl,
# then check what getent, id, ls -l and stat (and an unprivileged and an env-scrubbed getent) say
# about them through libnss_transient.so.2, the edges of the range, enumeration, the foreign
# range, and that a released range stops resolving.
. "$(dirname "$0")/lib.sh"

it_section "start the daemon"
it_daemon_start
it_expect_eq "the range table exists in the default runtime dir" yes \
    "$([ -f "$IT_RUNTIME/ranges.table" ] && echo yes || echo no)"

it_section "allocate"
it_expect_ok "transientctl allocate web" "$CTL" allocate web
it_expect_ok "transientctl allocate solo --size 1" "$CTL" allocate solo --size 1
B=$(it_range_start web)
S=$(it_range_start solo)
echo "web starts at $B, solo at $S"
it_expect_eq "web is 64K-aligned in the container pool" yes \
    "$( ((B % 65536 == 0 && B >= 524288 && B + 65535 <= 1879048191)) && echo yes || echo "no ($B)")"
it_expect_eq "solo is in the dynamic pool" yes \
    "$( ((S >= 61184 && S <= 65519)) && echo yes || echo "no ($S)")"

it_section "getent passwd / group by name and by ID"
pw() { printf 'vu-%s-%d:x:%d:%d:UID %d of transient range %s:/:/usr/sbin/nologin' "$1" "$2" "$3" "$3" "$2" "$1"; }
gr() { printf 'vg-%s-%d:x:%d:' "$1" "$2" "$3"; }
for n in 0 1 1000 65535; do
    u=$((B + n))
    it_run getent passwd "$u"
    it_expect_eq "getent passwd $u (web+$n)" "$(pw web $n $u)" "$IT_OUT"
    it_run getent passwd "vu-web-$n"
    it_expect_eq "getent passwd vu-web-$n" "$(pw web $n $u)" "$IT_OUT"
    it_run getent group "$u"
    it_expect_eq "getent group $u (web+$n)" "$(gr web $n $u)" "$IT_OUT"
    it_run getent group "vg-web-$n"
    it_expect_eq "getent group vg-web-$n" "$(gr web $n $u)" "$IT_OUT"
done
it_run getent passwd "$S"
it_expect_eq "getent passwd $S (solo)" "$(pw solo 0 "$S")" "$IT_OUT"
it_run getent group vg-solo-0
it_expect_eq "getent group vg-solo-0" "$(gr solo 0 "$S")" "$IT_OUT"

it_section "what must not resolve"
for u in $((B - 1)) $((B + 65536)); do
    it_expect_rc "getent passwd $u (outside web) finds nothing" 2 getent passwd "$u"
    it_expect_rc "getent group $u (outside web) finds nothing" 2 getent group "$u"
done
for name in vu-web-65536 vu-web-01 vu-web--1 vu-web- vu-solo-1 vu-nope-0 vg-web-0; do
    it_expect_rc "getent passwd $name finds nothing" 2 getent passwd "$name"
done
it_expect_rc "getent group vu-web-0 (a user name) finds nothing" 2 getent group vu-web-0

it_section "id, unprivileged and env-scrubbed lookups"
u=$((B + 7))
it_run id "$u"
it_expect_eq "id $u" "uid=$u(vu-web-7) gid=$u(vg-web-7) groups=$u(vg-web-7)" "$IT_OUT"
it_run id vu-web-7
it_expect_eq "id vu-web-7" "uid=$u(vu-web-7) gid=$u(vg-web-7) groups=$u(vg-web-7)" "$IT_OUT"
it_run setpriv --reuid=65534 --regid=65534 --clear-groups getent passwd "$((B + 3))"
it_expect_eq "getent as nobody" "$(pw web 3 $((B + 3)))" "$IT_OUT"
it_run env -i /usr/bin/getent group "$((B + 4))"
it_expect_eq "getent with an empty environment" "$(gr web 4 $((B + 4)))" "$IT_OUT"

it_section "ls -l and stat on files owned by transient IDs"
u=$((B + 1000))
touch "$IT_FILES/web-file" "$IT_FILES/solo-file" "$IT_FILES/mixed-file"
chown "$u:$u" "$IT_FILES/web-file"
chown "$S:$S" "$IT_FILES/solo-file"
chown "$((B + 65535)):$S" "$IT_FILES/mixed-file"
it_run ls -l "$IT_FILES/web-file"
echo "$IT_OUT"
it_expect_eq "ls -l owner/group of web-file" "vu-web-1000 vg-web-1000" "$(awk '{print $3, $4}' <<<"$IT_OUT")"
it_run stat -c '%U %G %u %g' "$IT_FILES/web-file"
it_expect_eq "stat of web-file" "vu-web-1000 vg-web-1000 $u $u" "$IT_OUT"
it_run stat -c '%U %G' "$IT_FILES/solo-file"
it_expect_eq "stat of solo-file" "vu-solo-0 vg-solo-0" "$IT_OUT"
it_run stat -c '%U %G' "$IT_FILES/mixed-file"
it_expect_eq "stat of mixed-file" "vu-web-65535 vg-solo-0" "$IT_OUT"

it_section "enumeration: one entry per range"
it_run getent passwd
it_expect_eq "getent passwd lists exactly vu-solo-0 and vu-web-0 of ours" \
    "vu-solo-0 vu-web-0" "$(grep -E '^vu-' <<<"$IT_OUT" | cut -d: -f1 | sort | xargs)"
it_expect_eq "getent passwd still lists root first" root "$(head -n1 <<<"$IT_OUT" | cut -d: -f1)"
it_expect_no_match "getent passwd does not enumerate the foreign range" $'(^|\n)foreign-' "$IT_OUT"
it_run getent group
it_expect_eq "getent group lists exactly vg-solo-0 and vg-web-0 of ours" \
    "vg-solo-0 vg-web-0" "$(grep -E '^vg-' <<<"$IT_OUT" | cut -d: -f1 | sort | xargs)"

it_section "the foreign range"
F=2147352576
it_run getent passwd $F
it_expect_match "getent passwd $F" "^foreign-0:[^:]*:$F:$F:Foreign System Image UID 0:" "$IT_OUT"
it_run getent passwd foreign-65534
it_expect_match "getent passwd foreign-65534" "^foreign-65534:[^:]*:$((F + 65534)):$((F + 65534)):" "$IT_OUT"
it_run getent group $F
it_expect_match "getent group $F" "^foreign-0:[^:]*:$F:" "$IT_OUT"
it_expect_rc "getent passwd $((F + 65535)) (past foreign-65534) finds nothing" 2 getent passwd $((F + 65535))

it_section "release"
it_expect_ok "transientctl release web" "$CTL" release web
it_expect_rc "getent passwd $B after release finds nothing" 2 getent passwd "$B"
it_expect_rc "getent passwd vu-web-1000 after release finds nothing" 2 getent passwd vu-web-1000
it_expect_rc "getent group vg-web-0 after release finds nothing" 2 getent group vg-web-0
it_run stat -c '%U %G' "$IT_FILES/web-file"
it_expect_eq "stat of web-file shows bare numbers" "UNKNOWN UNKNOWN" "$IT_OUT"
it_run getent passwd "$S"
it_expect_eq "solo still resolves" "$(pw solo 0 "$S")" "$IT_OUT"
it_run getent passwd
it_expect_eq "getent passwd now lists only vu-solo-0 of ours" \
    "vu-solo-0" "$(grep -E '^vu-' <<<"$IT_OUT" | cut -d: -f1 | sort | xargs)"

it_section "stop"
it_daemon_stop
it_run getent passwd "$S"
it_expect_eq "the table still answers with the daemon stopped" "$(pw solo 0 "$S")" "$IT_OUT"
it_finish
