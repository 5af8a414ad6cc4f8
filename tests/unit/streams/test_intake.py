"""The ingest consumer without a broker: confluent-kafka's clients replaced by fakes that record
what the intake asks of them (what it commits, when, and what it reports as lag)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition
from faust.types import TP

from streams import intake
from streams.config import Settings
from streams.ingest import RawRecord
from tests.helpers import FakeMessage


class FakeConsumer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.batches: list[list[FakeMessage]] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.timeouts: list[float] = []  # of every consume() call
        self.closed = False

    def subscribe(self, topics: list[str]) -> None:
        self.topics = topics

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        self.timeouts.append(timeout)
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 100 + tp.partition

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.unflushed: list[Any] = []
        self.fail_next = False
        self.full = 0

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value))
        self.unflushed.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float | None = None) -> int:
        for cb in self.unflushed:
            cb(KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail_next else None, None)
        self.unflushed.clear()
        self.fail_next = False
        return 0


class FakeMonitor:
    def __init__(self) -> None:
        self.committed: dict[TP, int] = {}
        self.ends: dict[TP, int] = {}

    def on_tp_commit(self, tp_offsets: dict[TP, int]) -> None:
        self.committed.update(tp_offsets)

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        self.ends[tp] = offset


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "Consumer", FakeConsumer)
    monkeypatch.setattr(intake, "Producer", FakeProducer)


SETTINGS = Settings.from_env({"C2M_APP_ID": "shop", "C2M_KAFKA_BOOTSTRAP": "127.0.0.1:1"})


def test_clients_are_configured_for_at_least_once_and_faust_compatible_partitioning() -> None:
    consumer = intake.consumer_config(SETTINGS)
    assert consumer["group.id"] == "shop-ingest" != SETTINGS.app_id
    assert consumer["enable.auto.commit"] is False
    assert consumer["session.timeout.ms"] == SETTINGS.session_timeout_seconds * 1000
    producer = intake.producer_config(SETTINGS)
    assert producer["partitioner"] == "murmur2_random"  # aiokafka's and Java's
    assert producer["enable.idempotence"] is True


def test_security_settings_reach_both_clients() -> None:
    settings = Settings.from_env({"C2M_KAFKA_BOOTSTRAP": "b:9092", "C2M_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                  "C2M_SASL_MECHANISM": "PLAIN", "C2M_SASL_USERNAME": "u",
                                  "C2M_SASL_PASSWORD": "p"})
    for config in (intake.consumer_config(settings), intake.producer_config(settings)):
        assert config["security.protocol"] == "SASL_PLAINTEXT"
        assert config["sasl.username"] == "u"


END = FakeMessage("end", 0, 0)


async def drive(it: intake.Intake, batches: list[list[FakeMessage]], each: Any = None,
                behind: Any = lambda: 0.0) -> list[list[RawRecord]]:
    """The batches the intake hands out for these consumed ones, calling `each(records)` on each;
    a last batch (END) is asked for, so every one before it has had its turn to commit."""
    consumer: FakeConsumer = it._consumer  # type: ignore[assignment]
    consumer.batches = [*batches, [END]]
    seen: list[list[RawRecord]] = []
    gen = it.batches(100, 0.01, behind)
    async for records in gen:
        if records[0].topic == "end":
            break
        seen.append(records)
        if each is not None:
            each(records)
    await gen.aclose()
    return seen


async def test_a_batch_is_committed_after_what_it_produced_is_delivered(fakes: None) -> None:
    monitor = FakeMonitor()
    it = intake.Intake(SETTINGS, ["c2m.clickstream", "c2m.orders"], monitor)
    consumer: FakeConsumer = it._consumer  # type: ignore[assignment]
    producer: FakeProducer = it._producer  # type: ignore[assignment]
    commits_when_produced: list[int] = []

    def each(records: list[RawRecord]) -> None:
        it.produce("niche-events", b"k", b"v")
        commits_when_produced.append(len(consumer.commits))

    batches = [[FakeMessage("c2m.clickstream", 0, 7), FakeMessage("c2m.clickstream", 0, 8),
                FakeMessage("c2m.orders", 2, 40)],
               [FakeMessage("c2m.clickstream", 0, 9)], []]
    seen = await drive(it, batches, each=each)
    assert [[r.offset for r in b] for b in seen] == [[7, 8, 40], [9]]
    # the first batch's commit came after its output was flushed, before the second was handed out
    assert commits_when_produced == [0, 1]
    assert consumer.commits == [[("c2m.clickstream", 0, 9), ("c2m.orders", 2, 41)], [("c2m.clickstream", 0, 10)]]
    assert producer.sent == [("niche-events", b"k", b"v")] * 2
    assert monitor.committed == {TP("c2m.clickstream", 0): 10, TP("c2m.orders", 2): 41}
    assert monitor.ends == {TP("c2m.clickstream", 0): 100, TP("c2m.orders", 2): 102}
    assert consumer.closed


async def test_lost_output_is_read_again_not_committed_past(fakes: None) -> None:
    it = intake.Intake(SETTINGS, ["c2m.clickstream"])
    consumer: FakeConsumer = it._consumer  # type: ignore[assignment]
    producer: FakeProducer = it._producer  # type: ignore[assignment]
    attempts: list[int] = []

    def each(records: list[RawRecord]) -> None:
        producer.fail_next = not attempts  # the first batch's output is lost
        attempts.append(records[0].offset)
        it.produce("niche-events", b"k", b"v")

    lost = [FakeMessage("c2m.clickstream", 0, 1), FakeMessage("c2m.clickstream", 0, 2)]
    await drive(it, [lost, lost], each=each)  # the consumer hands the batch out again after the seek
    assert consumer.seeks == [("c2m.clickstream", 0, 1)]
    assert attempts == [1, 1]
    assert consumer.commits == [[("c2m.clickstream", 0, 3)]]


async def test_fetch_errors_are_skipped_not_raised(fakes: None) -> None:
    it = intake.Intake(SETTINGS, ["c2m.clickstream"])
    broken = FakeMessage("c2m.clickstream", 1, -1, None, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    seen = await drive(it, [[broken], [broken, FakeMessage("c2m.clickstream", 0, 5)], []])
    assert [[r.offset for r in b] for b in seen] == [[5]]


def test_a_full_producer_queue_is_drained_not_dropped(fakes: None) -> None:
    it = intake.Intake(SETTINGS, ["c2m.clickstream"])
    producer: FakeProducer = it._producer  # type: ignore[assignment]
    producer.full = 2
    it.produce("niche-events", b"k", b"v")
    assert producer.sent == [("niche-events", b"k", b"v")]


async def test_what_has_arrived_is_handed_out_at_once_and_only_an_idle_consumer_waits(fakes: None) -> None:
    it = intake.Intake(SETTINGS, ["c2m.clickstream"])
    consumer: FakeConsumer = it._consumer  # type: ignore[assignment]
    seen = await drive(it, [[FakeMessage("c2m.clickstream", 0, 1)], [], [FakeMessage("c2m.clickstream", 0, 2)]])
    assert [[r.offset for r in b] for b in seen] == [[1], [2]]
    # ready records go without waiting; only when none were there does it wait `within` (0.01)
    assert consumer.timeouts == [0, 0, 0.01, 0]


def test_a_batch_is_held_to_fill_only_while_the_niche_stage_is_behind() -> None:
    assert intake.hold_for(0.0) == intake.hold_for(intake.HOLD_FROM_S - 0.01) == 0.0
    assert intake.hold_for(0.5) == 0.5  # as long as the stage is behind: no delay it did not already have
    assert intake.hold_for(30.0) == intake.MAX_HOLD_S


async def test_the_intake_waits_for_a_fuller_batch_when_told_the_stage_is_behind(fakes: None) -> None:
    it = intake.Intake(SETTINGS, ["c2m.clickstream"])
    consumer: FakeConsumer = it._consumer  # type: ignore[assignment]
    behind = iter([0.6, 0.0, 0.0])  # one reading per batch: behind for the first, caught up after
    seen = await drive(it, [[FakeMessage("c2m.clickstream", 0, 1)], [FakeMessage("c2m.clickstream", 0, 2)]],
                       behind=lambda: next(behind))
    assert [[r.offset for r in b] for b in seen] == [[1], [2]]
    assert consumer.timeouts == [0.6, 0, 0]
