"""Kafka brokers for these tests (tests/services/kafka.py) and hub helpers they share."""

from tests.services.kafka import (apache_kafka, apache_kafka_session,  # noqa: F401 - fixtures
                                  kafka_broker, tansu_broker, topic)
