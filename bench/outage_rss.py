#!/usr/bin/env python3
"""What a long outage costs the agent's memory with the spool on.

Runs `sockwatch run` (1 s interval) with one network sink whose destination is down for the
whole run and a disk spool, while this script makes ≥ 100 events/s (loopback connections held
across a scan, then closed). Samples the agent's VmRSS every second and reports the RSS after
the warm-up (30 s), the peak after it, their difference, and the events the spool holds at the
end (from the agent's heartbeat).

Usage: bench/outage_rss.py [--minutes 10] [--sink kafka|http] [--binary PATH]
(default 10 minutes, kafka, target/release/sockwatch built first). The Kafka sink's brokers
are a port nothing listens on; the HTTP sink's receiver likewise.
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOCKWATCH = os.path.join(ROOT, "target", "release", "sockwatch")
WARM_UP = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def churn(stop):
    """About 60 connections a second, each held across a scan: ≥ 120 socket events/s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    while not stop.is_set():
        held = []
        for _ in range(60):
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            held.append((client, server))
        time.sleep(1.2)
        for client, server in held:
            client.close()
            server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sink", choices=["kafka", "http"], default="kafka")
    parser.add_argument("--binary")
    args = parser.parse_args()
    binary = args.binary or SOCKWATCH
    if not args.binary:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="sockwatch-outage-rss-")
    port = free_port()
    sink = {
        "kafka": f'type = "kafka"\nbootstrap_servers = ["127.0.0.1:{port}"]\ntopic = "t"\n',
        "http": f'type = "http"\nurl = "http://127.0.0.1:{port}/"\n',
    }[args.sink]
    config = os.path.join(work, "sockwatch.toml")
    with open(config, "w") as f:
        f.write(f'[agent]\nheartbeat = "5s"\nstate_dir = "{work}/state"\n\n'
                f'[[sinks]]\ntype = "stdout"\nkinds = ["state"]\n\n'
                f'[[sinks]]\n{sink}spool = {{ dir = "{work}/spool" }}\n')
    agent = subprocess.Popen([binary, "run", "--config", config], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    heartbeats = []
    threading.Thread(target=lambda: [heartbeats.append(json.loads(l)) for l in agent.stdout],
                     daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=churn, args=(stop,), daemon=True).start()
    samples = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(1)
            samples.append((time.monotonic() - started, rss_kib(agent.pid)))
    finally:
        stop.set()
        agent.terminate()
        agent.wait()
    warm = [kib for t, kib in samples if t >= WARM_UP]
    telemetry = [s for h in heartbeats if h.get("event", {}).get("action") == "heartbeat"
                 for s in h["sockwatch"].get("sinks") or [] if s["sink"].endswith("#telemetry")]
    last = telemetry[-1] if telemetry else {}
    print(json.dumps({
        "sink": args.sink,
        "minutes": args.minutes,
        "rss_kib_after_warm_up": warm[0],
        "rss_kib_peak": max(warm),
        "rss_growth_mib": round((max(warm) - warm[0]) / 1024, 1),
        "generated": last.get("generated"),
        "queued_in_spool": last.get("queued"),
        "dropped": {k: v for k, v in last.items() if k.startswith("dropped_")},
        "events_per_second": round(last.get("generated", 0) / (args.minutes * 60), 1),
    }))


if __name__ == "__main__":
    main()
