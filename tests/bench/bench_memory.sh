#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Memory (README "Benchmark", issue 11 §5): the range table file's size, transient-allocd's and
# transient-userdbd's memory idle, with 1,000 live 64K ranges and with a full container pool
# (28,000), and what the NSS module adds to a process that resolves names. Runs in the sandbox:
#
#   scripts/sandbox.sh --build build -- tests/bench/bench_memory.sh --userdbd PATH [--smoke]
#
# Figures are KiB from /proc/PID/smaps_rollup: Rss (resident), Pss (resident, shared pages
# divided among the processes mapping them: the table is mapped by both daemons) and Private
# (Private_Clean + Private_Dirty: what the process alone costs). The daemons are measured after
# serving a lookup and an enumeration (userdbd maps the table at its first request).
#
# --smoke (CI, label bench): the same steps, and loose bounds so that a regression fails: each
# daemon's Rss with a full pool below 3 table sizes + 24 MiB, its private memory below
# 1 table size + 24 MiB, and the module's private memory in a process below 1 MiB.
. "$(dirname "$0")/../integration/lib.sh"

smoke=0 userdbd="" full=28000
while [ $# -gt 0 ]; do
    case $1 in
    --smoke) smoke=1 ;;
    --userdbd) userdbd=$2; shift ;;
    --ranges) full=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$userdbd" ] ||
    { echo "--userdbd PATH (the built transient-userdbd) is required" >&2; exit 2; }
it_require python3 getent jq

# mem PID: "Rss Pss Private" in KiB.
mem() {
    awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } /^Private_(Clean|Dirty):/ { v += $2 }
         END { print r, p, v }' "/proc/$1/smaps_rollup"
}

# Makes both daemons touch what serving costs them: a lookup and an enumeration each.
exercise() {
    "$CTL" list >/dev/null
    getent passwd vu-bench-0-0 >/dev/null 2>&1 || true
    "${IT_RAW[@]}" call "$IT_USERDB_SOCKET" io.systemd.UserDatabase.GetUserRecord \
        '{"service":"io.transient.Ranges"}' --more --timeout 60 >/dev/null 2>&1 || true
    "${IT_RAW[@]}" call "$IT_USERDB_SOCKET" io.systemd.UserDatabase.GetUserRecord \
        '{"service":"io.transient.Ranges","uid":'"$1"'}' --timeout 10 >/dev/null 2>&1 || true
}

declare -A rows
row() {  # row LABEL: both daemons' figures
    exercise "$2"
    rows[$1]="$(mem "$IT_DAEMON_PID") $(mem "$IT_USERDBD_PID")"
    printf '%-14s allocd Rss/Pss/Private %s KiB   userdbd Rss/Pss/Private %s KiB\n' "$1" \
        "$(mem "$IT_DAEMON_PID" | tr ' ' /)" "$(mem "$IT_USERDBD_PID" | tr ' ' /)"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
it_section "the daemons"
it_daemon_start 30
it_userdbd_start "$userdbd"
table=$IT_RUNTIME/ranges.table
read -r bytes blocks < <(stat -c '%s %b' "$table")
capacity=$(it_ctl_json status | jq -er '.table.capacity')
echo "table file: $bytes bytes ($((blocks * 512)) allocated), capacity $capacity entries," \
    "$(awk -v b="$bytes" -v c="$capacity" 'BEGIN { printf "%.1f", b / c }') bytes per entry"
row idle 0
it_allocate_bench 0 1000
row "1000 ranges" "$(it_range_start bench-999)"
it_allocate_bench 1000 "$full"
start=$(it_range_start "bench-$((full - 1))")
row "$full ranges" "$start"

it_section "the NSS module in a process ($full ranges; 2,000 lookups of distinct UIDs)"
# Python's pwd module calls getpwuid_r(). The baseline is taken after as many lookups answered
# by nss_files (root), so glibc's NSS state and Python's own allocations are warm; the module is
# loaded at the first UID files does not know.
# The first UID of every range (getent enumerates one user per range).
getent passwd | awk -F: '/^vu-bench-/ { print $3 }' >"$IT_FILES/starts"
module=$(python3 -B - "$IT_FILES/starts" <<'EOF'
import pwd, random, sys
def rollup():
    r = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                r[k] = int(v.split()[0])
    return r["Rss"], r["Pss"], r["Private_Clean"] + r["Private_Dirty"]
starts = [int(x) for x in open(sys.argv[1])]
rng = random.Random(5)
uids = [rng.choice(starts) + rng.randrange(65536) for _ in range(2000)]
for _ in uids:
    pwd.getpwuid(0)
before = rollup()
found = sum(1 for u in uids if pwd.getpwuid(u).pw_name.startswith("vu-bench-"))
after = rollup()
print(found, *(a - b for a, b in zip(after, before)))
EOF
)
read -r found m_rss m_pss m_private <<<"$module"
echo "module: $found of 2000 UIDs resolved;" \
    "Rss +$m_rss KiB, Pss +$m_pss KiB, Private +$m_private KiB"
it_expect_eq "the module resolves every UID looked up" 2000 "$found"
if [ $smoke = 1 ]; then
    it_section "bounds (--smoke)"
    table_kib=$((bytes / 1024))
    read -r a_rss _ a_private u_rss _ u_private <<<"${rows["$full ranges"]}"
    check_below() {  # WHAT VALUE LIMIT
        if [ "$2" -le "$3" ]; then it_pass "$1: $2 KiB <= $3 KiB"
        else it_fail "$1" "$2 KiB, above the bound of $3 KiB"; fi
    }
    check_below "transient-allocd Rss, full pool" "$a_rss" $((3 * table_kib + 24576))
    check_below "transient-allocd private memory, full pool" "$a_private" $((table_kib + 24576))
    check_below "transient-userdbd Rss, full pool" "$u_rss" $((3 * table_kib + 24576))
    check_below "transient-userdbd private memory, full pool" "$u_private" $((table_kib + 24576))
    check_below "the NSS module's private memory in a process" "$m_private" 1024
fi
it_daemon_stop
kill -TERM "$IT_USERDBD_PID" 2>/dev/null || true
wait "$IT_USERDBD_PID" 2>/dev/null || true
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
it_finish
