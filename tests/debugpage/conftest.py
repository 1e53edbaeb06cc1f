"""A real hub serving examples/quickstart plus tests/debugpage/policy.yaml, and real Mixer
Checks over gRPC to it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from mixerhub.api.mixer.v1 import check_pb2
from mixerhub.app import Hub, Settings
from mixerhub.attributes.compression import Encoder

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart" / "policy.yaml"
POLICY = Path(__file__).with_name("policy.yaml")
CHECK = "/istio.mixer.v1.Mixer/Check"


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def debug_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    policy = tmp_path / "debugpage.yaml"
    policy.write_text(POLICY.read_text().replace(
        "${PROVIDER}", f"http://127.0.0.1:{closed_port()}/list"))
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0",
                       config=(str(QUICKSTART), str(policy)), watch=False))
    await hub.start()
    yield hub
    await hub.stop()


async def mixer_check(hub: Hub, values: Mapping[str, Any]) -> check_pb2.CheckResponse:
    """One Mixer v1 Check over a real gRPC channel."""
    encoder = Encoder()
    request = check_pb2.CheckRequest(attributes=encoder.encode(values),
                                     global_word_count=encoder.global_word_count)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as channel:
        raw = await channel.unary_unary(CHECK)(request.SerializeToString(), timeout=10)
    return check_pb2.CheckResponse.FromString(raw)
