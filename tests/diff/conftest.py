"""Kafka brokers for the replay-from-a-topic tests (tests/services/kafka.py)."""

from tests.services.kafka import (apache_kafka, apache_kafka_session,  # noqa: F401 - fixtures
                                  kafka_broker, tansu_broker, topic)
