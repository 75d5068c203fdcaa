#!/usr/bin/env python3
"""Latency quantiles of one bench run, steady state apart from the start.

usage: latency.py series|trace FILE [PNG TITLE]

  series: krib-loadgen's "produced_ms latency_ms partition" lines (produced_ms
          counted from the first message), from `drain --series`;
  trace:  krib's "acknowledged_wall_ms latency_ms slot" lines
          (pipeline.latency_trace_file).

Events produced in the first TRANSIENT_S seconds after the first one are the
start transient; the rest is the steady state. Prints one line:
  steady p50=.. p99=.. p999=.. max=.. n=.. transient p50=.. p99=.. p999=.. max=.. n=..
(milliseconds). With PNG: the p50, p99 and max of every 100 ms of produce
time, plotted with gnuplot (when it is installed).
"""
import os
import subprocess
import sys

TRANSIENT_S = 2.0


def quantiles(v):
    if not v:
        return "p50=- p99=- p999=- max=- n=0"
    v.sort()
    n = len(v)
    q = lambda x: v[min(n - 1, int(n * x))]
    return f"p50={q(0.5)} p99={q(0.99)} p999={q(0.999)} max={v[-1]} n={n}"


def main():
    kind, path = sys.argv[1], sys.argv[2]
    pts = []
    with open(path) as f:
        for line in f:
            a = line.split()
            if len(a) < 2:
                continue
            t, lat = int(a[0]), int(a[1])
            pts.append((t - lat if kind == "trace" else t, max(lat, 0)))
    if not pts:
        print("steady " + quantiles([]) + " transient " + quantiles([]))
        return
    t0 = min(p[0] for p in pts)
    steady = [lat for t, lat in pts if t - t0 >= TRANSIENT_S * 1000]
    start = [lat for t, lat in pts if t - t0 < TRANSIENT_S * 1000]
    print("steady " + quantiles(steady) + " transient " + quantiles(start))
    if len(sys.argv) > 4:
        png, title = sys.argv[3], sys.argv[4]
        bins = {}
        for t, lat in pts:
            bins.setdefault((t - t0) // 100, []).append(lat)
        dat = png + ".dat"
        with open(dat, "w") as f:
            for b in sorted(bins):
                v = sorted(bins[b])
                f.write(f"{b / 10:.1f} {v[len(v) // 2]} {v[min(len(v) - 1, len(v) * 99 // 100)]} {v[-1]}\n")
        script = f"""set terminal png size 900,420
set output "{png}"
set title "{title}: latency over time (100 ms bins of produce time)"
set xlabel "seconds since the first event"
set ylabel "ms"
set logscale y
plot "{dat}" using 1:($2+1) with lines title "p50+1", "{dat}" using 1:($3+1) with lines title "p99+1", "{dat}" using 1:($4+1) with lines title "max+1"
"""
        try:
            subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, check=False)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
