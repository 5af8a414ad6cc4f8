"""The SDKs against a real broker: Publisher writes valid records to the right topics with the right
keys and sends nothing invalid; FactoryClient reads a factory's triggers once per (trigger_id,
revision) and its answers land on c2m.factory-status."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings
from streams.factory_client import STATUS_TOPIC, FactoryClient
from streams.publisher import (
    CATALOG_TOPIC,
    CLICKSTREAM_TOPIC,
    ORDERS_TOPIC,
    DeliveryFailure,
    Publisher,
    PublishError,
)
from streams.records import CatalogRecord, Event, parse_catalog, parse_click, parse_order

pytestmark = pytest.mark.integration

ATTRS = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}


def settings_for(bootstrap: str) -> Settings:
    return Settings.from_env({"C2M_KAFKA_BOOTSTRAP": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the broker answers
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=config or {})], operation_timeout=30)
    futures[name].result(timeout=30)


def end_offsets(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Where each partition of `topic` ends now: reading from here sees only what comes next."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sdk-probe-{uuid.uuid4().hex}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        out = []
        for p in parts:
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out.append(TopicPartition(topic, p, high))
        return out
    finally:
        c.close()


def read_from(bootstrap: str, start: list[TopicPartition], keep: Callable[[dict[str, Any]], bool],
              until: Callable[[list[tuple[bytes | None, dict[str, Any], str]]], bool],
              timeout: float = 20.0) -> list[tuple[bytes | None, dict[str, Any], str]]:
    """(key, JSON value, topic) of records from `start` on that `keep` accepts, until `until` holds."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sdk-read-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    c.assign(start)
    kept: list[tuple[bytes | None, dict[str, Any], str]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(kept):
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            value = orjson.loads(msg.value())
            if isinstance(value, dict) and keep(value):
                kept.append((msg.key(), value, msg.topic()))
    finally:
        c.close()
    return kept


def test_publisher_writes_valid_records_to_the_right_topics_with_the_right_keys(topics: str) -> None:
    bootstrap = topics
    region = f"IT-SDK-{uuid.uuid4().hex[:8]}"
    sku = f"SKU-SDK-{uuid.uuid4().hex[:8]}"
    start = [tp for t in (CLICKSTREAM_TOPIC, ORDERS_TOPIC, CATALOG_TOPIC) for tp in end_offsets(bootstrap, t)]
    with Publisher(settings_for(bootstrap)) as pub:
        pub.catalog(sku, ATTRS)
        sent = {
            pub.view(sku, region=region, user_id="u-1", session_id="s-1"): (CLICKSTREAM_TOPIC, b"u-1"),
            pub.add_to_cart(sku, region=region, user_id="u-1", attrs=ATTRS): (CLICKSTREAM_TOPIC, b"u-1"),
            pub.wishlist(sku, region=region): (CLICKSTREAM_TOPIC, sku.encode()),
            pub.order("o-sdk-1", sku, 2, region=region, user_id="u-1", unit_price=19.9): (ORDERS_TOPIC, b"o-sdk-1"),
            pub.group_join("o-sdk-2", sku, 1, region=region, group_id="g-sdk", group_target=500,
                           group_expires_ts=int(time.time() * 1000) + 3_600_000): (ORDERS_TOPIC, b"o-sdk-2"),
        }
        query_id = pub.search(region=region, query="boho dress")
        sent[query_id] = (CLICKSTREAM_TOPIC, query_id.encode())
    records = read_from(bootstrap, start,
                        keep=lambda v: v.get("region") == region or (v.get("sku") == sku and "attrs" in v
                        and "event_id" not in v),
                        until=lambda kept: len(kept) >= len(sent) + 1)
    now = int(time.time() * 1000)
    catalog = [(k, v, t) for k, v, t in records if "event_id" not in v]
    assert [(k, t) for k, _, t in catalog] == [(sku.encode(), CATALOG_TOPIC)]
    assert isinstance(parse_catalog(orjson.dumps(catalog[0][1]), now), CatalogRecord)
    events = {v["event_id"]: (k, v, t) for k, v, t in records if "event_id" in v}
    assert set(events) == set(sent)
    for event_id, (key, value, topic) in events.items():
        assert (topic, key) == sent[event_id]
        parse = parse_order if topic == ORDERS_TOPIC else parse_click
        assert isinstance(parse(orjson.dumps(value), now), Event)


def test_an_invalid_call_raises_and_sends_nothing(kafka_bootstrap: str) -> None:
    topic = f"c2m.test.sdk-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 1)
    with Publisher(settings_for(kafka_bootstrap), topics={"clickstream": topic, "orders": topic}) as pub:
        with pytest.raises(ValueError, match="'quantity'"):
            pub.order("o-1", "SKU-1", 0, region="CN-GD")
        with pytest.raises(ValueError, match="future"):
            pub.view("SKU-1", region="CN-GD", ts=int(time.time() * 1000) + 3 * 86_400_000)
        good = pub.view("SKU-1", region="CN-GD")
    records = read_from(kafka_bootstrap, [TopicPartition(topic, 0, 0)], keep=lambda v: True,
                        until=lambda kept: len(kept) >= 1)
    assert [v["event_id"] for _, v, _ in records] == [good]
    [tp] = end_offsets(kafka_bootstrap, topic)
    assert tp.offset == 1  # exactly the one valid record was ever written


def _trigger(factory_id: str, trigger_id: str, revision: int, **changes: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "trigger_id": trigger_id, "revision": revision, "action": "start" if revision == 1 else "revise",
        "kind": "forecast", "factory_id": factory_id,
        "niche": {"category": "dress", "style": "boho", "color": "sage", "size_band": "M", "region": "CN-GD"},
        "units": 100 * revision, "due_by_ts": now + 48 * 3_600_000, "emitted_ts": now,
        "forecast": {"horizon_hours": 48, "p50": 90, "p90": 120, "model": "test", "cold_start": True},
        "evidence": {"views": 10, "add_to_cart": 3, "orders": 1, "drift": False},
        "reason": "integration test", **changes,
    }


def test_factory_client_yields_each_revision_once_and_answers_on_factory_status(topics: str) -> None:
    bootstrap = topics
    factory_id = f"f-test-{uuid.uuid4().hex[:10]}"
    topic = f"c2m.triggers.{factory_id}"
    create_topic(bootstrap, topic, 3)
    status_start = end_offsets(bootstrap, STATUS_TOPIC)
    t1, t2, t3 = (f"t-{factory_id}-{n}" for n in (1, 2, 3))
    written = [
        _trigger(factory_id, t1, 1),
        _trigger(factory_id, t1, 1),  # duplicate (at-least-once redelivery)
        _trigger(factory_id, t1, 2),
        _trigger(factory_id, t1, 1),  # stale: revision 2 supersedes it
        _trigger(factory_id, t2, 1, kind="group_buy", group_id="g-1"),
        _trigger(factory_id, t2, 1, units=0),  # invalid
        _trigger("f-someone-else", t3, 1),  # mis-routed
        _trigger(factory_id, t3, 1),
    ]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for record in written:
        producer.produce(topic, orjson.dumps(record), record["trigger_id"].encode())
    producer.produce(topic, b"\xff not json", t2.encode())
    assert producer.flush(30) == 0

    settings = settings_for(bootstrap)
    group = f"factory-it-{uuid.uuid4().hex[:8]}"
    expected = {(t1, 1), (t1, 2), (t2, 1), (t3, 1)}
    seen: list[tuple[str, int]] = []
    with FactoryClient(factory_id, settings, group_id=group) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and set(seen) != expected:
            trigger = client.poll(0.5)
            if trigger is None:
                continue
            seen.append(trigger.key)
            client.accept(trigger)
            client.complete(trigger, units=trigger.units - 1)
        for trigger in client.triggers(idle_timeout=2, poll_interval=0.5):  # nothing more may come
            seen.append(trigger.key)
        client.capacity(1234)
    assert sorted(seen) == sorted(expected)
    assert seen.index((t1, 1)) < seen.index((t1, 2))  # revisions of a trigger arrive in order

    # everything was handled and committed: a restarted factory in the same group gets nothing again
    with FactoryClient(factory_id, settings, group_id=group) as again:
        assert list(again.triggers(idle_timeout=4, poll_interval=0.5)) == []

    statuses = read_from(bootstrap, status_start, keep=lambda v: v.get("factory_id") == factory_id,
                         until=lambda kept: len(kept) >= 2 * len(expected) + 1)
    answers = sorted((v["trigger_id"], v["revision"], v["status"], v["units"], k)
                     for k, v, _ in statuses if v["status"] != "capacity")
    units = {(t1, 1): 100, (t1, 2): 200, (t2, 1): 100, (t3, 1): 100}
    assert answers == sorted(
        (tid, rev, status, units[(tid, rev)] - (status == "completed"), tid.encode())
        for tid, rev in expected for status in ("accepted", "completed"))
    [capacity] = [(k, v) for k, v, _ in statuses if v["status"] == "capacity"]
    assert capacity[0] == factory_id.encode()
    assert capacity[1]["capacity_units_per_day"] == 1234
    assert all(isinstance(v["ts"], int) for _, v, _ in statuses)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])[topic].result(timeout=30)


def test_a_delivery_the_broker_refuses_raises_on_flush(kafka_bootstrap: str) -> None:
    """Delivery errors surface: flush() raises PublishError naming the topic, key and broker error."""
    topic = f"c2m.test.small-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 1, {"max.message.bytes": "200"})
    failures: list[DeliveryFailure] = []
    pub = Publisher(settings_for(kafka_bootstrap), topics={"clickstream": topic}, on_error=failures.append,
                    config={"compression.type": "none"})
    pub.view("SKU-1", region="CN-GD", user_id="u-big", extra={"blurb": "x" * 1000})
    with pytest.raises(PublishError) as info:
        pub.flush(20)
    [failure] = info.value.failures
    assert (failure.topic, failure.key) == (topic, b"u-big")
    assert "large" in failure.error.lower()
    assert failures == [failure]
    pub.close()  # the failure was reported once; nothing else is pending
