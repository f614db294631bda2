#!/usr/bin/env python3
"""Builds a host state for the scan benchmark: P processes holding S sockets over N network
namespaces, skewed (zipf) so a few processes hold thousands, plus pipes and files.

Sockets per process: ~80 % TCP (one listener, then loopback pairs connected and accepted in the
same process), ~10 % UDP (bound, half of them connected), ~10 % unix socketpairs. Every process
also holds two pipes and three files. Namespace 0 is the one this script runs in; the others are
made with `ip netns add` and removed at the end. Traffic stays on loopback.

Prints one JSON line when everything is up ({"processes", "sockets", "namespaces"}), then holds the
state until stdin closes.
"""
import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys

PER_PROCESS_CAP = 15000  # the per-process fd hard limit here is 20000


def shares(processes, sockets, zipf):
    weights = [1.0 / (i + 1) ** zipf for i in range(processes)]
    total = sum(weights)
    counts = [max(4, int(sockets * w / total)) for w in weights]
    overflow = sum(max(0, c - PER_PROCESS_CAP) for c in counts)
    counts = [min(c, PER_PROCESS_CAP) for c in counts]
    i = len(counts) - 1
    while overflow > 0:  # hand the excess to the lightest processes
        room = PER_PROCESS_CAP - counts[i]
        take = min(room, overflow, 64)
        counts[i] += take
        overflow -= take
        i = i - 1 if i > 0 else len(counts) - 1
    drift = sockets - sum(counts)
    counts[-1] = max(4, counts[-1] + drift)
    return counts


def hold(count, files):
    """Runs in a child: opens `count` sockets and holds them."""
    keep = []
    unix_pairs = count // 20
    for _ in range(unix_pairs):
        keep.extend(socket.socketpair())
    udp = count // 10
    for i in range(udp):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        if i % 2:
            u.connect(("127.0.0.1", 9))
        keep.append(u)
    tcp = count - 2 * unix_pairs - udp
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    keep.append(listener)
    pairs = max(0, (tcp - 1) // 2)
    address = listener.getsockname()
    while pairs > 0:
        batch = min(pairs, 1000)
        clients = [socket.create_connection(address) for _ in range(batch)]
        keep.extend(clients)
        keep.extend(listener.accept()[0] for _ in range(batch))
        pairs -= batch
    keep.extend(os.pipe())
    keep.extend(os.pipe())
    keep.extend(open(f, "rb") for f in files)
    return keep


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-P", type=int, default=500)
    parser.add_argument("-S", type=int, default=20000)
    parser.add_argument("-N", type=int, default=1)
    parser.add_argument("--zipf", type=float, default=1.0)
    args = parser.parse_args()

    libc = ctypes.CDLL(None, use_errno=True)
    names = [f"swbench-{os.getpid()}-{k}" for k in range(1, args.N)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    files = ["/etc/hostname", "/etc/passwd", "/dev/null"]
    counts = shares(args.P, args.S, args.zipf)
    ready_r, ready_w = os.pipe()
    children = []
    for i, count in enumerate(counts):
        pid = os.fork()
        if pid == 0:
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the generator
            os.close(ready_r)
            k = i % args.N
            if k:
                fd = os.open(f"/run/netns/{names[k - 1]}", os.O_RDONLY)
                if libc.setns(fd, 0x40000000) != 0:
                    os._exit(3)
                os.close(fd)
            keep = hold(count, files)
            os.write(ready_w, b"1")
            os.close(ready_w)
            signal.pause()
            os._exit(len(keep) and 0)
        children.append(pid)
    os.close(ready_w)
    got = 0
    while got < len(children):
        chunk = os.read(ready_r, 4096)
        if not chunk:
            break
        got += len(chunk)
    print(json.dumps({"processes": got, "sockets": sum(counts), "namespaces": args.N,
                      "heaviest": max(counts)}), flush=True)
    sys.stdin.read()
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], check=False)


if __name__ == "__main__":
    main()
