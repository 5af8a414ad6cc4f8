"""Group buys: exact, idempotent joins; one make-to-order trigger of exactly the filled units; expiry
once; routing with capacity, re-routing after a rejection."""

from __future__ import annotations

import random
import re

import jsonschema
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from models.groups import GroupResult, GroupState, Join, group_trigger_id, on_bounce, on_join, on_status, tick
from models.planner import Trigger
from models.routing import CapacityBook, Factory
from streams import schemas
from streams.records import FactoryStatus, Rejection, parse_trigger

GZ = Factory("f-gz-dress", ("dress", "skirt"), 4000, 100, 50, 48)
FS = Factory("f-fs-knit", ("dress", "top", "knitwear"), 2500, 100, 50, 72)
NT = Factory("f-nt-denim", ("jeans", "jacket"), 3000, 150, 50, 96)
ALL = (GZ, FS, NT)
NOW = 1_764_000_000_000
EXPIRES = NOW + 86_400_000
KEY = "dress|boho|sage|M|CN-GD"
NICHE = {"category": "dress", "style": "boho", "color": "sage", "size_band": "M", "region": "CN-GD"}
TARGET = 50


def join(n: int, qty: int, ts: int = NOW, target: int = TARGET) -> Join:
    return Join(f"e-{n}", qty, ts, target, EXPIRES)


def feed(joins: list[Join], state: GroupState | None = None, book: CapacityBook | None = None,
         niche: dict[str, str] | None = None) -> tuple[GroupState, list[GroupResult]]:
    book = book if book is not None else CapacityBook()
    results = []
    for j in joins:
        res = on_join(state, "g-7", KEY, niche or NICHE, j, book, ALL, NOW + 1000)
        results.append(res)
        state = res.state
    assert state is not None
    return state, results


def triggers(results: list[GroupResult]) -> list[Trigger]:
    return [t for r in results for t in r.triggers]


def answer(t: Trigger, kind: str, units: int | None = None) -> FactoryStatus:
    return FactoryStatus(factory_id=t.factory_id, status=kind, ts=NOW, trigger_id=t.trigger_id,
                         revision=t.revision, units=t.units if units is None else units)


def assert_wire_valid(t: Trigger) -> None:
    body = t.to_dict()
    parsed = parse_trigger(orjson.dumps(body), t.emitted_ts)
    assert not isinstance(parsed, Rejection), parsed
    jsonschema.Draft202012Validator(schemas.load("trigger")).validate(orjson.loads(orjson.dumps(body)))


def test_joins_accumulate_until_the_target() -> None:
    state, results = feed([join(1, 20), join(2, 29)])
    assert (state.status, state.joined, state.joins) == ("open", 49, 2)
    assert triggers(results) == []
    assert all(r.outcome is None for r in results)
    assert (state.target, state.expires_ts, state.niche_key, state.niche) == (TARGET, EXPIRES, KEY, NICHE)


def test_the_filling_join_makes_one_trigger_of_exactly_the_filled_units() -> None:
    state, results = feed([join(1, 20), join(2, 29), join(3, 3)])
    made = triggers(results)
    assert len(made) == 1
    t = made[0]
    assert t.units == 52  # the filling join counts whole; not rounded to GZ's step of 50
    assert (t.kind, t.action, t.revision, t.group_id, t.factory_id) == ("group_buy", "start", 1, "g-7", "f-gz-dress")
    assert t.trigger_id == group_trigger_id("g-7", 1)
    assert re.fullmatch(r"t-[0-9a-f]{16}", t.trigger_id)
    assert t.niche == NICHE
    assert t.due_by_ts == NOW + 1000 + 48 * 3_600_000
    assert t.evidence == {"orders": 3, "units": 52, "group_target": 50, "drift": False}
    assert t.forecast == {"horizon_hours": 48, "p50": 52, "p90": 52, "model": "group-buy/exact", "cold_start": False}
    assert t.reason == "group g-7 filled: 52 joined ≥ target 50: make 52 to order at f-gz-dress"
    assert_wire_valid(t)
    outcome = results[-1].outcome
    assert outcome is not None
    assert outcome["outcome"] == "filled"
    assert outcome["units"] == 52
    assert outcome["unrouted"] == 0
    assert outcome["triggers"] == [{"trigger_id": t.trigger_id, "factory_id": "f-gz-dress", "units": 52}]
    assert (state.status, state.joined, state.unrouted, list(state.parts)) == ("filled", 52, 0, [t.trigger_id])


def test_below_min_batch_is_made_exactly() -> None:
    _, results = feed([join(1, 7, target=5)])
    assert [t.units for t in triggers(results)] == [7]


def test_replayed_joins_do_not_count_twice_or_trigger_again() -> None:
    joins = [join(1, 20), join(2, 29), join(3, 3)]
    state, _ = feed(joins)
    again, replay = feed(joins + joins, state)
    assert triggers(replay) == []
    assert all(r.outcome is None for r in replay)
    assert again == state


def test_joins_after_the_fill_are_overflow() -> None:
    state, results = feed([join(1, 50), join(2, 4), join(3, 6)])
    assert len(triggers(results)) == 1
    assert (state.joined, state.overflow) == (50, 10)


def test_an_expired_group_yields_one_outcome_and_no_trigger() -> None:
    state, _ = feed([join(1, 20)])
    assert tick(state, CapacityBook(), ALL, EXPIRES).outcome is None  # at the expiry, not past it
    res = tick(state, CapacityBook(), ALL, EXPIRES + 1)
    assert res.triggers == ()
    assert res.outcome == {"group_id": "g-7", "outcome": "expired", "niche": NICHE, "target": 50, "joined": 20,
                           "expires_ts": EXPIRES, "ts": EXPIRES + 1,
                           "reason": "group g-7 had 20 of 50 by its expiry: nothing is made"}
    assert res.state.closed
    again = tick(res.state, CapacityBook(), ALL, EXPIRES + 10)
    assert (again.triggers, again.outcome) == ((), None)
    late, results = feed([join(2, 40, ts=EXPIRES - 1), join(3, 40)], res.state)
    assert triggers(results) == []
    assert all(r.outcome is None for r in results)
    assert (late.status, late.joined, late.late) == ("expired", 20, 80)


def test_a_join_stamped_after_the_expiry_expires_the_group_once() -> None:
    state, results = feed([join(1, 20), join(2, 40, ts=EXPIRES + 5), join(3, 40, ts=EXPIRES + 6)])
    assert triggers(results) == []
    outcomes = [r.outcome for r in results if r.outcome]
    assert [o["outcome"] for o in outcomes] == ["expired"]
    assert (state.status, state.joined, state.late) == ("expired", 20, 80)


def test_a_filled_group_never_expires() -> None:
    state, _ = feed([join(1, 50)])
    res = tick(state, CapacityBook(), ALL, EXPIRES + 1)
    assert (res.triggers, res.outcome, res.state.status) == ((), None, "filled")


def test_no_factory_with_room_is_said_in_the_outcome_and_retried() -> None:
    book = CapacityBook()
    state, results = feed([join(1, 60)], book=book, niche={**NICHE, "category": "shoes"})
    assert triggers(results) == []
    outcome = results[-1].outcome
    assert outcome is not None
    assert outcome["unrouted"] == 60
    assert outcome["reason"] == ("group g-7 filled: 60 joined ≥ target 50: no factory makes 'shoes'; "
                                 "60 units wait for room")
    full = CapacityBook(capacity={"f-gz-dress": 0, "f-fs-knit": 0})
    state, results = feed([join(1, 60)], book=full)
    assert triggers(results) == []
    assert "no room for 60 units of dress" in str(results[-1].outcome)
    assert tick(state, full, ALL, NOW + 2000).triggers == ()
    res = tick(state, CapacityBook(), ALL, NOW + 2000)  # room again
    assert [(t.units, t.factory_id, t.trigger_id) for t in res.triggers] == [
        (60, "f-gz-dress", group_trigger_id("g-7", 1))]
    assert res.state.unrouted == 0


def test_a_group_too_big_for_one_factory_is_split_exactly() -> None:
    book = CapacityBook(capacity={"f-gz-dress": 10, "f-fs-knit": 100})  # room: 20 at GZ, 300 at FS
    state, results = feed([join(1, 310, target=300)], book=book)
    assert [(t.factory_id, t.units) for t in triggers(results)] == [("f-gz-dress", 20), ("f-fs-knit", 290)]
    assert [t.trigger_id for t in triggers(results)] == [group_trigger_id("g-7", 1), group_trigger_id("g-7", 2)]
    assert state.unrouted == 0


def test_a_rejected_part_is_rerouted_exactly_to_another_capable_factory() -> None:
    book = CapacityBook()
    state, results = feed([join(1, 52)], book=book)
    (first,) = triggers(results)
    assert book.admit(first, KEY, ALL, NOW)
    assert book.apply_status(answer(first, "rejected")) is not None
    res = on_status(state, answer(first, "rejected"), book, ALL, NOW + 5000)
    (moved,) = res.triggers
    assert (moved.factory_id, moved.units, moved.kind, moved.group_id) == ("f-fs-knit", 52, "group_buy", "g-7")
    assert moved.trigger_id == group_trigger_id("g-7", 2)
    assert "f-gz-dress rejected it" in moved.reason
    assert_wire_valid(moved)
    assert res.state.rejected_by == ["f-gz-dress"]
    # the last capable factory rejects too: the units wait, nothing goes back to a rejecting factory
    last = on_status(res.state, answer(moved, "rejected"), book, ALL, NOW + 6000)
    assert last.triggers == ()
    assert last.state.unrouted == 52
    assert tick(last.state, CapacityBook(), ALL, NOW + 7000).triggers == ()


def test_a_bounced_part_goes_elsewhere() -> None:
    state, results = feed([join(1, 52)])
    (first,) = triggers(results)
    res = on_bounce(state, first.trigger_id, CapacityBook(), ALL, NOW + 5000)
    assert [(t.factory_id, t.units) for t in res.triggers] == [("f-fs-knit", 52)]
    assert first.trigger_id not in res.state.parts
    assert res.state.rejected_by == []
    assert on_bounce(res.state, "t-unknown", CapacityBook(), ALL, NOW).triggers == ()


def test_completion_closes_the_group() -> None:
    state, results = feed([join(1, 52)])
    (t,) = triggers(results)
    accepted = on_status(state, answer(t, "accepted"), CapacityBook(), ALL, NOW)
    assert accepted.state.parts[t.trigger_id].stage == "accepted"
    assert not accepted.state.closed
    other = on_status(accepted.state, FactoryStatus(factory_id="f-fs-knit", status="completed", ts=NOW,
                                                    trigger_id=t.trigger_id, revision=1, units=52),
                      CapacityBook(), ALL, NOW)
    assert other.state == accepted.state  # not that factory's trigger
    done = on_status(accepted.state, answer(t, "completed"), CapacityBook(), ALL, NOW)
    assert (done.state.made, done.state.parts, done.state.closed) == (52, {}, True)
    assert done.triggers == ()


def test_functions_do_not_change_their_input() -> None:
    state, _ = feed([join(1, 20)])
    snapshot = state.to_dict()
    on_join(state, "g-7", KEY, NICHE, join(2, 40), CapacityBook(), ALL, NOW)
    tick(state, CapacityBook(), ALL, EXPIRES + 1)
    assert state.to_dict() == snapshot


def test_state_round_trips_through_json() -> None:
    state, results = feed([join(1, 30), join(2, 30), join(3, 5)])
    (t,) = triggers(results)
    state = on_status(state, answer(t, "accepted"), CapacityBook(), ALL, NOW).state
    back = GroupState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert back == state
    assert back.overflow == 5
    again, replay = feed([join(3, 5)], back)  # dedupe survives the round trip
    assert triggers(replay) == []
    assert again == back


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=30), st.integers(1, 120), st.randoms(use_true_random=False),
       st.integers(0, 3))
def test_any_redelivery_yields_exactly_one_trigger_with_the_filled_units(
        quantities: list[int], target: int, rnd: random.Random, copies: int) -> None:
    """Joins delivered in order, each redelivered any number of times, possibly after later ones."""
    joins = [join(n, q, target=target) for n, q in enumerate(quantities)]
    stream = list(joins)
    for _ in range(copies):  # redeliveries of already-seen joins, anywhere after the original
        i = rnd.randrange(len(joins))
        stream.insert(rnd.randrange(i + 1, len(stream) + 1), joins[i])
    state, results = feed(stream)
    made = triggers(results)
    running, fill = 0, None
    for q in quantities:
        running += q
        if fill is None and running >= target:
            fill = running
    if fill is None:
        assert made == []
        assert (state.status, state.joined) == ("open", sum(quantities))
        return
    assert len(made) == 1
    assert made[0].units == fill
    assert made[0].trigger_id == group_trigger_id("g-7", 1)
    assert (state.joined, state.overflow) == (fill, sum(quantities) - fill)
    assert sum(1 for r in results if r.outcome) == 1
