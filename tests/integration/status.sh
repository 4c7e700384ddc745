#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# transientctl status against the real daemon: before it runs (exit 3, "unreachable", no table),
# with ranges allocated (exit 0; version, table, pool fill, probe, quotas, the sandbox's
# nsswitch.conf lines; the same in --json), a table it cannot read while the daemon answers (exit
# 1, saying why), after it stopped (exit 3, the table still read), and a table of an unknown
# version (a line saying so).
. "$(dirname "$0")/lib.sh"

it_section "no daemon, no table"
it_run "$CTL" status
echo "$IT_OUT"
it_expect_eq "status exits 3 when the daemon is unreachable" 3 "$IT_RC"
it_expect_match "it says the daemon is unreachable" 'Daemon: unreachable: cannot connect to ' "$IT_OUT"
it_expect_match "and that there is no table, and why that may be" \
    'Table error: no table \(No such file or directory\): the allocator has not run since boot' \
    "$IT_OUT"
it_expect_match "the sandbox's nsswitch.conf has transient on passwd and group" \
    'nsswitch.conf: passwd: transient, group: transient, subid: ' "$IT_OUT"

it_section "daemon running, two ranges"
it_daemon_start
it_expect_ok "allocate web" "$CTL" allocate web
it_expect_ok "allocate one --size 1" "$CTL" allocate one --size 1
it_run "$CTL" status
echo "$IT_OUT"
it_expect_eq "status exits 0" 0 "$IT_RC"
it_expect_match "the daemon's version is transient-allocd --version's" \
    "Daemon: reachable, transient-allocd $("$ALLOCD" --version | awk '{print $2; exit}')" "$IT_OUT"
it_expect_match "the table is the runtime dir's" "Table: $IT_RUNTIME/ranges.table" "$IT_OUT"
it_expect_match "two entries used" ' bytes, 2 of [0-9]+ entries used' "$IT_OUT"
it_expect_match "one block of the 64K pool is used" \
    '64K pool: 524288…1879048191: 1 of 28664 blocks used \(0\.0%\)$' "$(grep '64K pool' <<<"$IT_OUT")"
it_expect_match "one UID of the single-UID pool is used" \
    'Single-UID pool: 61184…65519: 1 of 4336 UIDs used' "$IT_OUT"
it_expect_match "the probe is named" 'Probe: (file-handle|scan)$' "$(grep 'Probe:' <<<"$IT_OUT")"
it_expect_match "the quotas are allocd.conf's defaults" \
    'Quotas: MaxRangesPerUser=16, MaxRangeSize=8388608' "$IT_OUT"
it_run it_ctl_json status
it_expect_eq "status --json: reachable, 2 ranges, 1 block, 1 single UID, no import" \
    "true 2 1 1 0" \
    "$(jq -r '"\(.daemon.reachable) \(.table.ranges) \(.pools.container.used) \(.pools.single.used) \(.pools.imported.ranges)"' <<<"$IT_OUT" 2>&1)"
it_expect_eq "status --json: nsswitch.conf" "true true" \
    "$(jq -r '"\(.nsswitch.passwd) \(.nsswitch.group)"' <<<"$IT_OUT" 2>&1)"
gen1=$(jq -r .table.generation <<<"$IT_OUT")
it_expect_ok "release one" "$CTL" release one
it_run it_ctl_json status
it_expect_eq "a release moves the table's generation on" yes \
    "$( (($(jq -r .table.generation <<<"$IT_OUT") > gen1)) && echo yes || echo "no ($gen1)")"

it_section "a table the caller cannot read"
chmod 0600 "$IT_RUNTIME/ranges.table"
it_run it_as_user 65534 "$CTL" status
chmod 0644 "$IT_RUNTIME/ranges.table"
echo "$IT_OUT"
it_expect_eq "status exits 1: the daemon answers, but the table is unreadable" 1 "$IT_RC"
it_expect_match "it says the table cannot be read, and what it should be" \
    'Table error: cannot read it \(Permission denied\): .*0644' "$IT_OUT"

it_section "daemon stopped"
it_daemon_stop
it_run "$CTL" status
echo "$IT_OUT"
it_expect_eq "status exits 3 again" 3 "$IT_RC"
it_expect_match "it says the daemon is unreachable" 'Daemon: unreachable' "$IT_OUT"
it_expect_match "and still reads the table" ' bytes, 1 of [0-9]+ entries used' "$IT_OUT"
it_expect_match "the quotas are unknown" 'Quotas: unknown \(the daemon is unreachable\)' "$IT_OUT"

it_section "a table of another version"
other=$TRANSIENT_SANDBOX/other-version
mkdir -p "$other"
cp "$IT_RUNTIME/ranges.table" "$other/"
# The version is the low 32 bits of the header's third word (shm/layout.hpp): 99, little-endian.
printf '\x63\x00\x00\x00' | dd of="$other/ranges.table" bs=1 seek=16 conv=notrunc status=none
it_run env TRANSIENT_RUNTIME_DIR="$other" "$CTL" status
echo "$IT_OUT"
it_expect_eq "status exits 3 (no daemon there)" 3 "$IT_RC"
it_expect_match "it says the table is of a version it cannot read" \
    'Table error: a table version this transientctl cannot read \(Protocol not supported\)' \
    "$IT_OUT"

it_finish
