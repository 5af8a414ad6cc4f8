"""Offline replay of an event log through the worker's own code path, without Kafka.

JSONL lines as `c2m simulate --out` writes them ({"topic", "key", "value"}) go, in timestamp
order, through `streams.ingest.ingest` (validation, niche keys, per-niche rows), into a
`DemandEngine` (the same one the worker drives), closing buckets on event time. A `Scoreboard`
scores the engine's forecasts and the baselines on the same points; a planner plugs in through
`ReplayHook` (`streams.plan_replay.PlanReplay` is the one `c2m backtest` uses): it gets every
niche's rows and every bucket close, and its summary is the result's "inventory".
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from models.drift import DriftEvent
from models.engine import Advance, DemandEngine, EngineConfig
from models.evaluation import BASELINES, Scoreboard
from streams import topology
from streams.config import Settings
from streams.errors import UserError
from streams.ingest import CLICKSTREAM, ORDERS, RawRecord, ingest
from streams.scenarios import truth_path

REORDER_MS = 300_000  # a log may be out of order by this much (partitions interleaved); later is late
BATCH = 5000
MAX_RECORD_BYTES = 65536


class ReplayHook(Protocol):
    """What a planner plugs into a replay: every niche's rows as the engine sees them (so orders
    can meet stock at their own timestamps), a call after each advance that closed buckets (with
    the end of the last one, the engine and what the advance reported), summarised at the end
    under "inventory"."""

    def on_rows(self, niche_key: str, niche: dict[str, str], rows: list[list[Any]]) -> None: ...

    def on_close(self, bucket_end_ms: int, engine: DemandEngine, advance: Advance) -> None: ...

    def summary(self) -> dict[str, Any]: ...


@dataclass
class ReplayStats:
    """Counters of one replay, for the report and the progress bar."""

    bytes_read: int = 0
    events: int = 0
    rejected: int = 0
    skipped: int = 0
    niche_updates: int = 0
    close_seconds: float = 0.0  # in bucket closes: the model updates
    seconds: float = 0.0
    drift: list[DriftEvent] = field(default_factory=list)


def _records(path: Path, stats: ReplayStats) -> Iterator[tuple[int, int, RawRecord]]:
    """(ts, line number, record) for every input-topic line; other topics are not the worker's."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise UserError(f"events file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not an events file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            stats.bytes_read += len(line)
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise UserError(f"{path}:{lineno}: not JSON; expected one {{\"topic\", \"key\", \"value\"}} "
                                "object per line") from None
            if not isinstance(obj, dict) or "topic" not in obj or "value" not in obj:
                raise UserError(f"{path}:{lineno}: expected an object with \"topic\" and \"value\"")
            topic, value = obj["topic"], obj["value"]
            if topic not in (CLICKSTREAM, ORDERS):
                stats.skipped += 1
                continue
            ts = value.get("ts") if isinstance(value, dict) else None
            raw = value.encode() if isinstance(value, str) else orjson.dumps(value)
            yield (ts if isinstance(ts, int) and not isinstance(ts, bool) else 0), lineno, RawRecord(topic, 0, lineno,
                                                                                                      raw)


def _in_order(records: Iterator[tuple[int, int, RawRecord]]) -> Iterator[tuple[int, RawRecord]]:
    """Timestamp order within a REORDER_MS window; a record without a usable ts keeps its place
    (ingest rejects it, as the worker would)."""
    heap: list[tuple[int, int, RawRecord]] = []
    high = 0
    for ts, lineno, rec in records:
        eff = ts if ts > 0 else high
        high = max(high, eff)
        heapq.heappush(heap, (eff, lineno, rec))
        while heap and heap[0][0] <= high - REORDER_MS:
            t, _, r = heapq.heappop(heap)
            yield t, r
    while heap:
        t, _, r = heapq.heappop(heap)
        yield t, r


def replay(path: Path, config: EngineConfig | None = None, hook: ReplayHook | None = None,
           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Replay `path`; returns the figures `c2m backtest --json` prints. `progress` gets (bytes
    read, file size) now and then."""
    cfg = config or EngineConfig()
    topo = topology.load(Settings.from_env().topics_file)  # the niche definition the worker uses
    engine = DemandEngine(cfg)
    board = Scoreboard(cfg.bucket_ms, cfg.horizons, cfg.ahead_buckets, season=cfg.season_buckets,
                       window=cfg.season_buckets)
    truth = _truth(path)
    if truth is not None and truth.get("bucket_ms") == cfg.bucket_ms:
        board.know_truth({k: np.asarray(v["expected_units"], dtype=np.float64) for k, v in truth["niches"].items()},
                         truth["start_ms"] // cfg.bucket_ms)
    stats = ReplayStats()
    started = time.perf_counter()
    batch: list[RawRecord] = []
    batch_bucket = None
    batch_ts = 0
    size = path.stat().st_size if path.is_file() else 0
    for ts, rec in _in_order(_records(path, stats)):
        bucket = ts // cfg.bucket_ms
        if batch and (bucket != batch_bucket or len(batch) >= BATCH):
            _run(batch, batch_ts, topo, engine, board, hook, stats)
            batch = []
            if progress is not None:
                progress(stats.bytes_read, size)
        if not batch:
            batch_bucket = bucket
            _close(engine, board, hook, stats, bucket * cfg.bucket_ms)
        batch.append(rec)
        batch_ts = max(batch_ts, ts)
    if batch:
        _run(batch, batch_ts, topo, engine, board, hook, stats)
    # close the buckets that ended with the log; the last, partial one stays open
    _close(engine, board, hook, stats, batch_ts)
    if stats.events == 0:
        raise UserError(f"{path}: no clickstream or order events")
    stats.seconds = time.perf_counter() - started
    return _result(engine, board, stats, hook, truth)


def _close(engine: DemandEngine, board: Scoreboard, hook: ReplayHook | None, stats: ReplayStats, now_ms: int) -> None:
    active_before = engine.updates
    t0 = time.perf_counter()
    adv = engine.advance(now_ms)
    stats.close_seconds += time.perf_counter() - t0
    stats.niche_updates += engine.updates - active_before
    stats.drift.extend(adv.drift)
    by_close: dict[int, list[Any]] = {}
    for sc in adv.scored:
        by_close.setdefault(sc.issued + sc.horizon, []).append(sc)
    for b in adv.closed:
        for sc in by_close.get(b, ()):
            board.add(sc)
        board.closed(b)
    if hook is not None and adv.closed:
        hook.on_close((adv.closed[-1] + 1) * engine.config.bucket_ms, engine, adv)


def _run(batch: list[RawRecord], now_ms: int, topo: topology.Topology, engine: DemandEngine, board: Scoreboard,
         hook: ReplayHook | None, stats: ReplayStats) -> None:
    """One batch through ingest (now = the batch's newest event: replay time, not wall time)."""
    out = ingest(batch, now_ms, topo.niche_attributes, topo.size_bands, {}, MAX_RECORD_BYTES)
    stats.events += len(batch)
    stats.rejected += len(out.dead_letters)
    for key, body in out.niche_messages.items():
        msg = orjson.loads(body)
        engine.observe(key, msg["niche"], msg["events"])
        open_bucket = engine.open_bucket
        assert open_bucket is not None  # set by the first observe
        board.observe(key, msg["events"], open_bucket)
        if hook is not None:
            hook.on_rows(key, msg["niche"], msg["events"])


def _truth(path: Path) -> dict[str, Any] | None:
    """The ground truth a scenario writes beside its log, when there is one."""
    tpath = truth_path(path)
    if not tpath.is_file():
        return None
    try:
        truth = orjson.loads(tpath.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise UserError(f"{tpath}: not a readable scenario truth file") from None
    return truth if isinstance(truth, dict) and "niches" in truth and "start_ms" in truth else None


def _result(engine: DemandEngine, board: Scoreboard, stats: ReplayStats, hook: ReplayHook | None,
            truth: dict[str, Any] | None) -> dict[str, Any]:
    out = board.result()
    out["drift"] = _drift_summary(engine, stats.drift, truth)
    if hook is not None:
        out["inventory"] = hook.summary()
    out["replay"] = {
        "events": stats.events, "rejected": stats.rejected, "other_topics": stats.skipped,
        "late_events": engine.late_events, "niches": engine.resident(), "niche_updates": stats.niche_updates,
        "update_us": round(stats.close_seconds / stats.niche_updates * 1e6, 1) if stats.niche_updates else None,
        "seconds": round(stats.seconds, 1), "bucket_hours": engine.config.bucket_ms / 3_600_000,
    }
    return out


def _drift_summary(engine: DemandEngine, events: list[DriftEvent], truth: dict[str, Any] | None) -> dict[str, Any]:
    """Drift events; with a scenario's truth, how soon they caught its conversion changes (within
    48 h) and how often they fired on niches whose conversion never changed."""
    out: dict[str, Any] = {"events": len(events), "niches": len({e.niche for e in events})}
    if truth is None:
        return out
    changes = {c["category"]: truth["start_ms"] + int(c["at_hour"] * 3_600_000) for c in truth.get("shocks", [])}
    niches = truth["niches"]
    shocked = {k for k, v in niches.items() if v["attrs"].get("category") in changes}
    first_hit: dict[str, int] = {}
    for e in events:
        if e.niche in shocked:
            at = changes[niches[e.niche]["attrs"]["category"]]
            if at <= e.ts_ms <= at + 48 * 3_600_000:
                first_hit.setdefault(e.niche, e.ts_ms - at)
    if shocked:
        delays = sorted(first_hit.values())
        out["shocked_niches"] = len(shocked)
        out["detected_within_48h"] = round(len(delays) / len(shocked), 4)
        out["median_delay_hours"] = round(delays[len(delays) // 2] / 3_600_000, 1) if delays else None
    quiet = max(1, len(niches) - len(shocked))
    elsewhere = sum(1 for e in events if e.niche not in shocked)
    out["alarms_per_niche_day_elsewhere"] = round(elsewhere / (quiet * max(truth["days"], 1.0)), 4)
    return out


def render(result: dict[str, Any], console: Console) -> None:
    """The human-readable report of `c2m backtest`."""
    table = Table(title=f"MAE of units over the horizon (scored after a {result['warmup_hours']:g} h warm-up)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("horizon", "model", "last", "seasonal", "mov.avg", "vs best", "P90 cov"):
        table.add_column(col, justify="right", no_wrap=True)
    has_truth = any("truth_intensity_mae" in h for h in result["horizons"].values())
    if has_truth:
        table.add_column("truth*", justify="right", no_wrap=True)
    for hours, h in result["horizons"].items():
        if not h["n"]:
            table.add_row(f"{hours} h", *["-"] * (6 + has_truth))
            continue
        best = min(h["baselines"].values())
        row = [f"{hours} h", f"{h['model_mae']:.2f}", *(f"{h['baselines'][b]:.2f}" for b in BASELINES),
               f"{(h['model_mae'] / best - 1) * 100:+.1f}%" if best else "-", f"{h['p90_coverage']:.3f}"]
        if has_truth:
            row.append(f"{h.get('truth_intensity_mae', float('nan')):.2f}")
        table.add_row(*row)
    console.print(table)
    if has_truth:
        console.print("* forecasting with the scenario's true intensity: the error no model can beat")
    cs = result["cold_start"]
    if cs["scored"]:
        console.print(f"new niches: {cs['new_niches']}; first-day forecast within 50% for "
                      f"{cs['within_50pct']:.0%} of {cs['scored']}, median error {cs['median_ape']:.0%}, "
                      f"forecast/actual {cs['forecast_over_actual']:.2f}")
    else:
        console.print(f"new niches: {cs['new_niches']} (none scored)")
    d = result["drift"]
    line = f"drift: {d['events']} detections on {d['niches']} niches"
    if "shocked_niches" in d:
        delay = d["median_delay_hours"]
        line += (f"; conversion changes caught within 48 h in {d['detected_within_48h']:.0%} of "
                 f"{d['shocked_niches']} niches (median {delay if delay is not None else '-'} h)")
    if "alarms_per_niche_day_elsewhere" in d:
        line += f"; {d['alarms_per_niche_day_elsewhere']:.3f} alarms per niche-day elsewhere"
    console.print(line)
    if "inventory" in result:
        _render_inventory(result["inventory"], console)
    r = result["replay"]
    console.print(f"replayed {r['events']} events ({r['rejected']} rejected, {r['late_events']} late) into "
                  f"{r['niches']} niches in {r['seconds']} s; {r['niche_updates']} niche-bucket updates at "
                  f"{r['update_us']} us each")


INVENTORY_ROWS = (("produced", "produced"), ("sold", "sold"), ("unsold", "unsold (% of produced)"),
                  ("stockouts", "stockouts"), ("fill_rate", "fill rate"))


def _render_inventory(inv: dict[str, Any], console: Console) -> None:
    """Planner and make-to-stock side by side (the definitions are in streams.plan_replay)."""
    policies = [p for p in ("planner", "make_to_stock") if p in inv]
    table = Table(title="inventory at the end of the log", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("units")
    for p in policies:
        table.add_column(p.replace("_", "-"), justify="right", no_wrap=True)

    def cell(fig: dict[str, Any], key: str) -> str:
        value = fig.get(key)
        if value is None:
            return "-"
        if key == "fill_rate":
            return f"{value:.1%}"
        if key == "unsold" and fig.get("produced"):
            return f"{value} ({value / fig['produced']:.1%})"
        return str(value)

    for key, label in INVENTORY_ROWS:
        table.add_row(label, *(cell(inv[p], key) for p in policies))
    console.print(table)
    console.print("sold: delivered by the end, at once or to a waiting order when a batch landed; "
                  "production still in flight at the end is left out")
