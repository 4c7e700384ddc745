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
hold_flock "$RUN/nspawn-uid/$(base 4)"
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

it_section "published before the passwd lock is let go"
# The registry lock holds the allocator up in the middle of its choice, with /etc/.pwd.lock
# taken. A competitor waits for /etc/.pwd.lock as lckpwdf() would, and looks the new range's
# user up the moment it gets the lock: it must resolve already.
hold_flock "$RUN/nsresource/registry/lock"
"$CTL" allocate race >"$IT_FILES/race.out" 2>&1 &
ALLOC=$!
sleep 0.3
python3 - >"$IT_FILES/competitor.out" 2>&1 <<'EOF' &
import fcntl, os, subprocess, time
fd = os.open("/etc/.pwd.lock", os.O_WRONLY)  # like lckpwdf(), without creating or truncating
t0 = time.monotonic()
fcntl.lockf(fd, fcntl.LOCK_EX)
waited = time.monotonic() - t0
found = subprocess.run(["getent", "passwd", "vu-race-0"], capture_output=True).returncode == 0
print(f"waited={waited:.2f} found={found}")
EOF
COMPETITOR=$!
sleep 1.5
kill "$HOLDER"
wait "$ALLOC"
wait "$COMPETITOR"
it_expect_ok "the allocation went through" "$CTL" show race
out=$(cat "$IT_FILES/competitor.out")
it_expect_match "the competitor had to wait for the allocator" "waited=(0\.[3-9]|[1-9])" "$out"
it_expect_match "... and then found the range published" "found=True" "$out"
cleanup_holders

it_section "the host's /etc/.pwd.lock was only locked, never changed"
it_expect_eq "size, mtime and inode of /etc/.pwd.lock" "$PWD_LOCK_BEFORE" "$(stat -c '%s %Y %i' /etc/.pwd.lock)"
it_daemon_stop
it_finish
