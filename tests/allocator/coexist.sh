#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Coexistence with the other sources of truth and systemd's allocators, with planted conflicts:
# users and groups in a private copy of /etc/passwd and /etc/group, /etc/subuid and
# /etc/subgid lines (private copies bind-mounted over the originals, inside the sandbox's mount
# namespace only), lock files held as nspawn and DynamicUser= hold them, nsresourced registry
# entries and its registry lock (in the sandbox's private /run); and the order of locking and
# publishing seen from a competitor that waits for lckpwdf()'s lock.
. "$(dirname "$0")/../integration/lib.sh"

RUN=/run/systemd
HOLDERS=()

# hold_flock FILE: a process holding flock(LOCK_EX) on FILE (nspawn's and PID 1's lock kind)
# until killed; HOLDER is its PID.
hold_flock() {
    mkdir -p "$(dirname "$1")"
    (exec 9>>"$1" && flock -x 9 && exec sleep infinity) &
    HOLDER=$!
    HOLDERS+=("$HOLDER")
    local i
    for i in $(seq 100); do
        flock -n -x "$1" true 2>/dev/null || return 0
        sleep 0.01
    done
    it_fail "could not hold $1"
}
# hold_like_nspawn FILE: a process holding FILE with systemd's own make_lock_file() (from
# libsystemd-shared, as systemd-nspawn --private-users=pick does: an OFD lock) until killed.
hold_like_nspawn() {
    mkdir -p "$(dirname "$1")"
    python3 -c '
import ctypes, glob, signal, sys
lib = ctypes.CDLL(sorted(glob.glob("/usr/lib/*/systemd/libsystemd-shared-*.so"))[0])
lock_file = ctypes.create_string_buffer(64)  # struct LockFile, with room to spare
if lib.make_lock_file(sys.argv[1].encode(), 2 | 4, lock_file) != 0:  # LOCK_EX | LOCK_NB
    sys.exit(1)
signal.pause()' "$1" &
    HOLDER=$!
    HOLDERS+=("$HOLDER")
    local i
    for i in $(seq 200); do
        grep -q "OFDLCK.*:$(stat -c %i "$1" 2>/dev/null) " /proc/locks 2>/dev/null && return 0
        sleep 0.01
    done
    it_fail "could not hold $1 with make_lock_file()"
}
unhold() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
cleanup_holders() { local p; for p in "${HOLDERS[@]}"; do unhold "$p"; done; HOLDERS=(); }

# plant FILE LINE...: FILE (in /etc) is replaced, in this mount namespace only, by a private
# copy with LINEs appended.
plant() {
    local file=$1 copy
    shift
    copy=$IT_FILES/$(basename "$file")
    [ -f "$copy" ] || { cp "$file" "$copy"; mount --bind "$copy" "$file"; }
    printf '%s\n' "$@" >>"$copy"
}

B=524288
base() { echo $((B + $1 * 65536)); }
PWD_LOCK_BEFORE=$(stat -c '%s %Y %i' /etc/.pwd.lock)

it_section "plant a conflict for each of the first seven 64K candidates"
mkdir -p "$RUN"
plant /etc/passwd "planted-end:x:$(($(base 0) + 0xFFFE)):100::/:/usr/sbin/nologin" \
    "vu-taken-0:x:70000:70000::/:/usr/sbin/nologin" \
    "planted-one:x:61186:61186::/:/usr/sbin/nologin"
plant /etc/group "planted-base:x:$(base 1):" "vg-gtaken-0:x:70001:"
plant /etc/subuid "tester:$(($(base 2) + 100)):10"
plant /etc/subgid "tester:$(($(base 3) + 65535)):1"
hold_like_nspawn "$RUN/nspawn-uid/$(base 4)"
NSPAWN_HOLDER=$HOLDER
mkdir -p "$RUN/nsresource/registry"
echo '{}' >"$RUN/nsresource/registry/u$(base 5).userns"
echo '{}' >"$RUN/nsresource/registry/g$(base 6).delegate"
it_expect_eq "planted: UID base0+0xFFFE has a user" planted-end "$(getent passwd $(($(base 0) + 0xFFFE)) | cut -d: -f1)"
it_expect_eq "planted: GID base1 has a group" planted-base "$(getent group "$(base 1)" | cut -d: -f1)"

it_section "the allocator skips every one of them"
it_daemon_start
it_run it_ctl_json allocate first
it_expect_eq "the first range is the 8th candidate" "$(base 7)" "$(jq -r .start <<<"$IT_OUT")"
it_expect_eq "no lock file of ours is left behind" "$(base 4)" "$(ls "$RUN/nspawn-uid")"
unhold "$NSPAWN_HOLDER"
rm -f "$RUN/nspawn-uid/$(base 4)"
it_run it_ctl_json allocate second
it_expect_eq "once nspawn lets go of its range, it is free" "$(base 4)" "$(jq -r .start <<<"$IT_OUT")"
rm "$RUN/nsresource/registry/u$(base 5).userns"
it_run it_ctl_json allocate third
it_expect_eq "once nsresourced's entry is gone, its range is free" "$(base 5)" "$(jq -r .start <<<"$IT_OUT")"

it_section "single UIDs"
hold_flock "$RUN/dynamic-uid/61184"
it_run it_ctl_json allocate one --size 1
it_expect_eq "a UID DynamicUser= holds is skipped" 61185 "$(jq -r .start <<<"$IT_OUT")"
it_run it_ctl_json allocate two --size 1
it_expect_eq "a UID in /etc/passwd is skipped" 61187 "$(jq -r .start <<<"$IT_OUT")"
it_expect_eq "no dynamic-uid lock file of ours is left behind" 61184 "$(ls "$RUN/dynamic-uid")"
cleanup_holders

it_section "names whose records already resolve elsewhere"
it_expect_fail "vu-taken-0 exists in /etc/passwd" "$CTL" allocate taken
it_expect_match "... NameInUse" "NameInUse" "$IT_ERR"
it_expect_fail "vg-gtaken-0 exists in /etc/group" "$CTL" allocate gtaken --size 1
it_expect_match "... NameInUse" "NameInUse" "$IT_ERR"

it_section "waiting for nsresourced's registry lock"
hold_flock "$RUN/nsresource/registry/lock"
it_run timeout 20 "$CTL" allocate blocked
it_expect_eq "while nsresourced holds its lock for long, allocation fails" 1 "$IT_RC"
it_expect_match "... and the log says why" "Failed to lock $RUN/nsresource/registry/lock" \
    "$(cat "$IT_LOG/allocd.log")"
t0=$(date +%s%N)
(sleep 1; kill "$HOLDER") &
it_expect_ok "an allocation waits for a short hold" "$CTL" allocate waited
waited_ms=$((($(date +%s%N) - t0) / 1000000))
it_expect_eq "... about a second" yes "$( ((waited_ms >= 800 && waited_ms < 5000)) && echo yes || echo "no ($waited_ms ms)")"
cleanup_holders

it_section "no lock is held while the allocator waits for another"
# The allocator never waits with /etc/.pwd.lock held: while nsresourced's registry lock is held,
# a deferred allocation retries from a timer, and lckpwdf() callers go on meanwhile. (That the
# range is published before the locks are let go is allocator_test's
# ReleasesTheChoiceLocksOnlyAfterPublishing.)
hold_flock "$RUN/nsresource/registry/lock"
"$CTL" allocate race >"$IT_FILES/race.out" 2>&1 &
ALLOC=$!
sleep 0.5
it_expect_ok "lckpwdf()'s lock is free while the allocation waits" python3 -c \
    'import fcntl, os; fcntl.lockf(os.open("/etc/.pwd.lock", os.O_WRONLY), fcntl.LOCK_EX | fcntl.LOCK_NB)'
it_expect_ok "... and the allocator serves others meanwhile" timeout 2 "$CTL" list
kill "$HOLDER"
wait "$ALLOC"
it_expect_ok "the allocation went through" "$CTL" show race
cleanup_holders

it_section "the host's /etc/.pwd.lock was only locked, never changed"
it_expect_eq "size, mtime and inode of /etc/.pwd.lock" "$PWD_LOCK_BEFORE" "$(stat -c '%s %Y %i' /etc/.pwd.lock)"
it_daemon_stop
it_finish
