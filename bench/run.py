#!/usr/bin/env python3
"""Times `sockwatch scan` against `ss -tuanpx` on the same host state, in one run.

For each size P/S/N it starts bench/load.py, then alternates the two commands (one warm-up each,
then --runs timed runs each), both printing every row to /dev/null, and reports medians, the
ratio sockwatch/ss, and each command's peak RSS (from wait4). Results go to stdout as a table and
are appended as JSON lines to bench/results.jsonl.

Usage: bench/run.py [--runs 7] [SIZE ...]   (SIZE = P/S/N, default: the issue's three sizes)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOCKWATCH = os.path.join(ROOT, "target", "release", "sockwatch")


def timed(argv):
    """Wall seconds and peak RSS (KiB) of one run, output discarded."""
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=null)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{argv} exited with {status}")
    return wall, usage.ru_maxrss


def measure(size, runs):
    p, s, n = (int(x) for x in size.split("/"))
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "-P", str(p),
                             "-S", str(s), "-N", str(n)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        state = json.loads(load.stdout.readline())
        commands = {"sockwatch": [SOCKWATCH, "scan"], "ss": ["ss", "-tuanpx"]}
        samples = {name: [] for name in commands}
        for argv in commands.values():
            timed(argv)  # warm-up
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(timed(argv))
        result = {"size": size, **state, "runs": runs}
        for name, values in samples.items():
            result[f"{name}_median_s"] = statistics.median(v[0] for v in values)
            result[f"{name}_peak_rss_mib"] = max(v[1] for v in values) / 1024
        result["ratio"] = result["sockwatch_median_s"] / result["ss_median_s"]
        return result
    finally:
        load.stdin.close()
        load.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("sizes", nargs="*", default=["1000/20000/1", "1000/100000/1", "500/20000/4"])
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    print("| P/S/N | sockwatch median s | ss -tuanpx median s | ratio | sockwatch peak RSS MiB | ss peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        r = measure(size, args.runs)
        with open(os.path.join(HERE, "results.jsonl"), "a") as out:
            out.write(json.dumps(r) + "\n")
        print(f"| {size} | {r['sockwatch_median_s']:.3f} | {r['ss_median_s']:.3f} | "
              f"{r['ratio']:.2f} | {r['sockwatch_peak_rss_mib']:.1f} | {r['ss_peak_rss_mib']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
