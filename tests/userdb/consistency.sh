#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# One table, three views (issue 10): for every kind of range (allocated 64K, single UID, three
# blocks of 65536, imported from /etc/subuid and /etc/subgid: both files, UID-only, GID-only, an
# owner that is no user; and the foreign range), the same ID gives the same user name, realName,
# primary GID, group name, membership and disposition through
#   - libnss_transient.so.2 (getent passwd/group, id), and nss-systemd ("passwd: files systemd")
#     over transient-userdbd, which must print exactly the same;
#   - userdbctl against transient-userdbd (-j user / group);
#   - transientctl show ID (text and --json) and list --json: owner (UID and name), source,
#     size, blocks, disposition.
# The IDs are the first and last of each range, the block boundaries of the multi-block range
# and the IDs just outside; the comparison is mechanical, one line per ID and view.
. "$(dirname "$0")/../integration/lib.sh"

USERDBD=${TRANSIENT_USERDBD:?}
USERDBCTL=${TRANSIENT_USERDBCTL:?}
it_require_userdb_clients "$USERDBCTL"

E=$TRANSIENT_SANDBOX/etc
mkdir -p "$E"
ALICE=2301 BOB=2302 CAROL=2303
K64=65536

it_section "set up: owners, /etc/subuid and /etc/subgid, ranges, transient-userdbd"
cp /etc/passwd "$E/passwd"
cp /etc/group "$E/group"
for u in alice:$ALICE bob:$BOB carol:$CAROL; do
    printf '%s:x:%s:%s::/:/bin/sh\n' "${u%:*}" "${u#*:}" "${u#*:}" >>"$E/passwd"
    printf '%s:x:%s:\n' "${u%:*}" "${u#*:}" >>"$E/group"
done
# ghost is no user: its imported range has no owner.
printf '%s\n' "alice:100000:$K64" "bob:300000:$K64" "ghost:600000:$K64" >"$E/subuid"
printf '%s\n' "alice:100000:$K64" "carol:400000:$K64" "ghost:600000:$K64" >"$E/subgid"
for f in passwd group subuid subgid; do
    [ -e /etc/$f ] || { it_fail "/etc/$f exists to bind over" "missing"; it_finish; }
    mount --bind "$E/$f" /etc/$f
done
it_daemon_start
it_expect_ok "allocate web (64K) for alice" "$CTL" allocate web --owner alice
it_expect_ok "allocate solo (1 UID) for bob" "$CTL" allocate solo --size 1 --owner bob
it_expect_ok "allocate k8s (3 blocks) for carol" "$CTL" allocate k8s --size $((3 * K64)) \
    --owner carol
it_userdbd_start "$USERDBD"

# The ranges: name, start, size, owner UID (empty: no one).
it_ctl_json list >"$IT_FILES/list.json"
declare -A START SIZE
while read -r name start size; do
    START[$name]=$start
    SIZE[$name]=$size
done < <(jq -r '.[] | "\(.name) \(.start) \(.size)"' "$IT_FILES/list.json")
it_expect_eq "the ranges" "k8s solo sub-alice sub-bob sub-carol sub-ghost web" \
    "$(printf '%s\n' "${!START[@]}" | sort | tr '\n' ' ' | sed 's/ $//')"

it_section "transientctl list --json and show --json: owner, source, size, blocks, disposition"
# name -> "owner ownerName source size blocks disposition users groups"
want_range() {
    case $1 in
        web) echo "$ALICE alice allocated $K64 1 container true true" ;;
        solo) echo "$BOB bob allocated 1 - dynamic true true" ;;
        k8s) echo "$CAROL carol allocated $((3 * K64)) 3 container true true" ;;
        sub-alice) echo "$ALICE alice imported $K64 1 container true true" ;;
        sub-bob) echo "$BOB bob imported $K64 1 container true false" ;;
        sub-carol) echo "$CAROL carol imported $K64 1 container false true" ;;
        sub-ghost) echo "4294967295 - imported $K64 1 container true true" ;;
    esac
}
range_fields='"\(.owner) \(.ownerName // "-") \(.source) \(.size) \(.blocks // "-") '
range_fields+='\(.disposition) \(.users) \(.groups)"'
for name in "${!START[@]}"; do
    it_expect_eq "list --json: $name" "$(want_range "$name")" \
        "$(jq -r --arg n "$name" ".[] | select(.name == \$n) | $range_fields" \
            "$IT_FILES/list.json")"
    it_expect_eq "show --json: $name" "$(want_range "$name")" \
        "$(it_ctl_json show "$name" | jq -r "$range_fields" 2>&1)"
done
it_run "$CTL" show k8s
it_expect_match "show k8s: the size in blocks" "Size: $((3 * K64)) \\(3 blocks of 65536\\)" \
    "$IT_OUT"
it_expect_match "show k8s: the owner, name and UID" "Owner: carol \\($CAROL\\)" "$IT_OUT"
it_expect_match "show k8s: allocated" "Source: allocated" "$IT_OUT"
it_run "$CTL" show sub-bob
it_expect_match "show sub-bob: from /etc/subuid only" \
    "Source: imported from /etc/subuid only" "$IT_OUT"
it_expect_match "show sub-bob: no groups" "Groups: none" "$IT_OUT"
it_run "$CTL" show sub-carol
it_expect_match "show sub-carol: no users" "Users: none" "$IT_OUT"
it_run "$CTL" list
it_expect_match "list: k8s has 3 blocks, owner carol" \
    "k8s +[0-9]+ +[0-9]+ +$((3 * K64)) +3 +carol \\($CAROL\\) +allocated" "$IT_OUT"
it_expect_match "list: sub-ghost has no owner, imported" "sub-ghost .* - +imported" "$IT_OUT"

# ---- the IDs and the views ----

IDS=()
for name in "${!START[@]}"; do
    s=${START[$name]} z=${SIZE[$name]}
    IDS+=($((s - 1)) "$s" $((s + z - 1)) $((s + z)))
done
k=${START[k8s]}
IDS+=($((k + K64 - 1)) $((k + K64)) $((k + 2 * K64 - 1)) $((k + 2 * K64)))
FOREIGN=2147352576
IDS+=($((FOREIGN - 1)) "$FOREIGN" $((FOREIGN + 65534)) $((FOREIGN + 65535)))
mapfile -t IDS < <(printf '%s\n' "${IDS[@]}" | sort -n -u)

# getent's answer, or "-".
ask() { getent "$@" 2>/dev/null || echo -; }

# NSS: everything glibc says about the ID (used through the module, then through nss-systemd).
nss_view() {
    local id u
    for id in "${IDS[@]}"; do
        u=$(ask passwd "$id")
        printf '%s passwd %s\n%s group %s\n' "$id" "$u" "$id" "$(ask group "$id")"
        [ "$u" == - ] && continue
        printf '%s by-name %s\n' "$id" "$(ask passwd "${u%%:*}")"
        printf '%s id %s\n' "$id" "$(id "$id" 2>&1)"
        # Supplementary groups with another primary group: only real memberships count.
        printf '%s grouplist %s\n' "$id" \
            "$(python3 -c 'import os, sys; print(os.getgrouplist(sys.argv[1], 100))' "${u%%:*}")"
    done
    printf 'enumerate passwd %s\n' \
        "$(getent passwd | grep -E '^(vu|foreign)-' | sort | tr '\n' ' ')"
    printf 'enumerate group %s\n' "$(getent group | grep -E '^(vg|foreign)-' | sort | tr '\n' ' ')"
}

# One line per ID: "ID user gecos gid | group | disposition(user) disposition(group)", from each
# source; "-" where it has no record.
module_line() {
    local id=$1 pw gr
    pw=$(ask passwd "$id")
    gr=$(ask group "$id")
    if [ "$pw" == - ]; then printf '%s - - - | ' "$id"; else
        IFS=: read -r n _ _ g gecos _ <<<"$pw"
        printf '%s %s %s %s | ' "$id" "$n" "${gecos// /_}" "$g"
    fi
    printf '%s\n' "${gr%%:*}"
}
userdb_line() {
    local id=$1 u g
    u=$("$USERDBCTL" --no-pager -s io.transient.Ranges -j user "$id" 2>/dev/null) || u=""
    g=$("$USERDBCTL" --no-pager -s io.transient.Ranges -j group "$id" 2>/dev/null) || g=""
    if [ -z "$u" ]; then printf '%s - - - | ' "$id"; else
        jq -j --arg id "$id" \
            '"\($id) \(.userName) \(.realName | gsub(" "; "_")) \(.gid) | "' <<<"$u"
    fi
    if [ -z "$g" ]; then printf -- '- | '; else jq -j '"\(.groupName) | "' <<<"$g"; fi
    printf '%s %s\n' "$( [ -n "$u" ] && jq -r .disposition <<<"$u" || echo -)" \
        "$( [ -n "$g" ] && jq -r .disposition <<<"$g" || echo -)"
}
# transientctl knows names and dispositions, not descriptions.
ctl_line() {
    local id=$1 uname gname disp=- json
    it_run "$CTL" show "$id"
    if [ "$IT_RC" -eq 0 ]; then
        uname=$(sed -nE 's/^ *UID: [0-9]+ \((v[u]-[^)]*)\)$/\1/p' <<<"$IT_OUT")
        gname=$(sed -nE 's/^ *GID: [0-9]+ \((v[g]-[^)]*)\)$/\1/p' <<<"$IT_OUT")
        json=$(it_ctl_json show "$id")
        disp=$(jq -r .disposition <<<"$json")
    else
        # Not a range: the foreign range is still named, as systemd names it.
        uname=$(grep -oE 'foreign-[0-9]+' <<<"$IT_ERR" || true)
        gname=$uname
        [ -n "$uname" ] && disp=foreign
    fi
    printf '%s %s | %s | %s %s\n' "$id" "${uname:--}" "${gname:--}" \
        "$( [ -n "$uname" ] && echo "$disp" || echo -)" \
        "$( [ -n "$gname" ] && echo "$disp" || echo -)"
}

it_section "the module and the userdb endpoint against transientctl, ID by ID"
for f in module userdb ctl; do : >"$IT_FILES/$f"; done
for id in "${IDS[@]}"; do
    module_line "$id" >>"$IT_FILES/module"
    userdb_line "$id" >>"$IT_FILES/userdb"
    ctl_line "$id" >>"$IT_FILES/ctl"
done
cat "$IT_FILES/userdb"
# The module has no dispositions; userdbctl has everything the module has.
compare() {  # WHAT FILE_A FILE_B
    if diff -u "$2" "$3" >"$IT_FILES/diff"; then it_pass "$1"; else
        it_fail "$1" "$(cat "$IT_FILES/diff")"
    fi
}
cut -d'|' -f1,2 "$IT_FILES/userdb" | sed 's/ *$//' >"$IT_FILES/userdb.names"
sed 's/ *$//' "$IT_FILES/module" >"$IT_FILES/module.names"
compare "user name, realName, primary GID and group name: the module = userdbctl" \
    "$IT_FILES/module.names" "$IT_FILES/userdb.names"
# user and group names from transientctl, against the module's.
awk -F'|' '{split($1, u, " "); printf "%s %s |%s\n", u[1], u[2], $2}' "$IT_FILES/module" |
    sed 's/ *$//' >"$IT_FILES/module.ctl"
cut -d'|' -f1,2 "$IT_FILES/ctl" | sed 's/ *$//' >"$IT_FILES/ctl.names"
compare "user and group names: the module = transientctl" "$IT_FILES/module.ctl" \
    "$IT_FILES/ctl.names"
awk -F'|' '{split($1, u, " "); print u[1], $NF}' "$IT_FILES/userdb" >"$IT_FILES/userdb.disp"
awk -F'|' '{split($1, u, " "); print u[1], $NF}' "$IT_FILES/ctl" >"$IT_FILES/ctl.disp"
compare "dispositions: userdbctl = transientctl" "$IT_FILES/userdb.disp" "$IT_FILES/ctl.disp"
# has_line WHAT LINE FILE: FILE has LINE (the comparisons above cannot tell empty from right).
has_line() {
    if grep -qxF -- "$2" "$3"; then
        it_pass "$1"
    else
        it_fail "$1" "no line '$2' in:" "$(cat "$3")"
    fi
}
has_line "the rows are not all empty (web's first UID resolved)" \
    "${START[web]} vu-web-0 UID_0_of_transient_range_web ${START[web]} | vg-web-0" \
    "$IT_FILES/module"
has_line "UID-only: vu-sub-bob-0 has no group" \
    "300000 vu-sub-bob-0 UID_0_of_transient_range_sub-bob 300000 | -" "$IT_FILES/module"
has_line "GID-only: vg-sub-carol-0 has no user" "400000 - - - | vg-sub-carol-0" "$IT_FILES/module"
has_line "the foreign range through transientctl" \
    "$FOREIGN foreign-0 | foreign-0 | foreign foreign" "$IT_FILES/ctl"

it_section "enumeration: each range once, in every view"
# One line of sorted names: transientctl's (the first of each range with users / groups), getent's.
ctl_names() {  # users|groups PREFIX
    jq -r --arg p "$2" ".[] | select(.$1) | \"\\(\$p)\\(.name)-0\"" "$IT_FILES/list.json" |
        sort | tr '\n' ' ' | sed 's/ $//'
}
getent_names() {  # passwd|group PREFIX
    getent "$1" | grep -oE "^$2[^:]+" | sort | tr '\n' ' ' | sed 's/ $//'
}
it_expect_eq "getent passwd (module) = transientctl list" "$(ctl_names users vu-)" \
    "$(getent_names passwd vu-)"
it_expect_eq "getent group (module) = transientctl list" "$(ctl_names groups vg-)" \
    "$(getent_names group vg-)"
it_expect_eq "userdbctl user = transientctl list" "$(ctl_names users vu-)" \
    "$(it_userdbctl_names "$USERDBCTL" user)"
it_expect_eq "userdbctl group = transientctl list" "$(ctl_names groups vg-)" \
    "$(it_userdbctl_names "$USERDBCTL" group)"

it_section "membership: no path gives an ID-only range a group"
it_run python3 -c 'import os; print(os.getgrouplist("vu-sub-bob-0", 100))'
it_expect_eq "getgrouplist(vu-sub-bob-0, 100) through the module" "[100]" "$IT_OUT"

it_section "libnss_transient = nss-systemd over transient-userdbd"
nss_view >"$IT_FILES/nss.module"
it_nsswitch_systemd
nss_view >"$IT_FILES/nss.systemd"
w=${START[web]}
has_line "nss-systemd resolves (not an empty answer)" \
    "$w passwd vu-web-0:x:$w:$w:UID 0 of transient range web:/:/usr/sbin/nologin" \
    "$IT_FILES/nss.systemd"
compare "getent passwd/group by ID and name, id, getgrouplist, enumeration: module = nss-systemd" \
    "$IT_FILES/nss.module" "$IT_FILES/nss.systemd"
it_run python3 -c 'import os; print(os.getgrouplist("vu-sub-bob-0", 100))'
it_expect_eq "getgrouplist(vu-sub-bob-0, 100) through nss-systemd" "[100]" "$IT_OUT"

kill -TERM "$IT_USERDBD_PID"
rc=0
wait "$IT_USERDBD_PID" || rc=$?
it_expect_eq "transient-userdbd exits cleanly on SIGTERM" 0 "$rc"
it_finish
