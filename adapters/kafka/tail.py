"""``mixerhub tail``: print the records of a topic as JSON lines, or as a table on a
terminal. Works on any topic; knows how to summarise mixerhub's own records and recorded
checks."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from typing import Any, TextIO

from mixerhub.jsonform import format_timestamp

_HEADER = f"{'time':<24} {'part/offset':<12} {'key':<20} record"


async def tail(brokers: str, topic: str, out: TextIO, *, from_beginning: bool = False,
               count: int | None = None, table: bool = False) -> int:
    """Print records until ``count`` were printed (forever without one). Returns an exit
    code: 0, or 1 when the brokers cannot be reached."""
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=[b.strip() for b in brokers.split(",") if b.strip()],
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False, group_id=None)
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        print(f"mixerhub tail: cannot reach {brokers}: {exc}", file=sys.stderr)
        return 1
    try:
        await _print_records(consumer, out, count, table)
    finally:
        await consumer.stop()
    return 0


async def _print_records(consumer: Any, out: TextIO, count: int | None, table: bool) -> None:
    width = shutil.get_terminal_size().columns
    if table:
        print(_HEADER, file=out)
    printed = 0
    while count is None or printed < count:
        batches = await consumer.getmany(timeout_ms=500)
        for record in (r for batch in batches.values() for r in batch):
            line = table_row(record, width) if table else json_line(record)
            print(line, file=out, flush=True)
            printed += 1
            if count is not None and printed >= count:
                return


def envelope(record: Any) -> dict[str, Any]:
    """A consumed record as a JSON object: where it sits, its key, its value (parsed when
    it is JSON, else text)."""
    return {"partition": record.partition, "offset": record.offset,
            "timestamp": _time(record.timestamp),
            "key": _text(record.key), "value": _value(record.value)}


def json_line(record: Any) -> str:
    return json.dumps(envelope(record), ensure_ascii=False, separators=(",", ":"))


def table_row(record: Any, width: int = 120) -> str:
    place = f"{record.partition}/{record.offset}"
    key = _text(record.key) or "-"
    row = f"{_time(record.timestamp):<24} {place:<12} {key[:20]:<20} {summary(_value(record.value))}"
    return row if len(row) <= width else row[:max(width - 1, 20)] + "…"


def summary(value: Any) -> str:
    """One line about a record value: mixerhub's records and recorded checks are
    recognised; anything else is shown as compact JSON or text."""
    if isinstance(value, dict) and "template" in value and "fields" in value:
        return f"{value['instance']} {_compact(value['fields'])}"
    if isinstance(value, dict) and "verdict" in value and "attributes" in value:
        status = value["verdict"].get("status", {})
        rules = ",".join(value.get("rules") or ()) or "-"
        return f"check code={status.get('code')} rules={rules} {_compact(value['attributes'])}"
    return value if isinstance(value, str) else _compact(value)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _time(millis: int | None) -> str:
    if millis is None or millis < 0:
        return "-"
    return format_timestamp(dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc))


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _value(raw: bytes | None) -> Any:
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
