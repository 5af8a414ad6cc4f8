"""Issue 3's acceptance on a real broker: 10,000 valid events (plus re-sent duplicates) and 500
hostile records of every kind. Each hostile record lands in c2m.dead-letter with a reason and its
exact source offset; each valid event is counted once; per-niche counts are exact; the worker lives."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams.workers import WorkerProcess
from tests.integration.conftest import wait_until_live, worker_env
from tests.integration.kafka_io import collect, produce

pytestmark = pytest.mark.integration

STYLES = ("boho", "minimal", "street", "classic")


@pytest.fixture
def fresh_worker(topics: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker of its own (its own consumer group) that starts at the end of the input topics, so
    metric deltas count only this test's records."""
    proc = WorkerProcess(worker_env(topics, C2M_AUTO_OFFSET_RESET="latest"), tmp_path / "w").start()
    try:
        proc.wait_ready(timeout=120)
        wait_until_live(proc, topics)
        yield proc
    finally:
        proc.stop()


def hostile_records(rng: random.Random, region: str, now: int) -> list[tuple[str, bytes | None]]:
    """500 records, each invalid for its topic in one of the ways DESIGN §5 names (and then some)."""
    base_click = {"event_id": "x", "type": "view", "ts": now, "sku": "SKU-H", "region": region,
                  "attrs": {"category": "dress", "style": "boho", "color": "red", "size": "M"}}
    base_order = {"event_id": "x", "type": "placed", "ts": now, "order_id": "o", "sku": "SKU-H",
                  "quantity": 1, "region": region, "attrs": base_click["attrs"]}
    deep = b"[" * 5000 + b"]" * 5000
    makers = [
        lambda: ("c2m.clickstream", b"{not json"),
        lambda: ("c2m.clickstream", b"[1, 2, 3]"),
        lambda: ("c2m.orders", b"42"),
        lambda: ("c2m.clickstream", b'"just a string"'),
        lambda: ("c2m.clickstream", b"null"),
        lambda: ("c2m.orders", None),
        lambda: ("c2m.clickstream", b"\xff\xfe\xfd invalid utf-8 \xc3\x28"),
        lambda: ("c2m.clickstream", deep),
        lambda: ("c2m.clickstream", orjson.dumps({**base_click, "type": "teleport"})),
        lambda: ("c2m.orders", orjson.dumps({**base_order, "type": "refund"})),
        lambda: ("c2m.clickstream", orjson.dumps({**base_click, "ts": "yesterday"})),
        lambda: ("c2m.clickstream", orjson.dumps({**base_click, "ts": now + 3 * 86_400_000})),
        lambda: ("c2m.clickstream", orjson.dumps({k: v for k, v in base_click.items() if k != "event_id"})),
        lambda: ("c2m.orders", orjson.dumps({**base_order, "quantity": 0})),
        lambda: ("c2m.orders", orjson.dumps({**base_order, "quantity": -5})),
        lambda: ("c2m.orders", orjson.dumps({**base_order, "quantity": 2.5})),
        lambda: ("c2m.orders", b'{"event_id":"x","type":"placed","ts":1,"order_id":"o","sku":"s","quantity":'
                               + str(2**70).encode() + b',"region":"r"}'),
        lambda: ("c2m.orders", orjson.dumps({**base_order, "quantity": True})),
        lambda: ("c2m.clickstream", orjson.dumps({**base_click, "attrs": ["dress"]})),
        lambda: ("c2m.clickstream", orjson.dumps({**base_click, "region": None})),
        lambda: ("c2m.clickstream", orjson.dumps({**{k: v for k, v in base_click.items() if k != "attrs"},
                                                  "sku": f"SKU-GHOST-{rng.random()}"})),
        lambda: ("c2m.clickstream", orjson.dumps({**base_click, "pad": "x" * 70_000})),
        lambda: ("c2m.orders", orjson.dumps({**base_order, "type": "group_join"})),
    ]
    out = [makers[i % len(makers)]() for i in range(498)]
    out += [("c2m.clickstream", b'{"pad": "' + b"y" * (10 * 1024 * 1024) + b'"}')] * 2  # two 10 MB records
    rng.shuffle(out)
    return out


def test_valid_counted_once_hostile_dead_lettered_worker_alive(fresh_worker: WorkerProcess) -> None:
    rng = random.Random(3)
    bootstrap = fresh_worker.env["C2M_KAFKA_BOOTSTRAP"]
    region = f"IT-{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    catalog_sku = f"SKU-CAT-{region}"
    catalog_attrs = {"category": "top", "style": "basic", "color": "white", "size": "S"}

    valid: list[tuple[str, dict[str, Any]]] = []
    expected: dict[str, Counter[str]] = {}
    for i in range(10_000):
        style = STYLES[i % len(STYLES)]
        from_catalog = i % 10 == 0
        attrs = catalog_attrs if from_catalog else {"category": "dress", "style": style, "color": "sage",
                                                    "size": "M"}
        key = "|".join([*attrs.values(), region])
        record: dict[str, Any] = {"event_id": f"{region}-{i}", "ts": now, "region": region,
                                  "sku": catalog_sku if from_catalog else f"SKU-{style}"}
        if not from_catalog:
            record["attrs"] = attrs
        if i % 5 == 4:
            record.update(type="placed", order_id=f"o-{i}", quantity=1 + i % 3)
            valid.append(("c2m.orders", record))
            expected.setdefault(key, Counter()).update({"orders": 1, "units": record["quantity"]})
        else:
            record["type"] = ("view", "add_to_cart", "wishlist", "share")[i % 4]
            valid.append(("c2m.clickstream", record))
            expected.setdefault(key, Counter())[record["type"]] += 1
    duplicates = rng.sample(valid, 300)
    hostile = hostile_records(rng, region, now)

    before = fresh_worker.get("/metrics")
    base = [_sum(before, p) for p in ('c2m_events_total{outcome="ok"', 'c2m_events_total{outcome="duplicate"',
                                      'c2m_events_total{outcome="ok",topic="c2m.orders",type="placed"}')]
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "message.max.bytes": 20 * 1024 * 1024})
    hostile_at: set[tuple[str, int, int]] = set()

    def remember(err: Any, msg: Any) -> None:
        assert err is None, err
        hostile_at.add((msg.topic(), msg.partition(), msg.offset()))

    prod.produce("c2m.catalog", key=catalog_sku.encode(),
                 value=orjson.dumps({"sku": catalog_sku, "attrs": catalog_attrs, "ts": now}))
    prod.flush(30)
    time.sleep(2)  # the catalog reaches the global table before the events that rely on it
    stream = [("v", t, r) for t, r in valid] + [("v", t, r) for t, r in duplicates] + [("h", t, v) for t, v in hostile]
    rng.shuffle(stream)
    for kind, topic, value in stream:
        if kind == "v":
            prod.produce(topic, value=orjson.dumps(value))
        else:
            prod.produce(topic, value=value, on_delivery=remember)
        prod.poll(0)
    assert prod.flush(60) == 0
    assert len(hostile_at) == 500

    dead = collect(bootstrap, ["c2m.dead-letter"],
                   keep=lambda d: (d["source"]["topic"], d["source"]["partition"], d["source"]["offset"]) in hostile_at,
                   until=lambda kept: len({_at(d) for d in kept}) >= 500, timeout=120)
    # other workers (consumer groups) on the shared broker dead-letter the same records too
    assert {_at(d) for d in dead} == hostile_at, "every hostile record is dead-lettered"
    assert all(isinstance(d["reason"], str) and d["reason"] for d in dead)
    reasons = " ".join(d["reason"] for d in dead)
    for needle in ("not valid JSON", "expected a JSON object", "null value", "field 'type'", "field 'ts'",
                   "future", "field 'quantity'", "exceeds", "unknown sku", "truncated", "missing required"):
        assert needle in reasons, f"no dead letter says {needle!r}"

    placed = sum(1 for t, _ in valid if t == "c2m.orders")
    deadline = time.monotonic() + 90
    ok = dup = 0.0
    while time.monotonic() < deadline:
        text = fresh_worker.get("/metrics")
        ok = _sum(text, 'c2m_events_total{outcome="ok"') - base[0]
        dup = _sum(text, 'c2m_events_total{outcome="duplicate"') - base[1]
        if ok >= 10_000 and dup >= 300:
            break
        time.sleep(1)
    assert (ok, dup) == (10_000, 300)
    assert _sum(text, 'c2m_events_total{outcome="ok",topic="c2m.orders",type="placed"}') - base[2] == placed

    niches = {n["niche"]: n for n in fresh_worker.get("/api/niches?limit=1000")["niches"]
              if n["attrs"].get("region") == region}
    assert set(niches) == set(expected)
    for key, counts in expected.items():
        got = {k: v for k, v in niches[key]["counts"].items() if v}
        assert got == dict(counts), key
    assert niches[f"top|basic|white|S|{region}"]["attrs"] == {**catalog_attrs, "region": region}
    assert fresh_worker.proc is not None and fresh_worker.proc.poll() is None
    assert fresh_worker.get("/healthz")["status"] == "ok"


def _at(dead: dict[str, Any]) -> tuple[str, int, int]:
    return dead["source"]["topic"], dead["source"]["partition"], dead["source"]["offset"]


def _sum(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_dedupe_survives_a_restart_with_state_rebuilt_from_the_changelog(topics: str, tmp_path: Path) -> None:
    """The second worker has the same app id but an empty state directory: what it knows of seen
    event ids can only come from the changelog topic, not from the first process's memory or disk."""
    env = worker_env(topics)
    region = f"IT-{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    attrs = {"category": "skirt", "style": "pleated", "color": "navy", "size": "M"}
    events = [orjson.dumps({"event_id": f"{region}-{i}", "type": "view", "ts": now, "sku": "SKU-P",
                            "region": region, "attrs": attrs}) for i in range(50)]
    key = f"skirt|pleated|navy|M|{region}"

    first = WorkerProcess(env, tmp_path / "first").start()
    try:
        first.wait_ready()
        produce(topics, [("c2m.clickstream", None, e) for e in events])
        _wait_for_views(first, key, 50)
    finally:
        first.stop()

    second = WorkerProcess(env, tmp_path / "second").start()
    try:
        second.wait_ready()
        produce(topics, [("c2m.clickstream", None, e) for e in events[:20]])  # re-sent
        produce(topics, [("c2m.clickstream", None, orjson.dumps({**orjson.loads(events[0]),
                                                                 "event_id": f"{region}-new"}))])
        _wait_for_views(second, key, 51)
        time.sleep(2)
        assert _views(second, key) == 51, "re-sent events must not be counted again after a restart"
        assert _sum(second.get("/metrics"), 'c2m_events_total{outcome="duplicate",topic="c2m.clickstream"') >= 20
    finally:
        second.stop()


def _views(worker: WorkerProcess, key: str) -> int:
    for n in worker.get("/api/niches?limit=1000")["niches"]:
        if n["niche"] == key:
            return int(n["counts"]["view"])
    return 0


def _wait_for_views(worker: WorkerProcess, key: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _views(worker, key) < n:
        time.sleep(0.5)
    assert _views(worker, key) == n
