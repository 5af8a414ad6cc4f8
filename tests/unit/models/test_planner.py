"""The threshold planner: when it starts a batch, where, how big, and the trigger it publishes."""

from __future__ import annotations

import math
import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from models.demand import NicheDemand
from models.planner import PlanState, RuleConfig, Trigger, plan_niche, record_issued, trigger_id
from models.routing import Factory

B = 60_000
NOW = 1_764_000_000_000 + 30_000  # mid-bucket
CFG = RuleConfig(window_buckets=5, cart_weight=0.25, start_threshold=100.0, first_batch_max=200)
GZ = Factory("f-gz-dress", ("dress", "skirt"), 4000, 100, 50, 48)
FS = Factory("f-fs-knit", ("dress", "top", "knitwear"), 2500, 100, 50, 72)
NT = Factory("f-nt-denim", ("jeans", "jacket"), 3000, 150, 50, 96)
HZ = Factory("f-hz-tops", ("top", "skirt"), 5000, 100, 100, 36)
ALL = (GZ, FS, NT, HZ)
KEY = "dress|boho|sage|M|CN-GD"
NICHE = {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": "CN-GD"}
DESIGN_KEYS = {"trigger_id", "revision", "action", "kind", "factory_id", "niche", "units", "due_by_ts",
               "emitted_ts", "forecast", "evidence", "reason"}


def demand(units: int = 0, carts: int = 0, views: int = 0, ago_buckets: int = 0) -> NicheDemand:
    d = NicheDemand()
    ts = NOW - ago_buckets * B
    for _ in range(views):
        d.add("view", ts, 0, B)
    for _ in range(carts):
        d.add("add_to_cart", ts, 0, B)
    if units:
        d.add("placed", ts, units, B)
    return d


def plan(d: NicheDemand, state: PlanState | None = None, niche: dict[str, str] | None = None,
         factories: tuple[Factory, ...] = ALL, open_units: dict[str, int] | None = None,
         cfg: RuleConfig = CFG) -> Trigger | None:
    return plan_niche(KEY, NICHE if niche is None else niche, d, state or PlanState(), factories,
                      open_units or {}, NOW, B, cfg)


def test_below_threshold_no_trigger() -> None:
    assert plan(NicheDemand()) is None
    assert plan(demand(units=99)) is None
    assert plan(demand(units=90, carts=39)) is None  # 90 + 9.75


def test_at_threshold_a_start_trigger() -> None:
    trig = plan(demand(units=100))
    assert trig is not None
    assert trig.action == "start"
    assert trig.kind == "forecast"
    assert trig.revision == 1


def test_carts_count_at_their_weight() -> None:
    assert plan(demand(units=60, carts=160)) is not None  # 60 + 40
    assert plan(demand(carts=399)) is None  # 99.75


def test_only_recent_buckets_count() -> None:
    assert plan(demand(units=150, ago_buckets=4)) is not None  # the 5th bucket of the window
    assert plan(demand(units=150, ago_buckets=5)) is None  # just outside it
    assert plan(demand(units=150, ago_buckets=-1)) is None  # a future bucket is not yet demand


def test_trigger_goes_to_the_fastest_factory_making_the_category() -> None:
    trig = plan(demand(units=150))
    assert trig is not None
    assert trig.factory_id == "f-gz-dress"
    top = plan(demand(units=150), niche={**NICHE, "category": "top"})
    assert top is not None
    assert top.factory_id == "f-hz-tops"
    assert plan(demand(units=150), niche={**NICHE, "category": "shoes"}) is None


def test_full_factory_is_skipped_and_none_when_all_are_full() -> None:
    trig = plan(demand(units=150), open_units={"f-gz-dress": 3900})
    assert trig is not None
    assert trig.factory_id == "f-fs-knit"
    assert plan(demand(units=150), open_units={"f-gz-dress": 3900, "f-fs-knit": 2450}) is None


def test_units_fit_the_capacity_of_the_chosen_factory() -> None:
    # signal 100.25: the batch is 150 units at f-gz-dress, which has only 100 left
    open_units = {"f-gz-dress": 3900}
    trig = plan(demand(units=100, carts=1), open_units=open_units)
    assert trig is not None
    chosen = next(f for f in ALL if f.id == trig.factory_id)
    assert open_units.get(chosen.id, 0) + trig.units <= chosen.capacity_units_per_day


def test_first_batch_is_capped_and_rounded_to_the_step() -> None:
    trig = plan(demand(units=5000))
    assert trig is not None
    assert trig.units == 200
    odd = plan(demand(units=5000), cfg=RuleConfig(first_batch_max=210))
    assert odd is not None
    assert odd.units == 250  # f-gz-dress steps by 50


def test_no_second_start_while_one_is_open() -> None:
    d = demand(units=300)
    state = PlanState()
    trig = plan(d, state)
    assert trig is not None
    state = record_issued(state, trig)
    assert state.seq == 1
    assert state.open == {"trigger_id": trig.trigger_id, "revision": 1, "factory_id": trig.factory_id,
                          "units": trig.units}
    assert plan(d, state) is None
    assert plan(demand(units=10_000), state) is None


def test_next_decision_gets_a_new_id() -> None:
    d = demand(units=300)
    first = plan(d)
    assert first is not None
    closed = PlanState(seq=record_issued(PlanState(), first).seq, open=None)
    second = plan(d, closed)
    assert second is not None
    assert second.trigger_id != first.trigger_id
    assert second.trigger_id == trigger_id(KEY, 2)


def test_trigger_id_is_deterministic() -> None:
    assert trigger_id(KEY, 1) == trigger_id(KEY, 1)
    assert trigger_id(KEY, 1) != trigger_id(KEY, 2)
    assert trigger_id(KEY, 1) != trigger_id("dress|boho|sage|L|CN-GD", 1)
    assert re.fullmatch(r"t-[0-9a-f]{16}", trigger_id(KEY, 1))
    a = plan(demand(units=150))
    b = plan(demand(units=150))
    assert a is not None
    assert a == b
    assert a.trigger_id == trigger_id(KEY, 1)


def test_trigger_content() -> None:
    trig = plan(demand(units=120, carts=40, views=900))
    assert trig is not None
    assert trig.niche == NICHE
    assert trig.units == 150  # signal 130 -> 150 at a 50 step
    assert trig.emitted_ts == NOW
    assert trig.due_by_ts == NOW + 48 * 3_600_000
    assert trig.forecast["horizon_hours"] == 48
    assert trig.forecast["p50"] == 130
    assert trig.forecast["p90"] >= trig.forecast["p50"]
    assert set(trig.forecast) == {"horizon_hours", "p50", "p90", "model", "cold_start"}
    assert trig.evidence == {"views": 900, "add_to_cart": 40, "orders": 1, "drift": False}
    assert "130" in trig.reason


def test_to_dict_has_exactly_the_design_keys() -> None:
    trig = plan(demand(units=150))
    assert trig is not None
    out = trig.to_dict()
    assert set(out) == DESIGN_KEYS
    assert orjson.loads(orjson.dumps(out)) == out  # JSON-clean
    assert out["units"] == trig.units
    assert out["niche"] == NICHE


def test_to_dict_carries_group_id_only_when_set() -> None:
    trig = plan(demand(units=150))
    assert trig is not None
    group = Trigger(**{**trig.__dict__, "kind": "group_buy", "group_id": "g-7", "extra": {"x": 1}})
    out = group.to_dict()
    assert set(out) == DESIGN_KEYS | {"group_id"}
    assert out["group_id"] == "g-7"
    assert "group_id" not in trig.to_dict()


def test_plan_state_round_trip() -> None:
    trig = plan(demand(units=150))
    assert trig is not None
    state = record_issued(PlanState(), trig)
    assert PlanState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state
    assert PlanState.from_dict(None) == PlanState()


def _step_up(n: int, step: int) -> int:
    return math.ceil(n / step) * step


@given(units=st.integers(min_value=0, max_value=3000), carts=st.integers(min_value=0, max_value=3000),
       category=st.sampled_from(["dress", "top", "jeans", "skirt", "knitwear", "jacket"]),
       first_batch_max=st.integers(min_value=1, max_value=600),
       open_gz=st.integers(min_value=0, max_value=4000))
def test_units_within_bounds_and_capacity(units: int, carts: int, category: str, first_batch_max: int,
                                          open_gz: int) -> None:
    cfg = RuleConfig(first_batch_max=first_batch_max)
    open_units = {"f-gz-dress": open_gz}
    trig = plan(demand(units=units, carts=carts), niche={**NICHE, "category": category},
                open_units=open_units, cfg=cfg)
    signal = units + 0.25 * carts
    if signal < cfg.start_threshold:
        assert trig is None
        return
    if trig is None:  # only when no capable factory has room
        assert category in ("dress", "skirt")
        assert open_gz > 0
        return
    factory = next(f for f in ALL if f.id == trig.factory_id)
    assert factory.makes(category)
    assert trig.units % factory.batch_step == 0
    assert factory.min_batch <= trig.units <= max(factory.min_batch,
                                                  _step_up(first_batch_max, factory.batch_step))
    assert open_units.get(factory.id, 0) + trig.units <= factory.capacity_units_per_day
