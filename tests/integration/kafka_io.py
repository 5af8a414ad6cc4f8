"""Reading and writing the real broker from tests, with plain confluent-kafka clients that are not
part of any worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer


def produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    prod = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    n = 0
    for topic, key, value in records:
        prod.produce(topic, key=key, value=value)
        prod.poll(0)
        n += 1
    assert prod.flush(30) == 0, "records left undelivered"
    return n


def consumer(bootstrap: str, topics: list[str]) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(topics)
    return c


def collect(bootstrap: str, topics: list[str], keep: Callable[[dict[str, Any]], bool],
            until: Callable[[list[dict[str, Any]]], bool], timeout: float) -> list[dict[str, Any]]:
    """JSON records of `topics` that `keep` accepts, read until `until(kept)` holds or time runs out."""
    c = consumer(bootstrap, topics)
    kept: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(kept):
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            try:
                value = orjson.loads(msg.value())
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and keep(value):
                kept.append({**value, "_topic": msg.topic(), "_key": msg.key()})
    finally:
        c.close()
    return kept
