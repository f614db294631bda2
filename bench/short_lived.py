#!/usr/bin/env python3
"""What reporting short-lived connections costs: agent CPU with `[agent] short_lived` off and on,
on a bench/load.py state with connection churn (loopback connections opened and closed per
second, both ends freed), and what it reported (heartbeat `short_lived` counters).

For each churn rate, alternating off and on for each round: starts the agent (1 s interval,
heartbeat 1 s, exec checks off so that only this differs), lets it warm up, then measures its CPU
time over WINDOW seconds.

Usage: bench/short_lived.py [--window 15] [--rounds 2] [--rates 0,300,1000] [P/S]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from steady import ROOT, SOCKWATCH, churn, cpu_seconds  # noqa: E402

WARMUP = 4


def run_agent(on, window):
    """Agent CPU % over `window` and its last heartbeat's short_lived counters."""
    with tempfile.TemporaryDirectory() as scratch:
        config = os.path.join(scratch, "sockwatch.toml")
        with open(config, "w") as f:
            f.write(f"[agent]\nshort_lived = {'true' if on else 'false'}\n"
                    f"state_dir = \"{scratch}/state\"\n")
        out = os.path.join(scratch, "events")
        with open(out, "wb") as sink:
            agent = subprocess.Popen([SOCKWATCH, "run", "--config", config, "--interval", "1s",
                                      "--heartbeat", "1s", "--no-exec-checks",
                                      "--no-baseline"], stdout=sink, stderr=subprocess.DEVNULL)
            time.sleep(WARMUP)
            c0, t0 = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(window)
            c1, t1 = cpu_seconds(agent.pid), time.monotonic()
            agent.terminate()
            agent.wait()
        counters = {}
        with open(out) as f:
            for line in f:
                event = json.loads(line)
                if event["event"]["action"] == "heartbeat":
                    counters = event["sockwatch"].get("short_lived", {})
        return 100 * (c1 - c0) / (t1 - t0), counters


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", default="0,300,1000")
    parser.add_argument("size", nargs="?", default="500/5000")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    p, s = (int(x) for x in args.size.split("/"))
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "-P", str(p),
                             "-S", str(s), "-N", "1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        json.loads(load.stdout.readline())
        time.sleep(5)
        print(f"{args.size}, window {args.window:.0f} s, {args.rounds} rounds")
        print("| churn/s | CPU % off | CPU % on | ratio | notices/s | reported/s | over budget/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for rate in (int(r) for r in args.rates.split(",")):
            stop = threading.Event()
            if rate:
                threading.Thread(target=churn, args=(rate, stop), daemon=True).start()
            off, on, last = [], [], {}
            for _ in range(args.rounds):
                off.append(run_agent(False, args.window)[0])
                cpu, last = run_agent(True, args.window)
                on.append(cpu)
            stop.set()
            time.sleep(1)
            seconds = WARMUP + args.window
            per_s = lambda key: last.get(key, 0) / seconds
            mean = lambda xs: sum(xs) / len(xs)
            print(f"| {rate} | {mean(off):.1f} | {mean(on):.1f} | {mean(on) / mean(off):.2f} | "
                  f"{per_s('notices'):.0f} | {per_s('reported'):.0f} | "
                  f"{per_s('over_budget'):.0f} |", flush=True)
    finally:
        load.stdin.close()
        load.wait()


if __name__ == "__main__":
    main()
