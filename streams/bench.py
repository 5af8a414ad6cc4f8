"""`c2m bench`: the figures of issue #7, each part runnable alone (`--only`).

- ingest: the worker against a raw confluent-kafka consumer on the same broker, in the same run;
- latency: a filled group buy's trigger under background load, from the filling join's produce
  to an independent consumer reading the group_buy trigger off the factory's topic;
- memory: bytes per active niche of the worker's per-niche state, without a broker;
- tick: one planning tick (forecast, plan, admit for every niche that changed), without a broker.

The broker parts run on a private local broker (fresh data dir, free port), so no history or other
traffic skews them. The pure parts build a synthetic population of niches and feed it through the
same models the worker's niche stage drives, bucket by bucket.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from models.demand import NicheDemand
from models.engine import HOUR_MS, DemandEngine, EngineConfig
from models.planner import NichePlan, PlannerConfig
from models.routing import CapacityBook, Factory
from streams import admin, broker, topology
from streams.config import REPO_ROOT, Settings
from streams.kafka import quiet_logger
from streams.publisher import Publisher
from streams.stage import DEMAND, KEEP_BUCKETS, PLANS, Effects, NicheStage
from streams.workers import WorkerProcess

PARTS = ("ingest", "latency", "memory", "tick")
INPUTS = ["c2m.clickstream", "c2m.orders"]
NICHE_COUNT = 500

Progress = Callable[[str], None]


# -- (a) ingest --------------------------------------------------------------------------------


def preload(settings: Settings, n: int, seed: int = 11) -> None:
    """n valid events over NICHE_COUNT niches, 4 in 5 clickstream and 1 in 5 orders, keyed as the
    publisher SDK keys them (user id, order id), so they spread over the partitions as upstream
    traffic does. Unkeyed, the sticky partitioner put a burst into one or two partitions, and a
    consumer's fetches (1 MiB per partition) made the raw rate swing 120k-800k/s between runs."""
    prod = Producer({**settings.kafka_client_config(), "linger.ms": 50, "batch.num.messages": 10000,
                     "compression.type": "lz4", "logger": quiet_logger()})
    now = int(time.time() * 1000)
    styles = [f"s{i}" for i in range(NICHE_COUNT // 5)]
    for i in range(n):
        attrs = {"category": "dress", "style": styles[i % len(styles)], "color": "sage",
                 "size": ("S", "M", "L", "XL", "XS")[i % 5]}
        base = {"event_id": f"b{seed}-{i}", "ts": now, "sku": "SKU-B", "region": "BENCH", "attrs": attrs}
        if i % 5 == 4:
            topic, key = "c2m.orders", f"o{i}"
            value = {**base, "type": "placed", "order_id": key, "quantity": 1}
        else:
            topic, key = "c2m.clickstream", f"u{i % 997}"
            value = {**base, "type": "view", "user_id": key}
        while True:
            try:
                prod.produce(topic, value=orjson.dumps(value), key=key.encode())
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
    proc = WorkerProcess({**env, "C2M_APP_ID": f"c2m-bench-{uuid.uuid4().hex[:6]}", "C2M_API_PORT": str(free_port())},
                         state, loglevel="warn").start()
    try:
        proc.wait_ready(timeout=120)
        start: float | None = None
        deadline = time.monotonic() + timeout
        counted = 0.0
        while time.monotonic() < deadline:
            counted = counted_events(proc.get("/metrics", timeout=10))
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


def counted_events(metrics_text: str, etype: str | None = None) -> float:
    """Events the worker counted (c2m_events_total, every outcome), of one type if given."""
    label = f'type="{etype}"'
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
               if line.startswith("c2m_events_total{") and (etype is None or label in line))


# -- (b) group-buy latency under load ----------------------------------------------------------

GROUP_TARGET = 10
PRE_JOINS = 4  # of 2 units each: the group stands at 8 of 10 until its filling join of 2
LOAD_NICHES = 500


@dataclass(frozen=True)
class Latency:
    groups: int
    load_per_s: float  # background events per second actually published during the fills
    ms: tuple[float, ...]  # one per group, sorted

    @property
    def p50(self) -> float:
        return percentile(self.ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.ms, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (one that was observed): p99 of 200 is the 198th."""
    if not sorted_values:
        raise ValueError("no values")
    return float(sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)])


class BackgroundLoad:
    """Publisher-SDK view events at a steady rate, in a thread, until stopped."""

    def __init__(self, settings: Settings, rate: float, region: str) -> None:
        self.settings, self.rate, self.region = settings, rate, region
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._error is not None:
            raise RuntimeError(f"background load failed: {self._error}")

    def _run(self) -> None:
        try:
            with Publisher(self.settings) as pub:
                start = time.perf_counter()
                while not self._stop.is_set():
                    due = int((time.perf_counter() - start) * self.rate)
                    for i in range(self.sent, due):
                        attrs = {"category": "dress", "style": f"load{i % LOAD_NICHES}", "color": "sage", "size": "M"}
                        pub.view("SKU-L", region=self.region, user_id=f"u{i % 997}", attrs=attrs)
                    self.sent = max(self.sent, due)
                    pub.poll(0)
                    self._stop.wait(0.01)
        except BaseException as exc:  # reported by __exit__ in the measuring thread
            self._error = exc


class TriggerWatch:
    """An independent consumer of every factory's trigger topic: when each group_buy trigger of ours
    arrived (wall clock, as read here)."""

    def __init__(self, settings: Settings, topics: Sequence[str], groups: Collection[str]) -> None:
        self.groups = set(groups)
        self.arrived: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-watch-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 5, "logger": quiet_logger()})
        meta = self._consumer.list_topics(timeout=10)
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                               for p in meta.topics[t].partitions])
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)

    def __enter__(self) -> TriggerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(100, 0.05):
                now = time.time()
                if msg.error():
                    continue
                trig = orjson.loads(msg.value())
                gid = trig.get("group_id")
                if trig.get("kind") == "group_buy" and gid in self.groups and gid not in self.arrived:
                    self.arrived[gid] = now

    def wait(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrived) < n and time.monotonic() < deadline:
            time.sleep(0.05)


def group_latency(env: dict[str, str], state: Path, factories: Sequence[Factory], groups: int = 200,
                  load_rate: float = 1000.0, fills_per_s: float = 20.0, progress: Progress | None = None) -> Latency:
    """Fill `groups` group buys under `load_rate` background events/s; per group, the time from
    producing its filling join to an independent consumer reading its group_buy trigger.

    The groups are first brought to 8 of 10 units and left for the worker to take in; then one
    filling join after another, `fills_per_s` a second, each flushed at once (linger 0) so the
    producer's batching is not what is measured.
    """
    say = progress or (lambda _msg: None)
    run = uuid.uuid4().hex[:6]
    settings = Settings.from_env(env)
    gids = [f"bench-{run}-g{i}" for i in range(groups)]
    topics = [topology.trigger_topic(f.id) for f in factories]
    proc = WorkerProcess({**env, "C2M_APP_ID": f"c2m-bench-{run}", "C2M_AUTO_OFFSET_RESET": "latest",
                          "C2M_API_PORT": str(free_port())}, state, loglevel="warn").start()
    try:
        proc.wait_ready(timeout=120)
        with BackgroundLoad(settings, load_rate, f"LOAD-{run}") as load, TriggerWatch(settings, topics, gids) as watch:
            _wait_counted(proc, "view", 1.0, timeout=60)  # the worker reads from the end: it is there now
            expires = int(time.time() * 1000) + 3_600_000
            say(f"latency: {groups} groups to {PRE_JOINS * 2} of {GROUP_TARGET} units")
            with Publisher(settings, config={"linger.ms": 0}) as pub:
                for i, gid in enumerate(gids):
                    for j in range(PRE_JOINS):
                        _join(pub, gid, i, f"{j}", 2, expires, run)
                pub.flush()
                _wait_counted(proc, "group_join", groups * PRE_JOINS, timeout=120)
                time.sleep(1.0)  # counted at ingest; let the niche stage apply the last ones
                say(f"latency: filling {groups} groups under {load_rate:.0f} events/s")
                sent_before, t_fills = load.sent, time.perf_counter()
                produced: dict[str, float] = {}
                for i, gid in enumerate(gids):
                    produced[gid] = time.time()
                    _join(pub, gid, i, "fill", GROUP_TARGET - 2 * PRE_JOINS, expires, run)
                    pub.flush(10)
                    time.sleep(max(0.0, 1 / fills_per_s - (time.time() - produced[gid])))
                watch.wait(groups, timeout=60)
                rate = (load.sent - sent_before) / (time.perf_counter() - t_fills)
        if len(watch.arrived) < groups:
            raise RuntimeError(f"only {len(watch.arrived)} of {groups} filled groups got their group_buy trigger "
                               f"within 60 s of the last fill, under {rate:,.0f} events/s of background load")
        return Latency(groups, rate, tuple(sorted((watch.arrived[g] - produced[g]) * 1000 for g in gids)))
    finally:
        proc.stop()


def _join(pub: Publisher, gid: str, i: int, tag: str, quantity: int, expires: int, run: str) -> None:
    attrs = {"category": "dress", "style": f"grp{i % 50}", "color": "sage", "size": "M"}
    pub.group_join(f"{gid}-{tag}", "SKU-G", quantity, region=f"GRP-{run}", group_id=gid, group_target=GROUP_TARGET,
                   group_expires_ts=expires, user_id=f"u-{gid}-{tag}", attrs=attrs)


def _wait_counted(proc: WorkerProcess, etype: str, n: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    counted = 0.0
    while time.monotonic() < deadline:
        counted = counted_events(proc.get("/metrics", timeout=10), etype)
        if counted >= n:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the worker counted {counted:.0f} of {n:.0f} {etype} events in {timeout:.0f} s")


# -- (c) memory per niche and (d) planning tick: no broker ------------------------------------

CATEGORIES = ("dress", "skirt", "top", "knitwear", "jeans", "jacket")
SIZES = ("XS", "S", "M", "L", "XL")
TICK_BUCKETS = 6
START_MS = 1_764_000_000_000 // HOUR_MS * HOUR_MS


def niche_attrs(i: int) -> dict[str, str]:
    """The i-th synthetic niche: 6 categories x 5 sizes x 12 colours x 40 styles x 20 regions, all distinct."""
    return {"category": CATEGORIES[i % 6], "style": f"st{(i // 360) % 40}", "color": f"c{(i // 30) % 12}",
            "size": SIZES[(i // 6) % 5], "region": f"R{(i // 14_400) % 20}"}


@dataclass
class Population:
    """The worker's per-niche state for n niches: the demand engine, and the two tables the niche
    stage keeps per niche key in their stored (dict) form: demand counters and planner state."""

    engine: DemandEngine
    demand: dict[str, dict[str, Any]]
    plans: dict[str, dict[str, Any]]
    now_ms: int  # the end of the last closed bucket

    @property
    def keys(self) -> list[str]:
        return list(self.plans)


def populate(n: int, buckets: int, seed: int = 7) -> Population:
    """n niches fed `buckets` hourly buckets of events, as the niche stage feeds them: counters,
    stock (orders), the engine's observe; then each bucket closes.

    Traffic is heavy-tailed like a catalogue's: views per bucket are Poisson around a lognormal
    rate (median 1, a few niches hundreds), carts 12% of views, orders 35% of carts.
    """
    if n > 288_000:
        raise ValueError("at most 288,000 distinct synthetic niches")
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.normal(0.0, 1.5, n))
    attrs = [niche_attrs(i) for i in range(n)]
    keys = ["|".join(a.values()) for a in attrs]
    engine = DemandEngine(EngineConfig(bucket_ms=HOUR_MS))
    demand = [NicheDemand() for _ in range(n)]
    plans = [NichePlan() for _ in range(n)]
    for b in range(buckets):
        ts = START_MS + b * HOUR_MS + 1000
        views = rng.poisson(rate)
        carts = rng.binomial(views, 0.12)
        orders = rng.binomial(carts, 0.35)
        for i in np.flatnonzero(views).tolist():
            rows = ([["", "view", ts, 0]] * int(views[i]) + [["", "add_to_cart", ts, 0]] * int(carts[i])
                    + [["", "placed", ts, 1]] * int(orders[i]))
            counters, stock = demand[i], plans[i].stock
            for row in rows:
                counters.add(row[1], row[2], row[3], HOUR_MS)
                stock.order(row[1], row[3])
            counters.trim(KEEP_BUCKETS, HOUR_MS)
            engine.observe(keys[i], attrs[i], rows)
        engine.advance(START_MS + (b + 1) * HOUR_MS)
    return Population(engine,
                      {k: {**d.to_dict(), "niche": a} for k, d, a in zip(keys, demand, attrs, strict=True)},
                      {k: {**p.to_dict(), "niche": a} for k, p, a in zip(keys, plans, attrs, strict=True)},
                      START_MS + buckets * HOUR_MS)


def plan_changed(pop: Population, keys: Collection[str], book: CapacityBook, factories: Sequence[Factory],
                 cfg: PlannerConfig) -> int:
    """One planning tick over the niches that changed, through the niche stage's own
    `plan_niche` (planning factory, forecast over its lead time, evidence, plan, admission to the
    capacity book) reading the population's tables; the plans it writes are stored back.
    Returns the triggers admitted."""
    tables = {DEMAND: pop.demand, PLANS: pop.plans}
    stage = NicheStage(pop.engine, factories, lambda table, key, _niche: tables[table].get(key), cfg)
    stage.book = book
    eff = Effects()
    for key in keys:
        stage.plan_niche(key, pop.now_ms, eff)
    for (table, key), value in eff.latest.items():
        tables[table][key] = value
    return len(eff.proposals)


@dataclass(frozen=True)
class TickRun:
    changed: int
    ms: float
    triggers: int

    @property
    def us_per_niche(self) -> float:
        return self.ms * 1000 / self.changed


@dataclass(frozen=True)
class Ticks:
    population: int
    runs: tuple[TickRun, ...]

    def ms(self, changed: int) -> float:
        return next(r.ms for r in self.runs if r.changed == changed)


def spread(keys: Sequence[str], n: int) -> list[str]:
    """n of the keys, evenly spread (every category and region changes, not one corner)."""
    if not 0 < n <= len(keys):
        raise ValueError(f"cannot pick {n} of {len(keys)} niches")
    return [keys[i * len(keys) // n] for i in range(n)]


def measure_ticks(pop: Population, sizes: Sequence[int], factories: Sequence[Factory],
                  cfg: PlannerConfig | None = None) -> Ticks:
    """One tick per size of changed niches, each from the same starting state (the planner tables
    as populated, an empty capacity book), after a small warm-up tick."""
    cfg = cfg or PlannerConfig()
    keys, initial = pop.keys, dict(pop.plans)
    plan_changed(pop, spread(keys, min(100, len(keys))), CapacityBook(), factories, cfg)
    runs = []
    for size in sizes:
        pop.plans = dict(initial)
        changed = spread(keys, size)
        gc.collect()
        start = time.perf_counter()
        admitted = plan_changed(pop, changed, CapacityBook(), factories, cfg)
        runs.append(TickRun(size, (time.perf_counter() - start) * 1000, admitted))
    pop.plans = initial
    return Ticks(len(keys), tuple(runs))


@dataclass(frozen=True)
class Memory:
    niches: int
    buckets: int
    traced: dict[str, int]  # tracemalloc, bytes: "total", and its parts "engine", "counters", "planner"
    rss_bytes: int | None  # the process's resident set growth, measured apart (None without /proc)

    @property
    def bytes_per_niche(self) -> int:
        return round(self.traced["total"] / self.niches)

    @property
    def rss_per_niche(self) -> int | None:
        return None if self.rss_bytes is None else round(self.rss_bytes / self.niches)


def state_bytes(n: int, buckets: int, traced: bool, seed: int = 7) -> dict[str, int] | None:
    """What n niches' state adds to a process: by tracemalloc (the total, then each part by
    what freeing it returns), or as RSS growth ({"total"} only: freed memory may stay resident).

    Run in a fresh interpreter (measure_memory): tracemalloc's own bookkeeping would inflate the
    RSS, and an interpreter that did other work holds freed memory the RSS cannot tell apart.
    A tiny population first warms lazy imports and caches, which are not per-niche state.
    """
    populate(8, 2, seed)
    gc.collect()
    measure: Callable[[], int | None] = (lambda: tracemalloc.get_traced_memory()[0]) if traced else rss_bytes
    if traced:
        tracemalloc.start()
    base = measure()
    if base is None:
        return None
    pop = populate(n, buckets, seed)
    gc.collect()
    total = (measure() or 0) - base
    if not traced:
        return {"total": total}
    parts = {}
    for name in ("counters", "planner"):
        before = measure() or 0
        if name == "counters":
            pop.demand = {}
        else:
            pop.plans = {}
        gc.collect()
        parts[name] = before - (measure() or 0)
    return {"total": total, "engine": total - parts["counters"] - parts["planner"], **parts}


def rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def measure_memory(n: int, buckets: int) -> Memory:
    """Per-niche state measured twice, each in its own fresh interpreter: tracemalloc and RSS."""
    def child(traced: bool) -> dict[str, int] | None:
        code = ("import orjson; from streams.bench import state_bytes; "
                f"print(orjson.dumps(state_bytes({n}, {buckets}, {traced})).decode())")
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=1800, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory measurement failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        return orjson.loads(done.stdout.strip().splitlines()[-1])

    traced = child(True)
    if traced is None:
        raise RuntimeError("tracemalloc measured nothing")
    rss = child(False)
    return Memory(n, buckets, traced, None if rss is None else rss["total"])


# -- the whole run -----------------------------------------------------------------------------


@dataclass
class Bench:
    """What a run measured; `figures()` is `c2m bench --json`."""

    ingest: dict[str, Any] | None = None
    latency: Latency | None = None
    memory: Memory | None = None
    ticks: Ticks | None = None
    tick_sizes: tuple[int, ...] = (10_000, 100_000)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ingest is not None:
            out["ingest"] = self.ingest
        if self.latency is not None:
            out["group_buy_latency_ms"] = {"p50": round(self.latency.p50, 1), "p99": round(self.latency.p99, 1)}
        if self.memory is not None:
            out["bytes_per_niche"] = self.memory.bytes_per_niche
        if self.ticks is not None:
            out["planning_tick_ms"] = {str(n): round(self.ticks.ms(n), 1) for n in self.tick_sizes}
        return out

    def lines(self) -> Iterator[str]:
        """The human report: the figures and how each was measured."""
        if self.ingest is not None:
            i = self.ingest
            yield (f"ingest of {i['events']:,} events: worker {i['worker_events_per_s']:,}/s, "
                   f"raw consumer {i['raw_events_per_s']:,}/s, ratio {i['ratio']}")
        if self.latency is not None:
            lat = self.latency
            yield (f"group-buy trigger latency over {lat.groups} filled groups under {lat.load_per_s:,.0f} events/s: "
                   f"p50 {lat.p50:.0f} ms, p99 {lat.p99:.0f} ms (max {lat.ms[-1]:.0f} ms)")
        if self.memory is not None:
            m = self.memory
            rss = f"{m.rss_per_niche:,} B by RSS growth" if m.rss_per_niche is not None else "RSS not available"
            parts = ", ".join(f"{k} {m.traced[k] / m.niches:,.0f} B" for k in ("engine", "counters", "planner"))
            yield (f"memory per active niche: {m.bytes_per_niche:,} B by tracemalloc ({parts}), {rss}; "
                   f"{m.niches:,} niches after {m.buckets} hourly buckets")
        if self.ticks is not None:
            t = self.ticks
            runs = ", ".join(f"{r.changed:,} changed {r.ms:,.0f} ms ({r.us_per_niche:.0f} µs each)" for r in t.runs)
            yield f"planning tick over {t.population:,} niches: {runs}"
            smallest, largest = t.runs[0], t.runs[-1]
            if smallest.changed < largest.changed:
                yield (f"  proportional to the niches that changed: {smallest.changed / largest.changed:.0%} of "
                       f"them cost {smallest.ms / largest.ms:.1%} of the full tick")


def parse_parts(only: str | None) -> tuple[str, ...]:
    """--only a,b: the parts to run, in the canonical order; all of them by default."""
    if not only:
        return PARTS
    wanted = {p.strip() for p in only.split(",") if p.strip()}
    unknown = wanted - set(PARTS)
    if unknown or not wanted:
        raise ValueError(f"unknown part(s) {', '.join(sorted(unknown)) or '(none)'}; choose from {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in wanted)


def run(parts: Collection[str], events: int, groups: int, memory_niches: int, tick_population: int,
        progress: Progress, memory_buckets: int = KEEP_BUCKETS, tick_buckets: int = TICK_BUCKETS) -> Bench:
    """Measure `parts`; the pure ones first (no broker), then the broker ones on one private broker.

    Memory is measured with every niche's counters full (KEEP_BUCKETS of history): the steady
    state. The tick's population needs only a few closed buckets: planning reads the engine's
    latest forecast, whatever its history."""
    result = Bench()
    factories = topology.load(Settings.from_env().topics_file).factories
    if "memory" in parts:
        progress(f"memory: {memory_niches:,} niches over {memory_buckets} buckets, twice (tracemalloc, RSS)")
        result.memory = measure_memory(memory_niches, memory_buckets)
    if "tick" in parts:
        progress(f"tick: building {tick_population:,} niches over {tick_buckets} buckets")
        pop = populate(tick_population, tick_buckets)
        result.tick_sizes = tuple(n for n in result.tick_sizes if n <= tick_population)
        sizes = sorted({max(1, tick_population // 100), *result.tick_sizes, tick_population})
        progress(f"tick: planning {', '.join(f'{n:,}' for n in sizes)} changed niches")
        result.ticks = measure_ticks(pop, sizes, factories)
        del pop
    if "ingest" in parts or "latency" in parts:
        with private_broker(progress) as (env, work):
            if "ingest" in parts:
                result.ingest = ingest(env, work, events, progress)
            if "latency" in parts:
                result.latency = group_latency(env, work / "latency-worker", factories, groups=groups,
                                               progress=progress)
    return result


def ingest(env: dict[str, str], work: Path, events: int, progress: Progress) -> dict[str, Any]:
    settings = Settings.from_env(env)
    progress(f"ingest: pre-loading {events:,} events")
    preload(settings, events)
    progress("ingest: raw consumer")
    raw = raw_consumer_rate(settings, events)
    progress("ingest: worker")
    worker = worker_rate(env, work / "ingest-worker", events)
    return {"events": events, "worker_events_per_s": round(worker), "raw_events_per_s": round(raw),
            "ratio": round(worker / raw, 3)}


@contextmanager
def private_broker(progress: Progress) -> Iterator[tuple[dict[str, str], Path]]:
    """A fresh local broker with topics.yaml applied: the clients' environment and a scratch
    directory, both gone (the broker stopped) on exit."""
    work = Path(tempfile.mkdtemp(prefix="c2m-bench-"))
    port = free_port()
    try:
        progress("starting a private Kafka broker")
        broker.ensure_jars()
        bootstrap = broker.start(port=port, data_dir=work / "kafka").bootstrap
        env = {**os.environ, "C2M_KAFKA_BOOTSTRAP": bootstrap}
        settings = Settings.from_env(env)
        admin.apply(settings, topology.load(settings.topics_file))
        yield env, work
    finally:
        broker.stop(port=port, data_dir=work / "kafka")
        shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
