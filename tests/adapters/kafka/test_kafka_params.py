"""Handler params: malformed ones are clear errors at load, naming file, line and field,
and nothing starts (no hub, no connection to a broker, no spool)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kafkahub import kafka_config, write_config
from pydantic import ValidationError

from mixerhub.adapters.kafka import KafkaAdapter, KafkaParams
from mixerhub.app import Hub, Settings
from mixerhub.config.files import ConfigError
from mixerhub.plugins import load_plugins

BAD = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata:
  name: telemetry
  namespace: istio-system
spec:
  compiledAdapter: kafka
  params:
    brokers: ["{broker}", "no-port"]
    topic: "access log"
    key: request.headers
    acks: 2
    fullPolicy: wait
    spoolDir: {spool}
    lingerMs: -1
"""


def params(**values: object) -> KafkaParams:
    return KafkaParams.model_validate({"brokers": ["127.0.0.1:9092"], "topic": "t", **values})


def test_defaults_are_the_safe_ones() -> None:
    p = params()
    assert (p.acks, p.fullPolicy, p.compression, p.spoolDir, p.key) == (
        "all", "drop-oldest", "none", None, None)  # reports never wait by default
    assert p.producer_options()["acks"] == "all"


@pytest.mark.parametrize(("written", "meant"), [(1, "1"), (0, "0"), (-1, "all"), ("-1", "all")])
def test_acks_as_yaml_writes_them(written: object, meant: str) -> None:
    assert params(acks=written).acks == meant


def test_every_error_of_a_bad_handler_names_its_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.format(broker="127.0.0.1:9092", spool=tmp_path / "spool"))
    out = subprocess.run([sys.executable, "-m", "mixerhub", "validate", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    where = f"{path}:{{}}: handler/telemetry: spec.params."
    assert out.stdout.splitlines() == [
        where.format(9) + "brokers: 'no-port' is not HOST:PORT",
        where.format(10) + "topic: 'access log' is not a Kafka topic name (letters, digits, "
                           "'.', '_' and '-', at most 249)",
        where.format(11) + "key: 'request.headers' is STRING_MAP; a key needs a value with "
                           "a text form (not a STRING_MAP)",
        where.format(12) + "acks: Input should be 'all', '1' or '0'",
        where.format(15) + "lingerMs: Input should be greater than or equal to 0",
        where.format(13) + "fullPolicy: Input should be 'drop-oldest' or 'block'",
    ]


async def test_a_bad_handler_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as listener:  # stands where a broker would: must see no one
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        broker = f"127.0.0.1:{listener.getsockname()[1]}"
        path = tmp_path / "bad.yaml"
        path.write_text(BAD.format(broker=broker, spool=tmp_path / "spool"))
        hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(path),),
                           watch=False))
        with pytest.raises(ConfigError, match="is not HOST:PORT"):
            await hub.start()
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert not hub.ready()
    assert not (tmp_path / "spool").exists()


def test_a_rule_of_a_refused_handler_is_refused_too(tmp_path: Path) -> None:
    text = kafka_config("127.0.0.1:9092", "t", compression="brotli")
    out = subprocess.run([sys.executable, "-m", "mixerhub", "validate",
                          write_config(tmp_path, text)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    handler, rule = out.stdout.splitlines()
    assert handler.endswith("spec.params.compression: Input should be 'none', 'gzip', "
                            "'snappy', 'lz4' or 'zstd'")
    assert rule.endswith("no handler 'telemetry' in namespace 'istio-system'")  # not loaded


@pytest.mark.parametrize(("values", "message"), [
    ({"key": "no.such.attribute"}, "unknown attribute 'no.such.attribute'"),
    ({"securityProtocol": "SASL_SSL"}, "securityProtocol SASL_SSL needs sasl"),
    ({"sasl": {"username": "u", "password": "p"}},
     "sasl is set but securityProtocol is PLAINTEXT"),
    ({"tls": {"caFile": "ca.pem"}}, "tls is set but securityProtocol is PLAINTEXT"),
    ({"securityProtocol": "SSL", "tls": {"certFile": "c.pem"}},
     "certFile and keyFile go together"),
    ({"retryBackoffMs": 500, "maxRetryBackoffMs": 100}, "maxRetryBackoffMs is below"),
    ({"bufferRecords": 5}, "greater than or equal to 10"),
    ({"brokers": []}, "at least 1 item"),
    ({"topics": "t"}, "Extra inputs are not permitted"),
])
def test_params_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        params(**values)


def test_a_sasl_password_never_shows(tmp_path: Path) -> None:
    p = params(securityProtocol="SASL_PLAINTEXT",
               sasl={"mechanism": "SCRAM-SHA-256", "username": "u", "password": "hunter2"})
    assert "hunter2" not in repr(p) and "hunter2" not in str(p.model_dump())
    assert p.producer_options()["sasl_plain_password"] == "hunter2"


def test_the_adapter_registers_through_the_entry_point() -> None:
    plugins = load_plugins()
    assert plugins.adapters.get("kafka") is KafkaAdapter
    accepted = KafkaAdapter.templates
    assert {"logentry", "metric", "reportnothing", "tracespan"} <= {
        t for t in ("logentry", "metric", "reportnothing", "tracespan") if t in accepted}
    assert "listentry" not in accepted and "quota" not in accepted
