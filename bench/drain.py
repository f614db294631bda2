#!/usr/bin/env python3
"""How fast the HTTP sink drains a backlog after an outage (gzip on), and what draining costs the
scan.

Starts a bench/load.py state of P processes / S sockets, then `sockwatch run` (1 s interval,
heartbeat every 1 s on stdout) with an HTTP sink (NDJSON, gzip) whose receiver is down: the
baseline (one existing_socket event per socket) piles up in the sink's queue. Then a receiver
comes up on loopback and counts events per request. Reports events/s from the first to the last
accepted request to the one that completes the backlog, and the agent's scan duration (from heartbeats) while draining and after.

Usage: bench/drain.py [P/S] [--binary PATH] [--sink http|otlp-protobuf|otlp-json|kafka]
(default 200/30000, target/release/sockwatch built first, http). The OTLP sinks' receiver counts
LogRecords; protobuf needs the `opentelemetry-proto` package, e.g. the tests' venv:
target/test-tools/otlp-venv/bin/python3 bench/drain.py --sink otlp-protobuf
The Kafka sink's "receiver" is tansu (the tests' build, killed while the backlog piles up and
restarted on its database), counted by the topic's high watermarks every 50 ms; it needs
confluent-kafka, e.g. target/test-tools/kafka-venv/bin/python3 bench/drain.py --sink kafka.
tansu stores each record in SQLite and is slower than the sink; `--broker mock` uses
librdkafka's in-memory mock broker instead (set down while the backlog piles up, then up), so
that the rate measured is the sink's.
"""
import argparse
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
        count = COUNT[SINK](raw)
        with lock:
            received["events"] += count
            received["first"] = received["first"] or now
            if received["done"] is None and received["events"] >= received["target"]:
                received["done"] = now
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def otlp_records(message):
    return sum(len(scope.log_records) for resource in message.resource_logs
               for scope in resource.scope_logs)


def otlp_protobuf(raw):
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    request = logs_service_pb2.ExportLogsServiceRequest()
    request.ParseFromString(raw)
    return otlp_records(request)


def otlp_json(raw):
    # One "timeUnixNano" key per LogRecord (bodies are escaped JSON text, and the observed
    # time's key is "observedTimeUnixNano"). Counting keys, not parsing: a lane has one request
    # in flight, so a receiver parsing 1 MiB of JSON in Python would be what the bench measures.
    return raw.count(b'"timeUnixNano"')


COUNT = {"http": lambda raw: raw.count(b"\n"), "otlp-protobuf": otlp_protobuf,
         "otlp-json": otlp_json, "kafka": None}
TANSU = os.path.join(os.environ.get("SOCKWATCH_TOOL_CACHE", "/var/cache/sockwatch-test"),
                     "tansu-0.6.0", "bin", "tansu")


class Tansu:
    """A tansu broker on loopback, its SQLite database in `work`."""

    def __init__(self, work, port):
        self.work, self.port, self.process = work, port, None

    def start(self):
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "sqlite://broker.db"], cwd=self.work,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from confluent_kafka.admin import AdminClient
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"}).list_topics(timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        raise SystemExit("tansu did not answer")

    def create_topic(self, topic):
        subprocess.run([TANSU, "topic", "create", "--broker", f"tcp://127.0.0.1:{self.port}",
                        "--partitions", "3", topic], check=True, stdout=subprocess.DEVNULL)

    def kill(self):
        self.process.kill()
        self.process.wait()

    def count(self, topic):
        count_records(self.port, topic)


class MockBroker:
    """librdkafka's mock cluster (the library confluent-kafka ships), one broker keeping records
    in memory, run by this process: a Kafka-protocol broker that is not the bottleneck, so that
    what is measured is the sink. Down (connections closed, new ones refused) until started."""

    def __init__(self):
        import ctypes
        import glob
        import confluent_kafka
        libs = os.path.join(os.path.dirname(os.path.dirname(confluent_kafka.__file__)),
                            "confluent_kafka.libs")
        found = glob.glob(os.path.join(libs, "librdkafka-*.so*"))
        if not found:
            raise SystemExit(f"no librdkafka in {libs}")
        lib = self.lib = ctypes.CDLL(found[0])
        pointer = ctypes.c_void_p
        lib.rd_kafka_conf_new.restype = pointer
        lib.rd_kafka_conf_set.argtypes = [pointer, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_new.restype = pointer
        lib.rd_kafka_new.argtypes = [ctypes.c_int, pointer, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_mock_cluster_new.restype = pointer
        lib.rd_kafka_mock_cluster_new.argtypes = [pointer, ctypes.c_int]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [pointer]
        lib.rd_kafka_mock_topic_create.argtypes = [pointer, ctypes.c_char_p, ctypes.c_int,
                                                   ctypes.c_int]
        lib.rd_kafka_mock_broker_set_down.argtypes = [pointer, ctypes.c_int32]
        lib.rd_kafka_mock_broker_set_up.argtypes = [pointer, ctypes.c_int32]
        error = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # The handle only hosts the cluster: it has no brokers of its own to warn about.
        lib.rd_kafka_conf_set(conf, b"log_level", b"0", error, len(error))
        self.handle = lib.rd_kafka_new(0, conf, error, len(error))
        if not self.handle:
            raise SystemExit(f"librdkafka: {error.value.decode()}")
        self.cluster = lib.rd_kafka_mock_cluster_new(self.handle, 1)
        bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self.cluster).decode()
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        if host != "127.0.0.1":
            raise SystemExit(f"the mock broker listens on {bootstrap}, not on loopback")
        self.port = int(port)

    def create_topic(self, topic):
        if self.lib.rd_kafka_mock_topic_create(self.cluster, topic.encode(), 3, 1):
            raise SystemExit("the mock broker did not create the topic")

    def start(self):
        self.lib.rd_kafka_mock_broker_set_up(self.cluster, 1)

    def kill(self):
        self.lib.rd_kafka_mock_broker_set_down(self.cluster, 1)

    def count(self, topic):
        count_records(self.port, topic)


def count_records(port, topic):
    """Records in `topic`, from the partitions' high watermarks, every 50 ms."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "bench"})
    partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    while received["done"] is None:
        total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                    for p in partitions)
        now = time.monotonic()
        with lock:
            if total and received["first"] is None:
                received["first"] = now
            received["events"] = total
            if total >= received["target"]:
                received["done"] = now
        time.sleep(0.05)
    consumer.close()
SINK = "http"


def sink_config(sink, port):
    if sink == "kafka":
        return (f'[[sinks]]\ntype = "kafka"\nbootstrap_servers = ["127.0.0.1:{port}"]\n'
                f'topic = "drain"\n' + os.environ.get("DRAIN_KAFKA", ""))
    if sink == "http":
        return f'[[sinks]]\ntype = "http"\nurl = "http://127.0.0.1:{port}/ingest"\n'
    encoding = sink.split("-")[1]
    return f'[[sinks]]\ntype = "otlp"\nendpoint = "http://127.0.0.1:{port}"\nencoding = "{encoding}"\n'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    global SINK
    parser = argparse.ArgumentParser()
    parser.add_argument("size", nargs="?", default="200/30000")
    parser.add_argument("--binary", help="a sockwatch binary (default: build the release one)")
    parser.add_argument("--sink", choices=sorted(COUNT), default="http")
    parser.add_argument("--broker", choices=["tansu", "mock"], default="tansu",
                        help="the Kafka broker: tansu on SQLite, or librdkafka's in-memory mock")
    args = parser.parse_args()
    size, SINK = args.size, args.sink
    p, s = size.split("/")
    binary = args.binary or SOCKWATCH
    if not args.binary:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "-P", p, "-S", s,
                             "-N", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    work = tempfile.mkdtemp(prefix="sockwatch-drain-")
    port = free_port()
    try:
        json.loads(load.stdout.readline())
        broker = None
        if SINK == "kafka":
            # The topic exists, the broker is down while the backlog piles up.
            broker = Tansu(work, port) if args.broker == "tansu" else MockBroker()
            port = broker.port
            broker.start()
            broker.create_topic("drain")
            broker.kill()
        config = os.path.join(work, "sockwatch.toml")
        with open(config, "w") as f:
            f.write(f'[agent]\nheartbeat = "1s"\nqueue_capacity = 1000000\nbaseline = "full"\n'
                    f'state_dir = "{work}/state"\n\n'
                    f'[[sinks]]\ntype = "stdout"\nkinds = ["state"]\n\n'
                    + sink_config(SINK, port) +
                    f'kinds = ["event", "state"]\n' + os.environ.get("DRAIN_EXTRA", ""))
        agent = subprocess.Popen([binary, "run", "--config", config], stdout=subprocess.PIPE,
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
        if broker:
            broker.start()
            threading.Thread(target=broker.count, args=("drain",), daemon=True).start()
        else:
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
        if broker:
            broker.kill()
        else:
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
            "sink": SINK,
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
