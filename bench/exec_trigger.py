#!/usr/bin/env python3
"""What `[agent] exec_trigger` costs: agent CPU with the trigger off and on, alternating, on a host
state from bench/load.py while a shell executes /bin/true every 50 ms (20 execs/s, the kind of
steady exec traffic cron jobs and monitoring probes make). With the trigger on, every exec asks
for a scan, so the agent scans up to 1 s / exec_trigger_min_gap times a second.

Usage: bench/exec_trigger.py [--window 20] [--rounds 2] [P/S]   (default 500/5000)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOCKWATCH = os.path.join(os.path.dirname(HERE), "target", "release", "sockwatch")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def agent_cpu_percent(trigger, window, scratch):
    config = os.path.join(scratch, "sockwatch.toml")
    with open(config, "w") as f:
        f.write(f'[agent]\nexec_trigger = {trigger}\nstate_dir = "{scratch}/state"\n'
                f'[[sinks]]\ntype = "file"\npath = "{scratch}/events.ndjson"\n')
    agent = subprocess.Popen([SOCKWATCH, "run", "--config", config],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)
        before, started = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(window)
        return 100 * (cpu_seconds(agent.pid) - before) / (time.monotonic() - started)
    finally:
        agent.terminate()
        agent.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("size", nargs="?", default="500/5000")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], check=True,
                   cwd=os.path.dirname(HERE))
    processes, sockets = args.size.split("/")
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "-P", processes,
                             "-S", sockets], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    execs = None
    try:
        print("load:", load.stdout.readline().strip(), flush=True)
        time.sleep(5)
        execs = subprocess.Popen(["bash", "-c", "while :; do /bin/true; sleep 0.05; done"])
        results = {"false": [], "true": []}
        with tempfile.TemporaryDirectory() as scratch:
            for _ in range(args.rounds):
                for trigger in results:
                    results[trigger].append(agent_cpu_percent(trigger, args.window, scratch))
        for trigger, figures in results.items():
            print(f"exec_trigger = {trigger}: agent CPU % "
                  + ", ".join(f"{f:.1f}" for f in figures), flush=True)
    finally:
        if execs:
            execs.kill()
            execs.wait()
        load.stdin.close()
        load.wait()


if __name__ == "__main__":
    main()
