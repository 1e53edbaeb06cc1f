"""The built-in ``kafka`` adapter: report instances as JSON records in a Kafka topic, with
a bounded buffer, an on-disk spool and at-least-once delivery (``docs/adapters/kafka.md``).

Registered like any plugin, through the ``mixerhub`` entry-point group.
"""

from __future__ import annotations

from mixerhub import hookimpl
from mixerhub.adapters.kafka.adapter import KafkaAdapter
from mixerhub.adapters.kafka.params import KafkaParams
from mixerhub.plugins import AdapterRegistry

__all__ = ["KafkaAdapter", "KafkaParams", "mixerhub_register_adapters"]


@hookimpl
def mixerhub_register_adapters(registry: AdapterRegistry) -> None:
    registry.register(KafkaAdapter)
