"""The policy a snapshot serves: rules → instances → adapters → one verdict.

Semantics (docs/policy-engine.md): first denial wins; minimum lifetime over the handlers
that ran; a failed ``match`` means the rule does not apply, a failed instance is skipped,
a failed adapter denies with UNAVAILABLE — each unless the rule's ``failPolicy`` says
otherwise; shadow rules are evaluated apart and never enforced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mixerhub.adapter import CheckResult, QuotaArgs
from mixerhub.attributes.bag import AttributeBag
from mixerhub.cache import DecisionCache
from mixerhub.config.loader import ActionConfig, RuleConfig
from mixerhub.config.snapshot import Snapshot
from mixerhub.metrics import Metrics
from mixerhub.quotaspec import QuotaSpecIndex
from mixerhub.templates.model import Variety
from mixerhub.verdict import (DEFAULT_VALID_DURATION, DEFAULT_VALID_USE_COUNT, CheckOutcome,
                              HeaderOp, HeaderOperation, QuotaGrant, QuotaRequest, Verdict)

UNAVAILABLE, RESOURCE_EXHAUSTED = 14, 8
_ZERO = dt.timedelta(0)


class _Failure(Exception):
    """An evaluation or adapter failure inside one rule; carries what to deny with."""


@dataclasses.dataclass
class _Combined:
    code: int = 0
    message: str = ""
    duration: dt.timedelta | None = None  # None until a handler ran
    uses: int | None = None
    failed: bool = False  # an adapter failed (transient): never cache the verdict
    calls: int = 0  # adapter calls made: a verdict that made none is cheaper to recompute
    rules: list[str] = dataclasses.field(default_factory=list)  # rules that applied

    def add(self, result: CheckResult) -> None:
        if self.code == 0 and result.code != 0:
            self.code, self.message = result.code, result.message
        self.duration = result.valid_duration if self.duration is None \
            else min(self.duration, result.valid_duration)
        self.uses = result.valid_use_count if self.uses is None \
            else min(self.uses, result.valid_use_count)

    def lifetime(self) -> tuple[dt.timedelta, int]:
        """No handler ran → Mixer's 60 s / 10,000 uses; an adapter failed (even open) → zero,
        so no caller reuses an answer the backend did not give."""
        if self.failed:
            return _ZERO, 0
        return (DEFAULT_VALID_DURATION if self.duration is None else self.duration,
                DEFAULT_VALID_USE_COUNT if self.uses is None else self.uses)


class PolicyEngine:
    """Implements :class:`mixerhub.policy.Policy` for one snapshot."""

    def __init__(self, snapshot: Snapshot, metrics: Metrics, log: Any,
                 cache: DecisionCache | None = None) -> None:
        self.snapshot = snapshot
        self.metrics = metrics
        self.log = log
        self.cache = cache
        self.default_ns = snapshot.config.default_namespace
        self.check_rules = _rules(snapshot, Variety.CHECK, shadow=False)
        self.shadow_rules = _rules(snapshot, Variety.CHECK, shadow=True)
        self.report_rules = _rules(snapshot, Variety.REPORT, shadow=False)
        self.quota_index = _quota_index(snapshot)
        self.scoped = any(r.namespace != self.default_ns for r in snapshot.config.rules)
        # QuotaSpecs say what callers that name no quotas are charged (DESIGN §5).
        self.quota_specs = QuotaSpecIndex(snapshot.config)
        self._inflight: dict[Any, asyncio.Future[CheckResult]] = {}
        # A DecisionRecorder (hub/decisions.py) when the hub records checks; set by the hub.
        self.decisions: Any = None
        # The /debug/ page (hub/server/debugpage.py) sets both: a bounded deque that gets
        # (time, values, outcome, snapshot version, cache hit) per check, and the last
        # failure per handler, {handler: (time, error)}, written only when one fails.
        self.recent: Any = None
        self.adapter_failures: dict[str, tuple[float, str]] = {}
        # Report adapters that also want the bag (kafka: record key, reporter).
        self._binders = {name: a.bind for name, a in snapshot.adapters.items()
                         if callable(getattr(a, "bind", None))}

    # -- check -------------------------------------------------------------------------

    async def check(self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest],
                    dedup_id: str) -> CheckOutcome:
        verdict = self.cache.lookup(bag.values) if self.cache is not None else None
        hit = verdict is not None
        if verdict is not None:
            self.metrics.cache_hits.inc()
        else:
            if self.cache is not None:
                self.metrics.cache_misses.inc()
            verdict, cacheable = await self._decide(bag)
            if cacheable and self.cache is not None:
                self.cache.store(verdict, bag.values)
        if self.shadow_rules:
            await self._shadow(bag.values)
        # Mixer allocates quotas only for a request the preconditions let through.
        grants = await self._quotas(bag.values, quotas, dedup_id) if quotas and verdict.ok \
            else {}
        outcome = CheckOutcome(_with_quotas(verdict, grants), grants)
        if self.decisions is not None:  # queues the event; never waits on a sink
            self.decisions.record(bag.values, outcome, self.snapshot.version)
        if self.recent is not None:  # an append to a bounded deque; rendered on demand
            self.recent.append((time.time(), bag.values, outcome, self.snapshot.version, hit))
        return outcome

    async def _decide(self, bag: AttributeBag) -> tuple[Verdict, bool]:
        combined = _Combined()
        request_ops: list[HeaderOp] = []
        response_ops: list[HeaderOp] = []
        identity = self._identity(bag)
        for rule in self.check_rules:
            if combined.code != 0:
                break
            if not self._applies(rule, bag, identity, combined):
                continue
            combined.rules.append(rule.name)
            for action in rule.actions:
                await self._run_check_action(rule, action, bag, combined)
            request_ops += self._header_ops(rule, rule.request_ops, bag)
            response_ops += self._header_ops(rule, rule.response_ops, bag)
        if combined.code != 0:
            request_ops, response_ops = [], []
        verdict = Verdict(combined.code, combined.message, *combined.lifetime(),
                          tuple(bag.references()), tuple(request_ops), tuple(response_ops),
                          rules=tuple(combined.rules))
        # Measured (bench/check_inprocess.py): a cache lookup costs more than evaluating a
        # few matches, so only verdicts that called an adapter are worth storing.
        return verdict, not combined.failed and combined.calls > 0

    async def _run_check_action(self, rule: RuleConfig, action: ActionConfig,
                                bag: AttributeBag, combined: _Combined) -> None:
        adapter = self.snapshot.adapters[action.handler.name]
        for conf in action.instances:
            if conf.template.variety is not Variety.CHECK or combined.code != 0:
                continue
            try:
                instance = conf.build(bag)
            except Exception as exc:  # noqa: BLE001 - an evaluation failure, policy decides
                self._evaluation_failure(rule, f"instance {conf.name}", exc, combined)
                continue
            try:
                result = await self._single_flight(action.handler.name, adapter, instance)
            except Exception as exc:  # noqa: BLE001 - an adapter failure, policy decides
                self._adapter_failure(rule, action.handler.name, adapter, exc, combined)
                continue
            combined.calls += 1
            combined.add(result)

    async def _single_flight(self, handler: str, adapter: Any, instance: Any) -> CheckResult:
        """Identical concurrent calls (same handler, same instance) share one adapter call."""
        key = (handler, instance)
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[CheckResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await adapter.check(instance)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(result)
            return result  # type: ignore[no-any-return]
        finally:
            del self._inflight[key]

    # -- rule applicability and failures ------------------------------------------------

    def _identity(self, bag: AttributeBag) -> Any:
        """The namespace non-default rules are scoped to; looked up only when they exist."""
        if not self.scoped:
            return None
        if bag.get("context.reporter.kind") == "outbound":
            return bag.get("source.namespace")
        return bag.get("destination.namespace")

    def _applies(self, rule: RuleConfig, bag: AttributeBag, identity: Any,
                 combined: _Combined | None) -> bool:
        if rule.namespace != self.default_ns and identity != rule.namespace:
            return False
        if rule.match is None:
            return True
        try:
            return bool(rule.match(bag))
        except Exception as exc:  # noqa: BLE001 - Mixer: a failed match does not apply
            self._evaluation_failure(rule, "match", exc, combined)
            return False

    def _evaluation_failure(self, rule: RuleConfig, what: str, exc: Exception,
                            combined: _Combined | None) -> None:
        # Deterministic in the attributes read (their absence is referenced), so the
        # verdict stays cacheable; logged at debug: a rule missing an attribute on every
        # request must not flood the log, the counter shows it.
        closed = rule.fail_policy == "closed"
        self._count_failure(rule, closed, what, exc, level="debug")
        if combined is not None and closed:
            combined.add(_unavailable(rule, f"{what} failed: {exc}"))

    def _adapter_failure(self, rule: RuleConfig, handler: str, adapter: Any, exc: Exception,
                         combined: _Combined) -> None:
        self.metrics.adapter_errors.labels(handler).inc()
        self.adapter_failures[handler] = (time.time(), _error_text(exc))
        closed = _adapter_fail_closed(rule, adapter)
        self._count_failure(rule, closed, f"handler {handler}", exc)
        combined.failed = True
        if closed:
            combined.add(_unavailable(rule, f"handler {handler} failed: {exc}"))

    def _count_failure(self, rule: RuleConfig, closed: bool, what: str, exc: Exception,
                       level: str = "warning") -> None:
        policy = "closed" if closed else "open"
        self.metrics.rule_failures.labels(rule.name, policy).inc()
        getattr(self.log, level)("rule failure", rule=rule.name, part=what, policy=policy,
                                 error=str(exc) or type(exc).__name__)

    def _header_ops(self, rule: RuleConfig, ops: Sequence[Any], bag: AttributeBag
                    ) -> list[HeaderOp]:
        out = []
        for op in ops:
            operation = HeaderOperation[op.operation]
            try:
                values = [str(v(bag)) for v in op.values] or [""]
            except Exception as exc:  # noqa: BLE001 - the op is skipped, the failure counted
                self._evaluation_failure(rule, f"header {op.name}", exc, None)
                continue
            out += [HeaderOp(op.name, value, operation) for value in values]
        return out

    # -- shadow ------------------------------------------------------------------------

    async def _shadow(self, values: Mapping[str, Any]) -> None:
        """Evaluate shadow rules on their own view of the bag; log what they would deny."""
        bag = AttributeBag(values)
        identity = self._identity(bag)
        for rule in self.shadow_rules:
            combined = _Combined()
            if not self._applies(rule, bag, identity, None):
                continue
            for action in rule.actions:
                await self._run_check_action(rule, action, bag, combined)
            if combined.code != 0:
                self.metrics.shadow_denials.labels(rule.name).inc()
                self.log.info("shadow rule would deny", rule=rule.name, code=combined.code,
                              message=combined.message)

    # -- quota -------------------------------------------------------------------------

    async def _quotas(self, values: Mapping[str, Any], quotas: Mapping[str, QuotaRequest],
                      dedup_id: str) -> dict[str, QuotaGrant]:
        # Mixer's per-quota retry id: the request's id plus the quota name (none without one).
        return {name: await self._quota(values, name, q, dedup_id and dedup_id + name)
                for name, q in quotas.items()}

    async def allocate(self, bag: AttributeBag, quotas: Mapping[str, QuotaRequest],
                       dedup_id: str) -> dict[str, QuotaGrant]:
        """See :meth:`mixerhub.policy.Policy.allocate`."""
        return await self._quotas(bag.values, quotas, dedup_id)

    def default_quotas(self, bag: AttributeBag) -> dict[str, QuotaRequest]:
        """See :meth:`mixerhub.policy.Policy.default_quotas`."""
        if self.quota_specs.bound:
            return self.quota_specs.requests_for(bag)
        identity = self._identity(bag)
        wanted: dict[str, QuotaRequest] = {}
        for name, entries in self.quota_index.items():
            for rule, _action, conf in entries:
                probe = _Combined()
                if not rule.shadow and (self._applies(rule, bag, identity, probe)
                                        or probe.code):
                    wanted[conf.short] = QuotaRequest(1)
                    break
        return wanted

    async def _quota(self, values: Mapping[str, Any], name: str, request: QuotaRequest,
                     dedup_id: str) -> QuotaGrant:
        bag = AttributeBag(values)
        identity = self._identity(bag)
        for rule, action, conf in self.quota_index.get(name.lower(), ()):
            if rule.shadow:
                continue
            probe = _Combined()
            if not self._applies(rule, bag, identity, probe):
                if probe.code:  # the match failed and the rule fails closed
                    self.metrics.quota_requests.labels("error").inc()
                    return QuotaGrant(0, _ZERO, probe.code, probe.message,
                                      tuple(bag.references()))
                continue
            grant = await self._allocate(rule, action, conf, bag, request, dedup_id)
            if grant is not None:
                return grant
        self.metrics.quota_requests.labels("granted").inc()
        return QuotaGrant(request.amount, DEFAULT_VALID_DURATION,
                          references=tuple(bag.references()))

    async def _allocate(self, rule: RuleConfig, action: ActionConfig, conf: Any,
                        bag: AttributeBag, request: QuotaRequest, dedup_id: str
                        ) -> QuotaGrant | None:
        handler = action.handler.name
        adapter = self.snapshot.adapters[handler]
        try:
            instance = conf.build(bag)
        except Exception as exc:  # noqa: BLE001 - skipped unless the rule fails closed
            self._evaluation_failure(rule, f"instance {conf.name}", exc, None)
            if rule.fail_policy != "closed":
                return None
            return self._quota_error(rule, bag, f"instance {conf.name} failed: {exc}")
        try:
            result = await adapter.quota(instance, QuotaArgs(request.amount,
                                                             request.best_effort, dedup_id))
        except Exception as exc:  # noqa: BLE001 - the rule's fail policy decides
            self.metrics.adapter_errors.labels(handler).inc()
            self.adapter_failures[handler] = (time.time(), _error_text(exc))
            closed = _adapter_fail_closed(rule, adapter)
            self._count_failure(rule, closed, f"handler {handler}", exc)
            if not closed:
                self.metrics.quota_requests.labels("granted").inc()
                return QuotaGrant(request.amount, _ZERO, references=tuple(bag.references()))
            return self._quota_error(rule, bag, f"handler {handler} failed: {exc}")
        exhausted = result.granted <= 0 < request.amount
        self.metrics.quota_requests.labels("exhausted" if exhausted else "granted").inc()
        return QuotaGrant(result.granted, result.valid_duration,
                          RESOURCE_EXHAUSTED if exhausted else 0,
                          f"quota is exhausted for: {conf.short}" if exhausted else "",
                          tuple(bag.references()), result.limit, result.remaining,
                          result.reset)

    def _quota_error(self, rule: RuleConfig, bag: AttributeBag, message: str) -> QuotaGrant:
        self.metrics.quota_requests.labels("error").inc()
        return QuotaGrant(0, _ZERO, UNAVAILABLE, f"rule {rule.name}: {message}",
                          tuple(bag.references()))

    # -- report ------------------------------------------------------------------------

    async def report(self, bags: Sequence[AttributeBag]) -> None:
        batches: dict[str, list[Any]] = {}
        for bag in bags:
            identity = self._identity(bag)
            for rule in self.report_rules:
                if self._applies(rule, bag, identity, None):
                    self._collect(rule, bag, batches)
        for handler, instances in batches.items():
            try:
                await self.snapshot.adapters[handler].report(instances)
            except Exception as exc:  # noqa: BLE001 - counted and logged; others go on
                self.metrics.adapter_errors.labels(handler).inc()
                self.adapter_failures[handler] = (time.time(), _error_text(exc))
                self.log.exception("report adapter failed", handler=handler,
                                   instances=len(instances))

    def _collect(self, rule: RuleConfig, bag: AttributeBag, batches: dict[str, list[Any]]
                 ) -> None:
        for action in rule.actions:
            for conf in action.instances:
                if conf.template.variety is not Variety.REPORT:
                    continue
                try:
                    batches.setdefault(action.handler.name, []).append(
                        self._bind(action.handler.name, conf.build(bag), bag))
                except Exception as exc:  # noqa: BLE001 - skipped and counted
                    self._evaluation_failure(rule, f"instance {conf.name}", exc, None)


    def _bind(self, handler: str, instance: Any, bag: AttributeBag) -> Any:
        """What a report adapter receives: the instance, or what the adapter's optional
        ``bind(instance, bag)`` makes of it (for adapters that need attributes too)."""
        bind = self._binders.get(handler)
        return instance if bind is None else bind(instance, bag)


def _rules(snapshot: Snapshot, variety: Variety, shadow: bool | None
           ) -> tuple[RuleConfig, ...]:
    return tuple(r for r in snapshot.rules(variety) if shadow is None or r.shadow == shadow)


def _quota_index(snapshot: Snapshot) -> dict[str, list[tuple[RuleConfig, ActionConfig, Any]]]:
    """Quota instance short name (lower case) → the rule actions that allocate it."""
    index: dict[str, list[tuple[RuleConfig, ActionConfig, Any]]] = {}
    for rule in snapshot.rules(Variety.QUOTA):
        for action in rule.actions:
            for conf in action.instances:
                if conf.template.variety is Variety.QUOTA:
                    index.setdefault(conf.short.lower(), []).append((rule, action, conf))
    return index


def _adapter_fail_closed(rule: RuleConfig, adapter: Any) -> bool:
    """The rule's failPolicy wins; else the adapter's own switch (OPA's failClose); else
    closed (DESIGN §5)."""
    if rule.fail_policy is not None:
        return rule.fail_policy == "closed"
    default = getattr(adapter, "fail_closed", None)
    return True if default is None else bool(default)


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _unavailable(rule: RuleConfig, message: str) -> CheckResult:
    return CheckResult(UNAVAILABLE, f"rule {rule.name}: {message}", _ZERO, 0)


def _with_quotas(verdict: Verdict, grants: Mapping[str, QuotaGrant]) -> Verdict:
    """An exhausted or failed quota denies the request when the precondition allowed it;
    such a verdict must not be reused (lifetime zero)."""
    if not verdict.ok:
        return verdict
    for grant in grants.values():
        if grant.code != 0:
            return dataclasses.replace(verdict, code=grant.code, message=grant.message,
                                       valid_duration=_ZERO, valid_use_count=0,
                                       request_header_ops=(), response_header_ops=())
    return verdict
