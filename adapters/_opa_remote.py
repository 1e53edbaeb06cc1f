"""A real OPA server over its REST API (aiohttp): upload a module, ask for a decision.

aiohttp directly rather than opa-python-client: that client sleeps between its own retries
inside the request path, discards OPA's error body (code and message) on failures, takes
host and port rather than a URL, and adds requests, urllib3 and aiofiles for two calls.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from mixerhub.adapter import BackendError
from mixerhub.adapters._rego import Decision

_PATH = re.compile(r"[A-Za-z_][\w-]*(/[A-Za-z_][\w-]*)*")


class PolicyRejected(Exception):
    """OPA refused an uploaded module (it does not compile there): a config error."""


def check_url(url: str) -> str:
    """ValueError unless ``url`` is an http(s) URL with a host (form only, never contacted)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url: {url!r} is not an http:// or https:// URL with a host")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"url: {url!r} has an invalid port") from None
    return url


def normalize_path(path: str) -> str:
    """``data.envoy.authz.allow``, ``/envoy/authz/allow`` or ``envoy/authz/allow`` →
    ``envoy/authz/allow``; ValueError for anything else."""
    text = path.strip()
    if text.startswith("data."):
        text = text[len("data."):].replace(".", "/")
    text = text.strip("/")
    if not _PATH.fullmatch(text):
        raise ValueError(f"policyPath: {path!r} is not a path such as envoy/authz/allow")
    return text


class OpaServer:
    """One aiohttp session to one OPA server; every failure is a BackendError."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def upload(self, policy_id: str, source: str) -> None:
        status, body = await self._call("PUT", f"/v1/policies/{policy_id}", source.encode(),
                                        "text/plain")
        if status == 400:
            raise PolicyRejected(f"OPA at {self.url} refused policy {policy_id}: "
                                 f"{_reason(body)}")
        if status != 200:
            raise BackendError(f"opa {self.url}: uploading {policy_id}: HTTP {status} "
                               f"{_reason(body)}")

    async def decide(self, path: str, document: dict[str, Any]) -> Decision:
        payload = json.dumps({"input": document}, separators=(",", ":")).encode()
        status, body = await self._call("POST", f"/v1/data/{path}", payload,
                                        "application/json")
        if status != 200:
            raise BackendError(f"opa {self.url}: {path}: HTTP {status} {_reason(body)}")
        if "result" not in body:
            return Decision(False)
        return Decision(True, body["result"])

    async def _call(self, method: str, path: str, data: bytes, content_type: str
                    ) -> tuple[int, dict[str, Any]]:
        if self._session is None:
            raise BackendError(f"opa {self.url}: adapter not started")
        try:
            try:
                return await self._send(method, path, data, content_type)
            except aiohttp.ServerDisconnectedError:
                # A pooled keep-alive connection the server closed (it restarted): once more
                # on a new connection. Both calls are idempotent (PUT, and a query).
                return await self._send(method, path, data, content_type)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise BackendError(f"opa {self.url}: {type(exc).__name__}: {exc}") from exc

    async def _send(self, method: str, path: str, data: bytes, content_type: str
                    ) -> tuple[int, dict[str, Any]]:
        assert self._session is not None
        async with self._session.request(method, self.url + path, data=data,
                                         headers={"Content-Type": content_type}) as resp:
            return resp.status, _json_object(await resp.text())


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"message": text[:200]}
    return value if isinstance(value, dict) else {"result": value}


def _reason(body: dict[str, Any]) -> str:
    """OPA's error body: code, message and the first detailed error."""
    parts = [str(body[k]) for k in ("code", "message") if body.get(k)]
    errors = body.get("errors") or []
    if errors and isinstance(errors[0], dict) and errors[0].get("message"):
        parts.append(str(errors[0]["message"]))
    return ": ".join(parts) or "no reason given"
