#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Raw Varlink clients for the integration tests: no library of ours, only the wire format
(JSON objects terminated by a NUL byte over an AF_UNIX stream socket).

  varlink_raw.py call SOCKET METHOD [PARAMS_JSON] [--more] [--oneway] [--timeout S]
      Sends one call and prints every reply as one JSON line, until a reply without
      "continues" (or, for --oneway, nothing). Exit 0 when replies were printed, 3 on timeout,
      4 when the server closed the connection without a reply.

  varlink_raw.py probe SOCKET METHOD --seconds S [--interval I] [--timeout T]
      A bystander: calls METHOD on a new connection every I seconds for S seconds and times
      each call from connect() to its reply in this process (so without the interpreter's
      start, which alone takes seconds on a loaded machine). Prints one line
      "calls=N failed=F median_ms=M worst_ms=W"; a call that fails or gets no reply within T
      counts as failed, and as T in worst_ms.

  varlink_raw.py pipeline SOCKET MSG_JSON...
      Sends all messages in one write and prints the first reply to each.

  varlink_raw.py abuse SOCKET --idle N --ready FILE --report FILE
      Misbehaving clients that stay connected until SIGTERM: garbage bytes, an oversized
      message, half a message followed by silence, and N idle connections. Writes what the
      server did to each one-shot abuser to the report file (one line each: WHAT: RESULT),
      then creates the ready file.
"""

import argparse
import json
import os
import select
import signal
import socket
import sys
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


class Reader:
    """Splits what the server sends into NUL-terminated JSON messages, keeping what is left."""

    def __init__(self, s):
        self.s = s
        self.buf = b""

    def read(self, count, timeout):
        """Reads up to `count` messages; returns (messages, why_stopped)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buf and len(out) < count:
                msg, self.buf = self.buf.split(b"\0", 1)
                out.append(json.loads(msg))
            if len(out) >= count:
                return out, "ok"
            left = deadline - time.monotonic()
            if left <= 0:
                return out, "timeout"
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                return out, "timeout"
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                return out, "reset"
            if not chunk:
                return out, "closed"
            self.buf += chunk


def read_messages(s, count, timeout):
    return Reader(s).read(count, timeout)


def cmd_call(a):
    s = connect(a.socket)
    msg = {"method": a.method}
    if a.params is not None:
        msg["parameters"] = json.loads(a.params)
    if a.more:
        msg["more"] = True
    if a.oneway:
        msg["oneway"] = True
    s.sendall(json.dumps(msg).encode() + b"\0")
    if a.oneway:
        return 0
    reader = Reader(s)
    while True:
        msgs, why = reader.read(1, a.timeout)
        if not msgs:
            print(f"no reply: {why}", file=sys.stderr)
            return 3 if why == "timeout" else 4
        print(json.dumps(msgs[0], sort_keys=True))
        if not msgs[0].get("continues"):
            return 0


def cmd_probe(a):
    times, failed = [], 0
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            s = connect(a.socket)
            s.settimeout(a.timeout)
            s.sendall(json.dumps({"method": a.method}).encode() + b"\0")
            msgs, _ = read_messages(s, 1, max(0, a.timeout - (time.monotonic() - t0)))
            s.close()
        except OSError:
            msgs = []
        ms = (time.monotonic() - t0) * 1000
        if not msgs or "error" in msgs[0]:
            failed += 1
            ms = max(ms, a.timeout * 1000)
        times.append(ms)
        time.sleep(a.interval)
    times.sort()
    median = times[(len(times) - 1) // 2] if times else 0
    worst = times[-1] if times else 0
    print(f"calls={len(times)} failed={failed} median_ms={median:.0f} worst_ms={worst:.0f}")
    return 0


def cmd_pipeline(a):
    s = connect(a.socket)
    s.sendall(b"".join(m.encode() + b"\0" for m in a.messages))
    msgs, why = read_messages(s, len(a.messages), a.timeout)
    for m in msgs:
        print(json.dumps(m, sort_keys=True))
    if why != "ok":
        print(f"stopped after {len(msgs)} replies: {why}", file=sys.stderr)
        return 3
    return 0


def outcome(s, timeout):
    """What the server did with a bad message: replied with an error, or closed."""
    msgs, why = read_messages(s, 1, timeout)
    if msgs:
        return "error " + str(msgs[0].get("error"))
    return why


def cmd_abuse(a):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    report = []
    held = []

    # Garbage: not JSON at all, then a NUL.
    s = connect(a.socket)
    s.sendall(b"\xff\xfe\x00garbage{{{\x00")
    report.append("garbage: " + outcome(s, 2))
    held.append(s)

    # Valid JSON but not a call.
    s = connect(a.socket)
    s.sendall(b'[1,2,3]\x00')
    report.append("not-an-object: " + outcome(s, 2))
    held.append(s)

    # Oversized: 1 MiB inside one message, no NUL anywhere. The server must give up on it
    # rather than buffer without limit.
    s = connect(a.socket)
    s.setblocking(False)
    payload = b'{"method":"io.transient.Allocator.ListRanges","parameters":{"x":"' + b"A" * (1 << 20)
    sent = 0
    deadline = time.monotonic() + 5
    while sent < len(payload) and time.monotonic() < deadline:
        try:
            sent += s.send(payload[sent:])
        except BlockingIOError:
            select.select([], [s], [], 0.1)
        except (BrokenPipeError, ConnectionResetError):
            break
    s.setblocking(True)
    report.append(f"oversized ({sent} bytes accepted): " + outcome(s, 3))
    held.append(s)

    # Half a message, then silence: must not hold up anybody else.
    s = connect(a.socket)
    s.sendall(b'{"method":"io.transient.Allocator.Li')
    held.append(s)

    # Idle connections.
    for _ in range(a.idle):
        held.append(connect(a.socket))

    with open(a.report, "w") as f:
        f.write("\n".join(report) + "\n")
    with open(a.ready, "w") as f:
        f.write(f"{len(held)}\n")
    while not stop:
        time.sleep(0.1)
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("call")
    c.add_argument("socket")
    c.add_argument("method")
    c.add_argument("params", nargs="?")
    c.add_argument("--more", action="store_true")
    c.add_argument("--oneway", action="store_true")
    c.add_argument("--timeout", type=float, default=5)
    c = sub.add_parser("probe")
    c.add_argument("socket")
    c.add_argument("method")
    c.add_argument("--seconds", type=float, required=True)
    c.add_argument("--interval", type=float, default=0.1)
    c.add_argument("--timeout", type=float, default=5)
    c = sub.add_parser("pipeline")
    c.add_argument("socket")
    c.add_argument("messages", nargs="+")
    c.add_argument("--timeout", type=float, default=5)
    c = sub.add_parser("abuse")
    c.add_argument("socket")
    c.add_argument("--idle", type=int, default=300)
    c.add_argument("--ready", required=True)
    c.add_argument("--report", required=True)
    a = p.parse_args()
    commands = {"call": cmd_call, "probe": cmd_probe, "pipeline": cmd_pipeline,
                "abuse": cmd_abuse}
    return commands[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
