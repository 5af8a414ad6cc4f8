"""The walking skeleton on a real broker: events in, a trigger out on a capable factory's topic."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import orjson
import pytest

from streams.topology import Topology, trigger_topic
from streams.workers import WorkerProcess
from tests.integration.kafka_io import collect, produce

pytestmark = pytest.mark.integration

TRIGGER_KEYS = {"trigger_id", "revision", "action", "kind", "factory_id", "niche", "units", "due_by_ts",
                "emitted_ts", "forecast", "evidence", "reason"}


def click(eid: str, etype: str, region: str, attrs: dict[str, str], ts: int) -> bytes:
    return orjson.dumps({"event_id": eid, "type": etype, "ts": ts, "user_id": "u-1", "session_id": "s-1",
                         "sku": "SKU-T", "region": region, "attrs": attrs})


def order(eid: str, region: str, attrs: dict[str, str], ts: int, quantity: int = 1) -> bytes:
    return orjson.dumps({"event_id": eid, "type": "placed", "ts": ts, "order_id": f"o-{eid}", "user_id": "u-1",
                         "sku": "SKU-T", "quantity": quantity, "unit_price": 19.9, "region": region,
                         "attrs": attrs})


def funnel(region: str, attrs: dict[str, str], orders: int) -> list[tuple[str, bytes, bytes]]:
    now = int(time.time() * 1000)
    out: list[tuple[str, bytes, bytes]] = []
    for i in range(orders):
        eid = f"{region}-{i}"
        out.append(("c2m.clickstream", b"u-1", click(f"{eid}-v", "view", region, attrs, now)))
        out.append(("c2m.clickstream", b"u-1", click(f"{eid}-c", "add_to_cart", region, attrs, now)))
        out.append(("c2m.orders", f"o-{eid}".encode(), order(f"{eid}-o", region, attrs, now)))
    return out


def test_surging_niche_gets_a_start_trigger_on_a_capable_factory(worker: WorkerProcess, topo: Topology) -> None:
    surging, quiet = f"IT-{uuid.uuid4().hex[:6]}", f"IT-{uuid.uuid4().hex[:6]}"
    attrs = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}
    surge = funnel(surging, attrs, 150)
    produce(worker.env["C2M_KAFKA_BOOTSTRAP"], funnel(quiet, attrs, 5) + surge)

    dress_topics = [trigger_topic(f.id) for f in topo.factories if f.makes("dress")]
    all_topics = [trigger_topic(f.id) for f in topo.factories]
    got = collect(worker.env["C2M_KAFKA_BOOTSTRAP"], all_topics,
                  keep=lambda t: (t.get("niche") or {}).get("region") in (surging, quiet),
                  until=lambda kept: any(t["niche"]["region"] == surging for t in kept), timeout=60)

    mine = [t for t in got if t["niche"]["region"] == surging]
    assert len(mine) == 1, f"expected one start trigger for {surging}, got {got}"
    trig = mine[0]
    assert trig["_topic"] in dress_topics and trig["_topic"] == trigger_topic(trig["factory_id"])
    assert trig["_key"] == trig["trigger_id"].encode()
    assert trig.keys() >= TRIGGER_KEYS
    assert (trig["action"], trig["kind"], trig["revision"]) == ("start", "forecast", 1)
    assert trig["niche"] == {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": surging}
    factory = topo.factory(trig["factory_id"])
    assert trig["units"] >= factory.min_batch and trig["units"] % factory.batch_step == 0
    # the funnel known when the orders crossed the min batch (clicks and orders arrive on two topics)
    assert 100 <= trig["evidence"]["orders"] <= 150 and trig["evidence"]["add_to_cart"] <= 150
    assert trig["due_by_ts"] > trig["emitted_ts"]
    # event time of the decision, not the wall clock: a replay re-publishes identical content
    assert trig["emitted_ts"] == max(orjson.loads(value)["ts"] for _, _, value in surge)
    assert not [t for t in got if t["niche"]["region"] == quiet], "a quiet niche must not trigger"


def test_bad_records_go_to_dead_letter_and_the_worker_keeps_going(worker: WorkerProcess) -> None:
    marker = uuid.uuid4().hex
    hostile: list[tuple[str, bytes | None, bytes | None]] = [
        ("c2m.clickstream", None, f"not json {marker}".encode()),
        ("c2m.clickstream", None, orjson.dumps({"event_id": marker, "type": "teleport", "ts": 1, "region": "X"})),
        ("c2m.orders", None, orjson.dumps({"event_id": marker, "type": "placed", "ts": int(time.time() * 1000),
                                           "order_id": "o", "sku": "S", "quantity": -3, "region": "X"})),
        ("c2m.clickstream", None, b"\xff\xfe" + marker.encode()),
    ]
    bootstrap = worker.env["C2M_KAFKA_BOOTSTRAP"]
    produce(bootstrap, hostile)
    dead = collect(bootstrap, ["c2m.dead-letter"], keep=lambda d: _carries(d, marker),
                   until=lambda kept: len(kept) >= len(hostile), timeout=45)
    assert len(dead) == len(hostile), dead
    reasons = sorted(d["reason"] for d in dead)
    assert any("not valid JSON" in r for r in reasons)
    assert any("field 'type'" in r for r in reasons)
    assert any("field 'quantity'" in r for r in reasons)
    assert any(isinstance(d["record"], dict) and "base64" in d["record"] for d in dead)
    for d in dead:
        assert set(d["source"]) == {"topic", "partition", "offset"} and d["source"]["topic"] in (
            "c2m.clickstream", "c2m.orders")
    assert worker.proc is not None and worker.proc.poll() is None, "the worker must survive bad input"
    assert worker.get("/healthz")["status"] == "ok"


def _carries(dead: dict[str, Any], marker: str) -> bool:
    """Whether a dead letter holds our record, as text or (not UTF-8) as base64."""
    record = dead.get("record")
    if isinstance(record, dict) and "base64" in record:
        return marker.encode() in base64.b64decode(record["base64"])
    return marker in str(record)


def test_metrics_count_events_and_triggers(worker: WorkerProcess) -> None:
    region = f"IT-{uuid.uuid4().hex[:6]}"
    attrs = {"category": "jeans", "style": "wide-leg", "color": "indigo", "size": "L"}
    before = _metric(worker.get("/metrics"), 'c2m_events_total{outcome="ok",topic="c2m.orders",type="placed"}')
    produce(worker.env["C2M_KAFKA_BOOTSTRAP"], funnel(region, attrs, 120))
    deadline = time.monotonic() + 45
    text = ""
    while time.monotonic() < deadline:
        text = worker.get("/metrics")
        placed = _metric(text, 'c2m_events_total{outcome="ok",topic="c2m.orders",type="placed"}')
        if placed - before >= 120 and 'c2m_triggers_total{action="start",factory="f-nt-denim"' in text:
            break
        time.sleep(0.5)
    assert _metric(text, 'c2m_events_total{outcome="ok",topic="c2m.orders",type="placed"}') - before == 120
    assert _metric(text, 'c2m_triggers_total{action="start",factory="f-nt-denim",kind="forecast"}') >= 1
    assert "c2m_trigger_latency_seconds_bucket" in text
    # the niches and dedupe stores hold this test's writes in memtables at least (sampled every 10 s)
    deadline = time.monotonic() + 25
    while _metric(text, 'c2m_store_memory_bytes{kind="memtables"}') <= 0 and time.monotonic() < deadline:
        time.sleep(1)
        text = worker.get("/metrics")
    assert _metric(text, 'c2m_store_memory_bytes{kind="memtables"}') > 0
    assert 'c2m_store_memory_bytes{kind="block_cache"}' in text


def test_healthz_reports_partitions_and_a_reachable_broker(worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 30  # the broker is probed every 10 s
    health = worker.get("/healthz")
    while health["broker_reachable"] is None and time.monotonic() < deadline:
        time.sleep(0.5)
        health = worker.get("/healthz")
    assert health["broker_reachable"] is True
    assert health["partitions_assigned"] > 0
    assert health["status"] == "ok"


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
