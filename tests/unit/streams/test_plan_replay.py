"""The planner replay hook on hand-built logs whose right answers are known: stock balances, the
make-to-stock baseline produces once, group buys are made to order, and what is in flight at the
end of the log counts nowhere."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import pytest

from models.engine import Advance, DemandEngine, EngineConfig, Forecast
from models.planner import PlannerConfig
from models.routing import Factory
from streams.plan_replay import PlanReplay

H = 3_600_000
T0 = 1_764_000_000_000 - 1_764_000_000_000 % H
F = Factory("f-1", ("dress",), 10_000, 100, 50, 4)  # lead time 4 h
KEY = "dress|boho|sage|M|CN-GD"
NICHE = {"category": "dress", "style": "boho", "color": "sage", "size_band": "M", "region": "CN-GD"}
# the design's rule at P90: start when the need reaches a min batch
DESIGN = PlannerConfig(service_level=0.9, start_share=1.0, cold_start_cap=0)
EAGER = PlannerConfig(service_level=0.9, start_share=0.0, cold_start_cap=0)  # any shortfall starts a batch


class Engine:
    """A DemandEngine stand-in: `rate` units per hour, P90 = P50 x `spread`, warm, no drift."""

    def __init__(self, rate: float, spread: float = 1.0) -> None:
        self.config = EngineConfig()
        self.rate, self.spread = rate, spread
        self.asked: list[float] = []

    def forecast(self, key: str, horizon_hours: float, attrs: dict[str, str] | None = None) -> Forecast:
        self.asked.append(horizon_hours)
        p50 = self.rate * horizon_hours
        return Forecast(horizon_hours, p50, p50 * self.spread, "stub", False, False, 0)


def order(hour: int, units: int = 10, etype: str = "placed", minute: int = 30) -> list[Any]:
    return [f"e-{etype}-{hour}-{minute}", etype, T0 + hour * H + minute * 60_000, units]


def view(hour: int) -> list[Any]:
    return [f"e-view-{hour}", "view", T0 + hour * H + 50 * 60_000, 0]


def join(n: int, hour: int, units: int, group: str = "g-1", target: int = 30, expires_hours: int = 12) -> list[Any]:
    return [f"j-{group}-{n}", "group_join", T0 + hour * H + 60_000 * n, units, group, target,
            T0 + expires_hours * H]


def replay(hook: PlanReplay, engine: Engine, rows: Iterable[list[Any]]) -> dict[str, Any]:
    """Feed rows bucket by bucket as streams.backtest.replay does: a bucket's rows, then its close."""
    by_hour: dict[int, list[list[Any]]] = {}
    for row in rows:
        by_hour.setdefault((row[2] - T0) // H, []).append(row)
    last = max(by_hour)
    for hour in range(last + 1):
        if by_hour.get(hour):
            hook.on_rows(KEY, NICHE, by_hour[hour])
        if hour < last:  # the last, partial bucket stays open, as in a replay
            hook.on_close(T0 + (hour + 1) * H, cast(DemandEngine, engine), Advance(closed=[T0 // H + hour]))
    return hook.summary()


def balanced(fig: dict[str, Any], demand: int) -> None:
    assert fig["produced"] == fig["sold"] + fig["unsold"]
    assert fig["sold"] + fig["stockouts"] == demand
    assert fig["fill_rate"] == pytest.approx(fig["sold"] / demand, abs=1e-4)


def test_a_steady_niche_is_produced_sold_and_its_stock_balances() -> None:
    """10 units an hour, a forecast of exactly that: a 100-unit batch whenever the stock would not
    last the 4 h lead time. Hour 0's order waits for the first batch (served when it lands at 5 h)."""
    engine = Engine(rate=10)
    out = replay(PlanReplay((F,), EAGER), engine, [order(h) for h in range(12)])
    # batches issued at 1 h (need 40 + 10 waiting) and 7 h (stock 30 < 40), landing at 5 h and 11 h
    assert out["planner"] == {"produced": 200, "sold": 120, "unsold": 80, "stockouts": 0, "fill_rate": 1.0}
    assert set(engine.asked) == {4.0}  # the forecast is asked over the factory's lead time


def test_the_designs_rule_waits_for_a_full_min_batch_of_need() -> None:
    out = replay(PlanReplay((F,), DESIGN), Engine(rate=10), [order(h) for h in range(12)])
    # need = 40 + waiting - stock - production reaches 100 at 6 h (60 waiting): 100 land at 10 h
    assert out["planner"] == {"produced": 100, "sold": 100, "unsold": 0, "stockouts": 20, "fill_rate": 0.8333}
    balanced(out["planner"], 120)


def test_production_in_flight_at_the_end_counts_nowhere() -> None:
    out = replay(PlanReplay((F,), EAGER), Engine(rate=10), [order(h) for h in range(5)])
    # the first batch (issued at 1 h) is due at 5 h, after the last event (4:30): nothing produced
    assert out["planner"] == {"produced": 0, "sold": 0, "unsold": 0, "stockouts": 50, "fill_rate": 0.0}


def test_a_batch_lands_before_the_orders_after_its_due_time_even_without_a_close() -> None:
    hook = PlanReplay((F,), EAGER)
    replay(hook, Engine(rate=10), [order(0), order(1)])  # a batch of 100 issued at the 1 h close, due 5 h
    stock = hook.niches[KEY].plan.stock
    assert (stock.produced, stock.backorder, stock.open_units) == (0, 20, 100)
    hook.on_rows(KEY, NICHE, [order(7, minute=10)])  # no bucket closed in between (a quiet log)
    # the batch landed first: 20 waiting served, then the 7:10 order from stock
    assert (stock.produced, stock.on_hand, stock.backorder, stock.open_units) == (100, 70, 0, 0)


def test_cancellations_return_units_and_demand_is_net() -> None:
    rows = [order(h) for h in range(12)] + [order(6, 10, "cancelled", minute=45)]
    out = replay(PlanReplay((F,), EAGER), Engine(rate=10), rows)
    # the cancel puts 10 back on the shelf at 6:45, so the second batch waits until 8 h (due 12 h)
    assert out["planner"] == {"produced": 100, "sold": 100, "unsold": 0, "stockouts": 10, "fill_rate": 0.9091}
    balanced(out["planner"], 110)


def test_make_to_stock_produces_once_from_the_first_days_forecast() -> None:
    """Seen from 0:30, it decides at the 25 h close: the 250 units waiting plus P50 for the 34.5 h
    left in the log (10 an hour) make 595, rounded to 600; they land at 29 h and serve every order."""
    out = replay(PlanReplay((F,), EAGER), Engine(rate=10), [order(h) for h in range(60)])
    assert out["make_to_stock"] == {"produced": 600, "sold": 600, "unsold": 0, "stockouts": 0, "fill_rate": 1.0}
    short = replay(PlanReplay((F,), EAGER), Engine(rate=5), [order(h) for h in range(60)])
    # a forecast of half the demand: 250 + 172.5 → 450, and 150 never delivered
    assert short["make_to_stock"] == {"produced": 450, "sold": 450, "unsold": 0, "stockouts": 150,
                                      "fill_rate": 0.75}
    over = replay(PlanReplay((F,), EAGER), Engine(rate=20), [order(h) for h in range(60)])
    assert over["make_to_stock"]["produced"] == 950  # 250 + 690 → 950: one batch, never another
    assert over["make_to_stock"]["unsold"] == 350


def test_a_niche_seen_for_less_than_a_day_gets_no_make_to_stock_batch() -> None:
    out = replay(PlanReplay((F,), EAGER), Engine(rate=10), [order(h) for h in range(20)])
    assert out["make_to_stock"] == {"produced": 0, "sold": 0, "unsold": 0, "stockouts": 200, "fill_rate": 0.0}


def test_group_buys_are_made_to_order_and_count_as_produced_and_sold() -> None:
    rows = [view(h) for h in range(12)]  # time passes; no orders
    rows += [join(1, 0, 10), join(2, 0, 10), join(3, 0, 10)]  # fills at 0:03, lands 4:03
    rows += [join(1, 1, 5, group="g-2", expires_hours=6)]  # never fills: expires at 6 h, nothing made
    rows += [join(1, 9, 20, group="g-3", target=20, expires_hours=20)]  # fills 9:01, lands 13:01: in flight
    hook = PlanReplay((F,), EAGER)
    out = replay(hook, Engine(rate=0), rows)
    for side in ("planner", "make_to_stock"):
        assert out[side]["produced"] == out[side]["sold"] == 30
        assert out[side]["unsold"] == 0
    assert {g: st.status for g, st in hook.groups.items()} == {"g-1": "filled", "g-2": "expired", "g-3": "filled"}
    assert hook.groups["g-1"].made == 30 and hook.groups["g-3"].made == 0
    assert hook.book.find(next(iter(hook.groups["g-3"].parts))) is not None  # still booked: in production


def test_no_capacity_leaves_orders_waiting() -> None:
    tiny = Factory("f-1", ("dress",), 0, 100, 50, 4)
    out = replay(PlanReplay((tiny,), EAGER), Engine(rate=10), [order(h) for h in range(12)])
    assert out["planner"] == {"produced": 0, "sold": 0, "unsold": 0, "stockouts": 120, "fill_rate": 0.0}


def test_an_empty_replay_has_no_fill_rate() -> None:
    out = PlanReplay((F,)).summary()
    assert out == {side: {"produced": 0, "sold": 0, "unsold": 0, "stockouts": 0, "fill_rate": None}
                   for side in ("planner", "make_to_stock")}
