"""Crash, broker restart and scale-out on a real broker (issue 7): a seeded stream with upstream
duplicates and group buys is fed while a worker is SIGKILLed, the broker restarts, or one of two
workers dies; afterwards every niche's counts equal the ground truth exactly, no group is filled
twice and no (trigger_id, revision) appears with two contents.

The module runs a broker of its own (one test restarts it) and a topology with factory ids of its
own; each test feeds regions of its own.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Producer

from models.demand import COUNT_KEYS
from streams import admin, broker, topology
from streams.bench import counted_events
from streams.config import REPO_ROOT, Settings
from streams.errors import UserError
from streams.workers import WorkerProcess
from tests.helpers import free_port, unavailable
from tests.integration.conftest import worker_env
from tests.integration.kafka_io import collect

pytestmark = pytest.mark.integration

DRESSES = f"f-rel-dress-{uuid.uuid4().hex[:6]}"
FACTORIES = [
    {"id": DRESSES, "categories": ["dress"], "capacity_units_per_day": 10_000_000, "min_batch": 100,
     "batch_step": 50, "lead_time_hours": 48},
    {"id": f"f-rel-tops-{uuid.uuid4().hex[:6]}", "categories": ["top"], "capacity_units_per_day": 10_000_000,
     "min_batch": 100, "batch_step": 100, "lead_time_hours": 36},
]
TRIGGER_TOPICS = [topology.trigger_topic(f["id"]) for f in FACTORIES]
STYLES, COLORS, SIZES = ("boho", "wrap"), ("sage", "rust"), ("S", "M", "L")
GROUP_TARGET, JOIN_UNITS = 30, 3


@dataclass
class Cluster:
    bootstrap: str
    port: int
    data_dir: Path
    topics_file: Path

    def worker(self, state: Path, **extra: str) -> WorkerProcess:
        # hour buckets: nothing closes during a test, so plans follow the orders, not a model
        env = worker_env(self.bootstrap, C2M_TOPICS_FILE=str(self.topics_file), C2M_BUCKET_SECONDS="3600",
                         C2M_PLAN_TICK_SECONDS="1", **extra)
        return WorkerProcess(env, state, loglevel="warn")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("reliability")
    port, data_dir = free_port(), tmp / "kafka"
    try:
        started = broker.start(port=port, data_dir=data_dir, timeout=120)
    except UserError as exc:
        unavailable(f"the reliability tests need a local broker they can restart: {exc}")
    topo = yaml.safe_load((REPO_ROOT / "topics.yaml").read_text())
    topo["factories"] = FACTORIES
    (tmp / "topics.yaml").write_text(yaml.safe_dump(topo))
    try:
        admin.apply(Settings.from_env({"C2M_KAFKA_BOOTSTRAP": started.bootstrap}), topology.load(tmp / "topics.yaml"))
        yield Cluster(started.bootstrap, port, data_dir, tmp / "topics.yaml")
    finally:
        broker.stop(port=port, data_dir=data_dir)


# -- the stream and its ground truth ----------------------------------------------------------


Record = tuple[str, bytes | None, bytes]


def seeded_stream(seed: int, region: str, n: int) -> tuple[list[Record], dict[tuple[str, ...], dict[str, int]]]:
    """n records over 12 dress niches of one region: views, carts, orders, cancellations, two group
    buys, and 1 in 20 records published twice upstream (the same event_id, later). Returns the
    records and each niche's true counts, keyed (style, color, size)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    records: list[Record] = []
    truth: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_KEYS, 0))
    groups = {f"g-{region}-{i}": (STYLES[i], COLORS[0], SIZES[1]) for i in range(2)}
    joins = dict.fromkeys(groups, 0)
    retries: list[tuple[int, Record]] = []  # (due at record i, the record again)
    for i in range(n):
        records += [rec for due, rec in retries if due == i]
        niche = (rng.choice(STYLES), rng.choice(COLORS), rng.choice(SIZES))
        attrs = {"category": "dress", "style": niche[0], "color": niche[1], "size": niche[2]}
        base: dict[str, Any] = {"event_id": f"{region}-{i}", "ts": now + i, "user_id": f"u-{rng.randrange(500)}",
                                "sku": f"SKU-{'-'.join(niche)}", "region": region, "attrs": attrs}
        roll = rng.random()
        if roll < 0.03 and any(j < 15 for j in joins.values()):
            gid = rng.choice([g for g, j in joins.items() if j < 15])
            joins[gid] += 1
            niche = groups[gid]
            truth[niche]  # a niche of its own in the API even if only joins reached it
            attrs = {"category": "dress", "style": niche[0], "color": niche[1], "size": niche[2]}
            value = {**base, "type": "group_join", "order_id": f"{region}-o{i}", "quantity": JOIN_UNITS,
                     "unit_price": 9.9, "attrs": attrs, "sku": f"SKU-{'-'.join(niche)}", "group_id": gid,
                     "group_target": GROUP_TARGET, "group_expires_ts": now + 3_600_000}
            topic = "c2m.orders"
        elif roll < 0.18:
            qty = rng.randint(1, 3)
            value = {**base, "type": "placed", "order_id": f"{region}-o{i}", "quantity": qty, "unit_price": 19.9}
            topic = "c2m.orders"
            truth[niche]["orders"] += 1
            truth[niche]["units"] += qty
        elif roll < 0.20:
            qty = rng.randint(1, 2)
            value = {**base, "type": "cancelled", "order_id": f"{region}-c{i}", "quantity": qty, "unit_price": 19.9}
            topic = "c2m.orders"
            truth[niche]["units"] -= qty
        else:
            etype = "add_to_cart" if roll < 0.35 else "view"
            value = {**base, "type": etype, "session_id": f"s-{rng.randrange(300)}"}
            topic = "c2m.clickstream"
            truth[niche][etype] += 1
        key = value["order_id"].encode() if topic == "c2m.orders" else None
        records.append((topic, key, orjson.dumps(value)))
        if rng.random() < 0.05:  # the same record again, up to 2,000 records later (an upstream retry)
            retries.append((min(n - 1, i + rng.randint(1, 2000)), records[-1]))
    assert all(j >= GROUP_TARGET // JOIN_UNITS for j in joins.values()), "every group must fill"
    return records, dict(truth)


class Feeder:
    """Publishes records at a steady rate from a thread; survives a broker restart (the producer
    buffers and retries)."""

    def __init__(self, bootstrap: str, records: list[Record], rate: float) -> None:
        self.records, self.rate = records, rate
        self.prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 180_000})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=240)
        assert self.prod.flush(180) == 0, "records left undelivered"

    def _run(self) -> None:
        start = time.monotonic()
        for i, (topic, key, value) in enumerate(self.records):
            while True:
                try:
                    self.prod.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    self.prod.poll(0.1)
            self.sent = i + 1
            self.prod.poll(0)
            ahead = start + self.sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def counted(*workers: WorkerProcess) -> float:
    total = 0.0
    for w in workers:
        with contextlib.suppress(OSError):  # a killed worker counts nothing
            total += counted_events(w.get("/metrics", timeout=5))
    return total


def wait_counted(n: float, *workers: WorkerProcess, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while counted(*workers) < n:
        assert time.monotonic() < deadline, f"the workers counted {counted(*workers):.0f} of {n:.0f} events"
        time.sleep(0.3)


def niche_counts(w: WorkerProcess, region: str) -> dict[tuple[str, ...], dict[str, int]]:
    return {(n["attrs"]["style"], n["attrs"]["color"], n["attrs"]["size"]): n["counts"]
            for n in w.get("/api/niches?limit=1000", timeout=10)["niches"] if n["attrs"].get("region") == region}


def assert_exact(w: WorkerProcess, region: str, truth: dict[tuple[str, ...], dict[str, int]],
                 timeout: float = 150) -> None:
    """The worker's counts reach the truth and stay there (not merely pass through it)."""
    deadline = time.monotonic() + timeout
    got: dict[tuple[str, ...], dict[str, int]] = {}
    while time.monotonic() < deadline:
        try:
            got = niche_counts(w, region)
        except OSError:
            got = {}
        if got == truth:
            time.sleep(3)
            assert niche_counts(w, region) == truth, "the counts moved past the truth"
            return
        time.sleep(1)
    diff = {k: (got.get(k), v) for k, v in truth.items() if got.get(k) != v}
    raise AssertionError(f"counts differ from the truth (got, truth) in {len(diff)} niches: {diff}")


def assert_outputs_idempotent(bootstrap: str, region: str) -> None:
    """No (trigger_id, revision) with two contents; each group filled once, into one group_buy
    trigger of exactly the filled quantity; every "filled" outcome of a group is the same record."""
    triggers = collect(bootstrap, TRIGGER_TOPICS, keep=lambda t: (t.get("niche") or {}).get("region") == region,
                       until=lambda kept: False, timeout=10)
    bodies: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    for t in triggers:
        body = {k: v for k, v in t.items() if not k.startswith("_")}
        bodies[(t["trigger_id"], t["revision"])].add(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    twice = {k: v for k, v in bodies.items() if len(v) > 1}
    assert not twice, f"(trigger_id, revision) published with different contents: {twice}"
    assert any(t["kind"] != "group_buy" for t in triggers), "the orders started no lot"
    group_buys: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for t in triggers:
        if t["kind"] == "group_buy":
            group_buys[t["group_id"]].add((t["trigger_id"], t["units"]))
    assert sorted(group_buys) == [f"g-{region}-0", f"g-{region}-1"], group_buys
    for gid, made in group_buys.items():
        assert made == {(next(iter(made))[0], GROUP_TARGET)}, f"group {gid} was made as {made}"
    outcomes = collect(bootstrap, ["c2m.group-outcomes"], keep=lambda o: str(o.get("group_id", "")).startswith(
        f"g-{region}-"), until=lambda kept: False, timeout=5)
    filled: dict[str, set[bytes]] = defaultdict(set)
    for o in outcomes:
        assert o["outcome"] == "filled", o
        filled[o["group_id"]].add(orjson.dumps({k: v for k, v in o.items() if not k.startswith("_")},
                                               option=orjson.OPT_SORT_KEYS))
    assert sorted(filled) == sorted(group_buys) and all(len(v) == 1 for v in filled.values()), filled


# -- the tests ----------------------------------------------------------------------------------

EVENTS, RATE = 6000, 500.0


def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(cluster: Cluster, tmp_path: Path) -> None:
    region = f"CR-{uuid.uuid4().hex[:6]}"
    records, truth = seeded_stream(1, region, EVENTS)
    w = cluster.worker(tmp_path / "w").start()
    try:
        w.wait_ready(timeout=120)
        with Feeder(cluster.bootstrap, records, RATE):
            wait_counted(EVENTS // 4, w)
            w.kill()  # SIGKILL: no flush, no commit, no goodbye to the group
            w.start()
            w.wait_ready(timeout=120)
        assert_exact(w, region, truth)
        assert_outputs_idempotent(cluster.bootstrap, region)
    finally:
        w.stop()


def test_the_broker_restarting_mid_stream_loses_and_doubles_nothing(cluster: Cluster, tmp_path: Path) -> None:
    region = f"BR-{uuid.uuid4().hex[:6]}"
    records, truth = seeded_stream(2, region, EVENTS)
    w = cluster.worker(tmp_path / "w").start()
    try:
        w.wait_ready(timeout=120)
        with Feeder(cluster.bootstrap, records, RATE):
            wait_counted(EVENTS // 4, w)
            broker.stop(port=cluster.port, data_dir=cluster.data_dir)
            time.sleep(3)
            broker.start(port=cluster.port, data_dir=cluster.data_dir, timeout=120)
        assert_exact(w, region, truth, timeout=240)
        assert_outputs_idempotent(cluster.bootstrap, region)
    finally:
        w.stop()


def test_a_second_worker_takes_over_a_killed_ones_partitions_exactly(cluster: Cluster, tmp_path: Path) -> None:
    region = f"SO-{uuid.uuid4().hex[:6]}"
    records, truth = seeded_stream(3, region, EVENTS)
    app_id = f"c2m-it-scale-{uuid.uuid4().hex[:6]}"
    a = cluster.worker(tmp_path / "a", C2M_APP_ID=app_id, C2M_SESSION_TIMEOUT_SECONDS="8").start()
    b = cluster.worker(tmp_path / "b", C2M_APP_ID=app_id, C2M_SESSION_TIMEOUT_SECONDS="8").start()
    try:
        a.wait_ready(timeout=120)
        b.wait_ready(timeout=120)
        deadline = time.monotonic() + 90
        while not all(w.get("/healthz")["partitions_assigned"] > 0 for w in (a, b)):
            assert time.monotonic() < deadline, "the two workers never shared the partitions"
            time.sleep(1)
        with Feeder(cluster.bootstrap, records, RATE):
            # kill b once it has done work of its own (a slow start under load may lag a's)
            deadline = time.monotonic() + 120
            while counted(a, b) < EVENTS // 4 or counted(b) <= 0:
                assert time.monotonic() < deadline, f"b counted {counted(b):.0f}, a {counted(a):.0f}"
                time.sleep(0.3)
            b.kill()
        assert_exact(a, region, truth, timeout=180)
        assert_outputs_idempotent(cluster.bootstrap, region)
    finally:
        a.stop()
        b.stop()
