"""The Faust app. Agents are thin: they move records between Kafka and the pure functions.

Data path: c2m.clickstream + c2m.orders --ingest (streams.intake)--> <app>-niche-events (keyed by niche key)
--niche agent--> dedupe, per-niche tables (demand, plan) --planner--> c2m.triggers.<factory_id>.
c2m.catalog --catalog agent--> a global table every worker reads to fill in event attributes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import faust
import orjson
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.streams import _current_event
from faust.types import EventT
from mode.utils.times import want_seconds

from models.checkpoint import CheckpointError
from models.engine import HOUR_MS, DemandEngine, EngineConfig
from models.planner import PlannerConfig
from models.routing import CapacityBook
from streams import allocator, api, dashboard, faust_fixes, kafka, metrics, stores, topology
from streams.capacity import CapacityDesk
from streams.config import Settings
from streams.errors import UserError
from streams.ingest import CLICKSTREAM, ORDERS, ingest, source_topic
from streams.intake import Intake
from streams.ledger import Ledger, Source, is_duplicate, source_mark
from streams.marks import mark_table
from streams.metrics import type_label
from streams.niche_records import NicheRecords
from streams.records import Rejection, dead_letter, parse_catalog, parse_factory_status
from streams.stage import DEMAND, GROUPS, PLANS, Effects, NicheStage

BATCH = 1000
# Input records per ingest batch: librdkafka hands them over in one call, and each batch costs a
# produce flush and a commit.
INGEST_BATCH = 5000
# How long a stage waits to fill a batch: a filled group's trigger crosses three stages (ingest,
# niche, capacity desk). Ingest and niche batches carry the load and amortise per-batch work, so
# they wait longer than the desk, which sees a few proposals per batch.
BATCH_WITHIN_S = 0.05
FAST_WITHIN_S = 0.03
DESK_WITHIN_S = 0.005
CATALOG = "c2m.catalog"
FACTORY_STATUS = "c2m.factory-status"
GROUP_OUTCOMES = "c2m.group-outcomes"
POOLED_PREFIX = "__engine__/"
API_HORIZON_HOURS = 72
# Bytes per partition per fetch. Not a cap on record size: the broker returns a partition's first
# record batch whole even when it is larger (KIP-74), so a 16 MiB record (topics.yaml) still reaches
# the worker to be dead-lettered. Kept small because Faust hands each fetch to the agents in one
# pass: 17 MiB of compressed backlog (~600k records) fetched at once kept niche-events, and every
# other topic, waiting until ingest had read the whole backlog.
MAX_FETCH_BYTES = 64 * 1024
# Per RocksDB store (one per table partition): Faust's defaults (64 MiB write buffers, three of
# them, a 2 GiB block cache each) let a worker with 30-odd stores grow to gigabytes. The block
# cache and the memtables' total are the worker's, shared by all stores (streams.stores,
# C2M_STORE_MEMORY_MB); a store's write buffer size is only where it flushes before that total.
# 10 bits per key in the bloom filters (Faust's default, 3, passes ~24% of absent keys): nearly every
# dedupe lookup is for an id the store has not seen, and each false positive reads a data block
# into the shared cache.
STORE_OPTIONS = {"write_buffer_size": 8 * 1024 * 1024, "max_write_buffer_number": 2, "bloom_filter_size": 10}

settings = Settings.from_env()
TOPOLOGY = topology.load(settings.topics_file)
PARTITIONS = TOPOLOGY.topic(CLICKSTREAM).partitions
BUCKET_MS = settings.bucket_seconds * 1000
# Buckets close on event time a little after they end, so events in flight still count in theirs.
GRACE_MS = min(BUCKET_MS // 10, 30_000)
# The wall clock closes buckets only while the stream is live (a replay of old events must not
# make the engine close a year of empty buckets).
LIVE_WITHIN_MS = 2 * BUCKET_MS + 60_000
log = logging.getLogger(__name__)

app = faust.App(
    settings.app_id,
    broker=settings.faust_broker,
    broker_credentials=settings.faust_credentials(),
    store=stores.url(settings.store_memory_mb),  # RocksDB, one memory bound for all stores
    # per app id, as Kafka Streams' state.dir/application.id: another app's stores are never reused
    datadir=str(settings.data_dir / f"{settings.app_id}-data"),
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
    # How long a dead worker's partitions wait before the group hands them to the others
    # (Kafka's own default, 45 s; Faust's is 60 s).
    broker_session_timeout=settings.session_timeout_seconds,
    # Changelog writes and repartitioned messages come in bursts of hundreds per batch: 5 ms of
    # linger sends them in a few produce requests rather than one each.
    producer_linger=0.005,
    # Faust 0.15.3 commits offsets no agent processed around rebalances (streams.faust_fixes; importing
    # it also puts its consumer in place).
    Event=faust_fixes.Event,
)
# Faust's own metrics under the c2m_ prefix whatever the app id, so dashboards and alerts match.
setup_prometheus_sensors(app, pattern="/metrics", name_prefix="c2m")

raw = {"key_serializer": "raw", "value_serializer": "raw"}
NICHE_EVENTS = f"{settings.app_id}-niche-events"
niche_events = app.topic(NICHE_EVENTS, internal=True, partitions=PARTITIONS, **raw)
DEAD_LETTER = "c2m.dead-letter"
dead_letters = app.topic(DEAD_LETTER, **raw)
catalog_source = app.topic(CATALOG, **raw)
factory_status = app.topic(FACTORY_STATUS, **raw)
group_outcomes = app.topic(GROUP_OUTCOMES, **raw)
# One partition: the capacity desk is the single writer of the capacity book.
capacity_topic = app.topic(f"{settings.app_id}-capacity", internal=True, partitions=1, **raw)
trigger_topics = {f.id: app.topic(topology.trigger_topic(f.id), **raw) for f in TOPOLOGY.factories}

# Per-niche state, co-partitioned with niche_events: one record per niche (counters, plan, groups
# and the ledger of what it applied; streams.niche_records), values in the pure models' to_dict()
# forms. JSON keys as well as values: with the app's default raw key codec, keys read back from
# the changelog after recovery would be bytes where the live path wrote str.
_json = faust.Schema(key_serializer="json", value_serializer="json")
niches_table = app.Table("niches", partitions=PARTITIONS, schema=_json, options=STORE_OPTIONS)
# Model checkpoints (models.checkpoint blobs): niche key -> its state, POOLED_PREFIX<p> -> the pooled model.
# Base64 in JSON: Faust recovers a changelog with a serializer derived from the table's value type
# (json for anything but a faust Record), whatever schema wrote it, so raw bytes would not come back.
models_table = app.Table("models", partitions=PARTITIONS, schema=_json, options=STORE_OPTIONS)
# event_id -> [where it was first read (streams.ledger.source_mark), when]: a repeat within the
# dedupe window is a duplicate. Not a Faust windowed table: that one keeps every key of every
# live window in memory for its expiry (memory growing with the events of two windows) and costs
# two lookups per event. Here RocksDB's TTL drops old ids from disk and a compact,delete changelog
# with the same retention drops them from Kafka; the stored time decides in between.
DEDUPE_S = settings.dedupe_window_seconds
# A MarkTable (streams.marks): marks go to the local store at once and to the changelog once per
# batch, one record per partition, not one per event.
seen_table = mark_table(app, "seen", retention_s=2 * DEDUPE_S, partitions=PARTITIONS, schema=_json,
                        options={**STORE_OPTIONS, "ttl": 2 * DEDUPE_S})
# sku -> validated attrs, on every worker: ingest fills in attributes events leave out.
catalog_table = app.GlobalTable("catalog", partitions=TOPOLOGY.topic(CATALOG).partitions, schema=_json,
                                options=STORE_OPTIONS)
# The capacity book, factory id -> CapacityBook.factory_state: written by the desk, read by all
# workers as the view they route on.
capacity_table = app.GlobalTable("capacity", partitions=1, schema=_json, options=STORE_OPTIONS)
# trigger id -> {"revision", "body", "closed"}: what the desk published, co-partitioned with it.
published_table = app.Table("published", partitions=1, schema=_json, options=STORE_OPTIONS)


def _store_record(niche_key: str, record: dict[str, Any]) -> None:
    """Write a niche's record with an event of its partition, so its changelog is co-partitioned."""
    event = LAST_EVENT.get(PARTITION_OF.get(niche_key, -1))
    if event is None:
        log.warning("no event of the partition of niche %s yet: its state write is dropped", niche_key)
        return
    with acting_for(event):
        niches_table[niche_key] = record


RECORDS = NicheRecords(niches_table, _store_record, keep_closed_ms=2 * DEDUPE_S * 1000)
ENGINE = DemandEngine(EngineConfig(bucket_ms=BUCKET_MS), loader=lambda key: _load_niche(key))
STAGE = NicheStage(ENGINE, TOPOLOGY.factories, RECORDS.read,
                   PlannerConfig(service_level=settings.service_level,
                                 min_revision_interval_ms=settings.revision_hold_ms))
PARTITION_OF: dict[str, int] = {}  # niche key -> its niche-events partition
LAST_EVENT: dict[int, EventT] = {}  # partition -> its latest event: the context of writes made for it


@dataclass
class Progress:
    """What this worker process has done once (engine restore, group scan) and when it last checkpointed."""

    engine_checked: bool = False
    engine_restored: bool = False
    groups_tracked: bool = False
    checkpointed_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    desk: CapacityDesk | None = None
    niche_behind_s: float = 0.0  # how old the niche agent's last batch was when it got it (the intake's cue)


PROGRESS = Progress()


def internal_topic_specs() -> list[topology.TopicSpec]:
    """The topics Faust would declare for this app (repartition and changelogs), as it would.

    Faust creates them while the consumer group first forms; one created a moment too late is
    "ignored" by that first assignment (a GlobalTable then never finishes recovery, an agent owns
    no partitions). The worker creates them before Faust starts, which closes that race.
    """
    rf = TOPOLOGY.topic(CLICKSTREAM).replication_factor
    specs = []
    for topic in [niche_events, capacity_topic, *(t.changelog_topic for t in app.tables.values())]:
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


@app.task
async def ingest_task() -> None:
    """Input records, batch by batch, through the pure ingest step into per-niche messages
    (streams.intake says why this reads with confluent-kafka rather than as a Faust agent)."""
    await app.tables.recovery.completed.wait()  # the catalog global table fills in attributes
    intake = Intake(settings, [CLICKSTREAM, ORDERS], app.monitor)
    async for records in intake.batches(INGEST_BATCH, BATCH_WITHIN_S, lambda: PROGRESS.niche_behind_s):
        now_ms = int(time.time() * 1000)
        batch = ingest(records, now_ms, TOPOLOGY.niche_attributes, TOPOLOGY.size_bands, catalog_table,
                       settings.max_record_bytes)
        for key, value in batch.niche_messages.items():
            intake.produce(NICHE_EVENTS, key.encode(), value)
        for topic, value in batch.dead_letters:
            intake.produce(DEAD_LETTER, topic.encode(), value)
            metrics.DEAD_LETTERS.labels(topic).inc()
        for (topic, etype, outcome), n in batch.outcomes.items():
            metrics.EVENTS.labels(topic, type_label(etype), outcome).inc(n)
        for ts in batch.event_ts:
            metrics.EVENT_AGE.observe(max(0.0, now_ms - ts) / 1000)


async def _validated(events: list[EventT], parse: Callable[[bytes | None, int, int], Any],
                     topic: str) -> AsyncIterator[tuple[EventT, Any]]:
    """The events that parse, with what they parse to; the others go to the dead-letter topic."""
    now_ms = int(time.time() * 1000)
    for event in events:
        parsed = parse(event.value, now_ms, settings.max_record_bytes)
        if isinstance(parsed, Rejection):
            msg = event.message
            await dead_letters.send(key=topic.encode(), value=dead_letter(
                parsed.reason, msg.topic, msg.partition, msg.offset, event.value))
            metrics.DEAD_LETTERS.labels(topic).inc()
            continue
        yield event, parsed


@app.agent(catalog_source)
async def catalog_agent(stream: faust.StreamT) -> None:
    """Validate catalog records into the global table; a bad one is dead-lettered, never applied."""
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        async for event, parsed in _validated(events, parse_catalog, CATALOG):
            with acting_for(event):
                catalog_table[parsed.sku] = parsed.attrs


@app.agent(niche_events)
async def niche_agent(stream: faust.StreamT) -> None:
    """Every message about a niche, in its partition's order: event rows, verdicts, factory answers.

    A message the niche's ledger already holds is a replay and is skipped whole; event rows the
    ingest step re-sent are skipped one by one (streams.ledger). The niche's record, ledger
    included, is written once at the end of the batch."""
    async for events in stream.take_events(BATCH, within=FAST_WITHIN_S):
        PROGRESS.niche_behind_s = time.time() - min(event.message.timestamp for event in events)
        _restore_engine()
        eff = Effects()
        outcomes: Counter[tuple[str, str, str]] = Counter()
        now_ms = int(time.time() * 1000)
        for event in events:
            key = event.key.decode()
            _remember(key, event)
            ledger = RECORDS.ledger(key)
            msg = orjson.loads(event.value)
            if ledger.replayed(event.message.offset):
                if "events" in msg:
                    _replayed_rows(msg, event, now_ms, outcomes)
                RECORDS.touch(key)
                continue
            if "events" in msg:
                STAGE.on_events(key, msg["niche"], _fresh_rows(msg, ledger, event, now_ms, outcomes), eff)
            elif "verdict" in msg:
                STAGE.on_verdict(key, msg["verdict"], now_ms, eff)
            elif "status" in msg:
                status = parse_factory_status(orjson.dumps(msg["status"]), now_ms)
                if not isinstance(status, Rejection):
                    STAGE.on_status(key, status, msg.get("group_id"), now_ms, eff)
            ledger.offset = event.message.offset
            RECORDS.set_ledger(key, ledger)
            _apply(eff)
        for (topic, etype, outcome), n in outcomes.items():
            metrics.EVENTS.labels(topic, type_label(etype), outcome).inc(n)
        STAGE.plan_touched(eff)
        STAGE.advance(STAGE.watermark - GRACE_MS, eff)
        _apply(eff)
        seen_table.flush()  # the batch's dedupe marks: one changelog record per partition
        RECORDS.flush(now_ms)
        await _send(eff)


def _remember(key: str, event: EventT) -> None:
    partition = event.message.partition
    PARTITION_OF[key] = partition
    LAST_EVENT[partition] = event


def _fresh_rows(msg: dict[str, Any], ledger: Ledger, event: EventT, now_ms: int,
                outcomes: Counter[tuple[str, str, str]]) -> list[list[Any]]:
    """The rows of a niche message to count: neither re-sent (the ledger) nor upstream duplicates
    (the dedupe table). Each counted row's event_id is marked with where it was read."""
    new, resent = ledger.split(msg["events"], msg.get("src"))
    fresh = []
    with acting_for(event):
        for row, src in new:
            first = _first_seen(row[0], now_ms)
            duplicate = is_duplicate(first, src)
            outcomes[(source_topic(row[1]), row[1], "duplicate" if duplicate else "ok")] += 1
            if not duplicate:
                fresh.append(row)
                if not first:
                    seen_table.mark(row[0], [source_mark(src) if src else "?", now_ms])
        _mark(resent, now_ms, outcomes)
    return fresh


def _replayed_rows(msg: dict[str, Any], event: EventT, now_ms: int,
                   outcomes: Counter[tuple[str, str, str]]) -> None:
    """A message the niche already applied: its rows count as duplicates, and their dedupe marks
    are written again in case the crash that caused the replay lost them."""
    sources = msg.get("src")
    rows = msg["events"]
    if sources is None or len(sources) != len(rows):
        for row in rows:
            outcomes[(source_topic(row[1]), row[1], "duplicate")] += 1
        return
    with acting_for(event):
        _mark([(row, (str(p), int(o))) for row, (p, o) in zip(rows, sources, strict=True)], now_ms, outcomes)


def _mark(rows: list[tuple[list[Any], Source]], now_ms: int, outcomes: Counter[tuple[str, str, str]]) -> None:
    for row, src in rows:
        outcomes[(source_topic(row[1]), row[1], "duplicate")] += 1
        if not _first_seen(row[0], now_ms):
            seen_table.mark(row[0], [source_mark(src), now_ms])


def _first_seen(event_id: str, now_ms: int) -> str | None:
    """The dedupe mark of event_id if it was seen within the dedupe window."""
    seen = seen_table.first_seen(event_id)
    if not seen or now_ms - int(seen[1]) >= DEDUPE_S * 1000:
        return None
    return str(seen[0])


def _apply(eff: Effects) -> None:
    """Move the stage's state changes into the niche records (written at the end of the batch)."""
    for table, key, value, niche_key in eff.writes:
        RECORDS.write(table, key, value, niche_key)
    eff.written()


async def _send(eff: Effects) -> None:
    """Proposals to the capacity desk, group outcomes out, and the metrics of what happened."""
    for trig, niche_key in eff.proposals:
        await capacity_topic.send(key=trig.trigger_id.encode(), value=orjson.dumps(
            {"proposal": trig.to_dict(), "niche_key": niche_key}))
    for outcome in eff.outcomes:
        await group_outcomes.send(key=str(outcome["group_id"]).encode(), value=orjson.dumps(outcome))
        metrics.GROUP_OUTCOMES.labels(outcome["outcome"]).inc()
    if eff.drift:
        metrics.DRIFT_DETECTED.inc(len(eff.drift))
    if eff.closed:
        _report_forecasts()
    eff.proposals.clear()
    eff.outcomes.clear()
    eff.drift.clear()
    eff.closed.clear()


def _report_forecasts() -> None:
    scores = ENGINE.report()
    n = sum(sc.n for sc in scores.values())
    for hours, sc in scores.items():
        if sc.n:
            metrics.FORECAST_MAE.labels(f"{hours * HOUR_MS / BUCKET_MS:g}").set(sc.mae)
    if n:
        metrics.FORECAST_P90_COVERAGE.set(sum(sc.p90_coverage * sc.n for sc in scores.values() if sc.n) / n)


@app.agent(capacity_topic)
async def capacity_agent(stream: faust.StreamT) -> None:
    """The one writer of the capacity book (its topic has one partition): admits proposals and
    publishes them, passes factory answers through the book on to their niche."""
    async for events in stream.take_events(BATCH, within=DESK_WITHIN_S):
        desk = _desk()
        now_ms = int(time.time() * 1000)
        for event in events:
            msg = orjson.loads(event.value)
            if "proposal" in msg:
                out = desk.propose(msg["proposal"], msg["niche_key"], now_ms)
            else:
                status = parse_factory_status(orjson.dumps(msg["status"]), now_ms)
                if isinstance(status, Rejection):
                    continue
                out = desk.status(status, msg["status"])
            with acting_for(event):
                for fid in out.factories:
                    capacity_table[fid] = desk.book.factory_state(fid)
                for tid, record in out.published.items():
                    published_table[tid] = record
            for body in out.publish:
                await publish_trigger(body)
            for niche_key, reply in out.replies:
                await niche_events.send(key=niche_key.encode(), value=orjson.dumps(reply))
        for f in TOPOLOGY.factories:
            metrics.FACTORY_OPEN_UNITS.labels(f.id).set(desk.book.committed(f.id))


def _desk() -> CapacityDesk:
    """The desk, built once from the book's table (recovered before the agent starts)."""
    if PROGRESS.desk is None:
        book = CapacityBook.from_dict(dict(capacity_table.items()))
        PROGRESS.desk = CapacityDesk(book, TOPOLOGY.factories, published_table.get)
    return PROGRESS.desk


@app.agent(factory_status)
async def status_agent(stream: faust.StreamT) -> None:
    """Validate factory answers and hand them to the capacity desk; a bad one is dead-lettered."""
    async for events in stream.take_events(BATCH, within=FAST_WITHIN_S):
        async for _, parsed in _validated(events, parse_factory_status, FACTORY_STATUS):
            await capacity_topic.send(key=parsed.factory_id.encode(), value=orjson.dumps(
                {"status": {k: v for k, v in asdict(parsed).items() if v is not None}}))


async def publish_trigger(body: dict[str, Any]) -> None:
    """Publish a trigger as booked: its emitted_ts is the event time of the decision, so a replay
    after a crash re-publishes identical content for the same (trigger_id, revision)."""
    kind, factory = str(body["kind"]), str(body["factory_id"])
    source_ts_ms = int(body["emitted_ts"])

    def delivered(_: Any) -> None:
        metrics.TRIGGER_LATENCY.labels(kind).observe(max(0, time.time() * 1000 - source_ts_ms) / 1000)

    await trigger_topics[factory].send(key=str(body["trigger_id"]).encode(), value=orjson.dumps(body),
                                       callback=delivered)
    metrics.TRIGGERS.labels(factory, body["action"], kind).inc()
    if body["action"] != "cancel":
        metrics.TRIGGER_UNITS.labels(factory).inc(int(body["units"]))


@app.timer(interval=allocator.TRIM_EVERY_S)
async def trim_malloc() -> None:
    """Give the free pages in glibc's heap back to the OS (streams.allocator says why)."""
    await allocator.trim_off_loop()


@app.timer(interval=settings.plan_tick_seconds)
async def planning_tick() -> None:
    """Time passing without events: refresh the capacity view, close buckets on the wall clock while
    the stream is live, expire groups, checkpoint and evict models."""
    if not LAST_EVENT:
        return
    now_ms = int(time.time() * 1000)
    STAGE.book = CapacityBook.from_dict(dict(capacity_table.items()))
    eff = Effects()
    open_b = ENGINE.open_bucket
    if open_b is not None and now_ms - open_b * BUCKET_MS < LIVE_WITHIN_MS:
        STAGE.advance(now_ms - GRACE_MS, eff)
    if not PROGRESS.groups_tracked:
        for record in niches_table.values():
            for gid, raw in (record.get(GROUPS) or {}).items():
                STAGE.track(gid, raw)
        PROGRESS.groups_tracked = True
    STAGE.tick_groups(now_ms, eff)
    STAGE.plan_held(now_ms, eff)
    _apply(eff)
    RECORDS.flush(now_ms)
    await _send(eff)
    if now_ms - PROGRESS.checkpointed_ms >= settings.checkpoint_seconds * 1000:
        PROGRESS.checkpointed_ms = now_ms
        _store_models(ENGINE.checkpoint())
        _store_models(ENGINE.evict(settings.max_resident_niches))
        pooled = base64.b64encode(ENGINE.pooled_checkpoint()).decode()
        for partition, event in LAST_EVENT.items():
            with acting_for(event):
                models_table[f"{POOLED_PREFIX}{partition}"] = pooled


def _store_models(blobs: dict[str, bytes]) -> None:
    for key, blob in blobs.items():
        event = LAST_EVENT.get(PARTITION_OF.get(key, -1))
        if event is not None:
            with acting_for(event):
                models_table[key] = base64.b64encode(blob).decode()


def _restore_engine() -> None:
    """Before the first batch: continue from the pooled model a previous owner of one of this
    worker's partitions checkpointed (niches come back one by one through the loader)."""
    global ENGINE
    if PROGRESS.engine_checked:
        return
    PROGRESS.engine_checked = True
    owned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == NICHE_EVENTS)
    for partition in owned:
        blob = _load_niche(f"{POOLED_PREFIX}{partition}")
        if blob is not None:
            try:
                ENGINE = DemandEngine.restore(blob, loader=_load_niche)
            except CheckpointError as exc:
                log.warning("pooled model checkpoint not used: %s", exc)
                continue
            STAGE.engine = ENGINE
            PROGRESS.engine_restored = True
            return


def _load_niche(key: str) -> bytes | None:
    blob = models_table.get(key)
    return base64.b64decode(blob) if isinstance(blob, str) else None


@app.on_partitions_revoked.connect
def _on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
    """Checkpoint the models of revoked partitions while they are still ours, and forget them."""
    gone = {tp.partition for tp in revoked if tp.topic == NICHE_EVENTS}
    if not gone:
        return
    try:
        _store_models(ENGINE.checkpoint())
    except Exception:  # a failed checkpoint loses only model progress since the last one
        log.exception("model checkpoint on revocation failed")
    ENGINE.release_all()
    for key in [k for k, p in PARTITION_OF.items() if p in gone]:
        del PARTITION_OF[key]
        STAGE.recent.pop(key, None)
        STAGE.held.pop(key, None)
    for gid in [g for g, k in STAGE.open_groups.items() if k not in PARTITION_OF]:
        del STAGE.open_groups[gid]
    for partition in gone:
        LAST_EVENT.pop(partition, None)
    PROGRESS.groups_tracked = False


@app.timer(interval=10.0)
async def count_niches() -> None:
    metrics.NICHES_ACTIVE.set(len(niches_table))
    # the native memory RSS shows and tracemalloc not; the shared block cache counted once
    for kind, n in stores.memory_usage(table.data for table in app.tables.values()).items():
        metrics.STORE_MEMORY.labels(kind).set(n)


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
                     "broker_checked_ts": broker_reachable["checked_ts"],
                     "models": {"resident_niches": ENGINE.resident(), "niche_updates": ENGINE.updates,
                                "open_bucket": ENGINE.open_bucket, "restored": PROGRESS.engine_restored}})


@app.page("/api/niches")
async def niches_view(web: Any, request: Any) -> Any:
    """Niches of the partitions this worker owns, busiest first."""
    limit = api.clamp_limit(request.query.get("limit"))
    entries = (api.niche_entry(key, rec[DEMAND], rec.get(PLANS), _forecast(key, rec[DEMAND].get("niche")), BUCKET_MS)
               for key, rec in niches_table.items() if rec.get(DEMAND))
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


def _forecast(key: str, attrs: dict[str, str] | None) -> dict[str, Any]:
    """The engine's forecast over a 72 h lead time (in buckets of the planning clock) for the API."""
    fc = ENGINE.forecast(key, API_HORIZON_HOURS * BUCKET_MS / HOUR_MS, attrs or {})
    if fc is None:
        return {}
    return {**fc.to_dict(), "horizon_hours": API_HORIZON_HOURS, "drift": fc.drift}


dashboard.register(app, [f.id for f in TOPOLOGY.factories])
