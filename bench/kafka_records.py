"""Kafka records per second, from Report RPC received to broker acknowledgement.

    .venv/bin/python bench/kafka_records.py [--records 200000] [--broker tansu|apache]

The hub (``mixerhub serve``, its own process) serves a config whose rule turns every
report bag into one logentry instance (12 variables, Istio's access-log shape) for a
``kafka`` handler (acks all, the defaults otherwise). This process sends pre-encoded
ReportRequests of 100 bags each (the batch Envoy's Mixer client used; delta encoding, its
default, unless --encoding independent), 8 RPCs in flight,
and the clock stops when the hub's ``mixerhub_kafka_records_total{result="sent"}`` (which
counts broker acknowledgements) reaches the number of bags sent. "per core" divides by the
CPU seconds the hub process used (user + system) over the same interval.

Baselines in the same run, against the same broker, with records of the same size and the
same producer settings: aiokafka's ``send()`` awaited in batches (what a plain Python
producer does), and aiokafka's ``send_batch`` with prebuilt batches (the floor of Python
Kafka producing here; the adapter produces this way). On 2 cores the broker and the load
process share the CPU with the hub: absolute numbers are lower than on a dedicated box.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services._proc import free_port, tcp_open  # noqa: E402

BAGS_PER_RPC = 100
IN_FLIGHT = 8

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: telemetry, namespace: istio-system}}
spec:
  compiledAdapter: kafka
  params:
    brokers: ["{bootstrap}"]
    topic: {topic}
    key: destination.service.host
    # Sustained throughput: a full buffer holds up the Report call (backpressure) rather
    # than dropping the oldest records, so every record sent is one acknowledged.
    fullPolicy: block
    maxBlockMs: 60000
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: accesslog, namespace: istio-system}}
spec:
  compiledTemplate: logentry
  params:
    severity: '"Info"'
    timestamp: request.time
    variables:
      sourceIp: source.ip | ip("0.0.0.0")
      sourceUser: source.principal | ""
      destinationService: destination.service.host | ""
      method: request.method | ""
      url: request.path | ""
      protocol: request.scheme | "http"
      responseCode: response.code | 0
      responseSize: response.size | 0
      latency: response.duration | "0ms"
      requestId: request.id | ""
      userAgent: request.useragent | ""
      headers: request.headers | emptyStringMap()
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: tokafka, namespace: istio-system}}
spec:
  actions:
  - handler: telemetry
    instances: [accesslog]
"""


def bags(start: int, count: int) -> list[dict[str, Any]]:
    t0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
    return [{
        "source.ip": ipaddress.ip_address("10.12.0.7"),
        "source.principal": "cluster.local/ns/default/sa/productpage",
        "destination.service.host": f"svc-{i % 20}.default.svc.cluster.local",
        "request.method": "GET", "request.path": f"/ratings/{i}", "request.scheme": "http",
        "response.code": 200, "response.size": 1234,
        "response.duration": dt.timedelta(milliseconds=7), "request.id": f"r-{i}",
        "request.useragent": "python-requests/2.31", "request.time": t0,
        "request.headers": {"x-request-id": f"r-{i}", ":authority": "ratings:9080"},
    } for i in range(start, start + count)]


def report_requests(total: int, encoding: str) -> list[bytes]:
    from mixerhub.attributes.compression import Encoder
    from mixerhub.proxy_filter.mixer_client import encode_report

    encoder = Encoder()
    return [r.SerializeToString() for i in range(0, total, BAGS_PER_RPC)
            for r in encode_report(encoder, bags(i, BAGS_PER_RPC), encoding)]


# ---- the hub -----------------------------------------------------------------------------

#: Every record the adapter is done with: acknowledged, failed, or dropped (a full buffer,
#: e.g. while a new broker creates the topic); waiting for "sent" alone could wait forever.
FINISHED = ("sent", "failed", "dropped")


def sent_records(http: int, results: tuple[str, ...] = ("sent",)) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mixerhub_kafka_records_total{")
               and any(f'result="{result}"' in line for result in results))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_reports(port: int, payloads: list[bytes]) -> None:
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/istio.mixer.v1.Mixer/Report")
        queue = list(payloads)

        async def worker() -> None:
            while queue:
                await call(queue.pop(), timeout=60)
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def hub_run(bootstrap: str, total: int, encoding: str) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="mixerhub-bench-"))
    (folder / "kafka.yaml").write_text(CONFIG.format(bootstrap=bootstrap, topic="bench-hub"))
    grpc_port, http = free_port(), free_port()
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] \
        if os.environ.get("BENCH_PROFILE") else []
    proc = subprocess.Popen(
        [sys.executable, *profile, "-m", "mixerhub", "serve", "--config",
         str(folder / "kafka.yaml"),
         "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http}",
         "--log-level", "warning", "--no-watch"],
        stdout=subprocess.DEVNULL, stderr=open(folder / "hub.log", "w"))  # noqa: SIM115
    try:
        while not tcp_open(http):
            time.sleep(0.1)
        asyncio.run(send_reports(grpc_port, report_requests(2_000, encoding)))  # warm-up
        while sent_records(http, FINISHED) < 2_000:
            time.sleep(0.05)
        payloads = report_requests(total, encoding)
        sent0, done0 = sent_records(http), sent_records(http, FINISHED)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        asyncio.run(send_reports(grpc_port, payloads))
        while sent_records(http, FINISHED) < done0 + total:
            time.sleep(0.2)  # a scrape costs the hub CPU too: not too often
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        sent = int(sent_records(http) - sent0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"records": sent, "seconds": elapsed, "cpu": cpu, "lost": total - sent}


# ---- the baselines -----------------------------------------------------------------------

def record_value(i: int) -> bytes:
    """A record the size of the hub's (its JSON, built once here)."""
    fields = {"variables": {k.split(".")[-1]: str(v) for k, v in bags(i, 1)[0].items()}}
    return json.dumps({"schema_version": 1, "id": f"x-{i}", "template": "logentry",
                       "instance": "accesslog.instance.istio-system",
                       "handler": "telemetry.handler.istio-system",
                       "timestamp": "2026-11-30T12:00:00Z", "reporter": None,
                       "fields": fields}).encode()


async def producer_run(bootstrap: str, total: int, batched: bool) -> dict[str, float]:
    from aiokafka import AIOKafkaProducer

    values = [record_value(i) for i in range(1000)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1_000_000, max_request_size=1_065_536)
    await producer.start()
    topic = "bench-batch" if batched else "bench-send"
    await (await producer.send(topic, b"warm-up"))
    partitions = sorted(await producer.partitions_for(topic))
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for start in range(0, total, 5_000):
        count = min(5_000, total - start)
        if batched:
            futures = await _send_batches(producer, topic, partitions, values, start, count)
        else:
            futures = [await producer.send(topic, values[i % 1000], key=b"k%d" % (i % 20))
                       for i in range(start, start + count)]
        await asyncio.gather(*futures)
    elapsed, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    await producer.stop()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"records": total, "seconds": elapsed, "cpu": cpu}


async def _send_batches(producer: Any, topic: str, partitions: list[int], values: list[bytes],
                        start: int, count: int) -> list[Any]:
    futures = []
    batch, partition = producer.create_batch(), partitions[start % len(partitions)]
    for i in range(start, start + count):
        if batch.append(key=b"k%d" % (i % 20), value=values[i % 1000], timestamp=None) is None:
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=b"k%d" % (i % 20), value=values[i % 1000], timestamp=None)
    batch.close()
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


# ---- main --------------------------------------------------------------------------------

def start_broker(kind: str) -> Any:
    from tests.services import kafka

    if kind == "tansu":
        return kafka.Tansu().start()
    path = kafka.classpath_file()
    if not path.exists():
        sys.exit("Apache Kafka is not provisioned: run tests/services/provision_kafka.sh")
    return kafka.ApacheKafka(Path(tempfile.mkdtemp(prefix="mixerhub-bench-kafka-")),
                             path.read_text().strip()).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--broker", choices=("tansu", "apache"), default="tansu")
    parser.add_argument("--encoding", choices=("delta", "independent"), default="delta",
                        help="ReportRequest encoding (delta: Envoy's Mixer client's default)")
    args = parser.parse_args()
    total = args.records - args.records % BAGS_PER_RPC
    broker = start_broker(args.broker)
    try:
        results = {}
        print(f"… aiokafka send(), {total} records", flush=True)
        results["aiokafka send() (baseline)"] = asyncio.run(
            producer_run(broker.bootstrap, total, batched=False))
        print(f"… aiokafka send_batch, {total} records", flush=True)
        results["aiokafka send_batch (baseline)"] = asyncio.run(
            producer_run(broker.bootstrap, total, batched=True))
        print(f"… hub, Report RPC → broker ack, {total} records", flush=True)
        results["mixerhub: Report → kafka adapter → ack"] = hub_run(broker.bootstrap, total,
                                                                     args.encoding)
    finally:
        broker.stop()
    print(f"\nKafka records, broker {args.broker}, acks=all, {BAGS_PER_RPC} bags per "
          f"{args.encoding} ReportRequest, {os.cpu_count()} cores (broker and load share "
          "them)\n")
    print(f"{'path':<40}{'records':>9}{'seconds':>9}{'records/s':>11}{'CPU s':>8}"
          f"{'rec/s per core':>16}{'lost':>6}")
    for name, r in results.items():
        print(f"{name:<40}{r['records']:>9}{r['seconds']:>9.2f}"
              f"{r['records'] / r['seconds']:>11.0f}{r['cpu']:>8.2f}"
              f"{r['records'] / r['cpu']:>16.0f}{r.get('lost', 0):>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
