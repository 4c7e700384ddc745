#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Pipelines COUNT over-quota AllocateRange calls on one connection while a bystander on its
own connection calls ListRanges again and again; prints one JSON line of figures:
flood (seconds until the last reply), replies (error name -> count), bystander_max and
bystander_median (seconds per ListRanges call while the flood ran), bystander_calls.

  flood.py SOCKET PREFIX COUNT
"""

import json
import socket
import statistics
import sys
import threading
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def read_replies(s, count, buf=b""):
    out = []
    while len(out) < count:
        while b"\0" in buf and len(out) < count:
            msg, buf = buf.split(b"\0", 1)
            m = json.loads(msg)
            if not m.get("continues"):
                out.append(m)
        if len(out) >= count:
            break
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed after {len(out)} replies")
        buf += chunk
    return out, buf


def main():
    path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    flood_done = threading.Event()
    latencies = []

    def bystander():
        s = connect(path)
        call = json.dumps({"method": "io.transient.Allocator.ListRanges", "more": True})
        buf = b""
        while not flood_done.is_set():
            t0 = time.monotonic()
            s.sendall(call.encode() + b"\0")
            _, buf = read_replies(s, 1, buf)
            latencies.append(time.monotonic() - t0)
            time.sleep(0.005)

    s = connect(path)
    calls = b"".join(json.dumps({"method": "io.transient.Allocator.AllocateRange",
                                 "parameters": {"name": f"{prefix}{i}", "size": 1}}).encode()
                     + b"\0" for i in range(count))
    t = threading.Thread(target=bystander)
    t.start()
    time.sleep(0.2)  # the bystander is connected and going
    t0 = time.monotonic()
    s.sendall(calls)
    replies, _ = read_replies(s, count)
    flood = time.monotonic() - t0
    flood_done.set()
    t.join()
    errors = {}
    for r in replies:
        errors[r.get("error", "ok")] = errors.get(r.get("error", "ok"), 0) + 1
    print(json.dumps({"flood": round(flood, 3), "replies": errors,
                      "bystander_max": round(max(latencies), 3),
                      "bystander_median": round(statistics.median(latencies), 4),
                      "bystander_calls": len(latencies)}))


if __name__ == "__main__":
    main()
