#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# minbase-check.sh - runs the README's Quick start on a fresh, minimal Debian 12: the root file
# system `debootstrap --variant=minbase bookworm` makes (what a CI container or a minimal VM image
# is), entered with pivot_root in private mount and PID namespaces (not chroot: the kernel
# refuses user namespaces in a chroot, and the tests need them), with its own proc, sysfs,
# cgroup2, a tmpfs /run and the host's /dev. It clones the repository in (committed state only,
# like any user), then runs ./scripts/demo.sh and ./scripts/test.sh there as root, and prints
# how long each step took. Nothing of it reaches the host but the directory it works in.
# Not run by CI: it downloads and builds everything from scratch (the better part of an hour).
#
# Usage: scripts/minbase-check.sh [--work DIR] [--base DIR] [--mirror URL] [--keep]
#                                 [--env VAR=VALUE]... [--only demo|test]
#   --work DIR     where the root file system and the logs go (default: a new /var/tmp dir)
#   --base DIR     keep a pristine minbase in DIR and copy it instead of running debootstrap
#                  again (made there on first use)
#   --mirror URL   the Debian mirror (default: the first bookworm one in /etc/apt/sources.list*)
#   --keep         keep the root file system afterwards (default: only the logs are kept)
#   --env VAR=VAL  passed to the Quick start commands (e.g. TRANSIENT_TEST_TSAN=0, JOBS=2)
#   --only demo|test   run only one of the two commands
# Exit status: 0 when both commands succeeded. Needs root.
set -euo pipefail
# All of it in one compound command, read before it runs: bash reads a script as it goes, and a
# run takes long enough for a checkout to change the file under it.
{
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=$ROOT/scripts/minbase-check.sh

# ---- inside: PID 1 of the new namespaces, until it execs the commands in the new root ----
if [ "${1:-}" = __inner ]; then
    new=$2; shift 2
    mount --make-rprivate /
    mount --bind "$new" "$new"           # pivot_root wants a mount point
    mount -t proc -o nosuid,nodev,noexec proc "$new/proc"
    mount -t sysfs -o nosuid,nodev,noexec sysfs "$new/sys"
    # The host's whole cgroup2 hierarchy, as on a pure-v2 system (the system test's container
    # makes its cgroup below ours).
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$new/sys/fs/cgroup"
    mount --rbind /dev "$new/dev"
    mount -t tmpfs -o mode=0755,nosuid,nodev minbase-run "$new/run"
    mkdir -p "$new/run/lock"
    cd "$new"
    mkdir -p .oldroot
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    rmdir /.oldroot
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb "$@"
fi

die() { echo "minbase-check.sh: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Exit status/p' "$SELF" | sed 's/^# \{0,1\}//'; }

work="" base="" mirror="" keep=0 only="" envs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --work) work=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --mirror) mirror=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --env) envs+=("$2"); shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, mount and PID namespaces)"
case "$only" in ""|demo|test) ;; *) die "--only demo or --only test" ;; esac

# The mirror apt uses here: one-line "deb URL bookworm main" or deb822 "URIs:" with bookworm.
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
             awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
             awk 'BEGIN { RS = ""; FS = "\n" }
                  /Suites:[^\n]*bookworm([ \n]|$)/ && !/debian-security/ {
                      for (i = 1; i <= NF; i++)
                          if ($i ~ /^URIs:/) { split($i, u, " "); print u[2]; exit }
                  }' || true)
fi
[ -n "$mirror" ] || die "no bookworm mirror in /etc/apt/sources.list*; give --mirror URL"
security=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
               /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^[[:space:]]*#' |
           grep -oE 'https?://[^ ]*debian-security[^ ]*' | head -n 1 || true)

work=${work:-$(mktemp -d /var/tmp/transient-minbase.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
rootfs=$work/rootfs
logs=$work/logs
mkdir -p "$logs"
declare -a summary=()
t_all=$SECONDS
# step NAME LOG CMD...: runs CMD with its output in LOG, records how long it took.
step() {
    local name=$1 log=$2 t0=$SECONDS rc=0
    shift 2
    echo "== $name (log: $log)"
    "$@" >"$log" 2>&1 || rc=$?
    summary+=("$(printf '%-32s %5d s  %s' "$name" $((SECONDS - t0)) \
                "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
    if [ $rc -ne 0 ]; then
        tail -n 40 "$log" | sed 's/^/    /'
    fi
    return $rc
}
report() {
    echo
    echo "== minbase-check summary ($work)"
    printf '%s\n' "${summary[@]}"
    printf '%-32s %5d s\n' total $((SECONDS - t_all))
}
cleanup() {
    if [ $keep = 0 ] && [ -d "$rootfs" ]; then rm -rf "$rootfs"; fi
}
trap 'report; cleanup' EXIT

command -v debootstrap >/dev/null ||
    step "apt-get install debootstrap" "$logs/debootstrap-install.log" \
        apt-get install -y --no-install-recommends debootstrap </dev/null
command -v git >/dev/null || die "git is needed on the host to clone the repository"

rm -rf "$rootfs"
if [ -n "$base" ] && [ -f "$base/etc/debian_version" ]; then
    step "copy the minbase from $base" "$logs/copy.log" cp -a "$base" "$rootfs"
else
    target=${base:-$rootfs}
    rm -rf "$target"
    step "debootstrap minbase ($mirror)" "$logs/debootstrap.log" \
        debootstrap --variant=minbase bookworm "$target" "$mirror" ||
        die "debootstrap failed: see $logs/debootstrap.log"
    [ -z "$base" ] || step "copy the minbase from $base" "$logs/copy.log" cp -a "$base" "$rootfs"
fi

# What a machine has besides the base system: name resolution and the updates apt sees here.
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
{
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    [ -z "$security" ] || echo "deb $security bookworm-security main"
} >"$rootfs/etc/apt/sources.list"
git clone --quiet "$ROOT" "$rootfs/root/transient"
echo "cloned $(git -C "$rootfs/root/transient" log --oneline -1)"

# in_minbase CMD...: runs CMD as root in the minbase, in /root/transient.
in_minbase() {
    unshare --mount --propagation private --pid --fork --kill-child \
        "$SELF" __inner "$rootfs" env "${envs[@]}" bash -c 'cd /root/transient && exec "$@"' \
        minbase "$@" </dev/null
}

rc=0
if [ "$only" != test ]; then
    step "./scripts/demo.sh" "$logs/demo.log" in_minbase ./scripts/demo.sh || rc=1
fi
if [ "$only" != demo ]; then
    step "./scripts/test.sh" "$logs/test.log" in_minbase ./scripts/test.sh || rc=1
    grep -E '^[0-9]+% tests passed|^The following tests|^[[:space:]]+[0-9]+ - ' \
        "$logs/test.log" || true
fi
exit $rc
}
