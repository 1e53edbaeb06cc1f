"""``memquota``: quotas counted in this process's memory.

Each quota instance is counted per (quota name, dimension values). A quota with a
``validDuration`` is a rate limit over a rolling window; one without is a counter that never
replenishes. Params keep Istio 1.4's names so Mixer handlers load unchanged.

Time comes only from ``env.clock.monotonic()``: tests move a fake clock and never sleep.
All state changes happen between awaits, so concurrent calls on one event loop need no lock.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import ipaddress
import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator

from mixerhub import hookimpl
from mixerhub.adapter import AdapterEnv, BaseAdapter, Params, QuotaArgs, QuotaResult
from mixerhub.adapters._params import Duration
from mixerhub.plugins import AdapterRegistry

#: Sub-buckets per window. A grant is released between 1 and 1 + 1/BUCKETS windows after it
#: was made (5 % late at most), never early, so no interval of ``validDuration`` ever sees
#: more than ``maxAmount`` granted. Memory per key is fixed whatever the request rate.
BUCKETS = 20


def dimension_text(value: Any) -> str:
    """How a dimension value is compared with an override's (Mixer compared strings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)) and len(value) in (4, 16):
        return str(ipaddress.ip_address(bytes(value)))  # IPs travel as raw bytes
    return str(value)


def _config_dimension(value: Any) -> Any:
    # YAML turns `code: 429` or `canary: true` into numbers and bools; compare them as text.
    return dimension_text(value) if isinstance(value, (bool, int, float)) else value


DimensionValue = Annotated[str, BeforeValidator(_config_dimension)]


class Override(Params):
    dimensions: dict[str, DimensionValue] = Field(
        default_factory=dict,
        description="Applies when every one of these instance dimensions equals the given "
                    "value (compared as strings); empty matches every instance")
    max_amount: int = Field(0, ge=0, alias="maxAmount",
                            description="The limit for matching instances")
    valid_duration: Duration | None = Field(
        None, alias="validDuration",
        description="Window for matching instances; omitted: the quota's validDuration; "
                    "0: a counter that never replenishes")


class Quota(Params):
    name: str = Field(min_length=1,
                      description="The quota instance's full name, e.g. "
                                  "requestcountquota.instance.istio-system")
    max_amount: int = Field(0, ge=0, alias="maxAmount",
                            description="Most units granted per window (or ever, for a counter)")
    valid_duration: Duration = Field(
        "0s", alias="validDuration", validate_default=True,
        description="Length of the rolling window; 0: a counter that never replenishes")
    overrides: tuple[Override, ...] = Field(
        (), description="Other limits by dimension values; the first match applies")


class MemQuotaParams(Params):
    quotas: tuple[Quota, ...] = Field((), description="The quotas this handler counts")
    min_deduplication_duration: Duration = Field(
        "1s", alias="minDeduplicationDuration", validate_default=True,
        description="How long a deduplication id is remembered: a retry with the same id "
                    "within it gets the first answer and consumes nothing")

    @field_validator("quotas")
    @classmethod
    def _unique_names(cls, quotas: tuple[Quota, ...]) -> tuple[Quota, ...]:
        seen: set[str] = set()
        for quota in quotas:
            if quota.name in seen:
                raise ValueError(f"quota {quota.name!r} is defined twice")
            seen.add(quota.name)
        return quotas

    @field_validator("min_deduplication_duration")
    @classmethod
    def _positive(cls, duration: dt.timedelta) -> dt.timedelta:
        if duration <= dt.timedelta(0):
            raise ValueError("must be greater than 0")
        return duration


# ---- limits ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    max_amount: int
    window: dt.timedelta  # zero: a counter


@dataclasses.dataclass(frozen=True)
class QuotaPlan:
    """One quota's limits, resolved once: the default and the overrides in order."""

    default: Limit
    overrides: tuple[tuple[tuple[tuple[str, str], ...], Limit], ...]

    @classmethod
    def of(cls, quota: Quota) -> QuotaPlan:
        default = Limit(quota.max_amount, quota.valid_duration)
        overrides = tuple(
            (tuple(o.dimensions.items()),
             Limit(o.max_amount, quota.valid_duration if o.valid_duration is None
                   else o.valid_duration))
            for o in quota.overrides)
        return cls(default, overrides)

    def limit_for(self, dimensions: Mapping[str, str]) -> Limit:
        for wanted, limit in self.overrides:
            if all(dimensions.get(k) == v for k, v in wanted):
                return limit
        return self.default


class RollingWindow:
    """Units granted over the last window, in ``BUCKETS + 1`` slots of window/BUCKETS.

    The extra slot is the one filling now; a slot is emptied only once all of it is older
    than the window, which is why release is late by up to one slot and never early.
    """

    __slots__ = ("_width", "_slots", "_newest", "used")

    def __init__(self, window: dt.timedelta) -> None:
        self._width = window.total_seconds() / BUCKETS
        self._slots = [0] * (BUCKETS + 1)
        self._newest: int | None = None  # index (time // width) of the newest slot
        self.used = 0

    def roll(self, now: float) -> None:
        index = math.floor(now / self._width)
        newest = self._newest
        if newest is not None and index <= newest:
            return  # same slot (a monotonic clock never goes back)
        if newest is None or index - newest >= len(self._slots):
            self._slots = [0] * len(self._slots)
            self.used = 0
        else:
            for i in range(newest + 1, index + 1):
                slot = i % len(self._slots)
                self.used -= self._slots[slot]
                self._slots[slot] = 0
        self._newest = index

    def reset_after(self, now: float) -> float:
        """Seconds until the oldest grant still counted leaves the window (0: none held)."""
        if not self.used or self._newest is None:
            return 0.0
        size = len(self._slots)
        for age in range(size - 1, -1, -1):  # oldest slot first
            index = self._newest - age
            if self._slots[index % size]:
                return max((index + size) * self._width - now, 0.0)
        return 0.0

    def take(self, amount: int) -> None:
        """Record a grant in the current slot (call ``roll`` first)."""
        assert self._newest is not None, "roll() before take()"
        self._slots[self._newest % len(self._slots)] += amount
        self.used += amount


def grant_size(available: int, args: QuotaArgs) -> int:
    """All of ``amount`` or nothing; best effort takes what is left."""
    if args.amount <= available:
        return args.amount
    return max(available, 0) if args.best_effort else 0


# ---- the adapter ----------------------------------------------------------------------

Key = tuple[str, tuple[tuple[str, str], ...]]


class MemQuotaAdapter(BaseAdapter):
    """Rate limits (rolling windows) and counters for quota instances, in memory."""

    name: ClassVar[str] = "memquota"
    Params = MemQuotaParams
    templates: ClassVar[frozenset[str]] = frozenset({"quota"})

    def __init__(self, params: MemQuotaParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self.params: MemQuotaParams = params
        self._plans = {q.name: QuotaPlan.of(q) for q in params.quotas}
        self._dedup_seconds = params.min_deduplication_duration.total_seconds()
        # Both ordered oldest first so expiry pops from the front: O(1) amortised per call.
        self._windows: collections.OrderedDict[Key, RollingWindow] = collections.OrderedDict()
        self._dedup: collections.OrderedDict[tuple[str, str], tuple[float, QuotaResult]] = \
            collections.OrderedDict()
        self._counters: dict[Key, int] = {}
        self._warned: set[str] = set()

    async def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
        plan = self._plans.get(instance.name)
        if plan is None:
            return self._unconfigured(instance.name, args)
        now = self.env.clock.monotonic()
        self._expire(now)
        dedup_key = (instance.name, args.dedup_id)
        if args.dedup_id and dedup_key in self._dedup:
            return self._dedup[dedup_key][1]
        result = self._allocate(plan, instance, args, now)
        if args.dedup_id:
            self._dedup[dedup_key] = (now, result)
        return result

    def _allocate(self, plan: QuotaPlan, instance: Any, args: QuotaArgs, now: float
                  ) -> QuotaResult:
        dimensions = {k: dimension_text(v)
                      for k, v in (instance.get("dimensions") or {}).items()}
        limit = plan.limit_for(dimensions)
        if args.amount <= 0:
            return QuotaResult(granted=0, valid_duration=limit.window)
        key: Key = (instance.name, tuple(sorted(dimensions.items())))
        if limit.window:
            return self._take_from_window(key, limit, args, now)
        return self._take_from_counter(key, limit, args)

    def _take_from_window(self, key: Key, limit: Limit, args: QuotaArgs, now: float
                          ) -> QuotaResult:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = RollingWindow(limit.window)
        else:
            self._windows.move_to_end(key)  # most recently used goes last
        window.roll(now)
        granted = grant_size(limit.max_amount - window.used, args)
        if granted:
            window.take(granted)
        reset = dt.timedelta(seconds=window.reset_after(now))
        return QuotaResult(granted, limit.window, limit.max_amount,
                           max(limit.max_amount - window.used, 0), reset)

    def _take_from_counter(self, key: Key, limit: Limit, args: QuotaArgs) -> QuotaResult:
        used = self._counters.get(key, 0)
        granted = grant_size(limit.max_amount - used, args)
        if granted:
            self._counters[key] = used = used + granted
        # A counter never refills: no reset time.
        return QuotaResult(granted, limit.window, limit.max_amount,
                           max(limit.max_amount - used, 0))

    def _expire(self, now: float) -> None:
        """Forget dedup ids older than minDeduplicationDuration and windows that hold
        nothing. Counters are kept: dropping one would hand its quota out again."""
        while self._dedup:
            seen_at, _ = next(iter(self._dedup.values()))
            if now - seen_at < self._dedup_seconds:
                break
            self._dedup.popitem(last=False)
        while self._windows:
            window = next(iter(self._windows.values()))
            window.roll(now)
            if window.used:
                break  # the least recently used window still holds grants: stop here
            self._windows.popitem(last=False)

    def _unconfigured(self, name: str, args: QuotaArgs) -> QuotaResult:
        # No `quotas` entry names this instance: a config mismatch Mixer refused at load.
        # Denying would turn it into an outage, so grant in full, warn once, count each.
        self.env.on_error()
        if name not in self._warned:
            self._warned.add(name)
            self.env.logger.warning("quota not configured in memquota handler; granting in "
                                    "full", quota=name, handler=self.env.handler)
        return QuotaResult(granted=max(args.amount, 0))

    def key_count(self) -> int:
        """Keys currently held (rolling windows and counters), for /debug and tests."""
        return len(self._windows) + len(self._counters)


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(MemQuotaAdapter)
