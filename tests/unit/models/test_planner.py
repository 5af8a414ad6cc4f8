"""The planner: the skeleton's threshold rule (kept until the worker switches over), then the rolling
planner: start, revise, cancel, reorder with hysteresis, service levels, re-routing, explanations."""

from __future__ import annotations

import math
import re
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.demand import NicheDemand
from models.planner import (
    RULE_MODEL,
    NichePlan,
    PlannerConfig,
    PlanState,
    RuleConfig,
    Trigger,
    evidence_of,
    plan_niche,
    planning_factory,
    record_issued,
    rule_forecast,
    trigger_id,
)
from models.planner import plan as rolling_plan
from models.routing import CapacityBook, Factory
from streams import schemas
from streams.records import FactoryStatus, Rejection, parse_trigger

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


# -- the rolling planner ----------------------------------------------------------------------------

T0 = 1_764_000_000_000
MIN = 60_000
HOUR = 3_600_000
PCFG = PlannerConfig(min_revision_interval_ms=10 * MIN)
FULL = PlannerConfig(min_revision_interval_ms=10 * MIN, start_share=1.0)  # DESIGN §7's rule, the default
HALF = PlannerConfig(min_revision_interval_ms=10 * MIN, start_share=0.5)  # a reorder point at half a min batch
EVIDENCE = {"views": 5400, "add_to_cart": 610, "orders": 95, "drift": False}


def fc(p90: float, p50: float | None = None, horizon: float = 48, cold: bool = False) -> dict[str, Any]:
    return {"horizon_hours": horizon, "p50": p90 if p50 is None else p50, "p90": p90, "model": "river/v1",
            "cold_start": cold}


class Loop:
    """A niche, the one capacity book, and the worker's steps around plan(): admit, publish, settle."""

    def __init__(self, factories: tuple[Factory, ...] = ALL, cfg: PlannerConfig = PCFG,
                 niche: dict[str, str] | None = None, book: CapacityBook | None = None) -> None:
        self.factories, self.cfg = factories, cfg
        self.niche = NICHE if niche is None else niche
        self.book = book if book is not None else CapacityBook()
        self.state = NichePlan()
        self.now = T0
        self.published: list[Trigger] = []
        self.note = ""

    def plan(self, forecast: dict[str, Any], after_ms: int = 11 * MIN, evidence: dict[str, Any] | None = None,
             view: CapacityBook | None = None) -> list[Trigger]:
        """Plan on `view` (a worker's possibly stale copy of the book), admit to the book itself."""
        self.now += after_ms
        before = self.state.to_dict()
        res = rolling_plan(KEY, self.niche, self.state, forecast, EVIDENCE if evidence is None else evidence,
                           self.book if view is None else view, self.factories, self.now, self.cfg)
        assert self.state.to_dict() == before  # pure: the input state is untouched
        on = self.book if view is None else view
        given = rolling_plan(KEY, self.niche, self.state, forecast, EVIDENCE if evidence is None else evidence, on,
                             self.factories, self.now, self.cfg,
                             factory=planning_factory(self.niche.get("category", ""), self.state, on, self.factories,
                                                      self.now))
        assert (given.state, given.triggers, given.note) == (res.state, res.triggers, res.note)  # the same plan
        self.state, self.note = res.state, res.note
        for trig in res.triggers:
            admitted = self.book.admit(trig, KEY, self.factories, self.now)
            if admitted:
                self.published.append(trig)
                assert_wire_valid(trig)
            assert self.state.stock.settle(trig.trigger_id, trig.revision, admitted)
        return list(res.triggers)

    def answer(self, trig: Trigger, kind: str, units: int | None = None) -> str:
        status = FactoryStatus(factory_id=trig.factory_id, status=kind, ts=self.now, trigger_id=trig.trigger_id,
                               revision=trig.revision, units=trig.units if units is None else units)
        self.book.apply_status(status)
        return self.state.on_status(status, self.now, self.cfg)


def assert_wire_valid(trig: Trigger) -> None:
    body = orjson.loads(orjson.dumps(trig.to_dict()))
    parsed = parse_trigger(orjson.dumps(body), trig.emitted_ts)
    assert not isinstance(parsed, Rejection), parsed
    jsonschema.Draft202012Validator(schemas.load("trigger")).validate(body)


def test_a_surging_niche_starts_a_batch_that_explains_itself() -> None:
    loop = Loop()
    loop.state.stock.order("placed", 30)
    (trig,) = loop.plan(fc(240, p50=180))
    assert (trig.action, trig.kind, trig.revision, trig.factory_id, trig.units) == (
        "start", "forecast", 1, "f-gz-dress", 300)
    assert trig.trigger_id == trigger_id(KEY, 1)
    assert trig.reason == ("p90 demand over 48 h (240) + 30 confirmed - 0 stock - 0 in production = 270 ≥ "
                           "min batch 100: start 300 at f-gz-dress")
    assert trig.forecast == {"horizon_hours": 48, "p50": 180, "p90": 240, "model": "river/v1", "cold_start": False}
    assert trig.evidence == {**EVIDENCE, "plan": {"service_level": 0.9, "demand": 240, "uncovered_orders": 30,
                                                  "inventory": 0, "open_production": 0, "need": 270}}
    assert (trig.emitted_ts, trig.due_by_ts) == (loop.now, loop.now + 48 * HOUR)
    assert loop.state.seq == 1
    assert loop.state.stock.open_units == 300
    assert loop.book.committed("f-gz-dress") == 300


def test_below_min_batch_nothing_starts() -> None:
    loop = Loop(cfg=FULL)
    assert loop.plan(fc(99.9)) == []
    assert loop.note == ("p90 demand over 48 h (99.9) + 0 confirmed - 0 stock - 0 in production = 99.9 < min batch "
                         "100: nothing to start")
    loop.state.stock.on_hand = 50
    assert loop.plan(fc(149)) == []  # 149 - 50 stock
    assert loop.plan(fc(150))[0].units == 100


def test_a_further_surge_revises_the_open_trigger() -> None:
    loop = Loop()
    (first,) = loop.plan(fc(240))
    (second,) = loop.plan(fc(400))
    assert (second.action, second.trigger_id, second.revision, second.units) == (
        "revise", first.trigger_id, 2, 400)
    assert second.due_by_ts == first.due_by_ts
    assert second.reason == ("p90 demand over 48 h (400) + 0 confirmed - 0 stock - 250 in production = 150 ≥ "
                             "step 50: revise 250 → 400 at f-gz-dress")
    assert [lot.units for lot in loop.state.stock.lots.values()] == [400]
    assert loop.book.committed("f-gz-dress") == 400
    assert loop.state.seq == 1  # no second trigger stacked


def test_growth_below_a_step_does_not_revise() -> None:
    loop = Loop()
    loop.plan(fc(240))  # 250 open
    assert loop.plan(fc(299)) == []  # need 49 < step 50
    assert "still fit" in loop.note
    assert [t.units for t in loop.plan(fc(300))] == [300]


def test_revisions_wait_for_the_minimum_interval() -> None:
    loop = Loop()
    loop.plan(fc(240))
    assert loop.plan(fc(600), after_ms=9 * MIN) == []
    assert "holding" in loop.note
    assert loop.plan(fc(5), after_ms=30_000) == []  # a collapse waits too
    (trig,) = loop.plan(fc(600), after_ms=MIN)
    assert (trig.action, trig.units) == ("revise", 600)


def test_a_collapse_before_acceptance_cancels() -> None:
    loop = Loop()
    (start,) = loop.plan(fc(300))
    (cancel,) = loop.plan(fc(20))
    assert (cancel.action, cancel.trigger_id, cancel.revision, cancel.units) == ("cancel", start.trigger_id, 2, 300)
    assert cancel.reason == ("p90 demand over 48 h (20) + 0 confirmed - 0 stock - 300 in production = -280: the 300 "
                             "open at f-gz-dress are needed for 20, more than a step below the 300 they were sized "
                             "for and under min batch 100: cancel 300")
    assert loop.state.stock.lots == {}
    assert loop.book.committed("f-gz-dress") == 0
    assert loop.plan(fc(20)) == []
    (restart,) = loop.plan(fc(300))  # demand back: a new trigger, never a revision of the cancelled one
    assert (restart.action, restart.trigger_id) == ("start", trigger_id(KEY, 2))


def test_a_fall_that_leaves_a_batch_worth_making_shrinks_it() -> None:
    loop = Loop()
    loop.plan(fc(600))
    (trig,) = loop.plan(fc(420))
    assert (trig.action, trig.revision, trig.units) == ("revise", 2, 450)
    assert loop.plan(fc(405)) == []  # basis 420: 405 is not a step below it


def test_a_cancel_the_factory_beat_leaves_the_batch_open() -> None:
    loop = Loop()
    (start,) = loop.plan(fc(300))
    accepted = FactoryStatus(factory_id="f-gz-dress", status="accepted", ts=T0, trigger_id=start.trigger_id,
                             revision=1, units=300)
    loop.book.apply_status(accepted)  # the book hears of the acceptance before the niche does
    (cancel,) = loop.plan(fc(20))
    assert cancel.action == "cancel"
    assert loop.published == [start]  # refused: never published
    lot = loop.state.stock.lots[start.trigger_id]
    assert (lot.units, lot.cancelling) == (300, 0)
    assert loop.state.on_status(accepted, loop.now, PCFG) == "updated"  # forwarded by the book
    assert loop.plan(fc(20)) == []
    assert loop.book.committed("f-gz-dress") == 300


def test_an_accepted_batch_is_never_changed_and_more_demand_reorders() -> None:
    loop = Loop()
    (start,) = loop.plan(fc(300))
    assert loop.answer(start, "accepted") == "updated"
    assert loop.plan(fc(5)) == []  # no cancel after acceptance
    assert loop.plan(fc(349)) == []  # 49 more: below the reorder point (half a min batch)
    (more,) = loop.plan(fc(420))
    assert (more.action, more.revision, more.units) == ("reorder", 1, 150)
    assert more.trigger_id == trigger_id(KEY, 2)
    (grown,) = loop.plan(fc(520))  # the reorder is open and unaccepted: it grows
    assert (grown.action, grown.trigger_id, grown.units) == ("revise", more.trigger_id, 250)


def test_completed_batches_become_stock_that_lowers_need() -> None:
    loop = Loop()
    (start,) = loop.plan(fc(300))
    loop.answer(start, "accepted")
    assert loop.answer(start, "completed", 280) == "completed"
    assert (loop.state.stock.on_hand, loop.state.stock.open_units) == (280, 0)
    assert loop.plan(fc(300)) == []  # 300 - 280
    loop.state.stock.order("placed", 200)
    (again,) = loop.plan(fc(300))
    assert (again.action, again.units) == ("start", 250)  # 300 - 80 = 220 -> 250
    assert "(300) + 0 confirmed - 80 stock - 0 in production = 220 ≥ min batch 100" in again.reason


def test_a_rejected_trigger_is_rerouted_to_another_capable_factory() -> None:
    loop = Loop()
    (start,) = loop.plan(fc(300))
    assert loop.answer(start, "rejected") == "rejected"
    assert loop.book.committed("f-gz-dress") == 0
    (moved,) = loop.plan(fc(300), after_ms=0)  # re-plan at once
    assert (moved.factory_id, moved.action, moved.units) == ("f-fs-knit", "start", 450)
    assert moved.trigger_id == trigger_id(KEY, 2)
    assert moved.forecast["horizon_hours"] == 72  # the need is over FS's lead time: 300 in 48 h is 450 in 72 h
    assert moved.forecast["p90"] == 450
    assert moved.reason.endswith("; avoiding f-gz-dress after a rejection")
    # the avoidance ends: the fastest factory is back
    loop.answer(moved, "rejected")
    loop.plan(fc(300), after_ms=PCFG.avoid_after_reject_ms + 1)
    assert loop.published[-1].factory_id == "f-gz-dress"


def test_nowhere_to_go_is_said() -> None:
    assert Loop(niche={**NICHE, "category": "shoes"}).plan(fc(500)) == []
    loop = Loop(niche={**NICHE, "category": "shoes"})
    loop.plan(fc(500))
    assert loop.note == "no factory makes 'shoes'"
    full = Loop(book=CapacityBook(capacity={"f-gz-dress": 0, "f-fs-knit": 0}))
    assert full.plan(fc(500)) == []
    assert "no room for 500 units of dress" in full.note


def test_a_need_too_big_for_one_factory_is_split() -> None:
    loop = Loop()
    parts = loop.plan(fc(9000))
    assert [(t.factory_id, t.units, t.action) for t in parts] == [
        ("f-gz-dress", 8000, "start"), ("f-fs-knit", 1000, "start")]
    assert len({t.trigger_id for t in parts}) == 2
    assert parts[1].due_by_ts == loop.now + 72 * HOUR
    assert "(split: 8000 at f-gz-dress, 1000 at f-fs-knit)" in parts[0].reason


def test_growth_the_factory_has_no_room_for_goes_elsewhere() -> None:
    loop = Loop(book=CapacityBook(capacity={"f-gz-dress": 200}))  # 400 in 48 h
    (start,) = loop.plan(fc(300))
    assert start.factory_id == "f-gz-dress"
    grown = loop.plan(fc(700))  # 11 min later the lot's window holds 398: it can grow to 350
    assert [(t.action, t.factory_id, t.units) for t in grown] == [
        ("revise", "f-gz-dress", 350), ("reorder", "f-fs-knit", 350)]
    assert grown[1].reason.endswith("revise 300 → 350 at f-gz-dress; 350 more: reorder 350 at f-fs-knit")


def test_a_bounced_revision_keeps_what_the_factory_has() -> None:
    loop = Loop()
    (start,) = loop.plan(fc(300))
    stale = CapacityBook.from_dict(loop.book.to_dict())
    loop.book.apply_status(FactoryStatus(factory_id="f-gz-dress", status="capacity", ts=T0,
                                         capacity_units_per_day=160))  # now 320 in 48 h
    (trig,) = loop.plan(fc(500), view=stale)  # planned on a stale view of the book: refused
    assert (trig.action, trig.units) == ("revise", 500)
    assert loop.published == [start]
    lot = loop.state.stock.lots[start.trigger_id]
    assert (lot.units, lot.revision) == (300, 2)
    loop.book.apply_status(FactoryStatus(factory_id="f-gz-dress", status="capacity", ts=T0,
                                         capacity_units_per_day=4000))
    (again,) = loop.plan(fc(500))
    assert (again.revision, again.units) == (3, 500)  # revisions only grow
    assert loop.published[-1] == again


def test_service_level_p90_makes_more_than_p50() -> None:
    p90 = Loop().plan(fc(400, p50=200))
    p50 = Loop(cfg=PlannerConfig(service_level=0.5)).plan(fc(400, p50=200))
    p70 = Loop(cfg=PlannerConfig(service_level=0.7)).plan(fc(400, p50=200))
    assert [t.units for t in p90] == [400]
    assert [t.units for t in p50] == [200]
    assert [t.units for t in p70] == [300]
    assert p70[0].reason.startswith("p70 demand over 48 h (300)")


def test_only_p90_stops_a_batch_whatever_the_service_level() -> None:
    loop = Loop(cfg=PlannerConfig(service_level=0.5, min_revision_interval_ms=10 * MIN))
    (start,) = loop.plan(fc(400, p50=300))
    assert start.units == 300
    assert loop.plan(fc(400, p50=20)) == []  # P50 collapsed, but P90 still needs the batch
    assert loop.plan(fc(260, p50=20)) == []  # P90 within a step of the 300 it was sized for
    (shrink,) = loop.plan(fc(240, p50=20))
    assert (shrink.action, shrink.units) == ("revise", 250)
    assert shrink.reason.startswith("p90 demand over 48 h (240)")
    (cancel,) = loop.plan(fc(30, p50=20))
    assert (cancel.action, cancel.units, cancel.revision) == ("cancel", 250, 3)
    assert cancel.reason.startswith("p90 demand over 48 h (30) + 0 confirmed - 0 stock - 250 in production = -220")


def test_service_level_by_category_then_factory() -> None:
    cfg = PlannerConfig(service_level=0.9, by_category={"dress": 0.5}, by_factory={"f-gz-dress": 0.7})
    assert cfg.level("dress", "f-gz-dress") == 0.5
    assert cfg.level("skirt", "f-gz-dress") == 0.7
    assert cfg.level("skirt", "f-fs-knit") == 0.9
    with pytest.raises(ValueError, match="service levels"):
        PlannerConfig(service_level=0.95)
    with pytest.raises(ValueError, match="service levels"):
        PlannerConfig(by_factory={"f": 0.4})


def test_a_forecast_over_another_horizon_is_scaled_to_the_lead_time() -> None:
    (trig,) = Loop().plan(fc(120, horizon=24))
    assert trig.units == 250
    assert trig.forecast["horizon_hours"] == 48
    assert trig.forecast["p90"] == 240
    assert trig.reason.startswith("p90 demand over 48 h (240, scaled from 24 h)")


def test_drift_is_in_the_evidence_and_the_reason() -> None:
    (trig,) = Loop().plan(fc(300), evidence={**EVIDENCE, "drift": True})
    assert trig.evidence["drift"] is True
    assert trig.reason.endswith("; demand shift detected")


def test_planning_is_deterministic() -> None:
    a, b = Loop(), Loop()
    for p90 in (50, 300, 700, 100, 20, 900):
        assert a.plan(fc(p90)) == b.plan(fc(p90))
    assert a.state == b.state


def test_planning_factory_is_the_open_lots_or_the_fastest_with_room() -> None:
    loop = Loop()
    state, book = loop.state, loop.book
    assert planning_factory("dress", state, book, ALL, T0) == GZ
    assert planning_factory("top", state, book, ALL, T0) == HZ
    assert planning_factory("shoes", state, book, ALL, T0) is None
    assert planning_factory("dress", NichePlan(avoid={"f-gz-dress": T0 + 1}), book, ALL, T0) == FS
    assert planning_factory("dress", NichePlan(avoid={"f-gz-dress": T0}), book, ALL, T0) == GZ
    assert planning_factory("dress", state, CapacityBook(capacity={"f-gz-dress": 0}), ALL, T0) == FS
    both_full = CapacityBook(capacity={"f-gz-dress": 0, "f-fs-knit": 0})
    assert planning_factory("dress", state, both_full, ALL, T0) == GZ
    loop.plan(fc(8000))  # fills GZ
    assert loop.book.room(GZ, loop.now, GZ.due(loop.now)) == 0
    assert planning_factory("dress", loop.state, loop.book, ALL, loop.now) == GZ  # the open lot's factory


def test_niche_plan_round_trips_through_json() -> None:
    loop = Loop()
    loop.state.stock.order("placed", 7)
    (start,) = loop.plan(fc(300))
    loop.answer(start, "rejected")
    raw = orjson.loads(orjson.dumps(loop.state.to_dict()))
    assert NichePlan.from_dict(raw) == loop.state
    assert NichePlan.from_dict(None) == NichePlan()


def test_start_share_sets_the_reorder_point_and_rounds_up_to_a_min_batch() -> None:
    half = Loop(cfg=PlannerConfig(start_share=0.5))
    assert half.plan(fc(49.9)) == []
    assert half.note.endswith("= 49.9 < 0.5 of min batch 100: nothing to start")
    (trig,) = half.plan(fc(60))
    assert (trig.action, trig.units) == ("start", 100)
    assert trig.reason.endswith("= 60 ≥ 0.5 of min batch 100: start 100 at f-gz-dress")
    assert half.state.stock.lots[trig.trigger_id].basis == 60  # sized for the need, not the rounding
    assert half.plan(fc(60)) == [] and half.plan(fc(15)) == []  # held: a fall of less than a step
    (stop,) = half.plan(fc(5))  # a fall of more than a step from the need it was sized for stops it
    assert (stop.action, stop.units) == ("cancel", 100)
    eager = Loop(cfg=PlannerConfig(start_share=0.0))
    assert eager.plan(fc(0.5)) == []  # no shortfall of a whole unit
    assert [t.units for t in eager.plan(fc(1))] == [100]
    big = Loop(cfg=PlannerConfig(start_share=0.5))
    assert [t.units for t in big.plan(fc(240))] == [250]  # above a min batch: as before


def test_a_cold_start_forecast_is_planned_at_its_own_level_and_capped() -> None:
    cfg = PlannerConfig(service_level=0.9, cold_start_level=0.5, cold_start_cap=200)
    assert [t.units for t in Loop(cfg=cfg).plan(fc(400, p50=150, cold=True))] == [150]  # P50, not P90
    (capped,) = Loop(cfg=cfg).plan(fc(900, p50=600, cold=True))
    assert capped.units == 200
    assert capped.reason.startswith("p50 demand over 48 h (200, capped at 200 on a cold start) + 0 confirmed")
    assert capped.forecast["cold_start"] is True and capped.forecast["p50"] == 600  # the forecast as given
    assert [t.units for t in Loop(cfg=cfg).plan(fc(900, p50=600))] == [900]  # warm: the service level
    waiting = Loop(cfg=cfg)
    waiting.state.stock.order("placed", 120)
    assert [t.units for t in waiting.plan(fc(900, p50=600, cold=True))] == [350]  # orders waiting come on top
    uncapped = PlannerConfig(cold_start_level=0.7, cold_start_cap=0)
    assert [t.units for t in Loop(cfg=uncapped).plan(fc(900, p50=600, cold=True))] == [750]


def test_new_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match="start_share"):
        PlannerConfig(start_share=1.5)
    with pytest.raises(ValueError, match="cold_start_cap"):
        PlannerConfig(cold_start_cap=-1)
    with pytest.raises(ValueError, match="service levels"):
        PlannerConfig(cold_start_level=0.95)


def test_rule_forecast_and_evidence_from_counters() -> None:
    d = demand(units=120, carts=40, views=900)
    assert rule_forecast(d, NOW, B, CFG, 48) == {"horizon_hours": 48, "p50": 130, "p90": 169, "model": RULE_MODEL,
                                                  "cold_start": True}
    assert evidence_of(d, NOW, B, 5, drift=True) == {"views": 900, "add_to_cart": 40, "orders": 1, "drift": True}
    (trig,) = Loop().plan(rule_forecast(d, NOW, B, CFG, 48), evidence=evidence_of(d, NOW, B, 5))
    # a cold start is planned at its P50 (130), not P90 (169)
    assert (trig.units, trig.forecast["cold_start"], trig.forecast["model"]) == (150, True, RULE_MODEL)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2000), st.sampled_from(ALL), st.lists(st.integers(0, 10**9), min_size=100, max_size=100))
def test_demand_within_a_step_never_flaps(low: int, factory: Factory, jitter: list[int]) -> None:
    """Whatever the level, a forecast wandering within less than one batch step issues at most one trigger."""
    loop = Loop(factories=(factory,), niche={**NICHE, "category": factory.categories[0]})
    for j in jitter:
        loop.plan(fc(low + j % factory.batch_step, horizon=factory.lead_time_hours))
    assert len(loop.published) <= 1
    assert all(t.action == "start" for t in loop.published)


@pytest.mark.parametrize(("cfg", "around"), [(FULL, 100), (HALF, 50)])
def test_a_need_oscillating_around_the_reorder_point_starts_once(cfg: PlannerConfig, around: int) -> None:
    loop = Loop(cfg=cfg)
    for i in range(100):
        loop.plan(fc(around - 1 if i % 2 else around + 1), after_ms=MIN)
    assert [(t.action, t.units) for t in loop.published] == [("start", 100 if around < 100 else 150)]
    accepted = Loop(cfg=cfg)
    for i in range(100):  # the factory accepts at once: still no second start, no reorder
        for trig in accepted.plan(fc(around + 1 if i % 2 else around - 1), after_ms=MIN):
            accepted.answer(trig, "accepted")
    assert [(t.action, t.units) for t in accepted.published] == [("start", 100 if around < 100 else 150)]


steps = st.lists(st.one_of(
    st.tuples(st.just("plan"), st.floats(0, 12_000), st.floats(0, 1), st.integers(0, 30)),
    st.tuples(st.just("order"), st.sampled_from(["placed", "cancelled"]), st.integers(1, 300), st.just(0)),
    st.tuples(st.just("answer"), st.sampled_from(["accepted", "in_production", "completed", "rejected"]),
              st.integers(0, 50), st.just(0)),
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from(["dress", "top", "skirt", "jeans"]), st.sampled_from([0.5, 0.7, 0.9]))
def test_forecast_triggers_are_whole_steps_at_least_min_batch_and_within_capacity(
        script: list[tuple[Any, ...]], category: str, level: float) -> None:
    loop = Loop(niche={**NICHE, "category": category}, cfg=PlannerConfig(service_level=level,
                                                                         min_revision_interval_ms=10 * MIN))
    revisions: dict[str, int] = {}
    for step in script:
        if step[0] == "plan":
            _, p90, frac, minutes = step
            for trig in loop.plan(fc(p90, p50=p90 * frac), after_ms=minutes * MIN):
                factory = next(f for f in ALL if f.id == trig.factory_id)
                assert factory.makes(category)
                assert trig.kind == "forecast"
                assert trig.units % factory.batch_step == 0
                assert trig.units >= factory.min_batch
                assert trig.revision > revisions.get(trig.trigger_id, 0)  # revisions only grow
                revisions[trig.trigger_id] = trig.revision
        elif step[0] == "order":
            loop.state.stock.order(step[1], step[2])
        elif loop.published:
            trig = loop.published[step[2] % len(loop.published)]
            loop.answer(trig, step[1])
        for f in ALL:
            assert loop.book.committed(f.id) <= loop.book.window_capacity(f, loop.now, f.due(loop.now))
        stock = loop.state.stock
        assert {k: lot.units for k, lot in stock.lots.items()} == {
            k: b.units for at in loop.book.bookings.values() for k, b in at.items()}  # the niche and the book agree
