"""The quotas a client asks for: the hub's QuotaSpecs for its service, fetched on start and
every ``interval`` from ``GET /v1/quotaspecs`` on the hub's HTTP port.

Until the first fetch succeeds no quota is asked for; a failed fetch keeps the rules the
client has (both logged and counted in ``mixerhub_proxy_quotaspec_fetches_total``). With a
:class:`HubTls` the fetch is HTTPS, trusting only its CA and presenting its client
certificate.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
from pydantic import ValidationError

from mixerhub.proxy_filter.metrics import ProxyMetrics
from mixerhub.proxy_filter.mixer_client import HubTls
from mixerhub.quotaspec import QuotaRules
from mixerhub.verdict import QuotaRequest


def default_hub_http(hub: str) -> str:
    """The hub's HTTP address when only its gRPC one is known: same host, port 9093."""
    return f"{hub.rpartition(':')[0] or '127.0.0.1'}:9093"


class QuotaSpecSource:
    def __init__(self, hub_http: str, service: str, namespace: str | None = None,
                 interval: float = 30.0, metrics: ProxyMetrics | None = None,
                 log: Any = None, timeout: float = 5.0, tls: HubTls | None = None) -> None:
        self.url = f"{'https' if tls else 'http'}://{hub_http}/v1/quotaspecs"
        self._ssl: ssl.SSLContext | bool = True
        self._server_name: str | None = None
        if tls is not None:
            self.use_tls(tls)
        self.params = {"service": service, **({"namespace": namespace} if namespace else {})}
        self.interval = interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.metrics = metrics or ProxyMetrics()
        self.log = log
        self.rules = QuotaRules(())
        self.version: int | None = None
        self._task: asyncio.Task[None] | None = None

    def use_tls(self, tls: HubTls) -> None:
        """Fetch with this TLS set from now on (after a reload of the hub TLS files)."""
        self._ssl = tls.ssl_context()
        self._server_name = tls.server_name

    def requests(self, values: Mapping[str, Any]) -> dict[str, QuotaRequest]:
        """The quotas a request with these attributes asks for (empty: none bound)."""
        return self.rules.requests(values) if self.rules else {}

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._every_interval())

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    async def refresh(self) -> bool:
        """Fetch once; True when the rules were replaced."""
        try:
            body = await self._get()
            rules = QuotaRules.from_json(body.get("specs", []))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, ValidationError,
                AttributeError) as exc:
            self.metrics.quotaspec_fetches.labels("error").inc()
            if self.log is not None:
                self.log.warning("quota specs not fetched; keeping the current ones",
                                 url=self.url, error=str(exc) or type(exc).__name__)
            return False
        self.metrics.quotaspec_fetches.labels("ok").inc()
        if body.get("version") != self.version and self.log is not None:
            self.log.info("quota specs loaded", service=self.params["service"],
                          specs=len(body.get("specs", [])), version=body.get("version"))
        self.rules, self.version = rules, body.get("version")
        return True

    async def _get(self) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            async with session.get(self.url, params=self.params, ssl=self._ssl,
                                   server_hostname=self._server_name) as response:
                response.raise_for_status()
                body = await response.json()
        if not isinstance(body, dict):
            raise ValueError("the hub's answer is not a JSON object")
        return body

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
