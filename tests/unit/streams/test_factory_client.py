"""Factory SDK without a broker: dedupe and stale revisions (RevisionFilter), status records, and
the client's read loop (skip bad input, commit only what the caller has handled) on fake clients."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
import pytest
from confluent_kafka import TopicPartition

from streams import factory_client as fc_mod
from streams import publisher as pub_mod
from streams.config import Settings
from streams.factory_client import FactoryClient, RevisionFilter, Verdict, status_record
from streams.records import FactoryStatus, TriggerRecord, parse_factory_status, parse_trigger
from tests.contract_examples import TRIGGER
from tests.helpers import FakeMessage

NOW = 1_764_000_001_000


def trig(**changes: Any) -> TriggerRecord:
    parsed = parse_trigger(orjson.dumps({**TRIGGER, **changes}), NOW)
    assert isinstance(parsed, TriggerRecord)
    return parsed


# --- RevisionFilter -----------------------------------------------------------------------------


def test_first_sighting_is_new_and_a_repeat_is_a_duplicate() -> None:
    f = RevisionFilter()
    assert f.admit("t-1", 1) is Verdict.NEW
    assert f.admit("t-1", 1) is Verdict.DUPLICATE
    assert f.highest("t-1") == 1


def test_higher_revision_is_new_and_lower_is_stale() -> None:
    f = RevisionFilter()
    assert f.admit("t-1", 1) is Verdict.NEW
    assert f.admit("t-1", 3) is Verdict.NEW
    assert f.admit("t-1", 2) is Verdict.STALE  # arrived late: revision 3 already supersedes it
    assert f.admit("t-1", 1) is Verdict.STALE
    assert f.admit("t-1", 3) is Verdict.DUPLICATE
    assert f.admit("t-1", 4) is Verdict.NEW
    assert f.highest("t-1") == 4


def test_trigger_ids_are_independent() -> None:
    f = RevisionFilter()
    assert f.admit("t-1", 5) is Verdict.NEW
    assert f.admit("t-2", 1) is Verdict.NEW
    assert f.highest("t-3") is None
    assert len(f) == 2


def test_check_does_not_record() -> None:
    f = RevisionFilter()
    assert f.check("t-1", 1) is Verdict.NEW
    assert f.check("t-1", 1) is Verdict.NEW
    assert len(f) == 0


def test_memory_is_bounded_least_recently_seen_first() -> None:
    f = RevisionFilter(max_ids=2)
    f.admit("t-1", 1)
    f.admit("t-2", 1)
    f.admit("t-1", 2)  # t-1 is now the most recent
    f.admit("t-3", 1)  # forgets t-2
    assert len(f) == 2
    assert f.highest("t-2") is None
    assert f.highest("t-1") == 2
    with pytest.raises(ValueError):
        RevisionFilter(max_ids=0)


def test_seeded_filter_skips_what_the_factory_already_holds() -> None:
    f = RevisionFilter(seen={"t-1": 3})
    assert f.admit("t-1", 2) is Verdict.STALE
    assert f.admit("t-1", 3) is Verdict.DUPLICATE
    assert f.admit("t-1", 4) is Verdict.NEW


@pytest.mark.parametrize("sequence", [[1, 1, 2, 1, 3, 3, 2], [5, 4, 3, 6], [1, 2, 3]])
def test_yields_each_revision_once_in_growing_order(sequence: list[int]) -> None:
    f = RevisionFilter()
    passed = [r for r in sequence if f.admit("t", r) is Verdict.NEW]
    assert passed == sorted(set(passed))
    assert len(passed) == len(set(passed))
    assert passed[-1] == max(sequence)


# --- status records -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["accepted", "in_production", "completed"])
def test_status_record_about_a_trigger(status: str) -> None:
    record = status_record("f-1", status, NOW, trig(revision=2))
    assert record == {"factory_id": "f-1", "status": status, "ts": NOW, "trigger_id": "t-1", "revision": 2,
                      "units": 200}
    assert isinstance(parse_factory_status(orjson.dumps(record), NOW), FactoryStatus)


def test_status_record_with_units_and_reason() -> None:
    assert status_record("f-1", "completed", NOW, trig(), units=190)["units"] == 190
    record = status_record("f-1", "rejected", NOW, trig(), reason="line down")
    assert (record["reason"], record["units"]) == ("line down", 200)


def test_capacity_record() -> None:
    record = status_record("f-1", "capacity", NOW, capacity_units_per_day=4000)
    assert record == {"factory_id": "f-1", "status": "capacity", "ts": NOW, "capacity_units_per_day": 4000}
    assert isinstance(parse_factory_status(orjson.dumps(record), NOW), FactoryStatus)


# --- the client's loop on fake Kafka clients --------------------------------------------------------


class FakeConsumer:
    instances: ClassVar[list[FakeConsumer]] = []
    queue: ClassVar[list[FakeMessage]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.subscribed: list[str] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.closed = False
        self.messages = list(FakeConsumer.queue)
        FakeConsumer.instances.append(self)

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = topics

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.messages.pop(0) if self.messages else None

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def close(self) -> None:
        self.closed = True

    def committed(self) -> dict[tuple[str, int], int]:
        """The latest committed offset per partition."""
        out: dict[tuple[str, int], int] = {}
        for batch in self.commits:
            for topic, partition, offset in batch:
                out[(topic, partition)] = offset
        return out


class FakeProducer:
    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        FakeProducer.instances.append(self)

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, key, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeConsumer.instances, FakeProducer.instances = [], []
    monkeypatch.setattr(fc_mod, "Consumer", FakeConsumer)
    monkeypatch.setattr(pub_mod, "Producer", FakeProducer)


def queue(*records: Any) -> None:
    """Messages for the next FakeConsumer: dicts are encoded, bytes and None go as they are."""
    FakeConsumer.queue = [FakeMessage("c2m.triggers.f-1", 0, offset,
                                      r if r is None or isinstance(r, bytes) else orjson.dumps(r))
                          for offset, r in enumerate(records)]


def client(**kwargs: Any) -> FactoryClient:
    return FactoryClient("f-1", Settings(bootstrap="b:9092"), **kwargs)


def test_consumer_config_and_subscription(fakes: None) -> None:
    queue()
    c = client()
    consumer = FakeConsumer.instances[-1]
    assert consumer.subscribed == ["c2m.triggers.f-1"]
    assert consumer.config["group.id"] == "factory-f-1"
    assert consumer.config["auto.offset.reset"] == "earliest"
    assert consumer.config["enable.auto.commit"] is False
    assert FakeProducer.instances[-1].config["enable.idempotence"] is True
    assert client(group_id="mes-7").group_id == "mes-7"
    c.close()


def test_bad_factory_id_is_refused(fakes: None) -> None:
    with pytest.raises(ValueError, match="factory_id"):
        FactoryClient("f 1", Settings())


def test_skips_invalid_duplicate_stale_and_foreign_triggers(fakes: None) -> None:
    queue(TRIGGER, b"not json", None, {**TRIGGER, "units": 0}, TRIGGER, {**TRIGGER, "revision": 2},
          {**TRIGGER, "factory_id": "f-2", "trigger_id": "t-9"}, TRIGGER, {**TRIGGER, "trigger_id": "t-2"})
    with client() as c:
        got = [t.key for t in c.triggers(idle_timeout=0, poll_interval=0)]
    assert got == [("t-1", 1), ("t-1", 2), ("t-2", 1)]


def test_a_trigger_is_committed_only_once_the_caller_asks_for_the_next(fakes: None) -> None:
    queue(TRIGGER, b"junk", {**TRIGGER, "revision": 2})
    c = client()
    consumer = FakeConsumer.instances[-1]
    first = c.poll(0)
    assert first is not None
    assert first.key == ("t-1", 1)
    assert consumer.committed() == {}  # handed out, not yet handled
    second = c.poll(0)
    assert second is not None
    assert second.key == ("t-1", 2)
    # offset 0 handled, offset 1 (junk) skipped: both committed; offset 2 is with the caller
    assert consumer.committed() == {("c2m.triggers.f-1", 0): 2}
    c.commit()
    assert consumer.committed() == {("c2m.triggers.f-1", 0): 3}
    c.close()
    assert consumer.closed


def test_an_exception_leaves_the_trigger_uncommitted(fakes: None) -> None:
    queue(TRIGGER)
    consumer = None
    with pytest.raises(RuntimeError, match="MES down"), client() as c:
        consumer = FakeConsumer.instances[-1]
        assert c.poll(0) is not None
        raise RuntimeError("MES down")
    assert consumer is not None
    assert consumer.committed() == {}
    assert consumer.closed


def test_closing_normally_commits_the_last_trigger(fakes: None) -> None:
    queue(TRIGGER)
    with client() as c:
        for _ in c.triggers(idle_timeout=0, poll_interval=0):
            break
        consumer = FakeConsumer.instances[-1]
    assert consumer.committed() == {("c2m.triggers.f-1", 0): 1}


def test_status_methods_send_validated_records_keyed_by_trigger(fakes: None) -> None:
    queue()
    with client() as c:
        t = trig()
        c.accept(t)
        c.in_production(t)
        c.complete(t, units=190)
        c.reject(trig(revision=2), "no capacity")
        c.capacity(3000)
        sent = [(topic, key, orjson.loads(value)) for topic, key, value in FakeProducer.instances[-1].sent]
    assert [(topic, key, r["status"]) for topic, key, r in sent] == [
        ("c2m.factory-status", b"t-1", "accepted"), ("c2m.factory-status", b"t-1", "in_production"),
        ("c2m.factory-status", b"t-1", "completed"), ("c2m.factory-status", b"t-1", "rejected"),
        ("c2m.factory-status", b"f-1", "capacity")]
    assert sent[2][2]["units"] == 190
    assert (sent[3][2]["revision"], sent[3][2]["reason"]) == (2, "no capacity")
    assert sent[4][2]["capacity_units_per_day"] == 3000
    assert all(r["factory_id"] == "f-1" for _, _, r in sent)


def test_invalid_status_raises_and_sends_nothing(fakes: None) -> None:
    queue()
    with client() as c:
        with pytest.raises(ValueError, match="'reason'"):
            c.reject(trig(), "")
        with pytest.raises(ValueError, match="'units'"):
            c.complete(trig(), units=-1)
        with pytest.raises(ValueError, match="'capacity_units_per_day'"):
            c.capacity(-5)
        assert FakeProducer.instances[-1].sent == []


def test_closed_client_refuses_to_poll(fakes: None) -> None:
    queue()
    c = client()
    c.close()
    c.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        c.poll(0)
