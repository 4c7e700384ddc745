#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The user-namespace sweep at scale: binds BINDINGS ranges of a running transient-allocd to as
many live user namespaces, then measures what its sweeps cost and how long they keep a bystander
waiting, against the same bystander with no bindings, in the same run.

  bench_sweep.py SOCKET PID INTERVAL [--bindings N] [--window S] [--deaths N] [--ctl PATH]
                 [--max-p99-ratio R] [--max-p99-ms MS] [--json]

PID is the daemon's (its CPU time is read from /proc/PID/stat), INTERVAL its
UserNamespaceCheckSec= in seconds. The namespaces: this process forks children that each
unshare(CLONE_NEWUSER), send their /proc/self/ns/user back over SCM_RIGHTS and exit; it keeps
the fds (the namespaces live while it does) and binds a 64K range to each with AllocateRange,
passing the fd. The first few go through `transientctl allocate --userns /proc/PID/fd/N`
instead, the path nsfs gives for a held fd.

Measured, each over WINDOW seconds: the bystander's latency (GetRange of an unbound range, again
and again, 2 ms apart) and the daemon's CPU time, with no bindings (before binding and again
after all are released: the noisier window is the baseline), and with them. A
sweep's cost: with the timer re-armed INTERVAL after each sweep ends, the extra CPU share c of
the daemon gives a sweep S = c·INTERVAL/(1−c) of CPU. Then DEATHS namespaces die (their fds are
closed) and exactly their ranges must go; then all the others, and the table must be empty.
Exit status 1 if a check fails, or if the bystander's p99 while sweeping is above both
--max-p99-ratio × its idle p99 and --max-p99-ms.
"""

import argparse
import ctypes
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

from bench_alloc import Connection

CLONE_NEWUSER = 0x10000000


def make_namespaces(count, batch=64):
    """Returns `count` fds of new user namespaces whose creators have exited. Children are forked
    a batch at a time, all sending to one socket, so that their round trips overlap."""
    libc = ctypes.CDLL(None, use_errno=True)
    fds = []
    while len(fds) < count:
        n = min(batch, count - len(fds))
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        pids = []
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    parent.close()
                    if libc.unshare(CLONE_NEWUSER) == 0:
                        fd = os.open("/proc/self/ns/user", os.O_RDONLY)
                        socket.send_fds(child, [b"ns"], [fd])
                        code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        child.close()
        for _ in range(n):
            _, got, _, _ = socket.recv_fds(parent, 16, 1)
            if not got:
                raise RuntimeError("a child could not create a user namespace")
            fds.append(got[0])
        parent.close()
        for pid in pids:
            os.waitpid(pid, 0)
    return fds


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(path, pid, window):
    """The bystander's latencies (ms) over `window` seconds, and the daemon's CPU share."""
    conn = Connection(path)
    lat = []
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - t0 < window:
        c0 = time.monotonic()
        reply = conn.call("GetRange", {"name": "bystander"})
        lat.append((time.monotonic() - c0) * 1000)
        if "error" in reply:
            raise RuntimeError(f"GetRange bystander: {reply}")
        time.sleep(0.002)
    share = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    lat.sort()
    return {"calls": len(lat), "p50": lat[len(lat) // 2],
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))], "max": lat[-1],
            "cpu_share": share}


def live_names(conn_path):
    conn = Connection(conn_path)
    conn.send("ListRanges", {}, more=True)
    names = set()
    while True:
        reply = conn.receive()
        if "error" in reply:
            if reply["error"].endswith("NoSuchRange"):
                return names  # an empty table
            raise RuntimeError(f"ListRanges: {reply}")
        names.add(reply["parameters"]["range"]["name"])
        if not reply.get("continues"):
            return names


def wait_for_names(path, expected, timeout):
    t0 = time.monotonic()
    while True:
        names = live_names(path)
        if names == expected or time.monotonic() - t0 > timeout:
            return names, time.monotonic() - t0
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("pid", type=int)
    ap.add_argument("interval", type=float)
    ap.add_argument("--bindings", type=int, default=16000)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--deaths", type=int, default=0, help="default: a tenth of the bindings")
    ap.add_argument("--ctl", help="transientctl, for the first few bindings by path")
    ap.add_argument("--max-p99-ratio", type=float, default=0.0)
    ap.add_argument("--max-p99-ms", type=float, default=0.0)
    ap.add_argument("--max-release-intervals", type=float, default=0.0,
                    help="the deaths' ranges gone within this many intervals plus the slack")
    ap.add_argument("--release-slack-s", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    deaths = args.deaths or max(1, args.bindings // 10)
    failures = []

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.bindings + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))

    conn = Connection(args.socket)
    r = conn.call("AllocateRange", {"name": "bystander", "size": 1})
    if "error" in r:
        raise RuntimeError(f"AllocateRange bystander: {r}")
    idle = measure(args.socket, args.pid, args.window)

    t0 = time.monotonic()
    fds = make_namespaces(args.bindings)
    created = time.monotonic() - t0
    t0 = time.monotonic()
    conn = Connection(args.socket)  # the first one went idle too long meanwhile
    by_path = 3 if args.ctl else 0
    for i, fd in enumerate(fds):
        name = f"sw{i}"
        if i < by_path:
            subprocess.run([args.ctl, "allocate", name, "--userns", f"/proc/{os.getpid()}/fd/{fd}"],
                           check=True, stdout=subprocess.DEVNULL)
            continue
        r = conn.call("AllocateRange", {"name": name, "size": 65536,
                                        "userNamespaceFileDescriptor": 0}, fds=[fd])
        if "error" in r:
            raise RuntimeError(f"AllocateRange {name}: {r}")
    bound = time.monotonic() - t0
    sweeping = measure(args.socket, args.pid, args.window)

    # A sweep's CPU time from the extra CPU share c: c = S / (INTERVAL + S).
    idle_cpu = idle["cpu_share"]
    extra = max(0.0, sweeping["cpu_share"] - idle_cpu)
    sweep_ms = extra * args.interval / (1 - extra) * 1000 if extra < 1 else float("inf")

    # Deaths: every tenth (or so) namespace goes; exactly those ranges must follow.
    step = max(1, args.bindings // deaths)
    dead = set(range(0, args.bindings, step)[:deaths])
    for i in dead:
        os.close(fds[i])
    expected = {"bystander"} | {f"sw{i}" for i in range(args.bindings) if i not in dead}
    names, took = wait_for_names(args.socket, expected, 60 + args.interval * 4)
    if names != expected:
        failures.append(f"after {len(dead)} deaths: {len(expected - names)} live ranges gone, "
                        f"{len(names - expected)} dead ones kept")
    deaths_s = took
    for i in range(args.bindings):
        if i not in dead:
            os.close(fds[i])
    names, took = wait_for_names(args.socket, {"bystander"}, 60 + args.interval * 4)
    if names != {"bystander"}:
        failures.append(f"after every namespace died: {len(names) - 1} ranges kept")
    # Idle again, once every binding is gone: the baseline is the noisier of the two windows,
    # so that a quiet moment before the bindings does not make the bound a lucky one.
    after = measure(args.socket, args.pid, args.window)
    if after["p99"] > idle["p99"]:
        idle = after

    out = {"bindings": args.bindings, "interval_s": args.interval,
           "created_s": round(created, 2), "bound_s": round(bound, 2),
           "sweep_ms": round(sweep_ms, 2),
           "sweep_us_per_binding": round(sweep_ms * 1000 / args.bindings, 2),
           "idle": {k: round(v, 3) for k, v in idle.items()},
           "sweeping": {k: round(v, 3) for k, v in sweeping.items()},
           "p99_ratio": round(sweeping["p99"] / idle["p99"], 2),
           "max_ratio": round(sweeping["max"] / idle["max"], 2),
           "deaths": len(dead), "deaths_released_s": round(deaths_s, 2),
           "all_released_s": round(took, 2)}
    if args.max_p99_ratio and sweeping["p99"] > args.max_p99_ratio * idle["p99"] and \
            sweeping["p99"] > args.max_p99_ms:
        failures.append(f"bystander p99 while sweeping {sweeping['p99']:.2f} ms: above "
                        f"{args.max_p99_ratio}x idle ({idle['p99']:.2f} ms) and above "
                        f"{args.max_p99_ms} ms")
    # A namespace that dies while the worker is under way waits for the next sweep; that one
    # follows at once, so every death is released within about two passes, not an interval more.
    release_bound = args.max_release_intervals * args.interval + args.release_slack_s
    if args.max_release_intervals and deaths_s > release_bound:
        failures.append(f"{len(dead)} deaths released in {deaths_s:.2f} s: above "
                        f"{args.max_release_intervals} intervals + {args.release_slack_s} s "
                        f"({release_bound:.2f} s)")
    if args.json:
        print(json.dumps(out))
    else:
        print(f"bindings {args.bindings}: namespaces made in {created:.1f} s, bound in "
              f"{bound:.1f} s; UserNamespaceCheckSec={args.interval}")
        print(f"sweep of all bindings: {sweep_ms:.1f} ms CPU "
              f"({out['sweep_us_per_binding']} us a binding; daemon CPU share "
              f"{idle_cpu:.3f} idle, {sweeping['cpu_share']:.3f} sweeping)")
        print("| bystander GetRange, ms | calls | p50 | p99 | max |")
        print("|---|---:|---:|---:|---:|")
        for label, m in (("no bindings", idle), (f"{args.bindings} bindings", sweeping)):
            print(f"| {label} | {m['calls']} | {m['p50']:.2f} | {m['p99']:.2f} | "
                  f"{m['max']:.2f} |")
        print(f"ratio to idle: p99 {out['p99_ratio']}x, max {out['max_ratio']}x")
        print(f"{len(dead)} deaths released in {deaths_s:.2f} s; the rest in {took:.2f} s")
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
