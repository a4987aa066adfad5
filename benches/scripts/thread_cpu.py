#!/usr/bin/env python3
"""CPU per thread of `vsa serve` while `click_bench` switches its click load on and off.

Run beside a click_bench run (standard library only):

    python3 benches/scripts/thread_cpu.py [--every 0.5] [--tail 245]

It samples /proc/<pid>/task/*/stat (utime + stime, in clock ticks) of the server and of the
benchmark every `--every` seconds until the benchmark exits, then sums the last `--tail`
seconds (the interleaved run) by thread name, counting a sample as "on" when the click
thread's (`vsa-clicks`) time grew in it. It prints each thread name's share of one core, on
and off, the benchmark process's (its exited sender threads included: they are started per
window), and the system-wide user and kernel time from /proc/stat, all as % of one core
(200 % is both cores of a 2-core machine).
"""

import argparse
import os
import subprocess
import time


def pids(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def threads(pid):
    """{thread name: utime + stime ticks} of one process (empty once it is gone)."""
    by_name = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return by_name
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                # Fields after the ")" that closes the name: utime and stime are 14th and 15th.
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        by_name[name] = by_name.get(name, 0) + int(fields[11]) + int(fields[12])
    return by_name


def process(pid):
    """utime + stime ticks of a whole process, its exited threads included (0 once gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def system():
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return {"user": cpu[0], "system": cpu[2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=float, default=0.5)
    ap.add_argument("--tail", type=float, default=245.0)
    args = ap.parse_args()
    samples = []
    while True:
        bench = pids("click_bench")
        if not bench:
            break
        server = [p for p in pids(" serve ") if p not in bench]
        row = {"t": time.time(), **system()}
        for p in server[:1]:
            row.update({f"vsa:{k}": v for k, v in threads(p).items()})
        row["bench"] = process(bench[0])
        samples.append(row)
        time.sleep(args.every)
    if len(samples) < 3:
        raise SystemExit("no click_bench run seen")
    end = samples[-1]["t"]
    keys = sorted({k for s in samples for k in s if k != "t"})
    sums = {"on": dict.fromkeys(keys, 0), "off": dict.fromkeys(keys, 0)}
    secs = {"on": 0.0, "off": 0.0}
    for a, b in zip(samples, samples[1:]):
        if not end - args.tail <= a["t"] <= end - 3:
            continue
        side = "on" if b.get("vsa:vsa-clicks", 0) > a.get("vsa:vsa-clicks", 0) else "off"
        secs[side] += b["t"] - a["t"]
        for k in keys:
            sums[side][k] += b.get(k, 0) - a.get(k, 0)
    hz = os.sysconf("SC_CLK_TCK")
    for side in ("on", "off"):
        if secs[side] <= 0:
            continue
        shares = " ".join(
            f"{k}={100 * sums[side][k] / hz / secs[side]:.1f}%" for k in keys
        )
        print(f"{side} ({secs[side]:.0f} s): {shares}")


if __name__ == "__main__":
    main()
