#!/usr/bin/env python3
"""Steady-state cost of `sockwatch run` (1 s interval) on a host state from bench/load.py, static
and with connection churn, next to the least a tick can cost on the same state (the syscalls of
examples/tick_floor.rs: readlink of every fd plus the one stat per pipe or path fd that the graph
needs, and readlinks only) and to running `ss -tuanp` once per second.

For each P/S: starts the load, optionally a churn process (CHURN loopback connections opened and
closed per second), lets the agent run WARMUP seconds, then measures its CPU time (utime+stime from
/proc/<pid>/stat) and peak RSS (VmHWM) over WINDOW seconds; then times `ss -tuanp` WINDOW times.

Usage: bench/steady.py [--window 20] [--churn 300] [--binary PATH] [P/S ...]
       (default 500/5000 2000/50000; --binary: another build of the agent, an earlier commit's)
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOCKWATCH = os.path.join(ROOT, "target", "release", "sockwatch")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "tick_floor")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def churn(rate, stop):
    """Opens and closes `rate` loopback connections per second until `stop` is set."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    threading.Thread(target=lambda: [listener.accept()[0].close() for _ in iter(int, 1)],
                     daemon=True).start()
    gap = 1.0 / rate
    while not stop.is_set():
        start = time.monotonic()
        socket.create_connection(listener.getsockname()).close()
        time.sleep(max(0.0, gap - (time.monotonic() - start)))


SETTLE = 5  # seconds after the load is up before anything is measured


def tick_floor():
    """CPU per tick of examples/tick_floor, 8 ticks paced at 1 s like the agent's."""
    out = subprocess.run([FLOOR, "8", "1000"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def measure(size, window, warmup, churn_rate, binary):
    p, s = (int(x) for x in size.split("/"))
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "-P", str(p),
                             "-S", str(s), "-N", "1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    try:
        json.loads(load.stdout.readline())
        if churn_rate:
            threading.Thread(target=churn, args=(churn_rate, stop), daemon=True).start()
        # The floor is measured before and after the agent, paced at the agent's 1 s interval,
        # and averaged: both see the same host state, settled the same way.
        time.sleep(SETTLE)
        floors = [tick_floor()]
        with open(os.devnull, "wb") as null:
            agent = subprocess.Popen([binary, "run", "--interval", "1s"], stdout=null,
                                     stderr=null)
            time.sleep(warmup)
            c0, t0 = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(window)
            c1, t1 = cpu_seconds(agent.pid), time.monotonic()
            rss = peak_rss_mib(agent.pid)
            agent.terminate()
            agent.wait()
            floors.append(tick_floor())
            ss_cpu = 0.0
            for _ in range(int(window)):
                start = time.monotonic()
                proc = subprocess.Popen(["ss", "-tuanp"], stdout=null)
                _, _, usage = os.wait4(proc.pid, 0)
                ss_cpu += usage.ru_utime + usage.ru_stime
                time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
        mean = lambda key: sum(f[key] for f in floors) / len(floors)
        return {"size": size, "churn_per_s": churn_rate, "agent_cpu_pct": 100 * (c1 - c0) / (t1 - t0),
                "floor_cpu_pct": 100 * mean("cpu_seconds_per_tick"),
                "links_floor_cpu_pct": 100 * mean("cpu_seconds_per_tick_links"),
                "agent_peak_rss_mib": rss, "ss_once_per_s_cpu_pct": 100 * ss_cpu / window}
    finally:
        stop.set()
        load.stdin.close()
        load.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--churn", type=int, default=300)
    # Another build of the agent to measure on the same states (an earlier commit's).
    parser.add_argument("--binary", default=SOCKWATCH)
    parser.add_argument("sizes", nargs="*", default=["500/5000", "2000/50000"])
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins", "--examples"], cwd=ROOT,
                   check=True)
    print("| P/S | churn/s | sockwatch run CPU % | floor: fd reads CPU % | ratio | "
          "floor: readlinks only CPU % | ratio | peak RSS MiB | ss -tuanp 1/s CPU % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        for rate in (0, args.churn):
            r = measure(size, args.window, args.warmup, rate, args.binary)
            ratio = r["agent_cpu_pct"] / r["floor_cpu_pct"]
            links_ratio = r["agent_cpu_pct"] / r["links_floor_cpu_pct"]
            print(f"| {size} | {rate} | {r['agent_cpu_pct']:.1f} | {r['floor_cpu_pct']:.1f} | "
                  f"{ratio:.2f} | {r['links_floor_cpu_pct']:.1f} | {links_ratio:.2f} | "
                  f"{r['agent_peak_rss_mib']:.1f} | {r['ss_once_per_s_cpu_pct']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
