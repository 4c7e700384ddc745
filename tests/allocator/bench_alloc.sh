#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Allocation at scale (README "Benchmark"): starts transient-allocd in the sandbox and runs
# bench_alloc.py against it: AllocateRange and ReleaseRange rates per band of 1,000 live 64K
# ranges, up to 28,000 (the container pool holds 28,664). With the table full it also times
# ListRanges through `transientctl list`, `getent passwd` enumeration, and the daemon's RSS.
#
#   scripts/sandbox.sh --build build -- tests/allocator/bench_alloc.sh [--smoke] [ARGS...]
#
# --smoke (CI, label bench): 6,000 ranges in bands of 1,000, and only a loose check on ratios
# (never a rate): allocation and release with 5,000-6,000 live ranges at least 0.5× their rate
# with 1,000-2,000, as shares of the round-trip floor measured just before each, medians of
# interleaved repetitions (the old code, rewriting and re-sorting
# the whole table on every change, fell to 0.19× by 6,000 ranges; this one stays near 1×), and
# the same for 100 single IDs at each level.
# Other ARGS go to bench_alloc.py (--ranges N, --band N, --window N, --reps N, --chunk N,
# --min-ratio R, --singles N: also N single IDs allocated and released at each level).
. "$(dirname "$0")/../integration/lib.sh"

if [ "${1:-}" = __at_full ]; then
    # Called by bench_alloc.py with the table full. Times in seconds, RSS in KiB.
    # The list's parts: ListRanges alone (the daemon and the transfer, read by Python without
    # parsing), `list --json` (no table), and the table.
    t0=$(date +%s.%N)
    n=$("$CTL" list | wc -l)
    t1=$(date +%s.%N)
    e=$(getent passwd | grep -c '^vu-')
    t2=$(date +%s.%N)
    "$CTL" list --json >/dev/null
    t3=$(date +%s.%N)
    /usr/bin/python3 "$(dirname "$0")/bench_alloc.py" "$IT_SOCKET" --list-only
    t4=$(date +%s.%N)
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$BENCH_ALLOCD_PID/status")
    table=$(stat -c %s "$IT_RUNTIME/ranges.table")
    calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }  # bc is not among scripts/deps.sh's packages
    list=$(calc "$t1 - $t0") getent=$(calc "$t2 - $t1")
    ratio=$(calc "$list / $getent")
    printf 'full table: transientctl list %s lines in %.3f s; getent passwd %s vu- users in %.3f s (list: %s×); list --json %.3f s; ListRanges alone %.3f s; allocd RSS %s KiB; table file %s bytes\n' \
        "$n" "$list" "$e" "$getent" "$ratio" "$(calc "$t3 - $t2")" \
        "$(calc "$t4 - $t3")" "$rss" "$table"
    if [ -n "${BENCH_MAX_LIST_RATIO:-}" ] &&
        awk -v r="$ratio" -v max="$BENCH_MAX_LIST_RATIO" 'BEGIN { exit !(r > max) }'; then
        echo "FAIL: transientctl list took $ratio× the time of getent passwd, above $BENCH_MAX_LIST_RATIO×" >&2
        exit 1
    fi
    exit 0
fi

args=()
if [ "${1:-}" = --smoke ]; then
    shift
    args=(--ranges 6000 --band 1000 --min-ratio 0.5 --singles 100)
    # transientctl list / getent passwd, loosely: a JSON tree per range on both sides of
    # ListRanges made it 22× and more, reading and writing the text directly about 4-16×.
    export BENCH_MAX_LIST_RATIO=${BENCH_MAX_LIST_RATIO:-30}
fi

it_section "transient-allocd with an empty table"
it_daemon_start 30
export BENCH_ALLOCD_PID=$IT_DAEMON_PID
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
it_run /usr/bin/python3 "$(dirname "$0")/bench_alloc.py" "$IT_SOCKET" \
    --at-full "$0 __at_full" "${args[@]}" "$@"
echo "$IT_OUT"
[ -z "$IT_ERR" ] || echo "$IT_ERR" >&2
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
it_expect_eq "bench_alloc.py exit status" 0 "$IT_RC"
it_daemon_stop
it_finish
