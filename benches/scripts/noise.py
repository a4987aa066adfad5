"""A normal-priority competitor for the latency benchmarks: busy ON_MS of every PERIOD_MS
(a spin on perf_counter, then a sleep to the end of the period) until killed, e.g.
`python3 benches/scripts/noise.py 5 10 & ...; kill %1` takes half of one core. A stand-in
for a busier host that the guest's scheduler can see (docs/BENCHMARKS.md §5)."""

import sys
import time


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: noise.py ON_MS PERIOD_MS")
    on, period = float(sys.argv[1]) / 1000, float(sys.argv[2]) / 1000
    if not 0 < on <= period:
        sys.exit("need 0 < ON_MS <= PERIOD_MS")
    while True:
        t = time.perf_counter()
        while time.perf_counter() - t < on:
            pass
        time.sleep(max(0.0, period - (time.perf_counter() - t)))


if __name__ == "__main__":
    main()
