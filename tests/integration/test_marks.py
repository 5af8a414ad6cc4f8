"""The dedupe marks on a real broker (streams.marks): a worker writes them to the seen changelog as
one record per partition per batch, and a worker starting from an empty state directory recovers
them from those records, so upstream duplicates of events counted before are still caught."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams import marks
from streams.workers import WorkerProcess
from tests.integration.conftest import worker_env
from tests.integration.kafka_io import produce

pytestmark = pytest.mark.integration

EVENTS, LATER = 3000, 200
ATTRS = {"category": "top", "style": "basic", "color": "grey", "size": "M"}


def views(region: str, ids: range, tag: str) -> list[tuple[str, bytes | None, bytes]]:
    now = int(time.time() * 1000)
    return [("c2m.clickstream", None, orjson.dumps(
        {"event_id": f"{region}-{i}", "type": "view", "ts": now + i, "sku": "SKU-MARKS", "region": region,
         "attrs": ATTRS, "session_id": tag})) for i in ids]


def viewed(w: WorkerProcess, region: str) -> int:
    for n in w.get("/api/niches?limit=1000", timeout=10)["niches"]:
        if n["attrs"].get("region") == region:
            return int(n["counts"]["view"])
    return 0


def wait_viewed(w: WorkerProcess, region: str, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while viewed(w, region) < n:
        assert time.monotonic() < deadline, f"the worker counted {viewed(w, region)} of {n} views"
        time.sleep(0.5)
    time.sleep(3)  # anything past n would show now
    assert viewed(w, region) == n


def duplicates(w: WorkerProcess) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in w.get("/metrics").splitlines()
               if line.startswith("c2m_events_total{") and 'outcome="duplicate"' in line and 'type="view"' in line)


def changelog(bootstrap: str, topic: str) -> list[tuple[bytes, bytes | None]]:
    """Every record of a topic, start to end, as (key, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[tuple[bytes, bytes | None]] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 60
        while len(done) < len(parts) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.key(), msg.value()))
            if msg.offset() >= ends[msg.partition()] - 1:
                done.add(msg.partition())
        assert len(done) == len(parts), f"read {len(out)} records of {topic}, not to its end"
        return out
    finally:
        c.close()


def test_marks_go_out_once_per_batch_and_a_fresh_worker_recovers_them(topics: str, tmp_path: Path) -> None:
    app_id, region = f"c2m-it-marks-{uuid.uuid4().hex[:6]}", f"MK-{uuid.uuid4().hex[:6]}"
    w = WorkerProcess(worker_env(topics, C2M_APP_ID=app_id), tmp_path / "a").start()
    try:
        w.wait_ready(timeout=120)
        produce(topics, views(region, range(EVENTS), "first"))
        wait_viewed(w, region, EVENTS)
    finally:
        w.stop()

    records = changelog(topics, f"{app_id}-seen-changelog")
    batches = [orjson.loads(v) for k, v in records if k.startswith(b"[") and orjson.loads(k)[0] == marks.BATCH_TAG]
    assert len(batches) == len(records), "every mark goes out in a batch record"
    mine = [b for b in batches if any(event_id.startswith(f"{region}-") for event_id in b)]
    marked: dict[str, Any] = {}
    for b in mine:
        marked.update({k: v for k, v in b.items() if k.startswith(f"{region}-")})
    assert sorted(marked) == sorted(f"{region}-{i}" for i in range(EVENTS))
    assert all(str(v[0]).startswith("c2m.clickstream/") for v in marked.values())
    # per-id records would have been one per event (and per re-mark): EVENTS or more
    assert len(mine) <= EVENTS // 20, f"{len(mine)} records for {EVENTS} marks"
    print(f"\nseen changelog: {len(records)} records holding {sum(map(len, batches))} marks "
          f"({len(mine)} records for this test's {EVENTS} events)")

    # the same app id from an empty state directory: the seen table comes back from the changelog only
    w2 = WorkerProcess(worker_env(topics, C2M_APP_ID=app_id), tmp_path / "b").start()
    try:
        w2.wait_ready(timeout=120)
        produce(topics, views(region, range(EVENTS), "again") + views(region, range(EVENTS, EVENTS + LATER), "new"))
        wait_viewed(w2, region, EVENTS + LATER)  # not 2 * EVENTS + LATER: the repeats are duplicates
        assert duplicates(w2) >= EVENTS
    finally:
        w2.stop()
