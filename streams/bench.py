"""`c2m bench`: the worker against a raw consumer on the same broker, in the same run.

It runs on a private local broker (fresh data dir, free port) so that no history or other traffic
skews the figures; the worker process and the raw consumer read the same pre-loaded records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from streams import admin, broker, topology
from streams.config import Settings
from streams.kafka import quiet_logger
from streams.workers import WorkerProcess

INPUTS = ["c2m.clickstream", "c2m.orders"]
NICHE_COUNT = 500


def preload(settings: Settings, n: int, seed: int = 11) -> None:
    """n valid events over NICHE_COUNT niches, 4 in 5 clickstream and 1 in 5 orders."""
    prod = Producer({**settings.kafka_client_config(), "linger.ms": 50, "batch.num.messages": 10000,
                     "compression.type": "lz4", "logger": quiet_logger()})
    now = int(time.time() * 1000)
    styles = [f"s{i}" for i in range(NICHE_COUNT // 5)]
    for i in range(n):
        attrs = {"category": "dress", "style": styles[i % len(styles)], "color": "sage",
                 "size": ("S", "M", "L", "XL", "XS")[i % 5]}
        base = {"event_id": f"b{seed}-{i}", "ts": now, "sku": "SKU-B", "region": "BENCH", "attrs": attrs}
        if i % 5 == 4:
            topic, value = "c2m.orders", {**base, "type": "placed", "order_id": f"o{i}", "quantity": 1}
        else:
            topic, value = "c2m.clickstream", {**base, "type": "view", "user_id": f"u{i % 997}"}
        while True:
            try:
                prod.produce(topic, value=orjson.dumps(value))
                break
            except BufferError:
                prod.poll(0.05)
        if i % 10000 == 0:
            prod.poll(0)
    prod.flush(120)


def raw_consumer_rate(settings: Settings, n: int, timeout: float = 300.0) -> float:
    """A plain confluent-kafka consumer parsing every record with orjson: the ceiling to compare with."""
    c = Consumer({**settings.kafka_client_config(), "group.id": f"bench-raw-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "logger": quiet_logger()})
    c.subscribe(INPUTS)
    seen = 0
    start: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while seen < n and time.monotonic() < deadline:
            for msg in c.consume(1000, 0.5):
                if msg.error():
                    continue
                if start is None:
                    start = time.perf_counter()
                orjson.loads(msg.value())
                seen += 1
    finally:
        c.close()
    if start is None or seen < n:
        raise RuntimeError(f"the raw consumer read {seen} of {n} records")
    return n / (time.perf_counter() - start)


def worker_rate(env: dict[str, str], state: Path, n: int, timeout: float = 600.0) -> float:
    """Time a fresh worker from its first counted event until all n are counted (startup excluded)."""
    proc = WorkerProcess({**env, "C2M_APP_ID": f"c2m-bench-{uuid.uuid4().hex[:6]}"}, state, loglevel="warn").start()
    try:
        proc.wait_ready(timeout=120)
        start: float | None = None
        deadline = time.monotonic() + timeout
        counted = 0.0
        while time.monotonic() < deadline:
            counted = _counted(proc.get("/metrics", timeout=10))
            if counted > 0 and start is None:
                start = time.perf_counter()
            if counted >= n:
                break
            time.sleep(0.1)
        if start is None or counted < n:
            raise RuntimeError(f"the worker counted {counted:.0f} of {n} events in {timeout:.0f} s")
        return n / (time.perf_counter() - start)
    finally:
        proc.stop()


def _counted(metrics_text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
               if line.startswith("c2m_events_total{"))


def run(events: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Start a private broker, pre-load `events`, measure the raw consumer and one worker."""
    work = Path(tempfile.mkdtemp(prefix="c2m-bench-"))
    port = _free_port()
    try:
        progress("starting a private Kafka broker")
        broker.ensure_jars()
        bootstrap = broker.start(port=port, data_dir=work / "kafka").bootstrap
        env = {**os.environ, "C2M_KAFKA_BOOTSTRAP": bootstrap, "C2M_API_PORT": str(_free_port())}
        settings = Settings.from_env(env)
        admin.apply(settings, topology.load(settings.topics_file))
        progress(f"pre-loading {events} events")
        preload(settings, events)
        progress("raw consumer")
        raw = raw_consumer_rate(settings, events)
        progress("worker")
        worker = worker_rate(env, work / "worker", events)
        return {"ingest": {"events": events, "worker_events_per_s": round(worker),
                           "raw_events_per_s": round(raw), "ratio": round(worker / raw, 3)}}
    finally:
        broker.stop(port=port, data_dir=work / "kafka")
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
