"""A real Redis (Debian's ``redis-server``, see provision_redis.sh) for the tests.

``redis_server`` is one private server per test session on a free 127.0.0.1 port, with no
persistence; ``redis_url`` hands a test that server's URL after emptying it. A test that
needs Redis to fail starts its own :class:`RedisServer` and stops it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services._proc import free_port, stop, wait_until


class RedisServer:
    """One redis-server process; ``start()`` again after ``stop()`` reuses the port."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder = folder
        self.extra = extra
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        program = shutil.which("redis-server")
        if program is None:
            pytest.fail("redis-server not found: run `make services` (tests/services/"
                        "provision_redis.sh)")
        for _ in range(3):  # a free port can be taken between finding and binding it
            self.port = self.port or free_port()
            self.proc = subprocess.Popen(
                [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no",
                 "--logfile", str(self.folder / "redis.log"), *self.extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(self._pong, self.proc, "redis-server")
                return self
            except RuntimeError:
                self.port = 0
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def call(self, *args: str) -> str:
        """One command through redis-cli (synchronous, for fixtures and assertions)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()

    def _pong(self) -> bool:
        try:
            return self.call("PING") == "PONG"
        except subprocess.SubprocessError:
            return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="mixerhub-redis-") as folder:
        server = RedisServer(Path(folder)).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.call("FLUSHALL")
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may stop (or pause) to make Redis fail."""
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
