"""The ``kafka`` adapter: every report instance a rule sends it becomes one JSON record.

See ``docs/adapters/kafka.md`` (params, delivery, failure modes) and
``docs/kafka-records.md`` (the record schema).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from mixerhub.adapter import AdapterEnv, BaseAdapter, Status
from mixerhub.adapters.kafka.delivery import Delivery
from mixerhub.adapters.kafka.params import KafkaParams
from mixerhub.adapters.kafka.records import (Bound, OutRecord, RecordRenderer, key_text,
                                             reporter_of)
from mixerhub.attributes.bag import AttributeBag
from mixerhub.decisions import IdSource
from mixerhub.metrics import metrics_for
from mixerhub.redact import DEFAULT_SECRET_KEYS
from mixerhub.templates.instance import Instance

# The built-in templates that are not REPORT templates; any other name is taken as one.
_NOT_REPORT = frozenset({"authorization", "checknothing", "listentry", "quota"})


class ReportTemplates(frozenset[str]):
    """``logentry``, ``metric``, ``reportnothing`` — and any other REPORT template a
    plugin registers: membership is "not one of the built-in check or quota templates"."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name not in _NOT_REPORT

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(frozenset.__iter__(self)))


class KafkaAdapter(BaseAdapter):
    """Exports report instances to a Kafka topic, at least once."""

    name: ClassVar[str] = "kafka"
    Params: ClassVar[type[BaseModel]] = KafkaParams
    templates: ClassVar[frozenset[str]] = ReportTemplates({"logentry", "metric",
                                                           "reportnothing"})

    def __init__(self, params: KafkaParams, env: AdapterEnv) -> None:
        super().__init__(params, env)
        self._render = RecordRenderer(env.handler, DEFAULT_SECRET_KEYS | set(params.redact),
                                      IdSource())
        self._key = params.key_expression
        self.delivery = Delivery(env.handler, params, metrics_for(env.registry), env.logger,
                                 on_health=self._health)

    def _health(self, healthy: bool) -> None:
        self.status = Status.OK if healthy else Status.ERROR

    async def start(self) -> None:
        # Never waits for the brokers: telemetry must not hold up policy.
        await self.delivery.start()

    async def stop(self) -> None:
        await self.delivery.stop()
        self.status = Status.NOT_READY

    def bind(self, instance: Instance, bag: AttributeBag) -> Bound:
        """Called by the dispatcher on the report path with the bag the instance was built
        from: the record key and the reporter come from the attributes."""
        stamp = instance.get("timestamp")  # a logentry's own time spares a clock read
        return Bound(instance, key_text(self._key, bag), reporter_of(bag.values),
                     stamp if type(stamp) is dt.datetime else self.env.clock.now())

    async def report(self, instances: Sequence[Any]) -> None:
        records = list(self._records(instances))
        if records:
            await self.delivery.put(records)

    def _records(self, items: Sequence[Any]) -> Iterator[OutRecord]:
        errors: list[Exception] = []
        for item in items:
            bound = item if isinstance(item, Bound) else Bound(item, None, None,
                                                               self.env.clock.now())
            try:
                yield self._render(bound)
            except (TypeError, ValueError) as exc:  # a value with no JSON form
                errors.append(exc)
        if errors:
            for _ in errors:
                self.env.on_error()
            self.env.logger.warning("kafka: instances not exported", handler=self.env.handler,
                                    count=len(errors), error=str(errors[-1]))
