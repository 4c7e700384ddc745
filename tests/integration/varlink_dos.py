#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A hostile local user against a Varlink daemon, for tests/integration/dos.sh. Run it as the
UID to attack from (setpriv). Every mode stops by itself after --seconds.

  varlink_dos.py flood SOCKET --connections N --message JSON --seconds S
      Opens up to N connections and pipelines MESSAGE on each as fast as the server takes it,
      never reading a reply.
  varlink_dos.py idle SOCKET --connections N --seconds S
      Opens up to N connections and sends nothing.

Prints one line: "open=K of N" (connections the server kept once their number stopped
changing: on a loaded machine the server takes a while to close the ones over its limit).
"""

import argparse
import resource
import select
import socket
import time


def open_connections(path, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            break
        s.setblocking(False)
        conns.append(s)
    return conns


def still_open(conns, deadline):
    """The connections the server did not close (refused ones see EOF), once two looks half a
    second apart agree, or at the deadline."""
    while True:
        time.sleep(0.5)
        before = len(conns)
        conns = closed_dropped(conns)
        if len(conns) == before or time.monotonic() >= deadline:
            return conns


def closed_dropped(conns):
    kept = []
    for s in conns:
        try:
            data = s.recv(65536, socket.MSG_PEEK)
            if data == b"":
                s.close()
                continue
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        kept.append(s)
    return kept


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["flood", "idle"])
    p.add_argument("socket")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--message", default='{"method":"org.varlink.service.GetInfo"}')
    p.add_argument("--seconds", type=float, default=3)
    a = p.parse_args()

    deadline = time.monotonic() + a.seconds
    conns = open_connections(a.socket, a.connections)
    conns = still_open(conns, time.monotonic() + min(a.seconds / 2, 3))
    print(f"open={len(conns)} of {a.connections}", flush=True)
    if a.mode == "idle":
        time.sleep(max(0, deadline - time.monotonic()))
        return
    burst = (a.message.encode() + b"\0") * 64
    pending = {s.fileno(): (s, 0) for s in conns}
    poller = select.poll()  # not select(): there may be more than FD_SETSIZE descriptors
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    while time.monotonic() < deadline and pending:
        for fd, _ in poller.poll(100):
            s, pos = pending[fd]
            try:
                sent = s.send(burst[pos:])
                pending[fd] = (s, (pos + sent) % len(burst))
            except BlockingIOError:
                pass
            except OSError:
                poller.unregister(fd)
                del pending[fd]  # dropped by the server: fine, that is a limit at work
    # Hold what is left open until the end, still never reading.
    time.sleep(max(0, deadline - time.monotonic()))


if __name__ == "__main__":
    main()
