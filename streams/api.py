"""HTTP JSON API of DESIGN §8, as pure builders plus one Kafka read.

/api/triggers reads the factory's trigger topic itself: the topic is the log of triggers, so every
worker answers the same, exact list without keeping a copy in state.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from models.demand import COUNT_KEYS
from models.planner import NichePlan
from streams.config import Settings
from streams.kafka import quiet_logger

MAX_LIMIT = 1000
# Buckets of history a niche entry carries for the dashboard's sparklines (the worker keeps 48).
TREND_BUCKETS = 30
TREND_KEYS = ("view", "add_to_cart", "orders", "units")


def clamp_limit(raw: str | None, default: int = 50) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        value = default
    return max(1, min(MAX_LIMIT, value))


def niche_entry(key: str, demand: dict[str, Any], plan: dict[str, Any] | None,
                forecast: dict[str, Any], bucket_ms: int | None = None,
                trend_buckets: int = TREND_BUCKETS) -> dict[str, Any]:
    """One niche of /api/niches. Beyond DESIGN §8's keys: the stock the planner keeps for it
    (inventory, uncovered orders, lots at factories), its last planning decision, and a trend."""
    counts = demand.get("counts", {})
    state = NichePlan.from_dict(plan)
    stock = state.stock
    return {"niche": key, "attrs": demand.get("niche", {}),
            "counts": {k: int(counts.get(k, 0)) for k in COUNT_KEYS},
            "forecast": forecast, "open_units": stock.open_units,
            "stock": {"on_hand": stock.on_hand, "backorder": stock.backorder, "produced": stock.produced,
                      "lots": [{"trigger_id": lot.trigger_id, "factory_id": lot.factory_id, "revision": lot.revision,
                                "units": lot.units, "stage": lot.stage} for lot in stock.lots.values()]},
            "plan_note": str((plan or {}).get("note", "")),
            "last_ts_ms": int(demand.get("last_ts_ms", 0)),
            "trend": trend(demand.get("buckets", {}), bucket_ms, trend_buckets)}


def trend(buckets: Mapping[str, Mapping[str, int]], bucket_ms: int | None = None,
          n: int = TREND_BUCKETS) -> dict[str, Any]:
    """The last `n` buckets up to the niche's newest one, gaps filled with zeros, one list per count.

    Columnar so a sparkline is one list. An additive field of /api/niches: `start_ms` is the first
    bucket's start, `bucket_ms` the step. Without `bucket_ms` the step is inferred from the bucket
    starts (their differences are multiples of it), which keeps the callers' signature unchanged.
    """
    starts = sorted(int(k) for k in buckets)
    step = bucket_ms or _step(starts)
    empty: dict[str, Any] = {"bucket_ms": step, "start_ms": 0, **{k: [] for k in TREND_KEYS}}
    if not starts or step <= 0:
        return empty
    first = starts[-1] - (n - 1) * step
    by_start = {int(k): v for k, v in buckets.items()}
    span = [first + i * step for i in range(n)]
    out: dict[str, Any] = {"bucket_ms": step, "start_ms": first}
    for k in TREND_KEYS:
        out[k] = [int((by_start.get(s) or {}).get(k, 0)) for s in span]
    return out


def _step(starts: list[int]) -> int:
    gaps = [b - a for a, b in itertools.pairwise(starts) if b > a]
    return math.gcd(*gaps) if gaps else 60_000


def top_niches(entries: Iterable[dict[str, Any]], limit: int) -> dict[str, Any]:
    """The busiest niches first: by units ordered, then add-to-carts, then views."""
    def rank(e: dict[str, Any]) -> tuple[int, int, int]:
        c = e["counts"]
        return (c["units"], c["add_to_cart"], c["view"])

    return {"niches": heapq.nlargest(limit, entries, key=rank)}


def recent_triggers(settings: Settings, topic: str, limit: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The newest `limit` triggers of a topic, newest first, read from the end of each partition."""
    c = Consumer({**settings.kafka_client_config(), "group.id": "c2m-api", "enable.auto.commit": False,
                  "logger": quiet_logger()})
    try:
        meta = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        assignment = []
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, max(low, high - limit)))
        if not assignment:
            return []
        c.assign(assignment)
        out: list[dict[str, Any]] = []
        remaining = {tp.partition for tp in assignment}
        while remaining:
            msg = c.poll(timeout)
            if msg is None:
                break
            if msg.error():
                continue
            if msg.offset() >= ends[msg.partition()] - 1:
                remaining.discard(msg.partition())
            try:
                out.append(orjson.loads(msg.value()))
            except orjson.JSONDecodeError:
                continue
        out.sort(key=lambda t: (t.get("emitted_ts", 0), t.get("revision", 0)), reverse=True)
        return out[:limit]
    finally:
        c.close()
