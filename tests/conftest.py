"""Fixtures shared by every test: a real hub on ephemeral ports, real channels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

from mixerhub.app import Hub, Settings
from mixerhub.attributes.bag import AttributeBag
from mixerhub.verdict import CheckOutcome, QuotaGrant, Verdict
from tests.services.opa import opa_server, opa_url, own_opa  # noqa: F401 - fixtures
from tests.services.redis import own_redis, redis_server, redis_url  # noqa: F401 - fixtures


class CapturingPolicy:
    """Allows every check and keeps every report bag, so tests can see what was decoded."""

    def __init__(self) -> None:
        self.checks: list[AttributeBag] = []
        self.reports: list[AttributeBag] = []

    async def check(self, bag: AttributeBag, quotas: dict, dedup_id: str) -> CheckOutcome:
        self.checks.append(bag)
        return CheckOutcome(Verdict(), {n: QuotaGrant(q.amount) for n, q in quotas.items()})

    async def report(self, bags: Sequence[AttributeBag]) -> None:
        self.reports.extend(bags)

    def default_quotas(self, bag: AttributeBag) -> dict:
        return {}

    async def allocate(self, bag: AttributeBag, quotas: dict, dedup_id: str) -> dict:
        return {n: QuotaGrant(q.amount) for n, q in quotas.items()}


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    h = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def channel(hub: Hub) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.grpc.port}") as ch:
        yield ch


async def scrape(http_port: int) -> dict[str, float]:
    """Every sample of the hub's /metrics, keyed ``name{label="v",...}``."""
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{http_port}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples
