#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Rootless podman (Debian 12: 4.3.1) on a transient range, inside scripts/sandbox.sh: a private
# /etc/passwd with user `rootless`, `subid: transient` in the private nsswitch.conf, the provider
# in the system library dir, and empty /etc/subuid and /etc/subgid, so only the provider can
# grant the mapping (lib.sh's it_add_users, it_subid_setup). No user session, no systemd as
# PID 1, no registry: vfs storage, no network, cgroupfs, events in a file, a private HOME and
# XDG_RUNTIME_DIR, and a root file system of busybox-static.
#   - without a range, podman's namespace holds the user's own UID only;
#   - after `transientctl allocate pods` (as the user), `podman unshare` maps 0 to the user and
#     1… to the range: uid_map and gid_map read `0 U 1`, `1 B 65536`;
#   - `podman run --rootfs` creates files as container UIDs 1000 (chown by root inside) and 2000
#     (--user), and on the host `ls -l` names them vu-u<U>-pods-999 and -1999 through the module.
# The OCI runtime is runc: crun 1.8 refuses every container on a hybrid cgroup hierarchy whose
# v2 part has a controller ("cgroups in hybrid mode not supported"), as on this CI host, and
# podman does not let runc run without cgroups (--cgroups=disabled), so cgroups stay podman's
# default for rootless (none on cgroup v1).
. "$(dirname "$0")/lib.sh"

it_require podman runc conmon busybox newuidmap newgidmap setpriv readelf
BUSYBOX=$(command -v busybox)
# The root file system holds busybox alone: it must need no shared library.
readelf -d "$BUSYBOX" 2>/dev/null | grep -q NEEDED &&
    { echo "$BUSYBOX is dynamically linked: scripts/deps.sh installs busybox-static" >&2; exit 1; }

U=2401
NAME=rootless
HOMES=$TRANSIENT_SANDBOX/home
ROOTFS=$TRANSIENT_SANDBOX/rootfs

it_section "set up: user, nsswitch.conf, provider, root file system"
mkdir -p "$HOMES"
it_add_users "$NAME:$U:$HOMES/$NAME"
it_subid_setup
# The root file system belongs to the user: podman, as root of its namespace (= U outside),
# creates /etc, /dev, /proc... mount points in it.
mkdir -p "$ROOTFS/bin" "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for applet in sh touch chown id cat; do
    ln -s busybox "$ROOTFS/bin/$applet"
done
chown -R $U:$U "$ROOTFS"
chmod 1777 "$ROOTFS/tmp"

# podman_as STATE ARGS...: podman ARGS as the user, with HOME and XDG_RUNTIME_DIR below
# $HOMES/STATE: each state has its own storage and its own pause process (the one holding
# podman's user namespace, which later commands join).
podman_as() {
    local state=$HOMES/$1
    shift
    mkdir -p "$state/xdg"
    chown $U:$U "$state" "$state/xdg"
    chmod 0700 "$state/xdg"
    it_as_user $U env -i HOME="$state" USER=$NAME LOGNAME=$NAME XDG_RUNTIME_DIR="$state/xdg" \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        podman --storage-driver=vfs --cgroup-manager=cgroupfs --events-backend=file \
        --runtime=runc "$@"
}
# maps TEXT: the lines of a uid_map/gid_map, blanks squeezed, joined by '|'.
maps() { awk '{ print $1, $2, $3 }' <<<"$1" | paste -sd'|'; }

it_daemon_start

it_section "without a range"
it_expect_ok "podman unshare runs" podman_as norange unshare cat /proc/self/uid_map
it_expect_eq "... its namespace maps the user's own UID only" "0 $U 1" "$(maps "$IT_OUT")"

it_section "with a transient range of 65536 owned by the user"
it_expect_ok "$NAME allocates pods" it_as_user $U "$CTL" allocate pods --size 65536
B=$(it_range_start u$U-pods)
echo "u$U-pods starts at $B"
it_expect_ok "podman unshare" podman_as $NAME unshare cat /proc/self/uid_map /proc/self/gid_map
it_expect_eq "... uid_map and gid_map: the user, then the range" \
    "0 $U 1|1 $B 65536|0 $U 1|1 $B 65536" "$(maps "$IT_OUT")"

it_section "podman run --rootfs"
it_expect_ok "root in the container creates /x for 1000" \
    podman_as $NAME run --rm --network=none --rootfs "$ROOTFS" \
    /bin/sh -c 'touch /x && chown 1000:1000 /x && id -u'
it_expect_eq "... as root of the container" 0 "$(tail -n1 <<<"$IT_OUT")"
it_expect_ok "container user 2000 creates /tmp/y" \
    podman_as $NAME run --rm --network=none --user 2000:2000 --rootfs "$ROOTFS" \
    /bin/sh -c 'touch /tmp/y && id -u'
it_expect_eq "... as 2000" 2000 "$(tail -n1 <<<"$IT_OUT")"
it_expect_eq "on the host, /x belongs to B+999" "$((B + 999)):$((B + 999))" \
    "$(stat -c %u:%g "$ROOTFS/x")"
it_run ls -l "$ROOTFS/x"
it_expect_match "ls -l names /x's owner and group by the range" \
    "^-.* vu-u$U-pods-999 +vg-u$U-pods-999 .*/x$" "$IT_OUT"
it_run ls -l "$ROOTFS/tmp/y"
it_expect_match "... and /tmp/y's" "^-.* vu-u$U-pods-1999 +vg-u$U-pods-1999 .*/tmp/y$" "$IT_OUT"

it_daemon_stop
it_finish
