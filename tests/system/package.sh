#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# package.sh - the system test of the Debian package: boots the host's systemd as PID 1 of a
# throw-away container (container.sh), installs the .deb with dpkg -i inside, and checks what a
# real host would see:
#   - before the install, User=<a transient UID> fails with 217/USER (the negative control);
#   - dpkg -i adds "transient" to nsswitch.conf and starts both sockets, but no daemon;
#   - each socket starts its daemon on first use (transientctl; an NSS lookup via nss-systemd);
#     transient-userdbd runs as nobody, not root;
#   - after "transientctl allocate ct --size 65536", systemd-run -p User=<first uid>
#     -p Group=<first gid> -p Delegate=yes runs, with the unit's cgroup owned by uid:gid; by name
#     (vu-ct-5/vg-ct-5) too; ps shows vu-ct-0;
#   - getent answers through libnss_transient and through nss-systemd + transient-userdbd alike;
#   - an unprivileged user's unmapped user namespace gets its uid_map/gid_map from one
#     "transientctl allocate --userns" under the unit's sandbox;
#   - "systemctl restart transient-allocd" keeps every range;
#   - dpkg -r and dpkg --purge restore nsswitch.conf byte for byte and leave no unit behind.
#   - subordinate IDs: alice:100000:65536 in /etc/subuid and /etc/subgid gives no user before the
#     install (User=100000 fails with 217/USER); written after the install it resolves within
#     seconds; a second container boots an image with the package installed (dpkg -i before
#     systemd starts: container.sh --setup): there it resolves from boot on without any client
#     call, systemd-run -p User=100000 -p Group=100000 -p Delegate=yes runs with its cgroup owned
#     by 100000:100000, an edit resolves within seconds with the allocator stopped, and after
#     "transient-nsswitch add --subid" getsubids answers from the packaged libsubid_transient.so.
#   - apt-get install ./DEB again: allocating and releasing "web" through the packaged units
#     leaves two journal entries with TRANSIENT_* fields and their MESSAGE_IDs (journalctl
#     TRANSIENT_RANGE=web -o json), a refused release one with the refusal's id; transientctl
#     status sees the daemon; apt-get purge then leaves /etc, /usr, /var/lib/dpkg/info and /run
#     as they were before the first install (file lists), and the account files unchanged.
# Units are judged by their state (ActiveState, ExecMainStatus, the main process's command and
# user), never by systemd-run's exit status, which is 0 even when the unit fails with 217/USER.
#
# Usage: package.sh DEB|DIR    (DIR: its newest transient_*.deb; root; exit 77 = skipped: not
#                               root. A missing package — systemd, dpkg, util-linux, bsdutils —
#                               is a failure that names it: scripts/deps.sh installs them all)
# Environment: SYSTEST_LOG_DIR  where to keep the container's console and journal on failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CT=$HERE/container.sh
NAME=pkg-$$
T0=$SECONDS

skip() { echo "package.sh: skipped: $*"; exit 77; }
# A host without what the test needs must not pass as a host where the package works.
missing() { echo "package.sh: FAIL: $* (scripts/deps.sh installs it)" >&2; exit 1; }
[ $# -eq 1 ] || { echo "usage: package.sh DEB|DIR" >&2; exit 2; }
DEB=$(readlink -f "$1")
if [ -d "$DEB" ]; then
    # The newest transient_*.deb in DIR (what scripts/build-deb.sh -o DIR made).
    DEB=$(ls -t "$DEB"/transient_*.deb 2>/dev/null | head -n 1)
fi
[ -n "$DEB" ] && [ -f "$DEB" ] || { echo "package.sh: $1: no such .deb" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
[ -x /lib/systemd/systemd ] || missing "no /lib/systemd/systemd: package systemd is not installed"
command -v dpkg >/dev/null || missing "no dpkg on this host"
for tool in unshare:util-linux nsenter:util-linux setpriv:util-linux script:bsdutils ps:procps; do
    command -v "${tool%%:*}" >/dev/null || missing "${tool%%:*} is missing: package ${tool#*:}"
done
PKG=$(dpkg-deb -f "$DEB" Package)

# ---- reporting ----

# shellcheck source=tests/lib/checks.sh
. "$HERE/../lib/checks.sh"
section() { printf '\n== %s (%d s)\n' "$*" $((SECONDS - T0)); }

# ---- the container ----

# in CMD...: runs CMD inside the container; its output is ours.
inside() { "$CT" exec "$NAME" -- "$@"; }
# q CMD...: like in, but prints stdout only and never fails (for values to compare).
q() { "$CT" exec "$NAME" -- "$@" 2>/dev/null || true; }

# stop_container RC: stops the container $NAME, keeping its journal and console first if a
# check failed or RC is not 0; fails if anything of it outlives it.
stop_container() {
    local rc=$1 logs=""
    if [ "$CHECKS_FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
        if [ -n "${SYSTEST_LOG_DIR:-}" ]; then
            mkdir -p "$SYSTEST_LOG_DIR"
            logs=$SYSTEST_LOG_DIR
            q journalctl --no-pager -o short-monotonic >"$SYSTEST_LOG_DIR/$NAME.journal" || true
            echo "package.sh: journal and console in $SYSTEST_LOG_DIR/$NAME.*" >&2
        else
            echo "---- last lines of the container's journal ----" >&2
            q journalctl --no-pager -o short-monotonic -n 60 >&2 || true
        fi
    fi
    CONTAINER_LOG_DIR=$logs "$CT" stop "$NAME"
    [ -z "${SNAP:-}" ] || rm -rf "$SNAP"
    # Whatever happened above, nothing of the container may outlive it.
    local left
    left=$(ls -d "/run/transient-systest/$NAME" /sys/fs/cgroup/unified/transient-"$NAME" \
                 /sys/fs/cgroup/transient-"$NAME" 2>/dev/null || true)
    if [ -n "$left" ]; then
        echo "FAIL  the container left behind: $left" >&2
        return 1
    fi
}
cleanup() {
    local rc=$?
    stop_container $rc || rc=1
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# unit_state UNIT: "ActiveState SubState ExecMainStatus".
unit_state() {
    q systemctl show -P ActiveState "$1" | tr '\n' ' '
    q systemctl show -P SubState "$1" | tr '\n' ' '
    q systemctl show -P ExecMainStatus "$1"
}

# wait_unit_settled UNIT: waits (at most 10 s) until UNIT failed or its main process has exec'ed
# its command, i.e. is no longer systemd's "(sleep)" child still resolving User=/Group=. A hung
# user lookup shows as "active" for 45 s, so ActiveState alone would lie.
wait_unit_settled() {
    local unit=$1 st pid comm
    for _ in $(seq 100); do
        st=$(q systemctl show -P ActiveState "$unit")
        case "$st" in failed|inactive) return 0 ;; esac
        pid=$(q systemctl show -P MainPID "$unit")
        if [ -n "$pid" ] && [ "$pid" != 0 ]; then
            comm=$(q ps -o comm= -p "$pid")
            [ -n "$comm" ] && [ "${comm:0:1}" != "(" ] && return 0
        fi
        sleep 0.1
    done
    return 1
}

# run_as UNIT PROPERTY...: systemd-run sleep 300 as a transient service, settled.
run_as() {
    local unit=$1; shift
    local args=() p
    for p in "$@"; do args+=(-p "$p"); done
    inside systemd-run --quiet --unit="$unit" "${args[@]}" sleep 300 || true
    wait_unit_settled "$unit.service" || true
}

# ---- subordinate IDs: /etc/subuid and /etc/subgid imported by the packaged units ----

SUBID_LINE=alice:100000:65536
SUBID_PASSWD="vu-sub-alice-0:x:100000:100000:UID 0 of transient range sub-alice:/:/usr/sbin/nologin"

# wait_getent DB KEY EXPECTED: waits (at most 10 s) until "getent DB KEY" prints EXPECTED; prints
# what it printed last.
wait_getent() {
    local out=""
    for _ in $(seq 100); do
        out=$(q getent "$1" "$2")
        [ "$out" = "$3" ] && break
        sleep 0.1
    done
    printf '%s' "$out"
}

# expect_runs_as_subid UNIT: systemd-run sleep as 100000:100000 with Delegate=yes is active, with
# its cgroup owned by 100000:100000; the unit is stopped afterwards.
expect_runs_as_subid() {
    run_as "$1" User=100000 Group=100000 Delegate=yes
    expect_eq "User=100000 Group=100000 Delegate=yes: unit active, running" "active running 0" \
        "$(unit_state "$1.service")"
    expect_eq "its main process runs as vu-sub-alice-0:vg-sub-alice-0" \
        "vu-sub-alice-0 vg-sub-alice-0" \
        "$(q ps -o user:32=,group:32= -p "$(q systemctl show -P MainPID "$1.service")" | xargs)"
    expect_eq "its delegated cgroup is owned by 100000:100000" "100000:100000" \
        "$(q stat -c %u:%g "/sys/fs/cgroup/system.slice/$1.service")"
    inside systemctl stop "$1.service" >/dev/null 2>&1 || true
}

# Before the install the files alone give no user: the negative control of what follows.
subid_negative_control() {
    section "subordinate IDs: no user for an /etc/subuid entry before the install"
    # What the files held, for subid_restore (the purge check compares them at the end).
    SUBUID_ORIG=$(q cat /etc/subuid) SUBGID_ORIG=$(q cat /etc/subgid)
    inside sh -c "echo $SUBID_LINE >/etc/subuid && echo $SUBID_LINE >/etc/subgid"
    expect_eq "getent passwd 100000 finds nothing" "" "$(q getent passwd 100000)"
    run_as negsub User=100000 Group=100000 Delegate=yes
    expect_eq "User=100000 fails with 217/USER before the install" "failed failed 217" \
        "$(unit_state negsub.service)"
    # Empty, as Debian's passwd package creates them, whatever the host has: the install must
    # find no entries, so that the allocator still starts only on first use.
    inside sh -c ': >/etc/subuid && : >/etc/subgid'
}

# An entry written while the package is installed resolves within seconds.
subid_entry_after_install() {
    section "subordinate IDs: an /etc/subuid entry written after the install"
    inside sh -c "echo $SUBID_LINE >>/etc/subuid && echo $SUBID_LINE >>/etc/subgid"
    expect_eq "getent passwd 100000 is vu-sub-alice-0 within 10 s" "$SUBID_PASSWD" \
        "$(wait_getent passwd 100000 "$SUBID_PASSWD")"
    expect_runs_as_subid subafter
    subid_restore
}

# Gives /etc/subuid and /etc/subgid back what they held before the tests wrote them.
subid_restore() {
    local f content
    for f in subuid subgid; do
        content=$SUBUID_ORIG
        [ $f = subgid ] && content=$SUBGID_ORIG
        inside sh -c '[ -z "$2" ] && : >"$1" || printf "%s\n" "$2" >"$1"' _ /etc/$f "$content"
    done
}

# A second container boots an image with the package installed and /etc/subuid filled in, as a
# host does after an install and a reboot.
subid_boot() {
    section "subordinate IDs: the first boot of an image with the package installed"
    local setup out ok=0 multiarch
    setup=$(mktemp /run/transient-systest-setup.XXXXXX)
    {
        echo 'rm -f /usr/sbin/policy-rc.d'
        echo 'cp -p /etc/nsswitch.conf /var/tmp/nsswitch.conf.orig'
        echo 'useradd --no-create-home alice'
        echo "echo $SUBID_LINE >/etc/subuid"
        echo "echo $SUBID_LINE >/etc/subgid"
        echo "dpkg -i /share/$(basename "$DEB")"
    } >"$setup"
    stop_container 0 || fail "the first container left nothing behind"
    NAME=boot-$$
    "$CT" start "$NAME" --share "$(dirname "$DEB")" --watch $$ --setup "$setup" && ok=1
    rm -f "$setup"
    if [ $ok = 0 ]; then
        fail "a container with the package installed before boot boots"
        return
    fi
    pass "a container with the package installed before boot boots"

    # No client has called the allocator: the socket and the import unit started it.
    expect_eq "transient-allocd.service is running without any client call" "active running" \
        "$(q systemctl show -P ActiveState transient-allocd.service) $(q systemctl show -P SubState transient-allocd.service)"
    expect_eq "getent passwd 100000 is vu-sub-alice-0 from boot on" "$SUBID_PASSWD" \
        "$(wait_getent passwd 100000 "$SUBID_PASSWD")"
    expect_eq "getent group 100000 is vg-sub-alice-0" "vg-sub-alice-0:x:100000:" \
        "$(q getent group 100000)"
    expect_runs_as_subid subboot
    out=$(inside systemd-analyze verify transient-allocd-import.path \
            transient-allocd-import.service 2>&1) || true
    expect_eq "systemd-analyze verify: the import units are clean" "" "$out"

    # With the allocator stopped, only the path unit can bring an edit in.
    inside systemctl stop transient-allocd.service >/dev/null 2>&1 || true
    inside sh -c 'echo bob:200000:65536 >>/etc/subuid && echo bob:200000:65536 >>/etc/subgid'
    local bob="vu-sub-bob-0:x:200000:200000:UID 0 of transient range sub-bob:/:/usr/sbin/nologin"
    expect_eq "an entry added with the allocator stopped resolves within 10 s" "$bob" \
        "$(wait_getent passwd 200000 "$bob")"
    expect_eq "transient-allocd-import.path started the allocator again" "active" \
        "$(q systemctl show -P ActiveState transient-allocd.service)"

    section "subordinate IDs: transient-nsswitch add --subid and getsubids"
    multiarch=$(q dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || q gcc -print-multiarch)
    expect_eq "the package ships libsubid_transient.so in the multiarch libdir" \
        "/usr/lib/$multiarch/libsubid_transient.so" \
        "$(q dpkg -L "$PKG" | grep '/libsubid_transient\.so$')"
    expect_eq "the files backend: getsubids alice" "0: alice 100000 65536" "$(q getsubids alice)"
    inside transient-nsswitch add --subid || true
    expect_eq "transient-nsswitch add --subid: nsswitch.conf's subid: line" "subid:          transient" \
        "$(q grep '^subid:' /etc/nsswitch.conf)"
    # A range only the table has tells the provider's answer from the files'.
    out=$(inside transientctl allocate ali --owner alice --size 65536 2>&1) || true
    expect_match "transientctl allocate ali --owner alice --size 65536" 'Allocated range ali' "$out"
    local ali
    ali=$(q transientctl --json show ali | jq -r '.start // empty')
    expect_eq "getsubids alice: the imported entry and the allocated range, from the table" \
        "0: alice 100000 65536
1: alice $ali 65536" "$(q getsubids alice)"
    expect_eq "getsubids -g alice: the same" "0: alice 100000 65536
1: alice $ali 65536" "$(q getsubids -g alice)"
    expect_eq "getsubids nobody fails as with the files (exit 1)" "1" \
        "$(q sh -c 'getsubids nobody >/dev/null 2>&1; echo $?')"
    inside useradd --no-create-home carol || true
    expect_eq "useradd carol writes no /etc/subuid line with a provider configured" "" \
        "$(q grep '^carol:' /etc/subuid /etc/subgid)"
    inside transient-nsswitch remove --subid || true
    expect_eq "transient-nsswitch remove --subid: no subid: line" "" \
        "$(q grep '^subid:' /etc/nsswitch.conf)"
    expect_eq "getsubids alice: the files again" "0: alice 100000 65536" "$(q getsubids alice)"

    section "subordinate IDs: removal with the opt-in in place"
    inside transient-nsswitch add --subid || true
    if out=$(inside dpkg -r "$PKG" 2>&1); then pass "dpkg -r $PKG"; else fail "dpkg -r $PKG" "$out"; fi
    expect_eq "nsswitch.conf is byte for byte what it was before the install, subid: line gone" \
        "$(q sha256sum /var/tmp/nsswitch.conf.orig | cut -d' ' -f1)" \
        "$(q sha256sum /etc/nsswitch.conf | cut -d' ' -f1)"
    expect_eq "no transient process is left" "" "$(q pgrep -l transient)"
}

# ---- boot ----

section "boot"
"$CT" start "$NAME" --share "$(dirname "$DEB")" --watch $$
pass "systemd $(q systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p') booted as PID 1 of the container"
# Debian's container images ship a policy-rc.d that forbids starting services from maintainer
# scripts (exit 101); a real host has none. It goes only in the container's overlay.
inside rm -f /usr/sbin/policy-rc.d
nss_before=$(q sha256sum /etc/nsswitch.conf)
q cp -p /etc/nsswitch.conf /run/nsswitch.conf.orig

# ---- ops: what the package may leave behind (compared after "apt purge" at the end) ----
# The file lists of /etc, /usr, /var/lib/dpkg/info and /run, and the account files, before the
# first install. Kept on the host: the container's /run is what is being compared.
SNAP=$(mktemp -d /tmp/transient-package.XXXXXX)
snapshot() {
    q find /etc /usr /var/lib/dpkg/info /run -xdev -not -path /run/nsswitch.conf.orig | sort
}
snapshot >"$SNAP/before"
q sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/subuid /etc/subgid \
    >"$SNAP/accounts-before"

section "negative control: no record before the install"
run_as neg User=524288 Group=524288 Delegate=yes
expect_eq "User=524288 fails with 217/USER before the install" "failed failed 217" \
    "$(unit_state neg.service)"

subid_negative_control

section "install"
if out=$(inside dpkg -i "/share/$(basename "$DEB")" 2>&1); then
    pass "dpkg -i $(basename "$DEB")"
else
    fail "dpkg -i $(basename "$DEB")" "$out"
fi
expect_eq "dpkg: package is installed" "install ok installed" \
    "$(q dpkg-query -W -f='${Status}' "$PKG")"
expect_match "nsswitch.conf: passwd: has transient right before systemd" \
    '^passwd:[[:space:]]+files transient systemd$' "$(q grep '^passwd:' /etc/nsswitch.conf)"
expect_match "nsswitch.conf: group: has transient right before systemd" \
    '^group:[[:space:]]+files transient systemd$' "$(q grep '^group:' /etc/nsswitch.conf)"
expect_eq "nsswitch.conf: nothing else changed" \
    "$(q grep -vE '^(passwd|group):' /run/nsswitch.conf.orig)" \
    "$(q grep -vE '^(passwd|group):' /etc/nsswitch.conf)"
expect_eq "tmpfiles created /run/transient (root, 0755)" "0:0 755" \
    "$(q stat -c '%u:%g %a' /run/transient)"

out=$(inside systemd-analyze verify transient-allocd.socket transient-allocd.service \
        transient-userdbd.socket transient-userdbd.service 2>&1) || true
expect_eq "systemd-analyze verify: the four units are clean" "" "$out"
for s in transient-allocd transient-userdbd; do
    printf 'info  %s.service: %s\n' $s \
        "$(q systemd-analyze security $s.service | sed -n 's/.*Overall exposure level for [^:]*: //p')"
done

section "sockets listen; daemons start on first use"
# Any group lookup asks every userdb service, ours by its socket: dpkg's man-db trigger (mandb
# run as user man, with initgroups()) may already have started transient-userdbd. That is socket
# activation working; to watch the first use below, stop the service and keep its socket.
inside systemctl stop transient-userdbd.service >/dev/null 2>&1 || true
for s in transient-allocd transient-userdbd; do
    expect_eq "$s.socket is enabled and listening" "enabled active listening" \
        "$(q systemctl is-enabled $s.socket) $(q systemctl show -P ActiveState $s.socket) $(q systemctl show -P SubState $s.socket)"
    expect_eq "$s.service has not started yet" "inactive" "$(q systemctl show -P ActiveState $s.service)"
done
expect_eq "allocator socket: a socket, mode 0666" "socket 666" \
    "$(q stat -c '%F %a' /run/transient/io.transient.Allocator)"
expect_eq "userdb socket: a socket, mode 0666" "socket 666" \
    "$(q stat -c '%F %a' /run/systemd/userdb/io.transient.Ranges)"

out=$(inside transientctl allocate ct --size 65536 2>&1) || true
expect_match "transientctl allocate ct --size 65536" 'Allocated range ct' "$out"
expect_eq "transient-allocd.service was started by its socket" "active running" \
    "$(q systemctl show -P ActiveState transient-allocd.service) $(q systemctl show -P SubState transient-allocd.service)"
BASE=$(q transientctl --json show ct | jq -r '.start // empty')
expect_match "the range has a 64K-aligned start in the container pool" '^[0-9]+$' "$BASE"
[[ $BASE =~ ^[0-9]+$ ]] || BASE=524288
inside transientctl allocate one --size 1 >/dev/null 2>&1 || true

# Not answered by files or transient: nss-systemd asks every userdb socket, ours included.
inside getent passwd no-such-user-anywhere >/dev/null 2>&1 || true
expect_eq "transient-userdbd.service was started by its socket" "active running" \
    "$(q systemctl show -P ActiveState transient-userdbd.service) $(q systemctl show -P SubState transient-userdbd.service)"
upid=$(q systemctl show -P MainPID transient-userdbd.service)
expect_eq "transient-userdbd runs as nobody:nogroup, not root" "nobody nogroup" \
    "$(q ps -o user=,group= -p "$upid" | xargs)"
# CAP_SYS_ADMIN (bit 21): open_by_handle_at() on nsfs, to tell whether a bound user namespace
# still exists, and setns() into one; CAP_SETGID, CAP_SETUID (bits 6, 7): writing its maps.
expect_eq "transient-allocd has CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID and nothing else" \
    "00000000002000c0" \
    "$(q grep CapEff /proc/"$(q systemctl show -P MainPID transient-allocd.service)"/status | awk '{print $2}')"
apid=$(q systemctl show -P MainPID transient-allocd.service)
sandbox=""
for path in / /usr /etc /home /run /run/systemd /run/lock /run/transient /etc/.pwd.lock \
            /run/systemd/nspawn-uid /run/systemd/dynamic-uid /run/systemd/nsresource; do
    sandbox+="$path=$(q findmnt -N "$apid" -n -o OPTIONS -T "$path" | tail -n 1 | cut -d, -f1) "
done
expect_eq "transient-allocd's sandbox: read-only but for its table and the allocators' locks" \
    "/=ro /usr=ro /etc=ro /home=ro /run=ro /run/systemd=ro /run/lock=ro /run/transient=rw /etc/.pwd.lock=rw /run/systemd/nspawn-uid=rw /run/systemd/dynamic-uid=rw /run/systemd/nsresource=rw " \
    "$sandbox"
sandbox=""
for path in / /etc /run /run/transient /run/systemd/userdb /tmp /dev/shm; do
    sandbox+="$path=$(q findmnt -N "$upid" -n -o OPTIONS -T "$path" | tail -n 1 | cut -d, -f1) "
done
expect_eq "transient-userdbd's sandbox: read-only but for its private /tmp and /dev/shm" \
    "/=ro /etc=ro /run=ro /run/transient=ro /run/systemd/userdb=ro /tmp=rw /dev/shm=rw " "$sandbox"
expect_eq "no 'Special user nobody' warning from systemd" "" \
    "$(q journalctl --no-pager -o cat | grep -F 'Special user' || true)"

section "name service: getent via libnss_transient and via nss-systemd + transient-userdbd"
expect_eq "getent passwd $BASE (all sources)" \
    "vu-ct-0:x:$BASE:$BASE:UID 0 of transient range ct:/:/usr/sbin/nologin" "$(q getent passwd "$BASE")"
expect_eq "getent -s transient passwd vu-ct-5" "vu-ct-5:x:$((BASE + 5)):$((BASE + 5))" \
    "$(q getent -s transient passwd vu-ct-5 | cut -d: -f1-4)"
expect_eq "getent -s systemd passwd vu-ct-5 (userdb endpoint)" "vu-ct-5:x:$((BASE + 5)):$((BASE + 5))" \
    "$(q getent -s systemd passwd vu-ct-5 | cut -d: -f1-4)"
expect_eq "getent -s systemd group $((BASE + 7)) (userdb endpoint)" "vg-ct-7:x:$((BASE + 7)):" \
    "$(q getent -s systemd group $((BASE + 7)))"
expect_eq "getent group vg-ct-65535" "vg-ct-65535:x:$((BASE + 65535)):" "$(q getent group vg-ct-65535)"

section "systemd-run with User=/Group= on the transient range"
run_as byid "User=$BASE" "Group=$BASE" Delegate=yes
expect_eq "User=$BASE Group=$BASE Delegate=yes: unit active, running" "active running 0" \
    "$(unit_state byid.service)"
pid=$(q systemctl show -P MainPID byid.service)
expect_eq "its main process runs sleep as vu-ct-0:vg-ct-0" "sleep vu-ct-0 vg-ct-0" \
    "$(q ps -o comm=,user=,group= -p "$pid" | xargs)"
expect_eq "ps -o user= shows vu-ct-0" "vu-ct-0" "$(q ps -o user= -p "$pid" | xargs)"
expect_eq "its delegated cgroup is owned by $BASE:$BASE" "$BASE:$BASE" \
    "$(q stat -c %u:%g /sys/fs/cgroup/system.slice/byid.service)"
expect_eq "and so is its cgroup.procs" "$BASE:$BASE" \
    "$(q stat -c %u:%g /sys/fs/cgroup/system.slice/byid.service/cgroup.procs)"
expect_eq "ls -ld shows the names" "vu-ct-0 vg-ct-0" \
    "$(q ls -ld /sys/fs/cgroup/system.slice/byid.service | awk '{print $3, $4}')"

run_as byname User=vu-ct-5 Group=vg-ct-5 Delegate=yes
expect_eq "User=vu-ct-5 Group=vg-ct-5: unit active, running" "active running 0" \
    "$(unit_state byname.service)"
pid=$(q systemctl show -P MainPID byname.service)
expect_eq "it runs as $((BASE + 5)):$((BASE + 5))" "$((BASE + 5)) $((BASE + 5))" \
    "$(q ps -o uid=,gid= -p "$pid" | xargs)"
expect_eq "its cgroup is owned by $((BASE + 5)):$((BASE + 5))" "$((BASE + 5)):$((BASE + 5))" \
    "$(q stat -c %u:%g /sys/fs/cgroup/system.slice/byname.service)"

section "a range bound to a user namespace goes away with it, under the unit's sandbox"
nspid=$(q sh -c 'unshare --user sleep 600 </dev/null >/dev/null 2>&1 & echo $!')
out=$(inside transientctl allocate nsbound --size 1 --userns "/proc/$nspid/ns/user" 2>&1) || true
expect_match "transientctl allocate nsbound --userns /proc/$nspid/ns/user" "Allocated range nsbound" "$out"
inside kill "$nspid" >/dev/null 2>&1 || true
gone=""
for _ in $(seq 120); do
    if ! inside transientctl show nsbound >/dev/null 2>&1; then gone=yes; break; fi
    sleep 0.1
done
expect_eq "released within 12 s of the namespace's death" "yes" "${gone:-no}"

section "an unprivileged user's new namespace is mapped by the allocator, under the unit's sandbox"
as1000=(setpriv --reuid=1000 --regid=1000 --clear-groups)
nspid=$(q "${as1000[@]}" sh -c 'unshare --user sleep 600 </dev/null >/dev/null 2>&1 & echo $!')
out=$(inside "${as1000[@]}" transientctl allocate web --userns "/proc/$nspid/ns/user" 2>&1) || true
expect_match "UID 1000: transientctl allocate web --userns /proc/$nspid/ns/user" \
    "Allocated range u1000-web" "$out"
web=$(q transientctl --json show u1000-web | jq -r '.start // empty')
expect_eq "its uid_map is the range" "0 ${web:-?} 65536" "$(q awk '{print $1, $2, $3}' "/proc/$nspid/uid_map")"
expect_eq "its gid_map is the range" "0 ${web:-?} 65536" "$(q awk '{print $1, $2, $3}' "/proc/$nspid/gid_map")"
inside transientctl release u1000-web >/dev/null 2>&1 || true
inside kill "$nspid" >/dev/null 2>&1 || true

section "systemctl restart transient-allocd keeps every range"
before=$(q transientctl --json list)
pid_before=$(q systemctl show -P MainPID transient-allocd.service)
inside systemctl restart transient-allocd.service || true
pid_after=$(q systemctl show -P MainPID transient-allocd.service)
expect_eq "transient-allocd is active again" "active" "$(q systemctl show -P ActiveState transient-allocd.service)"
if [ -n "$pid_after" ] && [ "$pid_after" != 0 ] && [ "$pid_after" != "$pid_before" ]; then
    pass "it is a new process ($pid_before -> $pid_after)"
else
    fail "it is a new process" "MainPID before: $pid_before, after: $pid_after"
fi
after=$(q transientctl --json list)
expect_eq "transientctl list: the same ranges before and after" "$before" "$after"
expect_eq "both ranges are listed" "ct one" \
    "$(printf '%s\n' "$after" | jq -r '[.[].name] | sort | join(" ")' 2>/dev/null)"
expect_eq "the running unit still resolves: ps -o user= shows vu-ct-0" "vu-ct-0" \
    "$(q ps -o user= -p "$(q systemctl show -P MainPID byid.service)" | xargs)"
out=$(inside transientctl allocate ct --size 65536 2>&1) || true
expect_match "allocating ct again is refused: the name is still taken" 'ct|inside use|exists' "$out"

section "reinstall over itself (an upgrade, as dpkg sees it)"
if out=$(inside dpkg -i "/share/$(basename "$DEB")" 2>&1); then pass "dpkg -i over the installed package"; else fail "dpkg -i over the installed package" "$out"; fi
expect_eq "nsswitch.conf still names transient once per line" "1 1" \
    "$(q grep -c '^passwd:.* transient systemd$' /etc/nsswitch.conf) $(q grep -c '^group:.* transient systemd$' /etc/nsswitch.conf)"
expect_eq "the upgrade kept every range" "$after" "$(q transientctl --json list)"
expect_eq "and the running unit still runs as vu-ct-0" "vu-ct-0" \
    "$(q ps -o user= -p "$(q systemctl show -P MainPID byid.service)" | xargs)"

subid_entry_after_install

section "remove and purge"
inside systemctl stop byid.service byname.service >/dev/null 2>&1 || true
if out=$(inside dpkg -r "$PKG" 2>&1); then pass "dpkg -r $PKG"; else fail "dpkg -r $PKG" "$out"; fi
expect_eq "nsswitch.conf is byte for byte what it was before the install" "$nss_before" \
    "$(q sha256sum /etc/nsswitch.conf)"
expect_eq "no unit is loaded any more" "not-found not-found not-found not-found" \
    "$(for u in transient-allocd.socket transient-allocd.service transient-userdbd.socket transient-userdbd.service; do q systemctl show -P LoadState $u; done | xargs)"
expect_eq "no socket file is left" "" \
    "$(q ls /run/transient/io.transient.Allocator /run/systemd/userdb/io.transient.Ranges 2>/dev/null)"
expect_eq "no transient process is left" "" "$(q pgrep -l transient)"
run_as neg2 "User=$BASE" Delegate=yes
expect_eq "User=$BASE fails again with 217/USER" "failed failed 217" "$(unit_state neg2.service)"

if out=$(inside dpkg -i "/share/$(basename "$DEB")" 2>&1); then pass "dpkg -i again"; else fail "dpkg -i again" "$out"; fi
expect_eq "the sockets are enabled and listening again" "enabled enabled active active" \
    "$(q systemctl is-enabled transient-allocd.socket transient-userdbd.socket | xargs) $(q systemctl is-active transient-allocd.socket transient-userdbd.socket | xargs)"
if out=$(inside dpkg --purge "$PKG" 2>&1); then pass "dpkg --purge $PKG"; else fail "dpkg --purge $PKG" "$out"; fi
expect_eq "after purge nsswitch.conf is byte for byte the original" "$nss_before" \
    "$(q sha256sum /etc/nsswitch.conf)"
expect_eq "purge left nothing in /etc/systemd/system, /run/transient, dpkg's database" "" \
    "$(q find /etc/systemd/system /run/transient /var/lib/systemd/deb-systemd-helper-enabled \
         /var/lib/systemd/deb-systemd-helper-masked -name '*transient*' 2>/dev/null)$(q dpkg-query -W "$PKG" 2>/dev/null)"

section "ops: apt install ./deb, journal fields, apt purge leaves nothing behind"
# The packaged units send stderr to the journal ($JOURNAL_STREAM): each event is one entry with
# its fields and message id (allocator/events.hpp), found by the range's name.
if out=$(inside env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            "/share/$(basename "$DEB")" 2>&1); then
    pass "apt-get install ./$(basename "$DEB")"
else
    fail "apt-get install ./$(basename "$DEB")" "$out"
fi
inside transientctl allocate web >/dev/null 2>&1 || true
inside transientctl release web >/dev/null 2>&1 || true
inside transientctl release no-such-range >/dev/null 2>&1 || true
inside journalctl --sync >/dev/null 2>&1 || true
events=$(q journalctl -o json TRANSIENT_RANGE=web |
    jq -c '{id: .MESSAGE_ID, range: .TRANSIENT_RANGE, start: .TRANSIENT_START,
            size: .TRANSIENT_SIZE, owner: .TRANSIENT_OWNER_UID, caller: .TRANSIENT_CALLER_UID,
            prio: .PRIORITY, unit: ._SYSTEMD_UNIT}' | sort -u)
web_start=$(q journalctl -o json TRANSIENT_RANGE=web | jq -r '.TRANSIENT_START' | head -n 1)
expect_match "the allocation has a start in the 64K pool" '^[0-9]+$' "$web_start"
expect_eq "journalctl TRANSIENT_RANGE=web: the allocation and the release, with their fields" \
    "$(printf '%s\n' \
        "{\"id\":\"5d3a0b2f8e6c4f1a9b7d2e4c6a8f0b13\",\"range\":\"web\",\"start\":\"$web_start\",\"size\":\"65536\",\"owner\":\"0\",\"caller\":\"0\",\"prio\":\"6\",\"unit\":\"transient-allocd.service\"}" \
        "{\"id\":\"a41c7e9d03b24f6f8e5a1d2c3b4e5f60\",\"range\":\"web\",\"start\":\"$web_start\",\"size\":\"65536\",\"owner\":\"0\",\"caller\":\"0\",\"prio\":\"6\",\"unit\":\"transient-allocd.service\"}" |
        sort)" "$events"
expect_eq "the refused release is an entry with the refusal's id and reason" \
    "400ac437309d4f26acd5139d66b1683c io.transient.Allocator.NoSuchRange 0" \
    "$(q journalctl -o json TRANSIENT_RANGE=no-such-range |
        jq -r '[.MESSAGE_ID, .TRANSIENT_REASON, .TRANSIENT_CALLER_UID] | join(" ")' | tail -n 1)"
expect_eq "each event is one entry: no plain stderr copy of it" "0" \
    "$(q journalctl -o cat -u transient-allocd.service | grep -c "^Allocated range 'web'" | \
        awk '{print $1 - 1}')"
out=$(inside transientctl status 2>&1) || true
expect_match "transientctl status: daemon reachable, probe and quotas" \
    'Daemon: reachable, transient-allocd .*Probe: file-handle.*Quotas: MaxRangesPerUser=16' \
    "$(echo "$out" | tr '\n' ' ')"

inside systemctl stop byid.service byname.service >/dev/null 2>&1 || true
if out=$(inside env DEBIAN_FRONTEND=noninteractive apt-get purge -y "$PKG" 2>&1); then
    pass "apt-get purge $PKG"
else
    fail "apt-get purge $PKG" "$out"
fi
snapshot >"$SNAP/after"
# What systemd and the journal keep in /run for units the test itself ran (systemd-run, the
# transient services, RootDirectory=) is not the package's; everything else must be as it was.
volatile='^/run/(log|user|udev|systemd/(journal|transient|units|propagate|inaccessible|cgroups-agent|notify|private|io\.system\.ManagedOOM|generator.*|seats|sessions|users|shutdown|incoming|ask-password|inhibit|timesync|system|netif|show-status|unit-root)|credentials|mount|lock|utmp|initctl)(/|$)'
expect_eq "apt purge left no file behind in /etc, /usr, /var/lib/dpkg/info, /run" "" \
    "$(comm -13 "$SNAP/before" "$SNAP/after" | grep -Ev "$volatile" || true)"
expect_eq "and removed none it did not bring" "" \
    "$(comm -23 "$SNAP/before" "$SNAP/after" | grep -Ev "$volatile" || true)"
expect_eq "accounts and subordinate IDs unchanged (no user or group added)" \
    "$(cat "$SNAP/accounts-before")" \
    "$(q sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/subuid /etc/subgid)"
expect_eq "no unit of the package is enabled or loaded" "not-found not-found not-found not-found" \
    "$(for u in transient-allocd.socket transient-allocd.service transient-userdbd.socket transient-userdbd.service; do q systemctl show -P LoadState $u; done | xargs)"
rm -rf "$SNAP"
subid_boot

section "done"
checks_summary package.sh "($((SECONDS - T0)) s)"
