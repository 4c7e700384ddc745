#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# container.sh - boots the host's own systemd as PID 1 of a throw-away container, for the system
# tests: new PID, mount, UTS, IPC, network and cgroup namespaces; "/" is an overlay of the host's
# root with a tmpfs upper layer, so every write inside (dpkg -i, /etc/nsswitch.conf, units) lands
# in RAM and is gone when the container stops. No systemd-nspawn and no systemd on the host needed.
#
# Usage:
#   container.sh start NAME [--share DIR] [--timeout S] [--setup FILE]   boot; returns once
#                                                         the system is up
#   container.sh exec  NAME [--] CMD [ARG...]             run CMD inside (all namespaces, root)
#   container.sh stop  NAME                               power off and clean up; idempotent
#   container.sh run   NAME [--share DIR] -- CMD [ARG...] start, exec CMD, stop (CMD's status)
#
#   --share DIR   bind DIR read-only at /share and at its own path inside (e.g. the .deb's dir)
#   --timeout S   how long to wait for "systemctl is-system-running" (default 30)
#   --watch PID   stop the container as soon as process PID is gone, even if PID was killed
#                 before it could call stop (e.g. by a test runner's timeout)
#   --setup FILE  run the bash script FILE as root, chrooted into the container's "/" (with
#                 /proc, /run, /tmp, /dev and /share mounted), before its systemd starts: what an
#                 image build does (dpkg -i without a running systemd), so that the first boot
#                 is a boot of that image. A failing FILE fails the start.
#
# State lives in /run/transient-systest/NAME: pid1 (host PID of the container's systemd),
# launcher, cgroup, console.log (the console, useful when a boot fails). stop removes all of it;
# with CONTAINER_LOG_DIR set, it first copies console.log there as NAME.console.log.
#
# The container boots "systest.target" (sysinit + sockets + basic, nothing of multi-user), with
# units that would only cost time or reach global state masked. It gets container=transient-NAME,
# which makes systemd skip what a container must not do (swapoff, detaching loop/DM devices),
# read-only /proc/sys and /sys, a private /dev, and no CAP_SYS_MODULE, CAP_SYS_TIME, CAP_SYS_RAWIO,
# CAP_SYSLOG, CAP_WAKE_ALARM, CAP_MAC_*. Teardown: SIGRTMIN+4 (systemd's "poweroff"), then SIGKILL
# of the namespace's init if needed, then the host cgroup subtree is removed.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
STATE_ROOT=/run/transient-systest
ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "container.sh: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# State lives/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; }

# The host's cgroup2 hierarchy: /sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on pure v2.
cgroup2_root() {
    if [ -e /sys/fs/cgroup/unified/cgroup.procs ]; then
        echo /sys/fs/cgroup/unified
    elif [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        echo /sys/fs/cgroup
    else
        die "no cgroup2 hierarchy on this host"
    fi
}

state_dir() { echo "$STATE_ROOT/$1"; }

# Prints the host PID of the container's PID 1; fails when it is not running.
pid1_of() {
    local p
    p=$(cat "$(state_dir "$1")/pid1" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

# ---- exec ----

# Joins every namespace of the container's PID 1 and its root (nsenter -r -w: after pivot_root,
# the host's "/" is not the container's). A clean environment: nothing of the caller leaks in.
ct_exec() {
    local name=$1; shift
    local p
    p=$(pid1_of "$name") || die "container $name is not running"
    nsenter -t "$p" -m -u -i -n -p -C -r -w \
        env -i PATH=$ENV_PATH LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# ---- inside: PID 1 of the new PID namespace, until it execs systemd ----

# Mounts the API file systems a container's systemd expects under $1 (the future root).
setup_api_fs() {
    local root=$1 n
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    # systemd-sysctl and friends must not write the host kernel's global sysctls.
    mount --bind "$root/proc/sys" "$root/proc/sys"
    mount -o remount,bind,ro "$root/proc/sys"
    if [ -e "$root/proc/sysrq-trigger" ]; then
        mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
        mount -o remount,bind,ro "$root/proc/sysrq-trigger"
    fi
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
    # In the new cgroup namespace this shows only the container's own subtree.
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"

    # A private /dev: systemd-tmpfiles-setup-dev must not create nodes in the host's devtmpfs.
    mount -t tmpfs -o mode=0755,nosuid,size=4m transient-dev "$root/dev"
    for n in null zero full random urandom tty; do
        : >"$root/dev/$n"
        mount --bind "/dev/$n" "$root/dev/$n"
    done
    mkdir -p "$root/dev/pts" "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev transient-shm "$root/dev/shm"
    ln -s /proc/self/fd "$root/dev/fd"
    ln -s /proc/self/fd/0 "$root/dev/stdin"
    ln -s /proc/self/fd/1 "$root/dev/stdout"
    ln -s /proc/self/fd/2 "$root/dev/stderr"
    # The console is the pty script(1) gave us; script logs it to console.log.
    : >"$root/dev/console"
    mount --bind "$(readlink -f /proc/self/fd/0)" "$root/dev/console"

    mount -t tmpfs -o mode=0755,nosuid,nodev transient-run "$root/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev transient-tmp "$root/tmp"
}

# A minimal boot target and masks for everything that only costs time or touches global state.
setup_units() {
    local root=$1 u=$1/etc/systemd/system m
    cat >"$u/systest.target" <<'EOF'
[Unit]
Description=transient system test (sysinit, sockets, basic)
Requires=basic.target
After=basic.target
AllowIsolate=yes
EOF
    for m in systemd-sysctl.service systemd-timesyncd.service systemd-pstore.service \
             systemd-networkd.service systemd-resolved.service systemd-tmpfiles-clean.timer \
             apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer \
             dpkg-db-backup.timer logrotate.timer getty@.service console-getty.service \
             postgresql.service cron.service; do
        ln -sf /dev/null "$u/$m"
    done
}

inner() {
    local name=$1 st=$2 share=$3
    local root=$st/root key val _
    # /proc is still the host's here: "NSpid: <host pid> 1". Read by the shell itself, since a
    # child process (awk, grep) would report its own PID.
    while read -r key val _; do
        [ "$key" = NSpid: ] && echo "$val" >"$st/pid1"
    done </proc/self/status
    mount --make-rprivate /
    mount -t tmpfs -o mode=0755 transient-upper "$st/rw"
    mkdir -p "$st/rw/upper" "$st/rw/work"
    mount -t overlay transient-root \
        -o "lowerdir=/,upperdir=$st/rw/upper,workdir=$st/rw/work" "$root"
    setup_api_fs "$root"
    setup_units "$root"
    echo "transient-$name" >"$root/etc/hostname"
    if [ -n "$share" ]; then
        mkdir -p "$root/share"
        mount --bind "$share" "$root/share"
        mount -o remount,bind,ro "$root/share"
        # Also at its own path, which the container's own /tmp may hide (a build tree under /tmp).
        mkdir -p "$root$share"
        mount --bind "$share" "$root$share"
        mount -o remount,bind,ro "$root$share"
    fi
    if [ -f "$st/setup.sh" ]; then
        echo "container.sh: running the setup script before boot"
        chroot "$root" env -i PATH=$ENV_PATH LANG=C.UTF-8 /bin/bash -e <"$st/setup.sh" ||
            die "the setup script failed"
    fi
    cd "$root"
    mkdir -p .oldroot
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    rmdir /.oldroot
    exec setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-mac_admin,-mac_override \
        env -i container="transient-$name" TERM=linux LANG=C.UTF-8 \
        /lib/systemd/systemd --unit=systest.target --log-color=no --show-status=no
}

# ---- start / stop ----

ct_start() {
    local name=$1; shift
    local share="" timeout=30 watch="" setup=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --share) share=$(readlink -f "$2"); shift 2 ;;
            --timeout) timeout=$2; shift 2 ;;
            --watch) watch=$2; shift 2 ;;
            --setup) setup=$2; shift 2 ;;
            *) die "start: unknown option '$1'" ;;
        esac
    done
    [ "$(id -u)" -eq 0 ] || die "needs root"
    [ -x /lib/systemd/systemd ] || die "no /lib/systemd/systemd on this host"
    local st cg
    st=$(state_dir "$name")
    pid1_of "$name" >/dev/null && die "container $name is already running"
    ct_stop "$name" 2>/dev/null || true    # leftovers of a run that was killed
    mkdir -p "$st/root" "$st/rw"
    if [ -n "$setup" ]; then
        cp -- "$setup" "$st/setup.sh" || die "start: cannot read the setup script $setup"
    fi
    # The container's cgroup, below our own cgroup2 cgroup.
    cg=$(cgroup2_root)$(sed -n 's/^0:://p' /proc/self/cgroup)
    cg=${cg%/}/transient-$name
    echo "$cg" >"$st/cgroup"
    mkdir -p "$cg"
    local t0=${EPOCHREALTIME/./}
    # The launcher shell moves itself into $cg *before* unshare --cgroup, so that $cg becomes the
    # root of the container's cgroup namespace. script(1) supplies the pty for /dev/console and
    # exits with PID 1; setsid keeps it out of our process group and terminal.
    setsid bash -c 'echo $$ >"$1/cgroup.procs" && exec script -qfe -c "$2" "$3/console.log"' \
        launcher "$cg" \
        "unshare --cgroup --pid --fork --mount --uts --ipc --net --kill-child $SELF __inner $name $st '$share'" \
        "$st" </dev/null >"$st/launcher.log" 2>&1 &
    echo $! >"$st/launcher"
    if [ -n "$watch" ]; then
        # A watchdog in a session of its own, so that a kill of the caller's process group
        # does not take it along; stop ends it when the caller stops the container itself.
        setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done
                        [ -d "$2" ] && exec "$3" stop "$4"' \
            watchdog "$watch" "$st" "$SELF" "$name" </dev/null >/dev/null 2>&1 &
        echo $! >"$st/watchdog"
    fi

    local p="" state=""
    for _ in $(seq 100); do
        p=$(cat "$st/pid1" 2>/dev/null || true)
        [ -n "$p" ] && break
        sleep 0.05
    done
    [ -n "$p" ] || { cat "$st/launcher.log" >&2 2>/dev/null || true; die "container $name did not start"; }
    for _ in $(seq $((timeout * 10))); do
        kill -0 "$p" 2>/dev/null || { tail -n 40 "$st/console.log" >&2 2>/dev/null || true; die "PID 1 of $name died while booting"; }
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ]; then
            state=$(ct_exec "$name" systemctl is-system-running 2>/dev/null || true)
            case "$state" in running|degraded) break ;; esac
        fi
        sleep 0.1
    done
    local ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
    printf 'container.sh: %s: pid1=%s state=%s after %d ms\n' "$name" "$p" "${state:-timeout}" "$ms" >&2
    case "$state" in
        running) return 0 ;;
        degraded)
            echo "container.sh: failed units:" >&2
            ct_exec "$name" systemctl --failed --no-legend >&2 || true
            return 0 ;;
        *) tail -n 40 "$st/console.log" >&2 2>/dev/null || true; return 1 ;;
    esac
}

ct_stop() {
    local name=$1 st p l w cg
    st=$(state_dir "$name")
    [ -d "$st" ] || return 0
    p=$(cat "$st/pid1" 2>/dev/null || true)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
        kill -s SIGRTMIN+4 "$p" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        # SIGKILL of a PID namespace's init kills every process in it.
        kill -0 "$p" 2>/dev/null && { echo "container.sh: $name did not power off; SIGKILL" >&2; kill -9 "$p" 2>/dev/null || true; }
    fi
    w=$(cat "$st/watchdog" 2>/dev/null || true)
    # Unless we are the watchdog (exec'ed into "stop"), it has nothing left to watch.
    [ -n "$w" ] && [ "$w" != $$ ] && kill "$w" 2>/dev/null || true
    l=$(cat "$st/launcher" 2>/dev/null || true)
    if [ -n "$l" ]; then
        for _ in $(seq 50); do kill -0 "$l" 2>/dev/null || break; sleep 0.1; done
        # setsid made the launcher a process group leader: end it and whatever it left.
        kill -0 "$l" 2>/dev/null && kill -9 -- "-$l" 2>/dev/null || true
    fi
    cg=$(cat "$st/cgroup" 2>/dev/null || true)
    if [ -n "$cg" ] && [ -d "$cg" ]; then
        for _ in $(seq 50); do
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$cg" ] || break
            sleep 0.1
        done
        [ -d "$cg" ] && echo "container.sh: warning: could not remove cgroup $cg" >&2
    fi
    # The overlay and API mounts lived only in the container's mount namespace: nothing to unmount.
    if [ -n "${CONTAINER_LOG_DIR:-}" ] && [ -f "$st/console.log" ]; then
        cp "$st/console.log" "$CONTAINER_LOG_DIR/$name.console.log" || true
    fi
    rm -rf "$st"
    rmdir "$STATE_ROOT" 2>/dev/null || true
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    __inner) inner "$@" ;;
    start)
        [ $# -ge 1 ] || { usage >&2; exit 2; }
        name=$1; shift
        ct_start "$name" "$@" || { ct_stop "$name"; exit 1; } ;;
    exec)
        [ $# -ge 2 ] || { usage >&2; exit 2; }
        name=$1; shift
        [ "$1" = -- ] && shift
        ct_exec "$name" "$@" ;;
    stop)
        [ $# -eq 1 ] || { usage >&2; exit 2; }
        ct_stop "$1" ;;
    run)
        [ $# -ge 1 ] || { usage >&2; exit 2; }
        name=$1; shift
        opts=()
        while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
        [ "${1:-}" = -- ] && shift
        [ $# -gt 0 ] || { usage >&2; exit 2; }
        trap 'ct_stop "$name"' EXIT
        trap 'exit 130' INT TERM
        ct_start "$name" "${opts[@]}"
        rc=0
        ct_exec "$name" "$@" || rc=$?
        exit $rc ;;
    -h|--help) usage ;;
    *) usage >&2; exit 2 ;;
esac
