"""The Faust app. Agents are thin: they move records between Kafka and the pure functions.

Data path: c2m.clickstream + c2m.orders --ingest--> <app>-niche-events (keyed by niche key)
--niche agent--> per-niche tables (demand, plan) --planner--> c2m.triggers.<factory_id>.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
import orjson
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.streams import _current_event
from faust.types import EventT

from models.demand import NicheDemand
from models.planner import PlanState, RuleConfig, Trigger, plan_niche, record_issued
from streams import metrics, topology
from streams.config import Settings
from streams.ingest import CLICKSTREAM, ORDERS, RawRecord, ingest
from streams.metrics import type_label

BATCH = 1000
BATCH_WITHIN_S = 0.2
KEEP_BUCKETS = 48

settings = Settings.from_env()
TOPOLOGY = topology.load(settings.topics_file)
PARTITIONS = TOPOLOGY.topic(CLICKSTREAM).partitions
BUCKET_MS = settings.bucket_seconds * 1000
RULE = RuleConfig()

app = faust.App(
    settings.app_id,
    broker=settings.faust_broker,
    store="rocksdb://",
    datadir=str(settings.data_dir),
    topic_partitions=PARTITIONS,
    web_bind=settings.api_host,
    web_host=settings.api_host,
    web_port=settings.api_port,
    consumer_auto_offset_reset=settings.auto_offset_reset,
)
setup_prometheus_sensors(app, pattern="/metrics")

raw = {"key_serializer": "raw", "value_serializer": "raw"}
source = app.topic(CLICKSTREAM, ORDERS, **raw)
niche_events = app.topic(f"{settings.app_id}-niche-events", internal=True, partitions=PARTITIONS, **raw)
dead_letters = app.topic("c2m.dead-letter", **raw)
trigger_topics = {f.id: app.topic(topology.trigger_topic(f.id), **raw) for f in TOPOLOGY.factories}

# Per-niche state, co-partitioned with niche_events: values are the pure models' to_dict() forms.
# JSON keys as well as values: with the app's default raw key codec, keys read back from the
# changelog after recovery would be bytes where the live path wrote str.
_json = faust.Schema(key_serializer="json", value_serializer="json")
demand_table = app.Table("demand", partitions=PARTITIONS, schema=_json)
plan_table = app.Table("plan", partitions=PARTITIONS, schema=_json)

# Units this worker has asked of each factory. Capacity accounting across workers and factory
# answers (accepted/completed) come with the rolling planner; this is the skeleton's view.
open_units: dict[str, int] = {}


@contextmanager
def acting_for(event: EventT) -> Iterator[None]:
    """Make `event` the current one so table writes go to its partition's changelog.

    Faust only sets the current event for plain `async for` iteration; inside a `take_events`
    batch a table write raises "Cannot modify table key from outside of stream iteration"
    (faust-streaming issue #497). Batching is what makes Faust fast enough, so set it ourselves.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


@app.agent(source)
async def ingest_agent(stream: faust.StreamT) -> None:
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        now_ms = int(time.time() * 1000)
        batch = ingest((RawRecord(e.message.topic, e.message.partition, e.message.offset, e.value)
                        for e in events), now_ms, TOPOLOGY.niche_attributes, TOPOLOGY.size_bands,
                       {}, settings.max_record_bytes)
        for key, value in batch.niche_messages.items():
            await niche_events.send(key=key.encode(), value=value)
        for topic, value in batch.dead_letters:
            await dead_letters.send(key=topic.encode(), value=value)
            metrics.DEAD_LETTERS.labels(topic).inc()
        for (topic, etype, outcome), n in batch.outcomes.items():
            metrics.EVENTS.labels(topic, type_label(etype), outcome).inc(n)
        for ts in batch.event_ts:
            metrics.EVENT_AGE.observe(max(0.0, now_ms - ts) / 1000)


@app.agent(niche_events)
async def niche_agent(stream: faust.StreamT) -> None:
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        touched: dict[str, tuple[EventT, dict[str, str], NicheDemand]] = {}
        for event in events:
            key = event.key.decode()
            msg = orjson.loads(event.value)
            entry = touched.get(key)
            demand = entry[2] if entry else NicheDemand.from_dict(demand_table.get(key))
            for row in msg["events"]:
                demand.add(row[1], row[2], row[3], BUCKET_MS)
            touched[key] = (event, msg["niche"], demand)
        for key, (event, niche, demand) in touched.items():
            demand.trim(KEEP_BUCKETS, BUCKET_MS)
            with acting_for(event):
                demand_table[key] = demand.to_dict()
                await _plan(key, niche, demand)


async def _plan(key: str, niche: dict[str, str], demand: NicheDemand) -> None:
    state = PlanState.from_dict(plan_table.get(key))
    trig = plan_niche(key, niche, demand, state, TOPOLOGY.factories, open_units,
                      demand.last_ts_ms, BUCKET_MS, RULE)
    if trig is None:
        return
    plan_table[key] = record_issued(state, trig).to_dict()
    await publish_trigger(trig, source_ts_ms=demand.last_ts_ms)


async def publish_trigger(trig: Trigger, source_ts_ms: int) -> None:
    emitted = int(time.time() * 1000)
    body = {**trig.to_dict(), "emitted_ts": emitted}

    def delivered(_: Any) -> None:
        metrics.TRIGGER_LATENCY.labels(trig.kind).observe(max(0, time.time() * 1000 - source_ts_ms) / 1000)

    await trigger_topics[trig.factory_id].send(key=trig.trigger_id.encode(), value=orjson.dumps(body),
                                                callback=delivered)
    metrics.TRIGGERS.labels(trig.factory_id, trig.action, trig.kind).inc()
    metrics.TRIGGER_UNITS.labels(trig.factory_id).inc(trig.units)
    open_units[trig.factory_id] = open_units.get(trig.factory_id, 0) + trig.units
    metrics.FACTORY_OPEN_UNITS.labels(trig.factory_id).set(open_units[trig.factory_id])


@app.timer(interval=10.0)
async def count_niches() -> None:
    metrics.NICHES_ACTIVE.set(len(demand_table))


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    assigned = app.consumer.assignment() if app.consumer else set()
    return web.json({"status": "ok", "app_id": settings.app_id, "partitions_assigned": len(assigned)})
