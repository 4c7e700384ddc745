#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Allocation at scale: AllocateRange and ReleaseRange rates of a running transient-allocd on one
connection, per band of live ranges, from an empty table up to RANGES live 64K ranges and back.

  bench_alloc.py SOCKET [--ranges N] [--band N] [--window N] [--min-ratio R] [--json]
                 [--at-full CMD]

Allocates RANGES ranges of 65536 IDs (names bench-0 …) as root, timing each band of BAND calls,
then releases them in a shuffled (seeded) order, band by band. Each call waits for its reply
before the next is sent unless --window lets up to N calls be in flight (pipelined on the one
connection). Prints a table: the live ranges at the start of each band, the rate, and the rate as
a ratio against the first band (for release: the band that started with RANGES live ranges, the
first released). Exit status 1 if a call fails, or if allocation with the most live ranges (the
last two bands) runs below --min-ratio × its rate with the fewest (the first two; default 0: never). --at-full runs CMD (a shell command) while every
range is allocated.
"""

import argparse
import json
import random
import socket
import subprocess
import sys
import time


class Connection:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def send(self, method, parameters):
        msg = {"method": "io.transient.Allocator." + method, "parameters": parameters}
        self.sock.sendall(json.dumps(msg).encode() + b"\0")

    def receive(self):
        while b"\0" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("transient-allocd closed the connection")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)


def run_band(conn, method, params, window):
    """Sends the calls of `params`, at most `window` in flight; returns seconds taken."""
    t0 = time.monotonic()
    sent = received = 0
    while received < len(params):
        while sent < len(params) and sent - received < window:
            conn.send(method, params[sent])
            sent += 1
        reply = conn.receive()
        if "error" in reply:
            raise RuntimeError(f"{method} {params[received]}: {reply}")
        received += 1
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--ranges", type=int, default=28000)
    ap.add_argument("--band", type=int, default=1000)
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--min-ratio", type=float, default=0.0)
    ap.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    ap.add_argument("--at-full", help="a shell command to run when every range is allocated")
    ap.add_argument("--list-only", action="store_true",
                    help="only call ListRanges and read every reply (not parsed)")
    args = ap.parse_args()

    conn = Connection(args.socket)
    if args.list_only:
        conn.sock.sendall(json.dumps({"method": "io.transient.Allocator.ListRanges",
                                      "more": True}).encode() + b"\0")
        # Until a reply without "continues": true; only the last one read is parsed.
        tail = b""
        while True:
            chunk = conn.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("transient-allocd closed the connection")
            tail = (tail + chunk)[-4096:]
            if tail.endswith(b"\0"):
                last = tail[:-1].rsplit(b"\0", 1)[-1]
                if not json.loads(last).get("continues"):
                    return 0
    names = [f"bench-{i}" for i in range(args.ranges)]
    bands = [names[i:i + args.band] for i in range(0, len(names), args.band)]
    alloc = []  # (live ranges at the start, calls, seconds)
    live = 0
    for band in bands:
        secs = run_band(conn, "AllocateRange", [{"name": n, "size": 65536} for n in band],
                        args.window)
        alloc.append((live, len(band), secs))
        live += len(band)
    if args.at_full:
        sys.stdout.flush()
        subprocess.run(args.at_full, shell=True, check=True)
    order = names[:]
    random.Random(11).shuffle(order)
    release = []
    for i in range(0, len(order), args.band):
        band = order[i:i + args.band]
        secs = run_band(conn, "ReleaseRange", [{"name": n} for n in band], args.window)
        release.append((live, len(band), secs))
        live -= len(band)

    def rates(rows):
        return [calls / secs for _, calls, secs in rows]

    ar, rr = rates(alloc), rates(release)
    # Release bands run from full to empty: the first released band is the full table's, the
    # baseline is the band that empties it (the fewest live ranges, like allocation's first).
    result = {
        "window": args.window,
        "allocate": [{"live": lv, "rate": round(r), "ratio": round(r / ar[0], 2)}
                     for (lv, _, _), r in zip(alloc, ar)],
        "release": [{"live": lv, "rate": round(r), "ratio": round(r / rr[-1], 2)}
                    for (lv, _, _), r in zip(release, rr)],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"one connection, window {args.window}; rates in calls/s, ratio: against the band "
              f"with the fewest live ranges")
        print(f"{'live ranges':>17} | {'allocate/s':>10} {'ratio':>6} | {'release/s':>10} "
              f"{'ratio':>6}")
        by_live = {row["live"]: row for row in result["release"]}
        for a in result["allocate"]:
            # The release band that leaves the same live ranges as this band started with.
            r = by_live.get(a["live"] + args.band) or by_live.get(a["live"] + len(bands[-1]))
            span = f"{a['live']}…{a['live'] + args.band}"
            rel = f"{r['rate']:>10} {r['ratio']:>6.2f}" if r else f"{'':>10} {'':>6}"
            print(f"{span:>17} | {a['rate']:>10} {a['ratio']:>6.2f} | {rel}")
    # The check is on allocation, over two bands at each end (one band of a short run on a
    # loaded machine is noise). Release moves the entries after the released one in both copies
    # of the table (it is sorted by start), so it still slows down as the table grows.
    ends = min(2, len(ar) // 2) or 1
    ratio = (sum(ar[-ends:]) / ends) / (sum(ar[:ends]) / ends)
    if ratio < args.min_ratio:
        print(f"FAIL: allocation with the most live ranges runs at {ratio:.2f}× the rate with "
              f"the fewest, below {args.min_ratio}", file=sys.stderr)
        return 1
    print(f"allocation, last {ends} bands against the first {ends}: {ratio:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
