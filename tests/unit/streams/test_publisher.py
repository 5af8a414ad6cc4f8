"""Producer SDK, without a broker: the records it builds, validation before send, keys, config and
how delivery failures surface. confluent-kafka's Producer is replaced by a recording fake."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, ClassVar

import orjson
import pytest

from streams import publisher as pub_mod
from streams.config import Settings
from streams.publisher import DeliveryFailure, Publisher, PublishError, new_event_id
from streams.records import DAY_MS, CatalogRecord, Event, parse_catalog, parse_click, parse_order
from tests.helpers import FakeMessage

ATTRS = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}


class FakeError:
    def __init__(self, text: str) -> None:
        self.text = text

    def str(self) -> str:
        return self.text

    def fatal(self) -> bool:
        return False


class FakeProducer:
    """Records produce() calls; can be told to fail deliveries, fill its queue, or time out a flush."""

    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail_next: list[str] = []  # error texts for the next deliveries
        self.buffer_full = 0  # produce() raises BufferError this many times
        self.left_after_flush = 0
        self.polls = 0
        FakeProducer.instances.append(self)

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if self.buffer_full:
            self.buffer_full -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value))

    def _deliver(self) -> None:
        callback = self.config["on_delivery"]
        while self.fail_next:
            topic, key, _ = self.sent[-1]
            callback(FakeError(self.fail_next.pop(0)), FakeMessage(topic, key=key))

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        self._deliver()
        return 0

    def flush(self, timeout: float = 0) -> int:
        self._deliver()
        return self.left_after_flush

    def __len__(self) -> int:
        return 0


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.instances = []
    monkeypatch.setattr(pub_mod, "Producer", FakeProducer)
    return FakeProducer


SETTINGS = Settings(bootstrap="broker-1:9092,broker-2:9092",
                    security={"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"})


def sent(p: Publisher) -> list[tuple[str, bytes | None, dict[str, Any]]]:
    producer = FakeProducer.instances[-1]
    assert p._sender.producer is producer
    return [(topic, key, orjson.loads(value)) for topic, key, value in producer.sent]


def test_view_builds_the_contract_record(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    before = time.time_ns() // 1_000_000
    event_id = p.view("SKU-1", region="CN-GD", user_id="u-1", session_id="s-1", attrs=ATTRS)
    after = time.time_ns() // 1_000_000
    [(topic, key, record)] = sent(p)
    assert topic == "c2m.clickstream"
    assert key == b"u-1"
    assert record["event_id"] == event_id
    assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", event_id)
    assert before <= record["ts"] <= after
    assert {k: v for k, v in record.items() if k not in ("event_id", "ts")} == {
        "type": "view", "region": "CN-GD", "sku": "SKU-1", "user_id": "u-1", "session_id": "s-1", "attrs": ATTRS}
    assert isinstance(parse_click(orjson.dumps(record), after), Event)


def test_given_event_id_and_ts_are_kept(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    assert p.view("SKU-1", region="CN-GD", event_id="e-7", ts=1764000000000) == "e-7"
    [(_, key, record)] = sent(p)
    assert record == {"event_id": "e-7", "type": "view", "ts": 1764000000000, "region": "CN-GD", "sku": "SKU-1"}
    assert key == b"SKU-1"  # no user: keyed by sku


def test_event_ids_are_unique_uuid4_hex() -> None:
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for eid in list(ids)[:100]:
        assert uuid.UUID(hex=eid).version == 4
        assert uuid.UUID(hex=eid).variant == uuid.RFC_4122


@pytest.mark.parametrize("method", ["view", "add_to_cart", "remove_from_cart", "wishlist", "share"])
def test_every_click_method_sends_its_type(fake: type[FakeProducer], method: str) -> None:
    p = Publisher(SETTINGS)
    getattr(p, method)("SKU-9", region="EU-FR", user_id="u-2")
    [(topic, key, record)] = sent(p)
    assert (topic, key, record["type"], record["sku"]) == ("c2m.clickstream", b"u-2", method, "SKU-9")


def test_search_by_query_needs_no_sku(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    event_id = p.search(region="CN-GD", query="boho dress")
    p.search(region="CN-GD", sku="SKU-3", user_id="u-3")
    [(_, key1, rec1), (_, key2, rec2)] = sent(p)
    assert rec1["query"] == "boho dress"
    assert "sku" not in rec1
    assert key1 == event_id.encode()  # neither user nor sku: keyed by the event itself
    assert (key2, rec2["sku"]) == (b"u-3", "SKU-3")


def test_order_and_group_join(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    p.order("o-1", "SKU-1", 2, region="CN-GD", user_id="u-1", unit_price=19.9)
    p.order("o-1", "SKU-1", 2, region="CN-GD", type="cancelled")
    p.group_join("o-2", "SKU-1", 1, region="CN-GD", group_id="g-7", group_target=50,
                 group_expires_ts=1764086400000)
    records = sent(p)
    assert [(t, k, r["type"]) for t, k, r in records] == [
        ("c2m.orders", b"o-1", "placed"), ("c2m.orders", b"o-1", "cancelled"), ("c2m.orders", b"o-2", "group_join")]
    assert records[0][2]["unit_price"] == 19.9
    assert "unit_price" not in records[1][2]
    assert (records[2][2]["group_id"], records[2][2]["group_target"]) == ("g-7", 50)
    for _, _, record in records:
        assert isinstance(parse_order(orjson.dumps(record), record["ts"]), Event)


def test_catalog_upsert_is_keyed_by_sku(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    p.catalog("SKU-1", ATTRS, ts=1764000000000)
    [(topic, key, record)] = sent(p)
    assert (topic, key) == ("c2m.catalog", b"SKU-1")
    assert record == {"sku": "SKU-1", "attrs": ATTRS, "ts": 1764000000000}
    assert isinstance(parse_catalog(orjson.dumps(record), 1764000000000), CatalogRecord)


def test_prepared_records_are_routed_by_type(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    now = time.time_ns() // 1_000_000
    assert p.event({"event_id": "e-1", "type": "wishlist", "ts": now, "region": "R", "sku": "S"}) == "e-1"
    p.event({"event_id": "e-2", "type": "placed", "ts": now, "region": "R", "sku": "S", "order_id": "o-9",
             "quantity": 1})
    assert [(t, k) for t, k, _ in sent(p)] == [("c2m.clickstream", b"S"), ("c2m.orders", b"o-9")]


def test_extra_fields_ride_along_but_cannot_replace_contract_fields(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    p.view("SKU-1", region="CN-GD", extra={"campaign": "spring"})
    assert sent(p)[0][2]["campaign"] == "spring"
    with pytest.raises(ValueError, match="'type'"):
        p.view("SKU-1", region="CN-GD", extra={"type": "share"})
    assert len(sent(p)) == 1


@pytest.mark.parametrize(("call", "reason"), [
    (lambda p: p.view("", region="CN-GD"), "'sku'"),
    (lambda p: p.view("SKU-1", region=""), "'region'"),
    (lambda p: p.view("SKU-1", region="CN-GD", ts=time.time_ns() // 1_000_000 + 2 * DAY_MS), "future"),
    (lambda p: p.view("SKU-1", region="CN-GD", ts=0), "'ts'"),
    (lambda p: p.view("SKU-1", region="CN-GD", attrs={"size": 38}), "attrs.size"),
    (lambda p: p.view("SKU-1", region="CN-GD", event_id="e" * 300), "'event_id'"),
    (lambda p: p.search(region="CN-GD"), "'sku'"),
    (lambda p: p.order("o-1", "SKU-1", 0, region="CN-GD"), "'quantity'"),
    (lambda p: p.order("o-1", "SKU-1", 2.0, region="CN-GD"), "'quantity'"),
    (lambda p: p.order("o-1", "SKU-1", 1, region="CN-GD", unit_price=-1), "'unit_price'"),
    (lambda p: p.order("o-1", "SKU-1", 1, region="CN-GD", type="group_join"), "group_join"),
    (lambda p: p.group_join("o-1", "SKU-1", 1, region="CN-GD", group_id="g", group_target=0,
                            group_expires_ts=1), "'group_target'"),
    (lambda p: p.catalog("SKU-1", {}), "'attrs'"),
    (lambda p: p.catalog("SKU-1", {"category": 3}), "attrs.category"),
    (lambda p: p.event({"type": "view"}), "'event_id'"),
    (lambda p: p.view("SKU-1", region="CN-GD", extra={"when": time}), "JSON"),
])
def test_invalid_record_raises_and_sends_nothing(fake: type[FakeProducer], call: Any, reason: str) -> None:
    p = Publisher(SETTINGS)
    with pytest.raises(ValueError, match=re.escape(reason)):
        call(p)
    assert FakeProducer.instances[-1].sent == []


def test_size_limit_is_enforced_before_send(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS, max_bytes=300)
    with pytest.raises(ValueError, match="300-byte limit"):
        p.view("SKU-1", region="CN-GD", extra={"blurb": "x" * 400})
    assert FakeProducer.instances[-1].sent == []
    assert Publisher(Settings(max_record_bytes=123)).max_bytes == 123


def test_config_is_idempotent_with_settings_and_overrides(fake: type[FakeProducer]) -> None:
    Publisher(SETTINGS, config={"linger.ms": 50, "enable.idempotence": False, "acks": 1, "client.id": "shop"})
    config = FakeProducer.instances[-1].config
    assert config["bootstrap.servers"] == "broker-1:9092,broker-2:9092"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"
    assert config["linger.ms"] == 50
    assert config["client.id"] == "shop"
    assert config["enable.idempotence"] is True  # never overridable
    assert config["acks"] == "all"
    assert config["compression.type"] == "lz4"
    assert config["delivery.report.only.error"] is True


def test_topics_can_be_renamed_but_not_invented(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS, topics={"clickstream": "bench.clicks"})
    p.view("SKU-1", region="CN-GD")
    assert sent(p)[0][0] == "bench.clicks"
    with pytest.raises(ValueError, match="clicks"):
        Publisher(SETTINGS, topics={"clicks": "x"})


def test_delivery_failures_raise_on_flush_and_reach_on_error(fake: type[FakeProducer]) -> None:
    seen: list[DeliveryFailure] = []
    p = Publisher(SETTINGS, on_error=seen.append)
    p.view("SKU-1", region="CN-GD", user_id="u-1")
    FakeProducer.instances[-1].fail_next = ["Broker: Topic authorization failed"]
    with pytest.raises(PublishError) as info:
        p.flush()
    assert info.value.failures == [DeliveryFailure("c2m.clickstream", b"u-1", "Broker: Topic authorization failed")]
    assert "authorization" in str(info.value)
    assert seen == info.value.failures
    p.flush()  # reported once: the next flush is clean


def test_flush_timeout_reports_undelivered(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    p.view("SKU-1", region="CN-GD")
    FakeProducer.instances[-1].left_after_flush = 3
    with pytest.raises(PublishError, match="3 record"):
        p.flush(0.1)


def test_full_local_queue_waits_and_retries(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    FakeProducer.instances[-1].buffer_full = 2
    p.view("SKU-1", region="CN-GD")
    assert len(sent(p)) == 1
    assert FakeProducer.instances[-1].polls >= 2


def test_callbacks_are_served_every_few_thousand_records(fake: type[FakeProducer]) -> None:
    p = Publisher(SETTINGS)
    for _ in range(pub_mod.POLL_EVERY * 2):
        p.view("SKU-1", region="CN-GD")
    assert FakeProducer.instances[-1].polls == 2


def test_context_manager_flushes_and_closes(fake: type[FakeProducer]) -> None:
    flushed: list[float] = []
    with Publisher(SETTINGS) as p:
        p.view("SKU-1", region="CN-GD")
        producer = FakeProducer.instances[-1]
        producer.flush = lambda timeout=0: flushed.append(timeout) or 0  # type: ignore[method-assign]
    assert flushed  # flushed on exit ...
    with pytest.raises(RuntimeError, match="closed"):
        p.view("SKU-1", region="CN-GD")


def test_context_manager_raises_delivery_failures(fake: type[FakeProducer]) -> None:
    with pytest.raises(PublishError), Publisher(SETTINGS) as p:
        p.view("SKU-1", region="CN-GD")
        FakeProducer.instances[-1].fail_next = ["timed out"]


def test_context_manager_does_not_mask_the_callers_exception(fake: type[FakeProducer]) -> None:
    with pytest.raises(KeyError), Publisher(SETTINGS) as p:
        p.view("SKU-1", region="CN-GD")
        FakeProducer.instances[-1].fail_next = ["timed out"]
        raise KeyError("app bug")


def test_event_ids_do_not_follow_the_apps_random_seed() -> None:
    import random

    random.seed(42)
    first = new_event_id()
    random.seed(42)
    assert new_event_id() != first
