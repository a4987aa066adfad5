#!/usr/bin/env python3
"""CPU per click on the server's click thread while `click_bench` absorbs clicks flat out.

    python3 benches/scripts/absorb_cpu.py [--repeats 3] [--] [click_bench arguments...]

Runs `click_bench --absorb-only` (default arguments: `--items 5000 --absorb 2000000`; any
given after `--` replace them, and `--absorb-only` is always added) `--repeats` times. In each
run it finds the `vsa serve` the benchmark started and its `vsa-clicks` thread, reads that
thread's CPU time (`/proc/<pid>/task/<tid>/schedstat`, nanoseconds on a CPU; utime + stime
from `stat` where schedstat is missing) when the benchmark prints its `## clicks` line (the
query log is built, no click sent yet) and again when it prints the absorb result, and
divides by the clicks accepted. Prints one line per run and the median. Standard library
only; Linux only. Build first (`./scripts/setup.sh` or `cargo build --release --workspace`),
and compile nothing while it runs.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from thread_cpu import ticks  # noqa: E402  (utime + stime of one /proc stat file)

TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def children(pid):
    """Child process ids of `pid` (from each process's parent in /proc/*/stat)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def comm(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_ns(pid, tid):
    """CPU time of one thread in ns (None once it is gone)."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    used = ticks(f"{base}/stat")
    return None if used is None else used * TICK_NS


def click_thread(bench_pid, deadline_s=60.0):
    """(server pid, click thread id): the benchmark's child with a `vsa-clicks` thread."""
    end = time.time() + deadline_s
    while time.time() < end:
        for child in children(bench_pid):
            try:
                tids = os.listdir(f"/proc/{child}/task")
            except OSError:
                continue
            for tid in tids:
                if comm(f"/proc/{child}/task/{tid}/comm") == "vsa-clicks":
                    return child, int(tid)
        time.sleep(0.05)
    raise SystemExit("no vsa serve with a vsa-clicks thread under the benchmark")


def one_run(bench, args):
    """(µs of click-thread CPU per accepted click, clicks/s applied) of one absorb run."""
    p = subprocess.Popen([bench, *args, "--absorb-only"], stdout=subprocess.PIPE, text=True)
    server = start = None
    per_click = rate = None
    for line in p.stdout:
        sys.stdout.write("  " + line)
        if line.startswith("## clicks"):
            server = click_thread(p.pid)
            start = cpu_ns(*server)
        elif line.startswith("- clicks absorbed") and server is not None:
            used = cpu_ns(*server)
            accepted = re.search(r"(\d+) accepted", line)
            applied = re.search(r"absorbed: (\d+)/s", line)
            if used is None or start is None or not accepted:
                raise SystemExit(f"could not read the click thread or the count: {line!r}")
            per_click = (used - start) / 1e3 / max(int(accepted.group(1)), 1)
            rate = int(applied.group(1)) if applied else None
    if p.wait() != 0 or per_click is None:
        raise SystemExit(f"click_bench failed (exit {p.returncode})")
    return per_click, rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bench", default="target/release/click_bench")
    ap.add_argument("bench_args", nargs="*")
    a = ap.parse_args()
    args = a.bench_args or ["--items", "5000", "--absorb", "2000000"]
    results = []
    for i in range(a.repeats):
        per_click, rate = one_run(a.bench, args)
        results.append(per_click)
        print(f"run {i + 1}: {per_click:.3f} µs of click-thread CPU per click, {rate} clicks/s applied")
    print(f"median of {len(results)}: {statistics.median(results):.3f} µs per click "
          f"(min {min(results):.3f}, max {max(results):.3f})")


if __name__ == "__main__":
    main()
