"""The input topics read in batches with confluent-kafka, for the ingest step.

Why not a Faust agent: Faust makes an Event for every consumed record, runs its sensors on it and
acks it. A Faust agent that only counts its `take_events` batches reads 13-16k records/s on a
2-core machine with the broker on it, under half the ingest target, before any work is done.
Ingest is stateless (the catalog it reads is a global table that Faust keeps), so it needs none of
Faust's per-record machinery: librdkafka fetches and decodes in C and hands over thousands of
records per call. The stateful stages (niche, capacity desk) stay Faust agents.

At-least-once: a batch's offsets are committed only once everything it produced is delivered. A
crash re-sends rows; the niche ledger skips them (streams.ledger). The producer is idempotent, so
a niche's messages stay in order through retries, which the ledger's per-source marks rely on.
Consumer lag is reported on Faust's own gauges (c2m_topic_partition_end_offset and
..._offset_commited), so the lag alert and dashboard cover the input topics as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from faust.types import TP

from streams.config import Settings
from streams.ingest import RawRecord
from streams.kafka import quiet_logger

log = logging.getLogger(__name__)


# While the niche stage keeps up, ingest hands over what has arrived at once (low latency). When
# it falls behind, ingest lets its batches fill for as long as the stage is behind (at most
# MAX_HOLD_S): the stage's cost is per niche message, live input in small batches makes about one
# message per event, and a fuller batch puts more of a niche's events in one message. Waiting
# adds no delay the stage's backlog was not already adding.
HOLD_FROM_S = 0.2
MAX_HOLD_S = 1.0


def hold_for(behind_s: float) -> float:
    """How long to let the next batch fill, given how far behind the niche stage is."""
    return 0.0 if behind_s < HOLD_FROM_S else min(behind_s, MAX_HOLD_S)


class OffsetMonitor(Protocol):
    """The part of Faust's Monitor (app.monitor) that keeps the consumer-lag gauges."""

    def on_tp_commit(self, tp_offsets: Any) -> None: ...

    def track_tp_end_offset(self, tp: Any, offset: int) -> None: ...


def group_id(app_id: str) -> str:
    """The ingest consumer group: apart from Faust's (the app id), which reads the internal topics."""
    return f"{app_id}-ingest"


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {**settings.kafka_client_config(), "group.id": group_id(settings.app_id),
            "enable.auto.commit": False, "auto.offset.reset": settings.auto_offset_reset,
            "session.timeout.ms": settings.session_timeout_seconds * 1000,
            "logger": quiet_logger(), "log.connection.close": False}


def producer_config(settings: Settings) -> dict[str, Any]:
    # murmur2 is the Java client's partitioner and aiokafka's (Faust's): the desk's replies to a
    # niche, sent through Faust, must land in the partition where ingest sends the niche's rows.
    return {**settings.kafka_client_config(), "enable.idempotence": True, "linger.ms": 5,
            "partitioner": "murmur2_random", "logger": quiet_logger(), "log.connection.close": False}


class Intake:
    """One consumer of the input topics and one producer for what ingest makes of them."""

    def __init__(self, settings: Settings, topics: list[str], monitor: OffsetMonitor | None = None) -> None:
        self._consumer = Consumer(consumer_config(settings))
        self._producer = Producer(producer_config(settings))
        self._topics = topics
        self._monitor = monitor
        # consume() and flush() block: one thread of their own keeps them off the event loop and
        # never runs two calls on the consumer at once.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="c2m-intake")
        self._failed = 0

    async def batches(self, size: int, within: float,
                      behind: Callable[[], float] = lambda: 0.0) -> AsyncIterator[list[RawRecord]]:
        """Batches of up to `size` records: what has arrived, at once; when nothing has, what
        arrives within `within` s. The batch is committed when the caller asks for the next, once
        what it produced is delivered. `behind()` says how far behind the niche stage is, in
        seconds: see hold_for.

        consume(size, within) alone returns only when `size` records are there or `within` has
        passed, so under light load every record waited out `within` (50 ms of a group buy's
        latency). Taking what is ready keeps batches large when the worker is behind (the
        consumer prefetches while a batch is processed) and small when it keeps up."""
        loop = asyncio.get_running_loop()
        self._consumer.subscribe(self._topics)
        pending: asyncio.Future[list[Message]] | None = None
        try:
            while True:
                hold = hold_for(behind())
                pending = loop.run_in_executor(self._pool, self._consumer.consume, size, hold)
                msgs = await asyncio.shield(pending)
                if not msgs:
                    pending = loop.run_in_executor(self._pool, self._consumer.consume, size, within)
                    msgs = await asyncio.shield(pending)
                pending = None
                records = [RawRecord(m.topic(), m.partition(), m.offset(), m.value())
                           for m in msgs if self._readable(m)]
                if not records:
                    continue
                yield records
                await loop.run_in_executor(self._pool, self._producer.flush)
                self._commit(records)
        finally:
            if pending is not None:  # cancelled while consume() ran: let it return before closing
                await asyncio.wait([pending])
            await loop.run_in_executor(self._pool, self._close)

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failed += 1
            log.warning("ingest output not delivered: %s", err)

    def _readable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        # Transient fetch errors (a broker restarting, a topic being created) come back as
        # messages; librdkafka retries them itself. Never a reason to stop the worker.
        log.warning("input fetch error on %s[%s]: %s", msg.topic(), msg.partition(), err)
        return False

    def _commit(self, records: list[RawRecord]) -> None:
        if self._failed:
            # Something this batch produced was lost: read the batch again rather than commit past
            # it (the niche ledger skips the rows that did arrive).
            log.warning("%d ingest outputs not delivered: reading their batch again", self._failed)
            self._failed = 0
            first: dict[tuple[str, int], int] = {}
            for rec in records:
                first[(rec.topic, rec.partition)] = min(first.get((rec.topic, rec.partition), rec.offset), rec.offset)
            for (t, p), o in first.items():
                try:
                    self._consumer.seek(TopicPartition(t, p, o))
                except Exception as exc:  # revoked meanwhile: its next owner reads from the last commit
                    log.info("ingest seek skipped: %s", exc)
            return
        nxt: dict[tuple[str, int], int] = {}
        for rec in records:
            tp = (rec.topic, rec.partition)
            nxt[tp] = max(nxt.get(tp, 0), rec.offset + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in nxt.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # partitions revoked meanwhile: their next owner reads again
            log.info("ingest commit skipped: %s", exc)
            return
        if self._monitor is not None:
            self._report(offsets)

    def _report(self, offsets: list[TopicPartition]) -> None:
        assert self._monitor is not None
        self._monitor.on_tp_commit({TP(tp.topic, tp.partition): tp.offset for tp in offsets})
        for tp in offsets:
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                self._monitor.track_tp_end_offset(TP(tp.topic, tp.partition), high)

    def _close(self) -> None:
        self._producer.flush(10)
        self._consumer.close()
