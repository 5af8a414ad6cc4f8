"""The Faust app. Agents are thin: they move records between Kafka and the pure functions.

Data path: c2m.clickstream + c2m.orders --ingest--> <app>-niche-events (keyed by niche key)
--niche agent--> dedupe, per-niche tables (demand, plan) --planner--> c2m.triggers.<factory_id>.
c2m.catalog --catalog agent--> a global table every worker reads to fill in event attributes.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
import orjson
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.streams import _current_event
from faust.types import EventT
from mode.utils.times import want_seconds

from models.demand import NicheDemand
from models.planner import RULE_MODEL, PlanState, RuleConfig, Trigger, demand_signal, plan_niche, record_issued
from streams import api, dashboard, kafka, metrics, topology
from streams.config import Settings
from streams.errors import UserError
from streams.ingest import CLICKSTREAM, ORDERS, RawRecord, ingest, source_topic
from streams.metrics import type_label
from streams.records import Rejection, dead_letter, parse_catalog

BATCH = 1000
BATCH_WITHIN_S = 0.2
KEEP_BUCKETS = 48
CATALOG = "c2m.catalog"
# Input topics allow 16 MiB records (topics.yaml); the consumer must be able to fetch one to
# dead-letter it, or it would stall on that offset.
MAX_FETCH_BYTES = 17 * 1024 * 1024

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
    consumer_max_fetch_size=MAX_FETCH_BYTES,
    # Faust creates its internal topics while the consumer group first forms; a topic created a
    # moment too late is "ignored" until the next metadata refresh triggers a rebalance. The
    # default refresh (5 min) would leave a new worker half-assigned that long.
    consumer_metadata_max_age_ms=5000,
)
# Faust's own metrics under the c2m_ prefix whatever the app id, so dashboards and alerts match.
setup_prometheus_sensors(app, pattern="/metrics", name_prefix="c2m")

raw = {"key_serializer": "raw", "value_serializer": "raw"}
source = app.topic(CLICKSTREAM, ORDERS, **raw)
NICHE_EVENTS = f"{settings.app_id}-niche-events"
niche_events = app.topic(NICHE_EVENTS, internal=True, partitions=PARTITIONS, **raw)
dead_letters = app.topic("c2m.dead-letter", **raw)
catalog_source = app.topic(CATALOG, **raw)
trigger_topics = {f.id: app.topic(topology.trigger_topic(f.id), **raw) for f in TOPOLOGY.factories}

# Per-niche state, co-partitioned with niche_events: values are the pure models' to_dict() forms.
# JSON keys as well as values: with the app's default raw key codec, keys read back from the
# changelog after recovery would be bytes where the live path wrote str.
_json = faust.Schema(key_serializer="json", value_serializer="json")
demand_table = app.Table("demand", partitions=PARTITIONS, schema=_json)
plan_table = app.Table("plan", partitions=PARTITIONS, schema=_json)
# event_id -> 1 in tumbling windows of the dedupe window; a repeat is looked up in the current and
# the previous window, so any repeat within one window length is caught. Faust expires old
# windows (tombstones plus a compact,delete changelog), which bounds the state.
DEDUPE_S = settings.dedupe_window_seconds
seen_table = app.Table("seen", default=int, partitions=PARTITIONS, schema=_json).tumbling(
    DEDUPE_S, expires=2 * DEDUPE_S)
# sku -> validated attrs, on every worker: ingest fills in attributes events leave out.
catalog_table = app.GlobalTable("catalog", partitions=TOPOLOGY.topic(CATALOG).partitions, schema=_json)

# Units this worker has asked of each factory. Capacity accounting across workers and factory
# answers (accepted/completed) come with the rolling planner; this is the skeleton's view.
open_units: dict[str, int] = {}


def internal_topic_specs() -> list[topology.TopicSpec]:
    """The topics Faust would declare for this app (repartition and changelogs), as it would.

    Faust creates them while the consumer group first forms; one created a moment too late is
    "ignored" by that first assignment (a GlobalTable then never finishes recovery, an agent owns
    no partitions). The worker creates them before Faust starts, which closes that race.
    """
    rf = TOPOLOGY.topic(CLICKSTREAM).replication_factor
    specs = []
    for topic in [niche_events, *(t.changelog_topic for t in app.tables.values())]:
        config: dict[str, str] = {}
        policy = ",".join(p for p, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        if policy:
            config["cleanup.policy"] = policy
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        specs.append(topology.TopicSpec(topic.get_topic_name(), topic.partitions or PARTITIONS, rf, config))
    return specs


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
                       catalog_table, settings.max_record_bytes)
        for key, value in batch.niche_messages.items():
            await niche_events.send(key=key.encode(), value=value)
        for topic, value in batch.dead_letters:
            await dead_letters.send(key=topic.encode(), value=value)
            metrics.DEAD_LETTERS.labels(topic).inc()
        for (topic, etype, outcome), n in batch.outcomes.items():
            metrics.EVENTS.labels(topic, type_label(etype), outcome).inc(n)
        for ts in batch.event_ts:
            metrics.EVENT_AGE.observe(max(0.0, now_ms - ts) / 1000)


@app.agent(catalog_source)
async def catalog_agent(stream: faust.StreamT) -> None:
    """Validate catalog records into the global table; a bad one is dead-lettered, never applied."""
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        now_ms = int(time.time() * 1000)
        for event in events:
            msg = event.message
            parsed = parse_catalog(event.value, now_ms, settings.max_record_bytes)
            if isinstance(parsed, Rejection):
                await dead_letters.send(key=CATALOG.encode(), value=dead_letter(
                    parsed.reason, msg.topic, msg.partition, msg.offset, event.value))
                metrics.DEAD_LETTERS.labels(CATALOG).inc()
                continue
            with acting_for(event):
                catalog_table[parsed.sku] = parsed.attrs


@app.agent(niche_events)
async def niche_agent(stream: faust.StreamT) -> None:
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        touched: dict[str, tuple[EventT, dict[str, str], NicheDemand]] = {}
        outcomes: Counter[tuple[str, str, str]] = Counter()
        for event in events:
            key = event.key.decode()
            msg = orjson.loads(event.value)
            entry = touched.get(key)
            demand = entry[2] if entry else NicheDemand.from_dict(demand_table.get(key))
            with acting_for(event):
                for row in msg["events"]:
                    fresh = _first_sighting(row[0], event)
                    outcomes[(source_topic(row[1]), row[1], "ok" if fresh else "duplicate")] += 1
                    if fresh:
                        demand.add(row[1], row[2], row[3], BUCKET_MS)
            touched[key] = (event, msg["niche"], demand)
        for (topic, etype, outcome), n in outcomes.items():
            metrics.EVENTS.labels(topic, type_label(etype), outcome).inc(n)
        for key, (event, niche, demand) in touched.items():
            demand.trim(KEEP_BUCKETS, BUCKET_MS)
            with acting_for(event):
                demand_table[key] = {**demand.to_dict(), "niche": niche}
                await _plan(key, niche, demand)


def _first_sighting(event_id: str, event: EventT) -> bool:
    """Record event_id as seen; False when it was already seen within the dedupe window."""
    window = seen_table[event_id]
    if window.current(event) or window.delta(DEDUPE_S, event):
        return False
    seen_table[event_id] = 1
    return True


async def _plan(key: str, niche: dict[str, str], demand: NicheDemand) -> None:
    state = PlanState.from_dict(plan_table.get(key))
    trig = plan_niche(key, niche, demand, state, TOPOLOGY.factories, open_units,
                      demand.last_ts_ms, BUCKET_MS, RULE)
    if trig is None:
        return
    plan_table[key] = record_issued(state, trig).to_dict()
    await publish_trigger(trig, source_ts_ms=demand.last_ts_ms)


async def publish_trigger(trig: Trigger, source_ts_ms: int) -> None:
    """Publish the planner's trigger as it is: its emitted_ts is the event time of the decision, so
    a replay after a crash re-publishes identical content for the same (trigger_id, revision)."""
    body = trig.to_dict()

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


# Whether the cluster answered the last metadata probe; probed off the event loop on a timer.
broker_reachable = {"ok": False, "checked_ts": 0}


@app.timer(interval=10.0)
async def probe_broker() -> None:
    def probe() -> bool:
        try:
            kafka.connect(settings, timeout=3.0)
        except UserError:
            return False
        return True

    broker_reachable["ok"] = await asyncio.get_running_loop().run_in_executor(None, probe)
    broker_reachable["checked_ts"] = int(time.time() * 1000)


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    """200 while the process serves; "status" says whether it can do its job. A liveness restart
    cures neither a broker outage nor a rebalance, so those are reported, not failed."""
    assigned = len(app.consumer.assignment()) if app.consumer else 0
    reachable = bool(broker_reachable["ok"]) if broker_reachable["checked_ts"] else None  # None: not probed yet
    return web.json({"status": "ok" if reachable is not False and assigned else "degraded",
                     "app_id": settings.app_id,
                     "partitions_assigned": assigned, "broker_reachable": reachable,
                     "broker_checked_ts": broker_reachable["checked_ts"]})


@app.page("/api/niches")
async def niches_view(web: Any, request: Any) -> Any:
    """Niches of the partitions this worker owns, busiest first."""
    limit = api.clamp_limit(request.query.get("limit"))
    entries = (api.niche_entry(key, value, plan_table.get(key), _forecast(NicheDemand.from_dict(value)))
               for key, value in demand_table.items())
    return web.json(api.top_niches(entries, limit))


@app.page("/api/triggers")
async def triggers_view(web: Any, request: Any) -> Any:
    factory = request.query.get("factory", "")
    if factory not in trigger_topics:
        return web.json({"error": f"unknown factory {factory!r}", "factories": sorted(trigger_topics)}, status=404)
    limit = api.clamp_limit(request.query.get("limit"))
    found = await asyncio.get_running_loop().run_in_executor(
        None, api.recent_triggers, settings, topology.trigger_topic(factory), limit)
    return web.json({"triggers": found})


def _forecast(demand: NicheDemand) -> dict[str, Any]:
    signal = demand_signal(demand, demand.last_ts_ms, BUCKET_MS, RULE)
    return {"p50": round(signal), "p90": round(signal * 1.3), "model": RULE_MODEL}
dashboard.register(app, [f.id for f in TOPOLOGY.factories])
