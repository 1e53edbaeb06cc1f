"""One config made ready for replay: its check rules on a started snapshot, with the
handlers that would contact a backend replaced by stand-ins that are never contacted.

What replay means (docs/testing-policies.md, "What a replay does"):
- only the precondition verdict: no quota is allocated or charged, no report is sent,
  shadow rules are left out (they never change a verdict);
- only adapters that decide in process are started (denier, a listchecker with
  ``overrides`` only, an embedded opa, third-party adapters unless they say otherwise);
  a check that reaches a handler with external state (a listchecker with
  ``providerUrl``, an opa with ``url``; any adapter class with ``replay_backend``) is
  not replayed: it is counted under that handler instead of being compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mixerhub.adapter import BackendError
from mixerhub.attributes.bag import AttributeBag
from mixerhub.config.loader import HandlerConfig, LoadedConfig, RuleConfig
from mixerhub.config.snapshot import Snapshot, start_snapshot, stop_adapters
from mixerhub.dispatch import PolicyEngine
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.templates.model import Variety
from mixerhub.verdict import HeaderOp, Verdict


@dataclasses.dataclass(frozen=True, slots=True)
class Side:
    """What one config answered for one check, reduced to what a diff compares."""

    code: int
    message: str
    request_ops: tuple[HeaderOp, ...] = ()
    response_ops: tuple[HeaderOp, ...] = ()
    direct_code: int = 0
    body: str = ""
    decider: str | None = None  # the rule whose denial decided; None when allowed
    backend: str | None = None  # a handler it would have needed (then not replayed)

    @property
    def replayed(self) -> bool:
        return self.backend is None


def backend_of(handler: HandlerConfig) -> str | None:
    """What a handler's check would contact outside the process, or None.

    Built-ins are known here; any other adapter class may say it with a
    ``replay_backend(params) -> str | None`` function (or a constant)."""
    cls, params = handler.adapter, handler.params
    declared = getattr(cls, "replay_backend", None)
    if declared is not None:
        return declared(params) if callable(declared) else (str(declared) or None)
    name = getattr(cls, "name", "")
    if name == "listchecker" and (url := getattr(params, "provider_url", "")):
        return f"list provider {url}"
    if name == "opa" and (url := getattr(params, "url", None)):
        return f"OPA server {url}"
    if name in ("redisquota", "kafka"):
        return name
    return None


class _NotContacted:
    """Stands in for a handler replay must not call; records that a check reached it."""

    def __init__(self, handler: str, reason: str, reached: list[str]) -> None:
        self.handler = handler
        self.reason = reason
        self._reached = reached

    async def check(self, instance: Any) -> Any:
        self._reached.append(self.handler)
        raise BackendError(f"not contacted in replay: {self.reason}")

    async def stop(self) -> None:
        return None


class _ReplayLog:
    """The engine's logger during replay: per-check chatter (debug, info, and the failures
    of stand-ins, which the diff counts itself) is dropped; anything else goes on."""

    def __init__(self, quiet_parts: frozenset[str]) -> None:
        self._log = get_logger("mixerhub.diff")
        self._quiet = quiet_parts

    def debug(self, *args: Any, **kw: Any) -> None:
        return None

    info = debug

    def warning(self, event: str, **kw: Any) -> None:
        if kw.get("part") not in self._quiet:
            self._log.warning(event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log.error(event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._log.exception(event, **kw)


@dataclasses.dataclass(frozen=True)
class Subject:
    """A config as the report names it: its paths, and the handlers replay does not call
    (handler → what it would contact)."""

    paths: tuple[str, ...]
    backends: dict[str, str]


def subject(paths: Sequence[str], config: LoadedConfig) -> Subject:
    rules = _replayed_rules(config)
    return Subject(tuple(paths), _backends(config, _check_handlers(rules)))


@dataclasses.dataclass
class ReplaySide:
    """One config, started for replay."""

    label: str
    paths: tuple[str, ...]
    config: LoadedConfig
    snapshot: Snapshot
    engine: PolicyEngine
    backends: dict[str, str]  # handler → what it would contact
    reached: list[str]  # stand-ins reached by the check being evaluated
    rule_names: frozenset[str]

    async def decide(self, values: dict[str, Any]
                     ) -> tuple[Side, frozenset[tuple[str, str | None]]]:
        """The precondition verdict for these (typed) values — no quota, no report — and
        the references it depends on, as (name, map key)."""
        self.reached.clear()
        outcome = await self.engine.check(AttributeBag(values), {}, "")
        verdict = outcome.verdict
        backend = self.reached[0] if self.reached else None
        refs = frozenset((r.name, r.map_key) for r in verdict.references)
        return side_of(verdict, self.rule_names, backend), refs

    async def close(self) -> None:
        await stop_adapters({n: a for n, a in self.snapshot.adapters.items()
                             if not isinstance(a, _NotContacted)})


async def start_side(label: str, paths: Sequence[str], config: LoadedConfig) -> ReplaySide:
    """Start the check-deciding part of ``config``: enforced check rules only, and only
    the handlers they call that decide in process."""
    rules = _replayed_rules(config)
    needed = _check_handlers(rules)
    backends = _backends(config, needed)
    started = {n: config.handlers[n] for n in needed if n not in backends}
    reduced = dataclasses.replace(config, rules=rules, handlers=started)
    metrics = Metrics()
    snapshot = await start_snapshot(reduced, metrics)
    reached: list[str] = []
    for handler in {a.handler.name for r in rules for a in r.actions} - set(started):
        snapshot.adapters[handler] = _NotContacted(handler, backends.get(handler, "unused"),
                                                   reached)
    quiet = frozenset(f"handler {h}" for h in backends)
    engine = PolicyEngine(snapshot, metrics, _ReplayLog(quiet))
    return ReplaySide(label, tuple(paths), config, snapshot, engine, backends, reached,
                      frozenset(r.name for r in config.rules))


def _replayed_rules(config: LoadedConfig) -> tuple[RuleConfig, ...]:
    return tuple(r for r in config.rules if not r.shadow and _is_check_rule(r))


def _backends(config: LoadedConfig, handlers: Sequence[str]) -> dict[str, str]:
    return {n: why for n in handlers if (why := backend_of(config.handlers[n])) is not None}


def _is_check_rule(rule: RuleConfig) -> bool:
    """What the engine evaluates on a check (as ``Snapshot.rules(Variety.CHECK)``)."""
    return bool(rule.request_ops or rule.response_ops) or any(
        i.template.variety is Variety.CHECK for a in rule.actions for i in a.instances)


def _check_handlers(rules: Sequence[RuleConfig]) -> list[str]:
    """Handlers that some rule asks to check an instance, in config order."""
    names = [a.handler.name for r in rules for a in r.actions
             if any(i.template.variety is Variety.CHECK for i in a.instances)]
    return list(dict.fromkeys(names))


def side_of(verdict: Verdict, rule_names: frozenset[str], backend: str | None) -> Side:
    return Side(verdict.code, verdict.message, verdict.request_header_ops,
                verdict.response_header_ops, verdict.direct_response_code,
                verdict.direct_response_body, decider(verdict, rule_names), backend)


def decider(verdict: Verdict, rule_names: frozenset[str]) -> str | None:
    """The rule whose denial decided: the last rule that applied, since evaluation stops
    at the first denial — unless the denial is a fail-closed ``match`` failure, whose rule
    did not apply and is named in the message (``rule NAME: …``)."""
    if verdict.code == 0:
        return None
    if verdict.message.startswith("rule "):
        named = verdict.message[5:].partition(":")[0]
        if named in rule_names:
            return named
    return verdict.rules[-1] if verdict.rules else None
