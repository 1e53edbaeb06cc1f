"""The live debug page: ``/debug/`` (HTML that polls) and ``/debug/state`` (its JSON).

The hot path only appends to a bounded ring (:attr:`DebugPage.recent`, fed by
``PolicyEngine.check`` next to the decision recorder) and, when an adapter fails, writes
one dict entry (:attr:`DebugPage.failures`). Everything else — the JSON form, redaction
(DESIGN §12), reading counters — happens when the page asks. Routed only where the other
``/debug/*`` routes are (loopback listeners unless ``--debug-public``). The JSON shape is
documented in ``docs/debug-page.md``.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from mixerhub.attributes.bag import Reference
from mixerhub.jsonform import format_duration, format_timestamp, to_json
from mixerhub.metrics import Metrics
from mixerhub.redact import REDACTED, Redactor, default_redactor
from mixerhub.verdict import CheckOutcome, http_status

RING_SIZE = 100  # recent decisions kept
FAILING_FOR = 60.0  # seconds an adapter shows "failing" after its last error
_STATIC = resources.files("mixerhub.server") / "static"
# What a page may load: its own script and style, its own JSON; nothing from elsewhere.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")

#: One ring entry: (time.time(), bag values, outcome, snapshot version, cache hit).
Recent = tuple[float, Mapping[str, Any], CheckOutcome, int, bool]


class DebugPage:
    """The ring of recent decisions, the adapters' last failures, and the page's routes."""

    def __init__(self, policy: Callable[[], Any], config: Callable[[], dict[str, Any]],
                 metrics: Metrics, redactor: Redactor = default_redactor,
                 size: int = RING_SIZE, clock: Callable[[], float] = time.time) -> None:
        self._policy = policy
        self._config = config
        self._metrics = metrics
        self._redact = redactor
        self._clock = clock
        self.recent: collections.deque[Recent] = collections.deque(maxlen=size)
        self.failures: dict[str, tuple[float, str]] = {}
        self._errors_seen: dict[str, float] = {}  # adapter error counts at the last look

    def attach(self, policy: Any) -> None:
        """Point a new policy engine's hooks here (the ring and health outlive reloads)."""
        if hasattr(policy, "recent"):
            policy.recent = self.recent
            policy.adapter_failures = self.failures

    def install(self, app: web.Application) -> None:
        """Add ``/debug`` (redirect), ``/debug/``, its script and style, ``/debug/state``."""
        app.router.add_get("/debug", _redirect)
        app.router.add_get("/debug/", _file_handler("debug.html", "text/html"))
        app.router.add_get("/debug/debug.js", _file_handler("debug.js", "text/javascript"))
        app.router.add_get("/debug/debug.css", _file_handler("debug.css", "text/css"))
        app.router.add_get("/debug/state", self._state_handler)

    async def _state_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(), headers={"Cache-Control": "no-store"})

    # -- the JSON ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the page shows (``docs/debug-page.md``), secrets redacted."""
        config = self._config()
        return {"time": format_timestamp(_utc(self._clock())),
                "snapshot": config,
                "cache": self._cache(),
                "checks": _by_source(self._metrics.checks, ("ok", "denied", "error")),
                "reports": _by_source(self._metrics.reports, ()),
                "adapters": self._adapters(config.get("handlers", ())),
                "decisions": [self._shown(entry) for entry in reversed(self.recent)]}

    def _shown(self, entry: Recent) -> dict[str, Any]:
        try:
            return self._decision(entry)
        except (TypeError, ValueError) as exc:  # a value with no JSON form: say so, go on
            return {"time": format_timestamp(_utc(entry[0])), "snapshot_version": entry[3],
                    "error": f"cannot show this decision: {exc}"}

    def _cache(self) -> dict[str, Any]:
        cache = getattr(self._policy(), "cache", None)
        hits = _total(self._metrics.cache_hits)
        misses = _total(self._metrics.cache_misses)
        return {"enabled": cache is not None, "hits": hits, "misses": misses,
                "hit_rate": hits / (hits + misses) if hits + misses else None,
                "size": len(cache) if cache is not None else 0,
                "max_entries": cache.max_entries if cache is not None else 0}

    def _adapters(self, handlers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        errors = {labels["handler"]: value for labels, value in _samples(
            self._metrics.adapter_errors)}
        now = self._clock()
        out = []
        for handler in handlers:
            name = handler["name"]
            count = errors.get(name, 0.0)
            self._note_adapter_errors(name, count, now)
            failure = self.failures.get(name)
            out.append({"handler": name, "adapter": handler.get("adapter"),
                        "status": _health(handler.get("status"), failure, now),
                        "adapter_status": handler.get("status"), "errors": int(count),
                        "last_error": failure[1][:500] if failure else None,
                        "last_error_time": format_timestamp(_utc(failure[0]))
                        if failure else None})
        return out

    def _note_adapter_errors(self, name: str, count: float, now: float) -> None:
        """Errors an adapter counted itself (``AdapterEnv.on_error``, e.g. a Kafka send)
        reach no dispatcher hook: a count that grew since the last look marks it failing."""
        seen = self._errors_seen.get(name)
        self._errors_seen[name] = count
        if seen is None or count <= seen:
            return
        failure = self.failures.get(name)
        if failure is None or now - failure[0] >= FAILING_FOR:
            self.failures[name] = (now, f"{int(count - seen)} error(s) counted by the adapter")

    def _decision(self, entry: Recent) -> dict[str, Any]:
        when, values, outcome, version, hit = entry
        verdict = outcome.verdict
        refs = [*verdict.references, *(r for g in outcome.quotas.values() for r in g.references)]
        referenced, secrets = self._referenced(values, refs)
        out: dict[str, Any] = {
            "time": format_timestamp(_utc(when)), "snapshot_version": version,
            "cache_hit": hit, "rules": list(verdict.rules),
            "verdict": {"code": verdict.code, "message": _scrub(verdict.message, secrets),
                        "http_status": verdict.direct_response_code or http_status(verdict.code),
                        "valid_duration": format_duration(verdict.valid_duration),
                        "valid_use_count": verdict.valid_use_count},
            "referenced": referenced}
        if outcome.quotas:
            out["quotas"] = {name: {"granted_amount": g.granted_amount, "code": g.code}
                             for name, g in outcome.quotas.items()}
        return out

    def _referenced(self, values: Mapping[str, Any], refs: Iterable[Reference]
                    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The referenced attributes with this request's values, redacted; and the secret
        strings redaction hid (so a verdict message cannot show them either)."""
        refs = sorted(set(refs), key=lambda r: (r.name, r.map_key or "", r.present))
        picked = _pick(values, refs)
        raw = to_json(picked)
        shown = self._redact(raw)
        rows = []
        for ref in refs:
            row: dict[str, Any] = {"name": ref._replace(present=True).notation(),
                                   "present": ref.present}
            if ref.present:
                row["value"] = _at(shown, ref)
            rows.append(row)
        return rows, _hidden(raw, shown)


def _pick(values: Mapping[str, Any], refs: Iterable[Reference]) -> dict[str, Any]:
    """Only what was referenced: whole values, or the looked-up keys of a map."""
    picked: dict[str, Any] = {}
    for ref in refs:
        if not ref.present or ref.name not in values:
            continue
        value = values[ref.name]
        if ref.map_key is None:
            picked[ref.name] = value
        elif isinstance(value, Mapping) and ref.map_key in value:
            part = picked.setdefault(ref.name, {})
            if isinstance(part, dict):
                part[ref.map_key] = value[ref.map_key]
    return picked


def _at(obj: Mapping[str, Any], ref: Reference) -> Any:
    value = obj.get(ref.name)
    if ref.map_key is not None:
        value = value.get(ref.map_key) if isinstance(value, Mapping) else None
    return value


def _hidden(raw: Any, shown: Any) -> list[str]:
    """The strings of ``raw`` that redaction replaced in ``shown``."""
    if shown == REDACTED and raw != REDACTED:
        return _strings(raw)
    if isinstance(raw, Mapping) and isinstance(shown, Mapping):
        return [s for key, value in raw.items() for s in _hidden(value, shown.get(key))]
    return []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _health(status: str | None, failure: tuple[float, str] | None, now: float) -> str:
    """ok | failing | not_ready: failing while the adapter says ERROR, or for
    :data:`FAILING_FOR` seconds after a failure the hub saw."""
    if status == "ERROR" or (failure is not None and now - failure[0] < FAILING_FOR):
        return "failing"
    return "not_ready" if status == "NOT_READY" else "ok"


def _samples(counter: Counter) -> Iterator[tuple[dict[str, str], float]]:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                yield sample.labels, sample.value


def _total(counter: Counter) -> int:
    return int(sum(value for _, value in _samples(counter)))


def _by_source(counter: Counter, outcomes: Iterable[str]) -> dict[str, Any]:
    """``{"total": n, "by_source": {source: n or {outcome: n}}}``."""
    by_source: dict[str, Any] = {}
    total = 0
    for labels, value in _samples(counter):
        total += int(value)
        if "outcome" in labels:
            row = by_source.setdefault(labels["source"], dict.fromkeys(outcomes, 0))
            row[labels["outcome"]] = int(value)
        else:
            by_source[labels["source"]] = int(value)
    return {"total": total, "by_source": by_source}


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/debug/")


def _file_handler(name: str, content_type: str
                  ) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = (_STATIC / name).read_bytes()  # read once, at install
    headers = {"Content-Type": f"{content_type}; charset=utf-8", "Cache-Control": "no-store",
               "Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    return handler
