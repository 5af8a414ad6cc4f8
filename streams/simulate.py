"""Moves simulated events to Kafka (paced in real time) or to a JSONL file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from confluent_kafka import KafkaException, Producer

from streams.config import Settings
from streams.errors import UserError
from streams.kafka import quiet_logger
from streams.simulator import SimEvent


def producer(settings: Settings) -> Producer:
    return Producer({**settings.kafka_client_config(), "enable.idempotence": True,
                     "linger.ms": 20, "compression.type": "lz4", "logger": quiet_logger()})


def publish(settings: Settings, events: Iterable[SimEvent], stop: threading.Event | None = None,
            on_sent: Callable[[int], None] | None = None) -> int:
    """Publish at the pace of the events' offsets; returns how many were sent."""
    prod = producer(settings)
    errors: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None and not errors:
            errors.append(str(err))

    start = time.monotonic()
    sent = 0
    try:
        for ev in events:
            if stop is not None and stop.is_set():
                break
            delay = ev.offset_s - (time.monotonic() - start)
            if delay > 0:
                prod.poll(delay) if delay < 0.05 else (stop.wait(delay) if stop else time.sleep(delay))
            _produce(prod, ev, report)
            sent += 1
            if errors:
                raise UserError(f"publishing to {settings.bootstrap} failed: {errors[0]}")
            if on_sent is not None and sent % 500 == 0:
                on_sent(sent)
    finally:
        remaining = prod.flush(10)
    if errors:
        raise UserError(f"publishing to {settings.bootstrap} failed: {errors[0]}")
    if remaining:
        raise UserError(f"{remaining} events were not delivered to {settings.bootstrap} within 10 s")
    return sent


def _produce(prod: Producer, ev: SimEvent, report: Callable[[object, object], None]) -> None:
    while True:
        try:
            prod.produce(ev.topic, key=ev.key.encode(), value=orjson.dumps(ev.value), on_delivery=report)
            prod.poll(0)
            return
        except BufferError:
            prod.poll(0.1)
        except KafkaException as exc:
            raise UserError(f"publishing failed: {exc}") from None


def write_jsonl(path: Path, events: Iterable[SimEvent]) -> int:
    """One line per record in the public contract, with the topic it belongs to."""
    n = 0
    with Path(path).open("wb") as fh:
        for ev in events:
            fh.write(orjson.dumps({"topic": ev.topic, "key": ev.key, "value": ev.value}))
            fh.write(b"\n")
            n += 1
    return n

