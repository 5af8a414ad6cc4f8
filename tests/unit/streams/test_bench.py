"""`c2m bench` without a broker: the figures' JSON shape, percentiles, part selection, and the
memory and planning-tick measurements on small synthetic populations."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from models.planner import NichePlan, PlannerConfig
from models.routing import CapacityBook, Factory
from streams import bench
from streams.config import REPO_ROOT

FACTORIES = (
    Factory("f-dress", ("dress", "skirt"), 4000, 100, 50, 48),
    Factory("f-knit", ("dress", "top", "knitwear"), 2500, 100, 50, 72),
    Factory("f-denim", ("jeans", "jacket"), 3000, 150, 50, 96),
)


@pytest.fixture(scope="module")
def population() -> bench.Population:
    return bench.populate(300, 3)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 201)]
    assert bench.percentile(values, 50) == 100.0
    assert bench.percentile(values, 99) == 198.0
    assert bench.percentile(values, 100) == 200.0
    assert bench.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        bench.percentile([], 50)
    lat = bench.Latency(groups=200, load_per_s=1000.0, ms=tuple(values))
    assert (lat.p50, lat.p99) == (100.0, 198.0)


def test_parts_are_chosen_with_only() -> None:
    assert bench.parse_parts(None) == bench.PARTS == ("ingest", "latency", "memory", "tick")
    assert bench.parse_parts("tick, memory") == ("memory", "tick")
    assert bench.parse_parts("latency") == ("latency",)
    for bad in ("ticks", "memory,disk", " , "):
        with pytest.raises(ValueError, match="choose from ingest, latency, memory, tick"):
            bench.parse_parts(bad)


def test_counted_events_reads_the_worker_metrics() -> None:
    text = "\n".join([
        "# HELP c2m_events_total Input events",
        'c2m_events_total{outcome="ok",topic="c2m.orders",type="group_join"} 40.0',
        'c2m_events_total{outcome="duplicate",topic="c2m.orders",type="group_join"} 2.0',
        'c2m_events_total{outcome="ok",topic="c2m.clickstream",type="view"} 1000.0',
        'c2m_events_created{outcome="ok",topic="c2m.clickstream",type="view"} 1.7e9',
    ])
    assert bench.counted_events(text) == 1042.0
    assert bench.counted_events(text, "group_join") == 42.0
    assert bench.counted_events(text, "placed") == 0.0


def test_figures_have_exactly_the_issue_shape() -> None:
    result = bench.Bench(
        ingest={"events": 1000, "worker_events_per_s": 30000, "raw_events_per_s": 90000, "ratio": 0.333},
        latency=bench.Latency(3, 1000.0, (80.0, 95.04, 240.0)),
        memory=bench.Memory(2000, 48, {"total": 30_000_000, "engine": 14_000_000, "counters": 15_000_000,
                                       "planner": 1_000_000}, 40_000_000),
        ticks=bench.Ticks(100_000, (bench.TickRun(1000, 20.0, 3), bench.TickRun(10_000, 150.04, 30),
                                    bench.TickRun(100_000, 1500.0, 300))),
    )
    figures = result.figures()
    assert figures == {
        "ingest": {"events": 1000, "worker_events_per_s": 30000, "raw_events_per_s": 90000, "ratio": 0.333},
        "group_buy_latency_ms": {"p50": 95.0, "p99": 240.0},
        "bytes_per_niche": 15000,
        "planning_tick_ms": {"10000": 150.0, "100000": 1500.0},
    }
    assert list(orjson.loads(orjson.dumps(figures))) == ["ingest", "group_buy_latency_ms", "bytes_per_niche",
                                                         "planning_tick_ms"]
    text = "\n".join(result.lines())
    assert "1% of them cost 1.3% of the full tick" in text
    assert "15,000 B by tracemalloc (engine 7,000 B, counters 7,500 B, planner 500 B), 20,000 B by RSS" in text
    assert "p50 95 ms, p99 240 ms" in text


def test_figures_of_a_partial_run_hold_only_its_parts() -> None:
    assert bench.Bench().figures() == {}
    memory = bench.Memory(10, 2, {"total": 1000, "engine": 600, "counters": 300, "planner": 100}, None)
    assert bench.Bench(memory=memory).figures() == {"bytes_per_niche": 100}
    assert "RSS not available" in "\n".join(bench.Bench(memory=memory).lines())


def test_synthetic_niches_are_distinct_and_plannable() -> None:
    attrs = [bench.niche_attrs(i) for i in range(0, 288_000, 7)]
    assert len({tuple(a.values()) for a in attrs}) == len(attrs)
    assert {a["category"] for a in attrs} <= {c for f in FACTORIES for c in f.categories}
    with pytest.raises(ValueError):
        bench.populate(288_001, 1)


def test_populate_feeds_counters_stock_and_engine(population: bench.Population) -> None:
    assert len(population.demand) == len(population.plans) == 300
    assert population.now_ms == bench.START_MS + 3 * 3_600_000
    assert 0 < population.engine.resident() <= 300
    key = max(population.demand, key=lambda k: population.demand[k]["counts"].get("view", 0))
    counts = population.demand[key]["counts"]
    assert counts["view"] >= counts.get("add_to_cart", 0) >= counts.get("orders", 0)
    assert population.demand[key]["niche"] == population.plans[key]["niche"]
    assert "|".join(population.plans[key]["niche"].values()) == key
    stock = NichePlan.from_dict(population.plans[key]).stock
    assert stock.backorder == counts.get("units", 0)  # nothing made yet: every ordered unit is owed
    fc = population.engine.forecast(key, 48.0, population.plans[key]["niche"])
    assert fc is not None and fc.p90 >= fc.p50 >= 0


def test_a_tick_plans_exactly_the_niches_that_changed(population: bench.Population,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The tick's cost is per changed niche: only those are forecast, planned and rewritten."""
    initial = dict(population.plans)
    changed = bench.spread(population.keys, 30)
    asked: list[str] = []
    forecast = population.engine.forecast
    monkeypatch.setattr(population.engine, "forecast", lambda key, *a: asked.append(key) or forecast(key, *a))
    book = CapacityBook()
    try:
        admitted = bench.plan_changed(population, changed, book, FACTORIES, PlannerConfig())
        assert sorted(asked) == sorted(changed)
        assert [k for k in population.plans if population.plans[k] is not initial[k]] == changed
        assert admitted == sum(len(at) for at in book.bookings.values())
    finally:
        population.plans = initial


def test_spread_picks_evenly() -> None:
    keys = [str(i) for i in range(100)]
    assert bench.spread(keys, 4) == ["0", "25", "50", "75"]
    assert bench.spread(keys, 100) == keys
    for bad in (0, 101):
        with pytest.raises(ValueError):
            bench.spread(keys, bad)


def test_measure_ticks_starts_every_size_from_the_same_state(population: bench.Population) -> None:
    before = dict(population.plans)
    ticks = bench.measure_ticks(population, [3, 30, 300], FACTORIES)
    assert ticks.population == 300
    assert [r.changed for r in ticks.runs] == [3, 30, 300]
    assert all(r.ms > 0 and r.us_per_niche > 0 for r in ticks.runs)
    assert ticks.ms(30) == ticks.runs[1].ms
    assert population.plans == before


def test_state_bytes_by_tracemalloc_splits_into_parts() -> None:
    traced = bench.state_bytes(20, 2, traced=True)
    assert traced is not None
    assert traced["total"] > 0 and min(traced["engine"], traced["counters"], traced["planner"]) > 0
    assert traced["engine"] + traced["counters"] + traced["planner"] == traced["total"]


def test_cli_runs_the_pure_parts_alone() -> None:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "--only", "memory,tick", "--memory-niches",
                           "20", "--tick-niches", "300", "--json"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) == {"bytes_per_niche", "planning_tick_ms"}
    assert figures["bytes_per_niche"] > 0
    assert figures["planning_tick_ms"] == {}  # 10,000 and 100,000 need that many niches


def test_cli_refuses_an_unknown_part_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "--only", "disk"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == ("c2m: error: --only: unknown part(s) disk; "
                                   "choose from ingest, latency, memory, tick")
