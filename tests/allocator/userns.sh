#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Ranges bound to user namespaces, with real namespaces (unshare -U processes that we kill):
# release within 10 s after the namespace is gone (measured), namespaces kept alive by an fd, a
# bind mount or a nested namespace, an inode reused by a new namespace, bindings across a
# restart and a kill -9 of the allocator, reclaim when the pool runs short, unprivileged
# bindings, bad descriptors; once with each liveness probe (file-handle, scan). Unmapped
# namespaces get their uid_map/gid_map from the allocator (an unprivileged user's one call); a
# mapped one keeps its map; another user's or a nested one is refused.
. "$(dirname "$0")/../integration/lib.sh"

LIMIT_MS=10000
CONF=$IT_FILES/allocd.conf
export TRANSIENT_CONFIG=$CONF
NS_PIDS=()

# ns_start [setpriv args...]: starts a process in a new user namespace; NS_PID is its PID.
ns_start() {
    if [ $# -gt 0 ]; then
        setpriv "$@" unshare -U sleep infinity &
    else
        unshare -U sleep infinity &
    fi
    NS_PID=$!
    NS_PIDS+=("$NS_PID")
    local i
    for i in $(seq 100); do
        [ "$(ns_inode "$NS_PID")" != "$(ns_inode $$)" ] && return 0
        sleep 0.01
    done
    it_fail "unshare -U did not create a namespace"
}
ns_inode() { stat -L -c %i "/proc/$1/ns/user" 2>/dev/null; }
ns_kill() { kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
cleanup_namespaces() { local p; for p in "${NS_PIDS[@]}"; do ns_kill "$p"; done; NS_PIDS=(); }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# id_map PID uid|gid: the map as "inside outside count" lines, blanks squeezed.
id_map() { awk '{print $1, $2, $3}' "/proc/$1/${2}_map"; }

# wait_released NAME [AS...]: until `show NAME` fails; RELEASE_MS is how long that took.
wait_released() {
    local name=$1 t0
    shift
    t0=$(now_ms)
    while "$@" "$CTL" show "$name" >/dev/null 2>&1; do
        (($(now_ms) - t0 > LIMIT_MS + 5000)) && break
        sleep 0.05
    done
    RELEASE_MS=$(($(now_ms) - t0))
}

expect_released_in_time() {  # WHAT NAME [AS...]
    local what=$1
    shift
    wait_released "$@"
    if ((RELEASE_MS <= LIMIT_MS)); then
        it_pass "$what (after $RELEASE_MS ms)"
    else
        it_fail "$what" "still allocated $RELEASE_MS ms after its namespace died"
    fi
}

# expect_kept NAME SECONDS WHY: the range is still there after SECONDS (several sweeps).
expect_kept() {
    sleep "$2"
    it_expect_ok "$1 is kept: $3" "$CTL" show "$1"
}

run_probe() {
    local probe=$1
    printf '[Allocator]\nUserNamespaceProbe=%s\nUserNamespaceCheckSec=2\n' "$probe" >"$CONF"
    it_section "[$probe] start the daemon"
    it_daemon_start
    it_expect_match "[$probe] the daemon uses the $probe probe" "by $probe" "$(cat "$IT_LOG/allocd.log")"

    it_section "[$probe] a range dies with its namespace"
    ns_start
    local p=$NS_PID ino
    ino=$(ns_inode "$p")
    it_expect_ok "allocate web --userns /proc/$p/ns/user" "$CTL" allocate web --userns "/proc/$p/ns/user"
    it_run it_ctl_json show web
    it_expect_eq "show web --json has the namespace inode" "$ino" "$(jq -r .userNamespaceInode <<<"$IT_OUT")"
    it_expect_eq "... and its id (Linux 6.18)" true "$(jq '.userNamespaceId > 0' <<<"$IT_OUT")"
    it_expect_ok "vu-web-0 resolves" getent passwd vu-web-0
    it_expect_ok "an unbound range too" "$CTL" allocate plain
    ns_kill "$p"
    expect_released_in_time "[$probe] web is released after its namespace died" web
    MEASURED+=("$probe: namespace death -> release: $RELEASE_MS ms (UserNamespaceCheckSec=2)")
    it_expect_rc "vu-web-0 no longer resolves" 2 getent passwd vu-web-0
    it_expect_ok "the unbound range stays" "$CTL" show plain
    it_expect_match "the release is in the log" "Released range 'web'.*the namespace is gone" \
        "$(cat "$IT_LOG/allocd.log")"

    it_section "[$probe] a namespace held by an open fd"
    ns_start
    p=$NS_PID
    it_expect_ok "allocate byfd" "$CTL" allocate byfd --userns "/proc/$p/ns/user"
    exec 7<"/proc/$p/ns/user"
    ns_kill "$p"
    expect_kept byfd 5 "fd 7 of the test still refers to the namespace"
    exec 7<&-
    expect_released_in_time "[$probe] byfd is released once the fd is closed" byfd

    it_section "[$probe] a namespace held by a bind mount"
    ns_start
    p=$NS_PID
    touch "$IT_FILES/userns-mount"
    it_expect_ok "allocate bymount" "$CTL" allocate bymount --userns "/proc/$p/ns/user"
    mount --bind "/proc/$p/ns/user" "$IT_FILES/userns-mount"
    ns_kill "$p"
    expect_kept bymount 5 "the bind mount refers to the namespace"
    umount "$IT_FILES/userns-mount"
    expect_released_in_time "[$probe] bymount is released once unmounted" bymount

    it_section "[$probe] a namespace whose nested namespace lives"
    # The outer sleep's namespace is the parent of the inner one's; only the inner one lives on.
    rm -f "$IT_FILES/inner.pid"
    unshare -U --map-root-user sh -c 'unshare -U sleep infinity & echo $! >"$0"; wait' \
        "$IT_FILES/inner.pid" &
    local outer=$!
    NS_PIDS+=("$outer")
    local inner_pid=""
    for _ in $(seq 100); do
        inner_pid=$(cat "$IT_FILES/inner.pid" 2>/dev/null || true)
        [ -n "$inner_pid" ] && [ "$(ns_inode "$inner_pid")" != "$(ns_inode "$outer")" ] && break
        sleep 0.02
    done
    NS_PIDS+=("$inner_pid")
    it_expect_eq "the nested namespace's parent is the outer one" yes \
        "$([ -n "$inner_pid" ] && [ -n "$(ns_inode "$inner_pid")" ] &&
            [ "$(ns_inode "$inner_pid")" != "$(ns_inode "$outer")" ] && echo yes || echo no)"
    it_expect_ok "allocate outer" "$CTL" allocate outer --userns "/proc/$outer/ns/user"
    ns_kill "$outer"
    expect_kept outer 5 "its child namespace is alive"
    kill -KILL "$inner_pid" 2>/dev/null || true
    expect_released_in_time "[$probe] outer is released once the nested one is gone" outer

    reuse_test "$probe"
    it_expect_ok "release plain" "$CTL" release plain
    cleanup_namespaces
    it_daemon_stop
}

# The kernel hands out the lowest free inode number: a namespace created right after one died
# usually gets its inode. The old range must go, the new one must stay.
reuse_test() {
    local probe=$1 old new ino i
    it_section "[$probe] a new namespace that got a dead one's inode"
    ns_start
    old=$NS_PID
    ino=$(ns_inode "$old")
    it_expect_ok "allocate old --userns (inode $ino)" "$CTL" allocate old --userns "/proc/$old/ns/user"
    ns_kill "$old"
    new=""
    for i in $(seq 200); do
        ns_start
        if [ "$(ns_inode "$NS_PID")" = "$ino" ]; then
            new=$NS_PID
            break
        fi
        ns_kill "$NS_PID"
    done
    if [ -z "$new" ]; then
        it_pass "[$probe] inode $ino was not reused within 200 namespaces; reuse not tested"
        # Under load the 200 attempts outlast a sweep, which may have released old already.
        expect_released_in_time "[$probe] old is released once its namespace died" old
        return
    fi
    it_pass "namespace $new got inode $ino after $i attempts"
    it_expect_ok "allocate new --userns on the reused inode" "$CTL" allocate new --userns "/proc/$new/ns/user"
    expect_released_in_time "[$probe] old is released although its inode is alive again" old
    expect_kept new 4 "its namespace is alive"
    ns_kill "$new"
    expect_released_in_time "[$probe] new is released when its own namespace dies" new
}

MEASURED=()
run_probe file-handle
run_probe scan

printf '[Allocator]\nUserNamespaceCheckSec=2\n' >"$CONF"

it_section "bindings survive a restart and a kill -9 of the allocator"
it_daemon_start
ns_start
p1=$NS_PID
ns_start
p2=$NS_PID
it_expect_ok "allocate dies-while-down" "$CTL" allocate dies-while-down --userns "/proc/$p1/ns/user"
it_expect_ok "allocate survives" "$CTL" allocate survives --userns "/proc/$p2/ns/user"
it_daemon_kill9
ns_kill "$p1"
sleep 0.5
it_daemon_start
it_expect_fail "dies-while-down is gone right after the restart (start-up check)" \
    "$CTL" show dies-while-down
it_run it_ctl_json show survives
it_expect_eq "survives keeps its binding across kill -9" "$(ns_inode "$p2")" \
    "$(jq -r .userNamespaceInode <<<"$IT_OUT")"
ns_kill "$p2"
expect_released_in_time "survives is released by the restarted allocator" survives
it_daemon_stop

it_section "reclaiming a dead binding when the pool runs short"
# One 64K range in the pool and a sweep that would come only after an hour.
printf '[Allocator]\nContainerRange=524288-589823\nUserNamespaceCheckSec=3600\n' >"$CONF"
it_daemon_start
ns_start
p=$NS_PID
it_expect_ok "allocate first (fills the pool)" "$CTL" allocate first --userns "/proc/$p/ns/user"
it_expect_fail "second fails while first's namespace lives" "$CTL" allocate second
it_expect_match "... with PoolExhausted" "PoolExhausted" "$IT_ERR"
ns_kill "$p"
sleep 0.3
it_expect_ok "second succeeds once first's namespace is gone (no sweep ran)" "$CTL" allocate second
it_expect_fail "first was reclaimed" "$CTL" show first
it_expect_ok "release second" "$CTL" release second
it_daemon_stop

it_section "unprivileged bindings and bad descriptors"
printf '[Allocator]\nUserNamespaceCheckSec=2\n' >"$CONF"
it_daemon_start
AS_1000=(setpriv --reuid=1000 --regid=1000 --clear-groups)
AS_1001=(setpriv --reuid=1001 --regid=1001 --clear-groups)
ns_start "${AS_1000[@]}"
p=$NS_PID
it_expect_ok "UID 1000 binds a range to its own namespace" \
    "${AS_1000[@]}" "$CTL" allocate mine --userns "/proc/$p/ns/user"
# Another user cannot open /proc/PID/ns/user of UID 1000's process, but could be handed an fd.
exec 8<"/proc/$p/ns/user"
it_expect_fail "UID 1001 may not bind to UID 1000's namespace (an fd it was handed)" \
    "${AS_1001[@]}" "$CTL" allocate theirs --userns /dev/fd/8
it_expect_match "... PermissionDenied" "PermissionDenied" "$IT_ERR"
exec 8<&-
ns_kill "$p"
expect_released_in_time "u1000-mine is released after its namespace died" u1000-mine
ns_start
p=$NS_PID
exec 8<"/proc/$p/ns/user"
it_expect_fail "UID 1000 may not bind to root's namespace (an fd it was handed)" \
    "${AS_1000[@]}" "$CTL" allocate rootns --userns /dev/fd/8
it_expect_match "... PermissionDenied" "PermissionDenied" "$IT_ERR"
exec 8<&-
it_expect_eq "... and the allocator did not map it" "" "$(id_map "$p" uid)"
it_expect_fail "a network namespace is refused" "$CTL" allocate net --userns /proc/self/ns/net
it_expect_match "... NotUserNamespace" "NotUserNamespace" "$IT_ERR"
it_expect_fail "the allocator's own user namespace is refused" "$CTL" allocate own --userns /proc/self/ns/user
it_expect_match "... NotUserNamespace" "NotUserNamespace" "$IT_ERR"
it_expect_fail "a regular file is refused" "$CTL" allocate file --userns /etc/hostname
it_expect_fail "a missing path fails in transientctl" "$CTL" allocate missing --userns /nonexistent
it_expect_eq "nothing was allocated by the failures" "[]" "$(it_ctl_json list | jq -c .)"
cleanup_namespaces
it_daemon_stop

it_section "unmapped namespaces are mapped by the allocator (one call, unprivileged)"
printf '[Allocator]\nUserNamespaceCheckSec=2\n' >"$CONF"
it_daemon_start
mkdir -m 1777 "$IT_FILES/mapped"  # for UID 1000 and the namespaces' root (the range's first IDs)
ns_start "${AS_1000[@]}"
p=$NS_PID
it_expect_eq "a new namespace of UID 1000 has no uid_map" "" "$(id_map "$p" uid)"
it_expect_ok "UID 1000: allocate mapped --userns (one call)" \
    "${AS_1000[@]}" "$CTL" allocate mapped --userns "/proc/$p/ns/user"
B=$(it_range_start u1000-mapped)
it_expect_eq "its uid_map is the range" "0 $B 65536" "$(id_map "$p" uid)"
it_expect_eq "its gid_map is the range" "0 $B 65536" "$(id_map "$p" gid)"
it_expect_eq "setgroups stays allowed" allow "$(cat "/proc/$p/setgroups")"
it_run "${AS_1000[@]}" nsenter --user --target "$p" sh -c 'id -u; id -g'
it_expect_eq "id inside (nsenter as UID 1000) is 0/0" "0 0" "$(tr '\n' ' ' <<<"$IT_OUT" | xargs)"
it_expect_ok "UID 1000 creates a file inside the namespace" \
    "${AS_1000[@]}" nsenter --user --target "$p" touch "$IT_FILES/mapped/file"
it_expect_eq "... owned by the range's first IDs on the host" "$B:$B" \
    "$(stat -c %u:%g "$IT_FILES/mapped/file" 2>&1)"
it_expect_eq "... named vu-u1000-mapped-0" "vu-u1000-mapped-0:vg-u1000-mapped-0" \
    "$(stat -c %U:%G "$IT_FILES/mapped/file" 2>&1)"
it_expect_eq "no zombie left behind by the allocator" "" \
    "$(ps -o stat=,pid= --ppid "$IT_DAEMON_PID" | grep '^Z' || true)"
ns_kill "$p"
expect_released_in_time "u1000-mapped is released after its namespace died" u1000-mapped

ns_start "${AS_1000[@]}"
p=$NS_PID
it_expect_ok "root: allocate single --size 1 --userns" \
    "$CTL" allocate single --size 1 --userns "/proc/$p/ns/user"
it_expect_eq "a single ID maps as 0 B 1" "0 $(it_range_start single) 1" "$(id_map "$p" uid)"
it_expect_ok "release single" "$CTL" release single
ns_kill "$p"

# Mapped by its owner already (--map-root-user: 0 -> 1000): bound, map untouched.
"${AS_1000[@]}" unshare -U --map-root-user sleep infinity &
p=$!
NS_PIDS+=("$p")
for _ in $(seq 100); do [ -n "$(id_map "$p" uid 2>/dev/null)" ] && break; sleep 0.02; done
it_expect_ok "UID 1000: allocate premapped --userns (already mapped)" \
    "${AS_1000[@]}" "$CTL" allocate premapped --userns "/proc/$p/ns/user"
it_expect_eq "its uid_map is unchanged" "0 1000 1" "$(id_map "$p" uid)"
it_expect_eq "its gid_map is unchanged" "0 1000 1" "$(id_map "$p" gid)"
it_run it_ctl_json show u1000-premapped
it_expect_eq "... and the range is bound to it" "$(ns_inode "$p")" \
    "$(jq -r .userNamespaceInode <<<"$IT_OUT")"
ns_kill "$p"
expect_released_in_time "u1000-premapped is released after its namespace died" u1000-premapped

# A grandchild of the allocator's namespace: only its parent may write its map.
"${AS_1000[@]}" unshare -U --map-root-user sh -c 'unshare -U sleep infinity & echo $! >"$0"; wait' \
    "$IT_FILES/mapped/inner.pid" &
outer=$!
NS_PIDS+=("$outer")
inner=""
for _ in $(seq 200); do
    inner=$(cat "$IT_FILES/mapped/inner.pid" 2>/dev/null || true)
    [ -n "$inner" ] && [ -n "$(ns_inode "$inner")" ] &&
        [ "$(ns_inode "$inner")" != "$(ns_inode "$outer")" ] && break
    sleep 0.02
done
NS_PIDS+=("$inner")
it_expect_eq "the nested namespace has no uid_map" "" "$(id_map "$inner" uid 2>&1)"
it_expect_fail "UID 1000: a nested unmapped namespace is refused" \
    "${AS_1000[@]}" "$CTL" allocate nested --userns "/proc/$inner/ns/user"
it_expect_match "... CannotMapUserNamespace, saying why" \
    "(parent|nested).*CannotMapUserNamespace" "$IT_ERR"
it_expect_eq "... and its uid_map stays empty" "" "$(id_map "$inner" uid 2>&1)"
it_expect_eq "nothing was allocated by the refusals" "[]" "$(it_ctl_json list | jq -c .)"
cleanup_namespaces

# What mapping adds to a call: 20 allocations bound to unmapped namespaces against 20 bound to
# already mapped ones, in the same run (figures only, no bound: the machine is shared).
# time_allocations KIND unshare-args...: TOTAL_MS of 20 allocate --userns calls.
time_allocations() {
    local kind=$1 i t0 p
    shift
    TOTAL_MS=0
    for i in $(seq 20); do
        unshare -U "$@" sleep infinity </dev/null >/dev/null 2>&1 &
        p=$!
        NS_PIDS+=("$p")
        while [ "$(ns_inode "$p")" = "$(ns_inode $$)" ]; do sleep 0.01; done
        [ $# -eq 0 ] || while [ -z "$(id_map "$p" uid)" ]; do sleep 0.01; done
        t0=$(date +%s%N)
        "$CTL" allocate "$kind$i" --size 1 --userns "/proc/$p/ns/user" >/dev/null
        TOTAL_MS=$((TOTAL_MS + ($(date +%s%N) - t0) / 1000))
        "$CTL" release "$kind$i"
    done
    TOTAL_MS=$((TOTAL_MS / 1000))
}
time_allocations premapped --map-root-user
plain_ms=$TOTAL_MS
time_allocations unmapped
mapped_ms=$TOTAL_MS
it_expect_eq "the 20 namespaces were mapped" 20 \
    "$(grep -c "Mapped user namespace .* to range 'unmapped" "$IT_LOG/allocd.log")"
MEASURED+=("20 allocate --userns calls: $mapped_ms ms mapping the namespace, $plain_ms ms binding\
 an already mapped one (ratio $(awk -v a="$mapped_ms" -v b="$plain_ms" 'BEGIN{printf "%.2f", a/(b?b:1)}'), load $(cut -d' ' -f1 /proc/loadavg))")
cleanup_namespaces
it_daemon_stop

it_section "measured"
printf '%s\n' "${MEASURED[@]}"
it_finish
