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


def pids(*pgrep_args):
    """Processes `pgrep` finds with these arguments."""
    out = subprocess.run(["pgrep", *pgrep_args], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def ticks(stat_path):
    """utime + stime (clock ticks) in a /proc stat file; None once it is gone."""
    try:
        with open(stat_path) as f:
            # Fields after the ")" that closes the name: utime and stime are 14th and 15th.
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


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
        except OSError:
            continue
        used = ticks(f"/proc/{pid}/task/{t}/stat")
        if used is not None:
            by_name[name] = by_name.get(name, 0) + used
    return by_name


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
        # By executable name, so a shell whose command line names the benchmark is not it;
        # the server is the benchmark's child (whatever its binary is called: `--vsa PATH`).
        bench = pids("-x", "click_bench")
        if not bench:
            break
        row = {"t": time.time(), **system()}
        for p in pids("-P", str(bench[0]))[:1]:
            row.update({f"vsa:{k}": v for k, v in threads(p).items()})
        # The whole process's time counts its exited threads (senders start per window).
        row["bench"] = ticks(f"/proc/{bench[0]}/stat") or 0
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
