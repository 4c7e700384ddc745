#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The three roles of the crash test (crash.sh), which kills transient-allocd with SIGKILL at
random instants and restarts it while they run.

  crash_tool.py client --ctl PATH --socket PATH --log FILE --stop FILE
      Allocates (transientctl allocate NAME --size 1|65536 --json) and releases
      (transientctl release NAME) ranges with never-reused names until the stop file appears.
      Each operation ends in a known state: when transientctl fails (the daemon died under it),
      the client asks the restarted daemon with a raw GetRange whether the range exists and,
      for a release, repeats it until the range is gone. Every settled operation is appended to
      the log as a JSON line: {"op": "alloc"|"release", "name", "start", "size", "t0", "t1",
      "how": "ack"|"settled"}, or {"op": "no-alloc", ...} for an allocation that did not happen.
      t0/t1 are CLOCK_MONOTONIC nanoseconds before sending and after the answer.

  crash_tool.py reader --mode inproc|getent --targets FILE --log FILE --stop FILE
      Resolves UIDs/GIDs and names of the ranges in the client's log (live and released, all
      offsets, and one past the end) through NSS: in-process with pwd/grp (one long-lived
      process that keeps the module's mapping across daemon restarts), or by running getent.
      Logs every answer: {"t0", "t1", "q": "uid"|"name", "db": "passwd"|"group", "key",
      "target", "res"}.

  crash_tool.py check --client-log FILE --reader-log FILE... --final FILE
      Replays the client log (no two live ranges may overlap at any time), compares the final
      `transientctl list --json` with it (every acknowledged allocation not released is there
      with the same start and size, nothing else is, nothing overlaps), and checks every reader
      answer against the history: a UID may only resolve to the name that its range and offset
      give, a name only to its UID, never for a range released before the lookup started nor
      allocated after it ended. Exit 1 on any violation.
"""

import argparse
import grp
import json
import os
import pwd
import random
import re
import socket
import subprocess
import sys
import time

POOL_64K = (524288, 1879048191)
POOL_1 = (61184, 65519)


def now():
    return time.monotonic_ns()


def append(path, obj):
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")


# ---------------------------------------------------------------- client

def raw_get_range(sock_path, name, timeout=2.0):
    """("present", range) / ("absent", None) / ("down", None) from a raw GetRange call."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(json.dumps({"method": "io.transient.Allocator.GetRange",
                              "parameters": {"name": name}}).encode() + b"\0")
        buf = b""
        while b"\0" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return "down", None
            buf += chunk
        s.close()
        reply = json.loads(buf.split(b"\0", 1)[0])
    except (OSError, ValueError):
        return "down", None
    if reply.get("error") == "io.transient.Allocator.NoSuchRange":
        return "absent", None
    if "error" in reply:
        raise RuntimeError(f"GetRange {name}: unexpected error {reply}")
    return "present", reply["parameters"]["range"]


def settle(sock_path, name, deadline_s=60):
    """Waits for a daemon and asks it whether NAME exists."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        state, rng = raw_get_range(sock_path, name)
        if state != "down":
            return state, rng
        time.sleep(0.02)
    raise RuntimeError(f"no daemon answered for {deadline_s} s while settling '{name}'")


def run_ctl(ctl, *args):
    p = subprocess.run([ctl, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


def cmd_client(a):
    rnd = random.Random(a.seed)
    live = {}  # name -> (start, size)
    counter = 0
    stats = {"alloc": 0, "release": 0, "settled": 0, "no-alloc": 0, "errors": 0}
    while not os.path.exists(a.stop):
        if len(live) < 5 or (len(live) < 40 and rnd.random() < 0.6):
            name = f"c{counter}"
            counter += 1
            size = rnd.choice((1, 65536))
            t0 = now()
            rc, out, err = run_ctl(a.ctl, "allocate", name, "--size", str(size), "--json")
            t1 = now()
            how = "ack"
            if rc == 0:
                r = json.loads(out)
                start = int(r["start"])
                if int(r.get("size", size)) != size or r.get("name", name) != name:
                    raise RuntimeError(f"allocate {name} --size {size} answered {out}")
            else:
                state, r = settle(a.socket, name)
                t1 = now()
                if state == "absent":
                    stats["no-alloc"] += 1
                    append(a.log, {"op": "no-alloc", "name": name, "size": size, "t0": t0,
                                   "t1": t1, "err": err.strip()[:200]})
                    continue
                how = "settled"
                stats["settled"] += 1
                start = int(r["start"])
            for other, (s, z) in live.items():
                if start < s + z and s < start + size:
                    print(f"client: {name} [{start}, +{size}) overlaps live {other} [{s}, +{z})",
                          file=sys.stderr)
            live[name] = (start, size)
            stats["alloc"] += 1
            append(a.log, {"op": "alloc", "name": name, "start": start, "size": size,
                           "t0": t0, "t1": t1, "how": how})
        else:
            name = rnd.choice(sorted(live))
            start, size = live[name]
            t0 = now()
            how = "ack"
            while True:
                rc, out, err = run_ctl(a.ctl, "release", name)
                if rc == 0:
                    break
                state, _ = settle(a.socket, name)
                if state == "absent":
                    how = "settled"
                    stats["settled"] += 1
                    break
                # Still there: the daemon died before releasing it, or refused. Try again.
                stats["errors"] += 1
                if stats["errors"] > 10000:
                    raise RuntimeError(f"release {name} keeps failing: {err.strip()}")
            t1 = now()
            del live[name]
            stats["release"] += 1
            append(a.log, {"op": "release", "name": name, "start": start, "size": size,
                           "t0": t0, "t1": t1, "how": how})
    print("client: " + ", ".join(f"{k} {v}" for k, v in stats.items()) + f", live {len(live)}")
    return 0


# ---------------------------------------------------------------- readers

class Targets:
    """The ranges the client has logged so far, read incrementally."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.ranges = []  # (name, start, size)

    def refresh(self):
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind("\n") + 1]
        self.pos += len(complete.encode())
        for line in complete.splitlines():
            e = json.loads(line)
            if e["op"] == "alloc":
                self.ranges.append((e["name"], e["start"], e["size"]))


def lookup_inproc(q, db, key):
    try:
        if db == "passwd":
            e = pwd.getpwuid(key) if q == "uid" else pwd.getpwnam(key)
            return e.pw_name if q == "uid" else e.pw_uid
        e = grp.getgrgid(key) if q == "uid" else grp.getgrnam(key)
        return e.gr_name if q == "uid" else e.gr_gid
    except KeyError:
        return None


def lookup_getent(q, db, key):
    p = subprocess.run(["getent", db, str(key)], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    if p.returncode != 0 or not p.stdout:
        return None
    f = p.stdout.split("\n")[0].split(":")
    return f[0] if q == "uid" else int(f[2])


def cmd_reader(a):
    rnd = random.Random(a.seed)
    targets = Targets(a.targets)
    lookup = lookup_inproc if a.mode == "inproc" else lookup_getent
    n_lookups = 0
    last_refresh = 0
    while not os.path.exists(a.stop):
        if time.monotonic() - last_refresh > 0.05:
            targets.refresh()
            last_refresh = time.monotonic()
        if not targets.ranges:
            time.sleep(0.01)
            continue
        # Recent ranges are the interesting ones: half the picks come from the last 20.
        pool = targets.ranges[-20:] if rnd.random() < 0.5 else targets.ranges
        name, start, size = rnd.choice(pool)
        n = rnd.choice((0, size - 1, rnd.randrange(size), size))  # `size` is one past the end
        q = rnd.choice(("uid", "name"))
        db = rnd.choice(("passwd", "group"))
        key = start + n if q == "uid" else f"{'vu' if db == 'passwd' else 'vg'}-{name}-{n}"
        t0 = now()
        res = lookup(q, db, key)
        t1 = now()
        append(a.log, {"t0": t0, "t1": t1, "q": q, "db": db, "key": key, "target": name,
                       "n": n, "res": res})
        n_lookups += 1
    print(f"reader ({a.mode}): {n_lookups} lookups")
    return 0


# ---------------------------------------------------------------- check

NAME_RE = re.compile(r"^(vu|vg)-([A-Za-z_][A-Za-z0-9_-]*)-(0|[1-9][0-9]*)$")


def cmd_check(a):
    problems = []
    history = {}  # name -> dict(start, size, alloc_t0, alloc_t1, rel_t0, rel_t1)
    never = set()  # allocations that failed and that the restarted daemon did not have
    live = {}
    counts = {"alloc": 0, "release": 0, "settled": 0, "no-alloc": 0}
    with open(a.client_log) as f:
        for line in f:
            e = json.loads(line)
            op = e["op"]
            counts[op] += 1
            if e.get("how") == "settled":
                counts["settled"] += 1
            if op == "alloc":
                s, z = e["start"], e["size"]
                if e["name"] in history:
                    problems.append(f"name {e['name']} allocated twice")
                lo, hi = POOL_64K if z == 65536 else POOL_1
                if not (lo <= s and s + z - 1 <= hi) or (z == 65536 and s % 65536):
                    problems.append(f"{e['name']} [{s}, +{z}) is outside its pool or unaligned")
                for other, (os_, oz) in live.items():
                    if s < os_ + oz and os_ < s + z:
                        problems.append(f"overlap: {e['name']} [{s}, +{z}) allocated while "
                                        f"{other} [{os_}, +{oz}) was live")
                live[e["name"]] = (s, z)
                history[e["name"]] = {"start": s, "size": z, "a0": e["t0"], "a1": e["t1"],
                                      "r0": None, "r1": None}
            elif op == "no-alloc":
                never.add(e["name"])
            elif op == "release":
                live.pop(e["name"], None)
                history[e["name"]]["r0"] = e["t0"]
                history[e["name"]]["r1"] = e["t1"]

    # The table at the end against what the client was told.
    with open(a.final) as f:
        final = {r["name"]: r for r in json.load(f)}
    for name, (s, z) in sorted(live.items()):
        r = final.get(name)
        if r is None:
            problems.append(f"lost: {name} [{s}, +{z}) was acknowledged and never released, "
                            "but is not in the final list")
        elif (int(r["start"]), int(r["size"])) != (s, z):
            problems.append(f"changed: {name} was acknowledged at [{s}, +{z}), the final list "
                            f"has [{r['start']}, +{r['size']}]")
    for name in sorted(set(final) - set(live)):
        why = "released" if name in history else "never acknowledged"
        problems.append(f"unexpected: {name} is in the final list but was {why}")
    spans = sorted((int(r["start"]), int(r["size"]), n) for n, r in final.items())
    for (s1, z1, n1), (s2, _, n2) in zip(spans, spans[1:]):
        if s2 < s1 + z1:
            problems.append(f"overlap in the final list: {n1} and {n2}")

    # Reader answers against the history.
    wrong, misses, answers, lookups = [], [], 0, 0
    for path in a.reader_log:
        with open(path) as f:
            for line in f:
                o = json.loads(line)
                lookups += 1
                res = o["res"]
                target = history.get(o["target"])
                if res is None:
                    # Not found. Only suspicious when the target was live the whole time.
                    if (target and o["n"] < target["size"] and target["a1"] < o["t0"]
                            and (target["r0"] is None or target["r0"] > o["t1"])):
                        misses.append(o)
                    continue
                answers += 1
                if o["q"] == "uid":
                    uid, m = o["key"], NAME_RE.match(str(res))
                    if not m or m.group(1) != ("vu" if o["db"] == "passwd" else "vg"):
                        wrong.append((o, "not a name of ours"))
                        continue
                    rname, n = m.group(2), int(m.group(3))
                else:
                    m = NAME_RE.match(o["key"])
                    rname, n, uid = m.group(2), int(m.group(3)), res
                h = history.get(rname)
                if h is None and rname in never:
                    wrong.append((o, f"{rname} was visible, yet after the crash the daemon "
                                     "did not have it and it was never acknowledged"))
                elif h is None:
                    wrong.append((o, f"range {rname} was never allocated"))
                elif n >= h["size"]:
                    wrong.append((o, f"{rname} has only {h['size']} IDs, offset {n} is past "
                                     "its end"))
                elif uid != h["start"] + n:
                    wrong.append((o, f"{rname} is [{h['start']}, +{h['size']}), so offset {n} "
                                     f"is UID {h['start'] + n}"))
                elif h["r1"] is not None and h["r1"] < o["t0"]:
                    wrong.append((o, f"{rname} had been released before the lookup started"))
                elif h["a0"] > o["t1"]:
                    wrong.append((o, f"{rname} was allocated after the lookup ended"))

    print(f"client: {counts['alloc']} allocations, {counts['release']} releases acknowledged "
          f"({counts['settled']} settled after a crash), {counts['no-alloc']} allocations that "
          f"did not happen; final list: {len(final)} ranges")
    print(f"readers: {lookups} lookups, {answers} found, {len(wrong)} wrong, "
          f"{len(misses)} not found while the range was live")
    for o in misses[:5]:
        print(f"  not found (allowed: TRYAGAIN after a writer died): {o}")
    for o, why in wrong[:20]:
        problems.append(f"wrong answer: {o['db']} {o['key']} → {o['res']}: {why}")
    if counts["alloc"] < a.min_ops or counts["release"] < a.min_ops:
        problems.append(f"too little work to mean anything: {counts['alloc']} allocations, "
                        f"{counts['release']} releases (want {a.min_ops} each)")
    if answers < a.min_ops:
        problems.append(f"too few reader answers to mean anything: {answers}")
    for p in problems:
        print("PROBLEM: " + p)
    return 1 if problems else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--ctl", required=True)
    c.add_argument("--socket", required=True)
    c.add_argument("--log", required=True)
    c.add_argument("--stop", required=True)
    c.add_argument("--seed", type=int)
    c = sub.add_parser("reader")
    c.add_argument("--mode", choices=("inproc", "getent"), required=True)
    c.add_argument("--targets", required=True)
    c.add_argument("--log", required=True)
    c.add_argument("--stop", required=True)
    c.add_argument("--seed", type=int)
    c = sub.add_parser("check")
    c.add_argument("--client-log", required=True)
    c.add_argument("--reader-log", nargs="+", required=True)
    c.add_argument("--final", required=True)
    c.add_argument("--min-ops", type=int, default=20)
    a = p.parse_args()
    return {"client": cmd_client, "reader": cmd_reader, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
