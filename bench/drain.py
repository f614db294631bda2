#!/usr/bin/env python3
"""How fast the HTTP sink drains a backlog after an outage (gzip on), and what draining costs the
scan.

Starts a bench/load.py state of P processes / S sockets, then `sockwatch run` (1 s interval,
heartbeat every 1 s on stdout) with an HTTP sink (NDJSON, gzip) whose receiver is down: the
baseline (one existing_socket event per socket) piles up in the sink's queue. Then a receiver
comes up on loopback and counts events per request. Reports events/s from the first to the last
accepted request to the one that completes the backlog, and the agent's scan duration (from heartbeats) while draining and after.

Usage: bench/drain.py [P/S]   (default 200/30000)
"""
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOCKWATCH = os.path.join(ROOT, "target", "release", "sockwatch")

# `target`: the backlog; `done`: when that many events had arrived (later ones are new events).
received = {"events": 0, "first": None, "done": None, "target": None}
lock = threading.Lock()


class Counter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        now = time.monotonic()
        with lock:
            received["events"] += raw.count(b"\n")
            received["first"] = received["first"] or now
            if received["done"] is None and received["events"] >= received["target"]:
                received["done"] = now
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    size = sys.argv[1] if len(sys.argv) > 1 else "200/30000"
    p, s = size.split("/")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "-P", p, "-S", s,
                             "-N", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    work = tempfile.mkdtemp(prefix="sockwatch-drain-")
    port = free_port()
    try:
        json.loads(load.stdout.readline())
        config = os.path.join(work, "sockwatch.toml")
        with open(config, "w") as f:
            f.write(f'[agent]\nheartbeat = "1s"\nqueue_capacity = 1000000\n'
                    f'state_dir = "{work}/state"\n\n'
                    f'[[sinks]]\ntype = "stdout"\nkinds = ["state"]\n\n'
                    f'[[sinks]]\ntype = "http"\nurl = "http://127.0.0.1:{port}/ingest"\n'
                    f'kinds = ["event", "state"]\n' + os.environ.get("DRAIN_EXTRA", ""))
        agent = subprocess.Popen([SOCKWATCH, "run", "--config", config], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        heartbeats = []
        threading.Thread(target=lambda: [heartbeats.append((time.monotonic(), json.loads(l)))
                                         for l in agent.stdout], daemon=True).start()
        # The baseline is queued once a heartbeat shows the telemetry lane holding it.
        def backlog():
            for _, h in reversed(heartbeats):
                for sink in h.get("sockwatch", {}).get("sinks") or []:
                    if sink["sink"].endswith("#telemetry"):
                        return sink["queued"]
            return 0
        deadline = time.monotonic() + 120
        while backlog() < int(s) * 0.9 and time.monotonic() < deadline:
            time.sleep(0.5)
        queued = backlog()
        received["target"] = queued
        server = ThreadingHTTPServer(("127.0.0.1", port), Counter)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        up = time.monotonic()
        while time.monotonic() - up < 180:
            time.sleep(0.5)
            with lock:
                if received["done"] is not None:
                    break
        drained = time.monotonic()
        time.sleep(6)
        agent.terminate()
        agent.wait()
        server.shutdown()
        scan = lambda t0, t1: [h["sockwatch"]["last_scan_duration_ms"] for t, h in heartbeats
                               if t0 <= t <= t1 and h["event"]["action"] == "heartbeat"]
        during = scan(received["first"] or up, drained)
        after = scan(drained + 1, drained + 6)
        # From the first accepted request (the lane may still be in its backoff when the
        # receiver comes up) to the one that completed the backlog.
        span = (received["done"] or drained) - (received["first"] or up)
        print(json.dumps({
            "state": size,
            "backlog_events": queued,
            "drain_seconds": round(span, 3),
            "drain_events_per_second": round(queued / span) if span else None,
            "scan_ms_while_draining": during,
            "scan_ms_after": after,
        }))
    finally:
        load.stdin.close()
        load.wait()


if __name__ == "__main__":
    main()
