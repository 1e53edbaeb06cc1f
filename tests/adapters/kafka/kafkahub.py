"""What the Kafka tests share: a config with a kafka handler, a hub serving it, report
bags, the JSON Schemas of docs/schemas/."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mixerhub.app import Hub, Settings

ROOT = Path(__file__).resolve().parents[3]
T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)

INSTANCES_AND_RULE = """
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: accesslog, namespace: istio-system}
spec:
  compiledTemplate: logentry
  params:
    severity: '"Info"'
    timestamp: request.time
    variables:
      requestId: request.id
      path: request.path | ""
      responseCode: response.code | 0
      sourceIp: source.ip | ip("0.0.0.0")
      latency: response.duration | "0ms"
      headers: request.headers | emptyStringMap()
      apiKey: request.api_key | ""
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcount, namespace: istio-system}
spec:
  compiledTemplate: metric
  params:
    value: "1"
    dimensions:
      destination: destination.service.host | "unknown"
      code: response.code | 0
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: tokafka, namespace: istio-system}
spec:
  match: context.protocol == "http"
  actions:
  - handler: telemetry
    instances: [INSTANCES]
"""


def kafka_config(bootstrap: str, topic: str, instances: str = "accesslog",
                 **params: Any) -> str:
    """A config whose rule sends every http report to a kafka handler."""
    handler = {"apiVersion": "config.istio.io/v1alpha2", "kind": "handler",
               "metadata": {"name": "telemetry", "namespace": "istio-system"},
               "spec": {"compiledAdapter": "kafka",
                        "params": {"brokers": [bootstrap], "topic": topic, **params}}}
    return yaml.safe_dump(handler) + INSTANCES_AND_RULE.replace("INSTANCES", instances)


def write_config(folder: Path, text: str) -> str:
    path = folder / "kafka.yaml"
    path.write_text(text)
    return str(path)


@asynccontextmanager
async def running_hub(config: str, **settings: Any) -> AsyncIterator[Hub]:
    """A hub on free ports serving ``config``; stopped (and flushed) on exit."""
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(config,),
                       watch=False, **settings))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def report_bag(index: int, **extra: Any) -> dict[str, Any]:
    """The attributes of one http report; ``request.id`` is unique per index."""
    import ipaddress

    return {"context.protocol": "http", "request.id": f"req-{index}",
            "request.time": T0 + dt.timedelta(milliseconds=index),
            "request.path": f"/reviews/{index}", "response.code": 200,
            "source.ip": ipaddress.ip_address("10.0.0.7"),
            "response.duration": dt.timedelta(milliseconds=12),
            "destination.service.host": "reviews.default.svc.cluster.local",
            "context.reporter.kind": "inbound", **extra}


def schema(name: str) -> jsonschema.Draft202012Validator:
    data = json.loads((ROOT / "docs" / "schemas" / name).read_text())
    return jsonschema.Draft202012Validator(data)


RECORD_SCHEMA = schema("kafka-record.schema.json")
DECISION_SCHEMA = schema("decision-event.schema.json")


def request_ids(records: list[Any]) -> list[str]:
    """The ``requestId`` variable of consumed logentry records, in order."""
    return [json.loads(r.value)["fields"]["variables"]["requestId"] for r in records]
