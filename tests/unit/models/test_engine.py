"""The demand engine: delayed labels (nothing from the future leaks), forecasts, eviction with
reload, cold start, drift events, progressive-validation report."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from models.engine import HOUR_MS, DemandEngine, EngineConfig
from models.features import NAMES

START = 1_764_000_000_000 // HOUR_MS * HOUR_MS
B0 = START // HOUR_MS  # the engine numbers buckets from the epoch
ATTRS = {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": "CN-GD"}
OTHER = {"category": "jeans", "style": "straight", "color": "blue", "size": "L", "region": "CN-ZJ"}
SMALL = EngineConfig(horizons=(2, 4), min_learned=1, warm_buckets=3)


def bucket_rows(bucket: int, views: int, carts: int, units: int, tag: str = "") -> list[list[Any]]:
    """One bucket's ingest rows: views and carts spread over the hour, orders of one unit."""
    t0 = START + bucket * HOUR_MS
    rows: list[list[Any]] = []
    for i in range(views):
        rows.append([f"v{tag}{bucket}-{i}", "view", t0 + 1000 * i, 0])
    for i in range(carts):
        rows.append([f"c{tag}{bucket}-{i}", "add_to_cart", t0 + 2000 * i + 1, 0])
    for i in range(units):
        rows.append([f"o{tag}{bucket}-{i}", "placed", t0 + 3000 * i + 2, 1])
    return rows


def traffic(bucket: int, seed: int = 0) -> tuple[int, int, int]:
    rng = random.Random(bucket * 7919 + seed)
    daily = 1.0 + 0.5 * math.sin(2 * math.pi * bucket / 24)
    views = int(40 * daily) + rng.randrange(10)
    carts = max(0, views // 8 + rng.randrange(-2, 3))
    return views, carts, max(0, carts // 3 + rng.randrange(-1, 2))


def feed(engine: DemandEngine, buckets: range, keys: dict[str, dict[str, str]] | None = None) -> None:
    """Observe every niche's bucket, then close it: the order a worker keeps."""
    for b in buckets:
        for n, (key, attrs) in enumerate((keys or {"a": ATTRS}).items()):
            engine.observe(key, attrs, bucket_rows(b, *traffic(b, n)))
        engine.advance(START + (b + 1) * HOUR_MS)


def weights(engine: DemandEngine) -> list[tuple[float, dict[str, float]]]:
    return [(m.intercept, m.weights) for m in engine.pooled.forecaster.models]


def raw(engine: DemandEngine, key: str = "a") -> np.ndarray:
    s = engine._slot[key]
    return engine._raw[s].copy()


# -- delayed labels ------------------------------------------------------------------------


def test_orders_ahead_of_the_clock_change_nothing_until_their_bucket_closes() -> None:
    """Poisoned orders for buckets that have not closed yet (early events keep their own bucket)
    leave the features, the predictions and the learned model exactly as they were."""
    clean, poisoned = DemandEngine(SMALL), DemandEngine(SMALL)
    feed(clean, range(30))
    feed(poisoned, range(30))
    future = bucket_rows(31, 0, 0, 0)
    future += [[f"poison-{i}", "placed", START + 31 * HOUR_MS + i, 10_000] for i in range(20)]
    future += [[f"poison-b-{i}", "placed", START + 32 * HOUR_MS + i, 10_000] for i in range(20)]
    poisoned.observe("a", ATTRS, future)  # bucket 31 and 32 events while bucket 30 is open
    for b in (30,):
        for e in (clean, poisoned):
            e.observe("a", ATTRS, bucket_rows(b, *traffic(b)))
    clean.advance(START + 31 * HOUR_MS)
    poisoned.advance(START + 31 * HOUR_MS)
    assert np.array_equal(raw(clean), raw(poisoned))
    assert weights(clean) == weights(poisoned)
    assert clean.forecast("a", 4) == poisoned.forecast("a", 4)
    # the moment bucket 31 closes, the poison is history: features and forecasts move
    clean.advance(START + 32 * HOUR_MS)
    poisoned.advance(START + 32 * HOUR_MS)
    assert not np.array_equal(raw(clean), raw(poisoned))


def test_a_label_is_learned_only_once_its_whole_horizon_has_closed() -> None:
    """The model learns (features of t, units of t+1..t+H) at the close of t+H, not before: two
    engines whose orders differ only in bucket 40 learn identically through the close of 39."""
    a, b = DemandEngine(SMALL), DemandEngine(SMALL)
    feed(a, range(40))
    feed(b, range(40))
    for e, units in ((a, 1), (b, 500)):
        e.observe("a", ATTRS, bucket_rows(40, 40, 5, units, tag="x"))
    assert weights(a) == weights(b)
    a.advance(START + 41 * HOUR_MS)
    b.advance(START + 41 * HOUR_MS)
    # bucket 40 closed: it is now the label of t = 38 (H = 2) and t = 36 (H = 4), learned once
    assert weights(a) != weights(b)


def test_labels_are_scored_against_the_forecast_issued_a_horizon_earlier() -> None:
    engine = DemandEngine(SMALL)
    feed(engine, range(10))
    issued = engine.forecast("a", 2)
    assert issued is not None
    engine.observe("a", ATTRS, bucket_rows(10, 40, 5, 3))
    first = engine.advance(START + 11 * HOUR_MS)
    engine.observe("a", ATTRS, bucket_rows(11, 40, 5, 4))
    second = engine.advance(START + 12 * HOUR_MS)
    assert not [s for s in first.scored if s.issued == B0 + 9 and s.horizon == 2]
    scored = [s for s in second.scored if s.issued == B0 + 9 and s.horizon == 2]
    assert len(scored) == 1
    assert scored[0].actual.tolist() == [7.0]
    assert scored[0].p50[0] == pytest.approx(issued.p50, rel=1e-6)
    assert scored[0].p90[0] == pytest.approx(issued.p90, rel=1e-6)


def test_late_events_count_in_the_open_bucket() -> None:
    engine = DemandEngine(SMALL)
    feed(engine, range(5))
    engine.observe("a", ATTRS, [["late", "placed", START + 1 * HOUR_MS, 3]])
    assert engine.late_events == 1
    s = engine._slot["a"]
    assert engine._units[s, (B0 + 5) % engine.ru] == 3


# -- forecasts -----------------------------------------------------------------------------


def test_forecasts_interpolate_between_model_horizons_and_never_shrink_with_the_horizon() -> None:
    engine = DemandEngine(SMALL)
    feed(engine, range(60))
    cfg = SMALL
    hours = [0.5, 1, cfg.horizon_hours[0], 3, cfg.horizon_hours[1], 8]
    fc = [engine.forecast("a", h) for h in hours]
    assert all(f is not None for f in fc)
    p50 = [f.p50 for f in fc if f]
    assert p50 == sorted(p50)
    assert all(f.p90 >= f.p50 >= 0 for f in fc if f)
    assert fc[4] and fc[4].model.startswith("river")


def test_cold_start_from_attributes_then_warm() -> None:
    engine = DemandEngine(SMALL)
    feed(engine, range(30))
    prior = engine.forecast("new-niche", 4, attrs=OTHER)
    assert prior is not None and prior.cold_start
    assert engine.forecast("never-seen", 4) is None
    assert "new-niche" not in engine  # asking does not create a niche
    feed(engine, range(30, 31), {"a": ATTRS, "new-niche": OTHER})
    fresh = engine.forecast("new-niche", 4)
    assert fresh is not None and fresh.cold_start
    feed(engine, range(31, 31 + SMALL.warm_buckets), {"a": ATTRS, "new-niche": OTHER})
    warm = engine.forecast("new-niche", 4)
    assert warm is not None and not warm.cold_start


def test_report_gives_mae_and_coverage_per_horizon() -> None:
    engine = DemandEngine(SMALL)
    assert all(math.isnan(s.mae) for s in engine.report().values())
    feed(engine, range(50))
    report = engine.report()
    assert list(report) == list(SMALL.horizon_hours)
    for score in report.values():
        assert score.n > 0
        assert score.mae >= 0
        assert 0 <= score.p90_coverage <= 1


# -- drift ---------------------------------------------------------------------------------


def test_a_conversion_collapse_raises_a_drift_event_and_flags_the_forecast() -> None:
    cfg = EngineConfig(horizons=(2, 4), min_learned=1)
    engine = DemandEngine(cfg)
    rng = random.Random(5)
    events = []
    for b in range(400):
        carts = 20
        rate = 0.5 if b < 250 else 0.05  # checkout breaks at bucket 250
        units = sum(rng.random() < rate for _ in range(carts))
        engine.observe("a", ATTRS, bucket_rows(b, 100, carts, units))
        events += engine.advance(START + (b + 1) * HOUR_MS).drift
    before = [e for e in events if e.bucket < B0 + 250]
    after = [e for e in events if B0 + 250 <= e.bucket < B0 + 300]
    assert not before
    assert after and after[0].direction == -1 and after[0].niche == "a"
    assert after[0].ts_ms == (after[0].bucket + 1) * HOUR_MS
    assert engine.forecast("a", 4) is not None


def test_seasonal_traffic_alone_raises_no_drift() -> None:
    engine = DemandEngine(EngineConfig(horizons=(2, 4), min_learned=1))
    rng = random.Random(9)
    alarms = 0
    for b in range(24 * 20):
        views = int(200 * (1.0 + 0.8 * math.sin(2 * math.pi * b / 24)))
        carts = sum(rng.random() < 0.1 for _ in range(views))
        units = sum(rng.random() < 0.4 for _ in range(carts))
        engine.observe("a", ATTRS, bucket_rows(b, views, carts, units))
        alarms += len(engine.advance(START + (b + 1) * HOUR_MS).drift)
    assert alarms == 0


def test_a_category_wide_collapse_is_caught_on_niches_too_quiet_to_show_it_alone() -> None:
    """Twelve quiet dress niches (an order every few hours) lose half their conversion at once:
    each alone would take days to tell, their category tells within hours; the tops, whose
    conversion held, raise nothing."""
    cfg = EngineConfig(horizons=(2, 4), min_learned=1)
    engine = DemandEngine(cfg)
    rng = random.Random(11)
    niches = {f"d{i}": {**ATTRS, "color": f"c{i}"} for i in range(12)}
    niches |= {f"t{i}": {**OTHER, "color": f"c{i}"} for i in range(12)}
    events = []
    for b in range(220):
        for key, attrs in niches.items():
            carts = rng.randrange(0, 3)
            rate = 0.2 if key.startswith("d") and b >= 150 else 0.4
            units = sum(rng.random() < rate for _ in range(carts))
            engine.observe(key, attrs, bucket_rows(b, 20, carts, units, tag=key))
        events += engine.advance(START + (b + 1) * HOUR_MS).drift
    caught = {e.niche for e in events if B0 + 150 <= e.bucket < B0 + 198 and e.direction == -1}
    assert len({k for k in caught if k.startswith("d")}) >= 8
    assert not [e for e in events if e.niche.startswith("t")]


def test_a_launched_niche_is_not_taken_for_a_dud_while_its_first_orders_are_on_their_way() -> None:
    """Orders trail views by hours: a niche launched mid-stream has views and carts but no
    orders yet. Its conversion comes from its carts and the pool, not from the missing orders,
    and its forecast allows for the orders its earlier (non-existent) views would have sent."""
    engine = DemandEngine(SMALL)
    feed(engine, range(40))
    engine.observe("new", OTHER, bucket_rows(40, 60, 8, 0, tag="n"))
    engine.observe("a", ATTRS, bucket_rows(40, *traffic(40)))
    engine.advance(START + 41 * HOUR_MS)
    s = engine._slot["new"]
    x = dict(zip(NAMES, engine._feats[s, (B0 + 40) % engine.rh].tolist(), strict=False))
    assert x["young"] == 1.0
    assert abs(x["niche_conversion"]) < 0.5  # not log(0): no order yet is no evidence yet
    # a niche there from the engine's first bucket was already selling: not young, even on day one
    fresh = DemandEngine(SMALL)
    feed(fresh, range(3))
    assert fresh._feats[fresh._slot["a"], (B0 + 2) % fresh.rh][NAMES.index("young")] == 0.0


# -- state: eviction, reload, restore ------------------------------------------------------


def test_evicting_a_dormant_niche_and_reloading_it_is_exact() -> None:
    """A niche idle long enough to be dormant is evicted first; when it wakes up, reloaded from
    its checkpoint, its forecasts match an engine that never let it go, bit for bit."""
    keys = {"a": ATTRS, "b": OTHER}
    kept, evicting = DemandEngine(SMALL), DemandEngine(SMALL)
    table: dict[str, bytes] = {}
    evicting.loader = table.get
    for e in (kept, evicting):
        feed(e, range(40), keys)
        feed(e, range(40, 40 + SMALL.dormant_after + 5))  # "b" goes quiet, then dormant
    out = evicting.evict(max_resident=1)
    assert list(out) == ["b"]
    assert "b" not in evicting and evicting.resident() == 1
    table.update(out)
    wake = range(40 + SMALL.dormant_after + 5, 40 + SMALL.dormant_after + 15)
    for e in (kept, evicting):
        feed(e, wake, keys)  # "b" is back: the engine reloads it through the loader
    assert "b" in evicting
    for h in (1, 2, 3, 4, 10):
        assert kept.forecast("b", h) == evicting.forecast("b", h)
        assert kept.forecast("a", h) == evicting.forecast("a", h)


def test_least_recently_used_active_niches_go_when_none_is_dormant() -> None:
    keys = {"a": ATTRS, "b": OTHER, "c": {**OTHER, "color": "black"}}
    engine = DemandEngine(SMALL)
    feed(engine, range(10), keys)
    engine.forecast("a", 2)
    engine.observe("c", keys["c"], bucket_rows(10, 3, 0, 0))
    engine.advance(START + 11 * HOUR_MS)
    engine.forecast("a", 2)
    out = engine.evict(max_resident=2)
    assert list(out) == ["b"]


def test_a_niche_round_trips_through_its_checkpoint_at_the_same_clock() -> None:
    engine = DemandEngine(SMALL)
    feed(engine, range(30), {"a": ATTRS, "b": OTHER})
    before = [engine.forecast("a", h) for h in (2, 3, 4)]
    blob = engine.dump_niche("a")
    assert blob is not None
    engine.evict(max_resident=0)
    engine.load_niche("a", blob)
    assert [engine.forecast("a", h) for h in (2, 3, 4)] == before
    assert len(blob) < 8_000  # state per niche stays small: 100k niches fit in well under 1 GiB


def test_a_restored_engine_continues_exactly_where_the_checkpoint_left_off() -> None:
    keys = {"a": ATTRS, "b": OTHER}
    original = DemandEngine(SMALL)
    feed(original, range(30), keys)
    niches = original.checkpoint()
    assert set(niches) == {"a", "b"}
    assert original.checkpoint() == {}  # nothing changed since
    restored = DemandEngine.restore(original.pooled_checkpoint(), loader=niches.get)
    feed(original, range(30, 40), keys)
    feed(restored, range(30, 40), keys)
    for key in keys:
        assert original.forecast(key, 4) == restored.forecast(key, 4)
    assert original.report() == restored.report()


def test_a_hostile_checkpoint_in_the_table_is_refused_and_the_niche_starts_afresh() -> None:
    import os
    import pickle

    from models import checkpoint
    from models.engine import NICHE_KIND

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, ("echo owned > /dev/null",))

    table = {"a": checkpoint.dumps(Evil(), NICHE_KIND), "b": b"garbage" + pickle.dumps(1)}
    engine = DemandEngine(SMALL, loader=table.get)
    engine.observe("a", ATTRS, bucket_rows(0, 5, 1, 0))
    engine.observe("b", OTHER, bucket_rows(0, 5, 1, 0))
    assert engine.rejected_checkpoints == 2
    assert engine.resident() == 2


def test_a_checkpoint_from_another_engine_configuration_is_refused() -> None:
    from models.checkpoint import CheckpointError

    engine = DemandEngine(SMALL)
    feed(engine, range(3))
    blob = engine.dump_niche("a")
    assert blob is not None
    other = DemandEngine(EngineConfig(horizons=(3, 9)))
    with pytest.raises(CheckpointError, match="configuration"):
        other.load_niche("a", blob)
    assert other.resident() == 0


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        EngineConfig(horizons=(6, 2))
    with pytest.raises(ValueError):
        EngineConfig(horizons=())


def test_a_kept_forecast_is_the_one_issued_now_through_closes_evictions_and_reloads() -> None:
    """forecast() keeps what it issued until the next close: always what issuing afresh gives."""
    blobs: dict[str, bytes] = {}
    engine = DemandEngine(SMALL, loader=blobs.get)
    keys = {"a": ATTRS, "b": OTHER}
    for b in range(12):
        for n, (key, attrs) in enumerate(keys.items()):
            engine.observe(key, attrs, bucket_rows(b, *traffic(b, n)))
            for hours in (1.0, 3.0, 6.0, 3.0):
                kept = engine.forecast(key, hours)
                s = engine._slot[key]
                if engine._last_closed[s] >= engine._first[s]:  # issued at a close (else: cold start)
                    assert kept == engine._issue(s, hours)
        engine.advance(START + (b + 1) * HOUR_MS)
        if b % 4 == 3:
            blobs.update(engine.evict(1))  # one of them goes, and comes back through the loader
