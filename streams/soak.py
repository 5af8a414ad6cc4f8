"""`c2m soak`: one worker under steady load for a while; its memory and its backlog must level off.

A benchmark says how fast; a soak says whether the worker can keep going. On a private local broker
(streams.bench.private_broker), one worker reads from the end of the input topics while a thread
publishes valid clickstream and order events at a fixed rate: half the measured maximum unless
--rate says otherwise, so a healthy worker has headroom and anything that grows is a leak or a
stall, not plain overload. Every 10 s it samples the worker's RSS, the native memory of its
RocksDB stores (c2m_store_memory_bytes), the lag of its consumer groups (the ingest group on the
input topics, streams.intake; Faust's on niche-events), and the events it has counted. The verdict
(`verdict`) is a pure function of those samples, so the criteria are unit-tested without a broker.

Memory bounded by configuration is judged against its bound, the rest by its trend: the stores'
shared block cache fills only as reads pull blocks in, so at production's 128 MiB it is still
filling after 10 minutes. The worker runs with a smaller bound (STORE_MEMORY_MB), which is nearly
full by the middle of the run; the stores' memory must stay within it, and RSS outside the stores
(RSS - c2m_store_memory_bytes) must not trend upward.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from streams import intake
from streams.bench import INPUTS, counted_events, free_port, private_broker
from streams.config import Settings
from streams.kafka import quiet_logger
from streams.publisher import Publisher
from streams.workers import WorkerProcess

Say = Callable[[str], None]
Partition = tuple[str, int]

SAMPLE_EVERY_S = 10.0
MIN_SAMPLES = 6  # a trend needs a few points on each half of the run: at least a minute
MEASURE_EVENTS = 100_000  # published flat out, they bound the maximum from above: ~10-30 s
MEASURE_TIMEOUT_S = 180.0
FLAT_OUT = 1e6  # events/s: a target the load cannot reach, so it publishes as fast as it can
MEASURE_OFFER_S = 40.0  # then that bound is offered for this long; the maximum is what is counted ...
MEASURE_SETTLE_S = 15.0  # ... after this much of it (the burst's backlog and its big batches are gone)
# MiB for all the worker's RocksDB stores (C2M_STORE_MEMORY_MB; production's default is 128): small
# enough that the shared cache nearly fills in the first half of a 10-minute run (4-5 minutes at
# 1,200-1,700 events/s; 128 MiB took 14), so the run sees the stores at their bound.
STORE_MEMORY_MB = 32
NICHES = 500  # a bounded population: a steady state exists, so growth is not just new niches
SIZES = ("XS", "S", "M", "L", "XL")

# RSS: a leak of ~15 bytes per event at ~900 events/s is ~50 MB an hour, a quarter of a ~200 MB
# worker. Warm-up that ends within the first half is skipped (the slope is fitted on the second
# half only); a cache whose bound is more than the run fills (RocksDB memtables: 64 MiB per store
# before its first flush) shows as growth, rightly: memory that levels off only after gigabytes
# is not a steady state. Under the noise floor the fitted rise is allocator and arena jitter
# (CPython returns memory to the OS in steps of MiB), not a trend.
# Where the worker reports its stores' memory (c2m_store_memory_bytes), RSS is judged in two parts:
# the stores' memory against the bound configured for it, and the slope bound on the rest, RSS
# outside the stores. A cache still filling toward its bound in the second half is bounded, not a
# leak; a leak outside the stores, or in them past their bound, or in RocksDB memory the gauge does
# not count (it shows as outside) still fails.
RSS_GROWTH_PER_HOUR = 0.20  # the second half's slope may project at most +20% of its mean RSS an hour
RSS_NOISE_BYTES = 4 * 1024 * 1024  # ... unless the fitted rise over the second half is below this
# RocksDB's block cache is not strict: blocks in use and a memtable being flushed may take it past
# its capacity for a while (the soak saw 33.0 MiB on a 32 MiB bound).
STORE_BOUND_SLACK = 0.25  # the stores' memory may exceed its bound by this share, no more
# Lag: Faust commits every ~3 s, so committed lag saws by a few seconds of input; a backlog that
# grows by 2% of the rate is a worker that only keeps up 98%, and grows without bound. Over a short
# run's second half such a slope is a rise smaller than the saw, so a rise under the noise floor passes.
LAG_SLOPE_FRACTION = 0.02  # events/s of lag growth allowed over the second half, as a share of the rate
LAG_NOISE_SECONDS = 5.0  # ... unless the fitted rise over the second half is under this many seconds of input
FINAL_LAG_SECONDS = 30.0  # the last sample's lag must be under this many seconds of input
STALL_SAMPLES = 3  # counted unchanged over this many samples while events keep coming: stalled


@dataclass(frozen=True)
class Sample:
    """One observation of the worker, `t` seconds after the load started."""

    t: float
    rss_bytes: int
    lag: int  # consumer lag on the inputs: high watermark - committed offset, summed over partitions
    internal_lag: int  # the same on the worker's niche-events topic (messages, each a niche's batch)
    sent: int  # events the load has published so far
    counted: float | None  # events the worker has counted (c2m_events_total); None: /metrics did not answer
    store_bytes: int | None = None  # native memory of its RocksDB stores (c2m_store_memory_bytes); None: unknown

    @property
    def backlog(self) -> float | None:
        """Events published but not yet counted by the niche stage: the lag end to end."""
        return None if self.counted is None else self.sent - self.counted

    @property
    def outside_stores(self) -> int | None:
        """RSS less the stores' native memory: what the configured store bound does not cover."""
        return None if self.store_bytes is None else self.rss_bytes - self.store_bytes


# -- the pure parts: the verdict and its helpers -------------------------------------------------


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("a slope needs at least two points, as many xs as ys")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a slope needs distinct xs")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def consumer_lag(high: Mapping[Partition, int], committed: Mapping[Partition, int],
                 start: Mapping[Partition, int]) -> int:
    """Sum over partitions of high watermark - committed offset. A partition the group has not
    committed yet (offset < 0) counts from `start`, where a worker reading from the end began."""
    total = 0
    for tp, hi in high.items():
        pos = committed.get(tp, -1)
        if pos < 0:
            pos = start.get(tp, 0)
        total += max(0, hi - pos)
    return total


def store_memory_bytes(metrics_text: str) -> int | None:
    """The worker's c2m_store_memory_bytes summed over its kinds; None if it has not set the gauge yet."""
    values = [float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
              if line.startswith("c2m_store_memory_bytes{")]
    return int(sum(values)) if values else None


def vmrss_bytes(status: str) -> int:
    """VmRSS from the text of /proc/<pid>/status, in bytes."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    raise ValueError("no VmRSS line (is the process a zombie?)")


def second_half(samples: Sequence[Sample]) -> list[Sample]:
    """The samples from the middle of the run on: the first half is warm-up (lazy imports,
    first allocations, caches), the second is where a steady state must show."""
    mid = (samples[0].t + samples[-1].t) / 2
    return [s for s in samples if s.t >= mid]


def achieved_rate(samples: Sequence[Sample]) -> float:
    """Events per second the load actually published over the run."""
    span = samples[-1].t - samples[0].t
    return (samples[-1].sent - samples[0].sent) / span if span > 0 else 0.0


def stalled_at(samples: Sequence[Sample]) -> Sample | None:
    """The sample from which the worker counted nothing more to the end while events kept
    coming, if that lasted STALL_SAMPLES samples or more; None if it kept counting."""
    known = [s for s in samples if s.counted is not None]
    if len(known) <= STALL_SAMPLES:
        return None
    last = known[-1]
    first = len(known) - 1
    while first > 0 and known[first - 1].counted == last.counted:
        first -= 1
    if len(known) - 1 - first < STALL_SAMPLES or last.sent <= known[first].sent:
        return None
    return known[first]


def memory_growth(points: Sequence[tuple[float, float]]) -> str | None:
    """How memory grows over (t, bytes) points when its least-squares slope projects more than
    RSS_GROWTH_PER_HOUR of its mean an hour and the fitted rise exceeds RSS_NOISE_BYTES; None if not."""
    ts, ys = [p[0] for p in points], [p[1] for p in points]
    growth = slope(ts, ys)
    mean = sum(ys) / len(ys)
    per_hour = growth * 3600 / mean
    if per_hour > RSS_GROWTH_PER_HOUR and growth * (ts[-1] - ts[0]) > RSS_NOISE_BYTES:
        return (f"{growth * 3600 / 2**20:,.0f} MiB/h over the second half "
                f"(+{per_hour:.0%} of {mean / 2**20:,.0f} MiB an hour; bound {RSS_GROWTH_PER_HOUR:.0%})")
    return None


def verdict(samples: Sequence[Sample], store_bound: int | None = None) -> tuple[bool, list[str]]:
    """Pass when neither RSS nor lag grows without bound; the reasons are the checks that failed.

    RSS: the least-squares slope over the second half, projected over an hour, stays under
    RSS_GROWTH_PER_HOUR of the second half's mean (or the fitted rise is under the noise floor).
    Given the stores' configured bound (`store_bound`, bytes) and samples that know their memory,
    that is judged of RSS outside the stores (RSS - c2m_store_memory_bytes), and the stores' memory
    over the second half must stay within the bound plus STORE_BOUND_SLACK.
    Lag, both the consumer lag on the inputs and the backlog end to end (published - counted, which
    also catches a stalled niche stage behind a healthy ingest): its slope over the second half is
    under LAG_SLOPE_FRACTION of the rate (or its fitted rise under LAG_NOISE_SECONDS of input), and
    the last sample is under FINAL_LAG_SECONDS of input.
    """
    if len(samples) < MIN_SAMPLES:
        return False, [f"only {len(samples)} samples: a trend needs at least {MIN_SAMPLES}"]
    rate = achieved_rate(samples)
    if rate <= 0:
        return False, ["the load published nothing"]
    reasons: list[str] = []
    late = second_half(samples)

    # without a bound for them, the stores' memory is not known to be bounded: RSS is judged whole
    outside = [(s.t, float(b)) for s in late if (b := s.outside_stores) is not None] if store_bound else []
    name, points = ("RSS outside the stores", outside) if len(outside) >= 2 else \
        ("RSS", [(s.t, float(s.rss_bytes)) for s in late])
    if (growth := memory_growth(points)) is not None:
        reasons.append(f"{name} grows {growth}")
    if store_bound:
        limit = store_bound * (1 + STORE_BOUND_SLACK)
        over = [s for s in late if s.store_bytes is not None and s.store_bytes > limit]
        if over:
            worst = max(over, key=lambda s: s.store_bytes or 0)
            reasons.append(f"the stores hold {(worst.store_bytes or 0) / 2**20:,.1f} MiB at t={worst.t:.0f} s, "
                           f"past their {store_bound / 2**20:,.0f} MiB bound (+{STORE_BOUND_SLACK:.0%} allowed)")

    series = {"consumer lag": [(s.t, float(s.lag)) for s in late],
              "backlog (published - counted)": [(s.t, s.backlog) for s in late if s.backlog is not None]}
    finals = {"consumer lag": float(samples[-1].lag), "backlog (published - counted)": samples[-1].backlog}
    for name, points in series.items():
        if len(points) >= 2:
            growth = slope([p[0] for p in points], [p[1] for p in points])
            rise = growth * (points[-1][0] - points[0][0])
            if growth > LAG_SLOPE_FRACTION * rate and rise > LAG_NOISE_SECONDS * rate:
                reasons.append(f"{name} grows {growth:,.1f} events/s over the second half "
                               f"({growth / rate:.1%} of the {rate:,.0f}/s input; bound {LAG_SLOPE_FRACTION:.0%})")
        else:
            reasons.append(f"{name}: the worker's /metrics did not answer in the second half")
        final = finals[name]
        if final is not None and final > FINAL_LAG_SECONDS * rate:
            reasons.append(f"{name} ends at {final:,.0f} events, {final / rate:,.0f} s of input "
                           f"(bound {FINAL_LAG_SECONDS:.0f} s)")
    stall = stalled_at(samples)
    if stall is not None:
        reasons.append(f"the worker stopped counting at t={stall.t:.0f} s: counted {stall.counted:,.0f}, "
                       f"consumer lag {stall.lag:,}, niche-events lag {stall.internal_lag:,}")
    return not reasons, reasons


def summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """First, last and largest RSS, store memory and lags, the achieved rate, and the second half's
    memory trends (RSS, and RSS outside the stores)."""
    if not samples:
        return {}

    def span(values: Iterable[float]) -> dict[str, float]:
        vals = list(values)
        return {"first": vals[0], "last": vals[-1], "max": max(vals)} if vals else {}

    def mib(values: Iterable[float]) -> dict[str, float]:
        return {k: round(v / 2**20, 1) for k, v in span(values).items()}

    def trend(points: list[tuple[float, float]]) -> float | None:
        """MiB an hour, the second half's least-squares slope."""
        return round(slope([p[0] for p in points], [p[1] for p in points]) * 3600 / 2**20, 1) \
            if len(points) >= 2 else None

    late = second_half(samples)
    out: dict[str, Any] = {
        "rate_per_s": round(achieved_rate(samples), 1),
        "rss_mib": mib(s.rss_bytes for s in samples),
        "store_mib": mib(b for s in samples if (b := s.store_bytes) is not None),
        "outside_stores_mib": mib(b for s in samples if (b := s.outside_stores) is not None),
        "lag": span(s.lag for s in samples),
        "internal_lag": span(s.internal_lag for s in samples),
        "backlog": span(b for s in samples if (b := s.backlog) is not None),
    }
    for key, points in (("rss_mib_per_hour_second_half", [(s.t, float(s.rss_bytes)) for s in late]),
                        ("outside_stores_mib_per_hour_second_half",
                         [(s.t, float(b)) for s in late if (b := s.outside_stores) is not None])):
        if (value := trend(points)) is not None:
            out[key] = value
    return out


# -- the run: broker, worker, load, sampling -----------------------------------------------------


class MixedLoad:
    """Valid events at a steady rate from a thread, over NICHES niches: per niche in turn three views,
    an add-to-cart and an order placed, as upstream apps publish them (the Publisher SDK); `total`
    of them if given, then nothing more."""

    def __init__(self, settings: Settings, rate: float, run: str, total: int | None = None) -> None:
        self.settings, self.rate, self.run, self.total = settings, rate, run, total
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-load", daemon=True)

    def __enter__(self) -> MixedLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _publish(self, pub: Publisher, i: int) -> None:
        k = (i // 5) % NICHES
        attrs = {"category": "dress", "style": f"soak{k // len(SIZES)}", "color": "sage", "size": SIZES[k % len(SIZES)]}
        user, kind = f"u{i % 997}", i % 5
        if kind == 4:
            pub.order(f"soak-{self.run}-o{i}", "SKU-S", 1, region="SOAK", user_id=user, attrs=attrs)
        elif kind == 3:
            pub.add_to_cart("SKU-S", region="SOAK", user_id=user, attrs=attrs)
        else:
            pub.view("SKU-S", region="SOAK", user_id=user, attrs=attrs)

    def _run(self) -> None:
        try:
            with Publisher(self.settings) as pub:
                start = time.perf_counter()
                while not self._stop.is_set():
                    due = int((time.perf_counter() - start) * self.rate)
                    if self.total is not None:
                        due = min(due, self.total)
                    for i in range(self.sent, due):
                        self._publish(pub, i)
                    self.sent = max(self.sent, due)
                    pub.poll(0)
                    self._stop.wait(0.01)
        except BaseException as exc:  # read by the sampling loop, which stops the run
            self.error = exc


class LagProbe:
    """Committed offsets of a consumer group against the high watermarks, without joining the group
    (a consumer with its group.id that never subscribes)."""

    def __init__(self, settings: Settings, group: str) -> None:
        self._consumer = Consumer({**settings.kafka_client_config(), "group.id": group,
                                   "enable.auto.commit": False, "logger": quiet_logger()})

    def partitions(self, topics: Sequence[str]) -> list[Partition]:
        meta = self._consumer.list_topics(timeout=10)
        return [(t, p) for t in topics if t in meta.topics for p in sorted(meta.topics[t].partitions)]

    def high(self, parts: Sequence[Partition]) -> dict[Partition, int]:
        return {(t, p): self._consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False)[1]
                for t, p in parts}

    def committed(self, parts: Sequence[Partition]) -> dict[Partition, int]:
        got = self._consumer.committed([TopicPartition(t, p) for t, p in parts], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in got}

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Soak:
    """What a run measured; `report()` is the --out JSON."""

    rate: float
    max_measured: float | None
    duration: float
    app_id: str
    samples: list[Sample] = field(default_factory=list)
    aborted: str | None = None  # why the run ended early, if it did
    store_memory_mb: int = STORE_MEMORY_MB  # the worker's C2M_STORE_MEMORY_MB

    def judged(self) -> tuple[bool, list[str]]:
        ok, reasons = verdict(self.samples, self.store_memory_mb * 2**20)
        if self.aborted is not None:
            return False, [self.aborted, *reasons]
        return ok, reasons

    def report(self) -> dict[str, Any]:
        ok, reasons = self.judged()
        return {"rate": self.rate, "max_measured": self.max_measured, "duration": self.duration,
                "app_id": self.app_id, "store_memory_mb": self.store_memory_mb, "sample_every_s": SAMPLE_EVERY_S,
                "aborted": self.aborted,
                "summary": summary(self.samples), "samples": [asdict(s) for s in self.samples],
                "verdict": {"ok": ok, "reasons": reasons}}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.report(), option=orjson.OPT_INDENT_2))

    def lines(self) -> list[str]:
        """The closing report: the figures, then PASS or FAIL with the reasons."""
        s = summary(self.samples)
        ok, reasons = self.judged()
        out = []
        if s:
            rss, lag, backlog = s["rss_mib"], s["lag"], s["backlog"]
            out.append(f"load {s['rate_per_s']:,.0f} events/s for {self.samples[-1].t:.0f} s"
                       + (f" (half the measured maximum {self.max_measured:,.0f}/s)" if self.max_measured else ""))
            out.append(f"RSS MiB first {rss['first']:,.1f}, last {rss['last']:,.1f}, max {rss['max']:,.1f}; "
                       f"second-half trend {s.get('rss_mib_per_hour_second_half', 0):+,.1f} MiB/h")
            if store := s["store_mib"]:
                outside = s["outside_stores_mib"]
                out.append(f"stores MiB first {store['first']:,.1f}, last {store['last']:,.1f}, "
                           f"max {store['max']:,.1f} (bound {self.store_memory_mb} MiB); "
                           f"outside them first {outside['first']:,.1f}, "
                           f"last {outside['last']:,.1f}, second-half trend "
                           f"{s.get('outside_stores_mib_per_hour_second_half', 0):+,.1f} MiB/h")
            out.append(f"consumer lag first {lag['first']:,.0f}, last {lag['last']:,.0f}, max {lag['max']:,.0f}; "
                       + (f"backlog first {backlog['first']:,.0f}, last {backlog['last']:,.0f}, "
                          f"max {backlog['max']:,.0f}" if backlog else "backlog unknown"))
        out.append("soak PASS" if ok else "soak FAIL: " + "; ".join(reasons))
        return out


def sample_line(s: Sample, previous: Sample | None) -> str:
    """One line per sample; the counting rate is over the interval since the previous sample."""
    counted, per_s, backlog = f"{'n/a':>9}", "", "n/a"
    if s.counted is not None and s.backlog is not None:
        counted, backlog = f"{s.counted:>9,.0f}", f"{s.backlog:,.0f}"
        if previous is not None and previous.counted is not None and s.t > previous.t:
            per_s = f" +{(s.counted - previous.counted) / (s.t - previous.t):,.0f}/s"
    stores = "n/a" if s.store_bytes is None else f"{s.store_bytes / 2**20:.1f}"
    return (f"t={s.t:>4.0f}s rss {s.rss_bytes / 2**20:6.1f} MiB (stores {stores})  "
            f"lag {s.lag:>6,} (niche-events {s.internal_lag:,})  sent {s.sent:>9,} counted {counted}{per_s}  "
            f"backlog {backlog}")


def measure_max(env: dict[str, str], work: Path, events: int, say: Say) -> float:
    """The worker's maximum as the soak runs it, live, with the load and the broker on the machine
    beside it: the rate it counts while the load offers more than it takes.

    A burst overstates it: a worker reading a backlog takes 5,000 records a batch, ~10 events per
    niche message, while live input comes in small batches, a few events per niche message, and
    the niche stage's cost is per message. Before ingest held its batches for a lagging niche stage
    (streams.intake.hold_for), the worker reached 24,000 events/s over a pre-load, ~10,000 over
    100,000 events published flat out, and live it counted ~3,400 events/s whether offered 5,000
    or 12,000. So: first `events` flat out (a worker reading from the earliest offset of a
    fresh broker's inputs, which hold only these), which bounds the maximum from above; then that
    bound offered steadily, and the maximum is what the worker counts once past the burst's backlog."""
    settings = Settings.from_env(env)
    app_id = f"c2m-measure-{uuid.uuid4().hex[:6]}"
    proc = WorkerProcess({**env, "C2M_APP_ID": app_id, "C2M_AUTO_OFFSET_RESET": "earliest",
                          "C2M_API_PORT": str(free_port())}, work / "measure-worker", loglevel="warn").start()
    try:
        say("measuring the maximum: starting a worker")
        proc.wait_ready(timeout=120)
        say(f"measuring the maximum: {events:,} events published flat out")
        counted = 0.0
        with MixedLoad(settings, FLAT_OUT, app_id, total=events) as load:
            start = time.perf_counter()
            while counted < events:
                if load.error is not None:
                    raise RuntimeError(f"the load failed: {load.error}")
                if time.perf_counter() - start > MEASURE_TIMEOUT_S:
                    raise RuntimeError(f"the worker counted {counted:,.0f} of {events:,} events "
                                       f"in {MEASURE_TIMEOUT_S:.0f} s")
                counted = counted_events(proc.get("/metrics", timeout=10))
                time.sleep(0.2)
            bound = events / (time.perf_counter() - start)
        say(f"measuring the maximum: {bound:,.0f} events/s offered for {MEASURE_OFFER_S:.0f} s")
        with MixedLoad(settings, bound, f"{app_id}-offer") as load:
            time.sleep(MEASURE_SETTLE_S)
            first, t0 = counted_events(proc.get("/metrics", timeout=10)), time.perf_counter()
            time.sleep(MEASURE_OFFER_S - MEASURE_SETTLE_S)
            last, t1 = counted_events(proc.get("/metrics", timeout=10)), time.perf_counter()
            if load.error is not None:
                raise RuntimeError(f"the load failed: {load.error}")
        return min(bound, (last - first) / (t1 - t0))
    finally:
        proc.stop()


def soak_worker(env: dict[str, str], work: Path, soak: Soak, say: Say) -> None:
    """Start the soak's worker from the end of the inputs, run the load, sample until done."""
    settings = Settings.from_env(env)
    proc = WorkerProcess({**env, "C2M_APP_ID": soak.app_id, "C2M_AUTO_OFFSET_RESET": "latest",
                          "C2M_API_PORT": str(free_port())}, work / "soak-worker", loglevel="warn").start()
    probe = LagProbe(settings, soak.app_id)  # Faust's group: the internal topics
    input_probe = LagProbe(settings, intake.group_id(soak.app_id))
    try:
        say(f"starting the worker ({soak.app_id})")
        proc.wait_ready(timeout=120)
        assert proc.proc is not None
        parts = probe.partitions([*INPUTS, f"{soak.app_id}-niche-events"])
        inputs = [tp for tp in parts if tp[0] in INPUTS]
        internal = [tp for tp in parts if tp[0] not in INPUTS]
        start = probe.high(parts)  # the worker reads from here on: nothing is published before the load
        say(f"load: {soak.rate:,.0f} events/s for {soak.duration:.0f} s, a sample every {SAMPLE_EVERY_S:.0f} s")
        with MixedLoad(settings, soak.rate, soak.app_id) as load:
            t0 = time.monotonic()
            k = 0
            while True:
                time.sleep(max(0.0, t0 + k * SAMPLE_EVERY_S - time.monotonic()))
                t = time.monotonic() - t0
                sent = load.sent
                code = proc.proc.poll()
                if code is not None:
                    soak.aborted = f"the worker exited (code {code}) at t={t:.0f} s: {proc.last_error()}"
                    break
                if load.error is not None:
                    soak.aborted = f"the load failed at t={t:.0f} s: {load.error}"
                    break
                try:
                    text = proc.get("/metrics", timeout=10)
                    counted: float | None = counted_events(text)
                    stores = store_memory_bytes(text)
                except OSError:
                    counted, stores = None, None
                committed = {**input_probe.committed(inputs), **probe.committed(internal)}
                high = probe.high(parts)
                rss = vmrss_bytes(Path(f"/proc/{proc.proc.pid}/status").read_text())
                sample = Sample(round(t, 1), rss, consumer_lag({tp: high[tp] for tp in inputs}, committed, start),
                                consumer_lag({tp: high[tp] for tp in internal}, committed, start), sent, counted,
                                stores)
                say(sample_line(sample, soak.samples[-1] if soak.samples else None))
                soak.samples.append(sample)
                if t >= soak.duration:
                    break
                k += 1
    finally:
        probe.close()
        input_probe.close()
        proc.stop()


def run(rate: float | None, duration: float, say: Say, measure_events: int = MEASURE_EVENTS,
        store_memory_mb: int = STORE_MEMORY_MB) -> Soak:
    """The whole soak on a private broker: the maximum first unless `rate` is given, then the load
    at `rate` (or half the maximum) for `duration` seconds; workers with `store_memory_mb` MiB of stores."""
    with private_broker(say) as (env, work):
        env = {**env, "C2M_STORE_MEMORY_MB": str(store_memory_mb)}
        max_measured = None
        if rate is None:
            max_measured = measure_max(env, work, measure_events, say)
            rate = max_measured / 2
            say(f"maximum {max_measured:,.0f} events/s; soaking at half of it, {rate:,.0f} events/s")
        soak = Soak(rate, max_measured, duration, f"c2m-soak-{uuid.uuid4().hex[:6]}", store_memory_mb=store_memory_mb)
        soak_worker(env, work, soak, say)
    return soak
