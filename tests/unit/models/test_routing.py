"""Routing: batch sizes in whole steps never below the minimum; the fastest capable factory with room;
the capacity book that never lets a factory be asked for more than it can make by a deadline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.routing import Booking, CapacityBook, Commitment, Factory, batch_floor, batch_units, choose_factory, reroute
from streams.records import FactoryStatus

GZ = Factory("f-gz-dress", ("dress", "skirt"), 4000, 100, 50, 48)
FS = Factory("f-fs-knit", ("dress", "top", "knitwear"), 2500, 100, 50, 72)
NT = Factory("f-nt-denim", ("jeans", "jacket"), 3000, 150, 50, 96)
HZ = Factory("f-hz-tops", ("top", "skirt"), 5000, 100, 100, 36)
ALL = (GZ, FS, NT, HZ)

factories = st.builds(
    Factory,
    id=st.sampled_from(["f-a", "f-b", "f-c"]),
    categories=st.just(("dress",)),
    capacity_units_per_day=st.integers(min_value=1, max_value=10_000),
    min_batch=st.integers(min_value=1, max_value=500),
    batch_step=st.integers(min_value=1, max_value=300),
    lead_time_hours=st.integers(min_value=1, max_value=200),
)


def test_makes() -> None:
    assert GZ.makes("dress")
    assert not GZ.makes("jeans")


@pytest.mark.parametrize(("wanted", "factory", "expected"), [
    (0, GZ, 100), (-5, GZ, 100), (1, GZ, 100), (100, GZ, 100), (101, GZ, 150), (149.5, GZ, 150),
    (150, GZ, 150), (151, GZ, 200), (10, NT, 150), (160, NT, 200), (101, HZ, 200), (250, HZ, 300),
])
def test_batch_units_examples(wanted: float, factory: Factory, expected: int) -> None:
    assert batch_units(wanted, factory) == expected


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), factories)
def test_batch_units_is_a_whole_number_of_steps_and_at_least_min_batch(wanted: float, factory: Factory) -> None:
    units = batch_units(wanted, factory)
    assert isinstance(units, int)
    assert units % factory.batch_step == 0
    assert units >= factory.min_batch


@given(st.integers(min_value=1, max_value=10**6), factories)
def test_batch_units_covers_the_wanted_amount_by_less_than_a_step(wanted: int, factory: Factory) -> None:
    units = batch_units(wanted, factory)
    assert units >= wanted
    floor = math.ceil(factory.min_batch / factory.batch_step) * factory.batch_step
    assert units == floor or units - wanted < factory.batch_step


@pytest.mark.parametrize(("room", "factory", "expected"), [
    (0, GZ, 0), (99, GZ, 0), (100, GZ, 100), (149, GZ, 100), (150, GZ, 150), (-50, GZ, 0), (149, NT, 0),
    (199, NT, 150), (199, HZ, 100), (250.5, HZ, 200),
])
def test_batch_floor_examples(room: float, factory: Factory, expected: int) -> None:
    assert batch_floor(room, factory) == expected


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), factories)
def test_batch_floor_is_the_largest_valid_batch_within_room(room: float, factory: Factory) -> None:
    units = batch_floor(room, factory)
    assert units <= max(room, 0)
    if units:
        assert units % factory.batch_step == 0
        assert units >= factory.min_batch
        assert units + factory.batch_step > room
    else:
        assert room < batch_units(0, factory)


def test_choose_factory_picks_the_shortest_lead_time_among_capable() -> None:
    assert choose_factory("dress", 200, ALL, {}) == GZ  # 48 h beats FS's 72 h
    assert choose_factory("top", 200, ALL, {}) == HZ  # 36 h
    assert choose_factory("jeans", 200, ALL, {}) == NT
    assert choose_factory("knitwear", 200, ALL, {}) == FS


def test_choose_factory_skips_one_without_room() -> None:
    assert choose_factory("dress", 200, ALL, {"f-gz-dress": 3850}) == FS
    assert choose_factory("dress", 200, ALL, {"f-gz-dress": 3800}) == GZ  # exactly fills the day


def test_room_is_checked_against_the_rounded_batch() -> None:
    # 120 wanted becomes a 150 batch at f-gz-dress: 3870 + 150 > 4000, though 3870 + 120 would fit
    assert choose_factory("dress", 120, ALL, {"f-gz-dress": 3870}) == FS


def test_choose_factory_returns_none_when_none_can() -> None:
    assert choose_factory("shoes", 100, ALL, {}) is None
    assert choose_factory("jeans", 100, ALL, {"f-nt-denim": 2900}) is None
    assert choose_factory("dress", 5000, ALL, {}) is None
    assert choose_factory("dress", 100, (), {}) is None


def test_ties_on_lead_time_break_by_id() -> None:
    a = Factory("f-a", ("dress",), 1000, 100, 50, 24)
    b = Factory("f-b", ("dress",), 1000, 100, 50, 24)
    assert choose_factory("dress", 100, (b, a), {}) == a
    assert choose_factory("dress", 100, (a, b), {}) == a


@given(st.lists(factories, max_size=4), st.integers(min_value=1, max_value=2000),
       st.dictionaries(st.sampled_from(["f-a", "f-b", "f-c"]), st.integers(min_value=0, max_value=10_000)))
def test_chosen_factory_is_capable_has_room_and_is_fastest(
        fs: list[Factory], units: int, open_units: dict[str, int]) -> None:
    chosen = choose_factory("dress", units, fs, open_units)
    with_room = [f for f in fs
                 if open_units.get(f.id, 0) + batch_units(units, f) <= f.capacity_units_per_day]
    if chosen is None:
        assert with_room == []
    else:
        assert chosen in with_room
        assert chosen.lead_time_hours == min(f.lead_time_hours for f in with_room)


# -- the capacity book ------------------------------------------------------------------------------

NOW = 1_764_000_000_000
H = 3_600_000


@dataclass(frozen=True)
class Trig:
    """The fields CapacityBook.admit reads of a trigger."""

    trigger_id: str
    revision: int
    action: str
    factory_id: str
    units: int
    due_by_ts: int
    group_id: str | None = None


def trig(tid: str, factory: Factory, units: int, revision: int = 1, action: str = "start",
         now: int = NOW) -> Trig:
    return Trig(tid, revision, action, factory.id, units, factory.due(now))


def status(factory: Factory, tid: str | None, kind: str, units: int | None = None, revision: int | None = 1,
           capacity: int | None = None) -> FactoryStatus:
    return FactoryStatus(factory_id=factory.id, status=kind, ts=NOW, trigger_id=tid, revision=revision,
                         units=units, capacity_units_per_day=capacity)


def test_room_is_the_rate_over_the_lead_time() -> None:
    book = CapacityBook()
    assert book.room(GZ, NOW, GZ.due(NOW)) == 8000  # 4000/day x 48 h
    assert book.room(HZ, NOW, HZ.due(NOW)) == 7500  # 5000/day x 36 h
    assert book.room(GZ, NOW, NOW) == 0
    assert book.room(GZ, NOW, NOW - H) == 0


def test_room_counts_what_is_due_before_and_protects_what_is_due_later() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-early", GZ, 3000, now=NOW - 24 * H), "n", ALL, NOW)  # due in 24 h
    assert book.room(GZ, NOW, GZ.due(NOW)) == 5000
    # a batch due in 24 h now fits only 1000 more: the 3000 already due by then take the rest
    assert book.room(GZ, NOW, NOW + 24 * H) == 1000
    # and a later batch due in 30 h must not squeeze the earlier one: 4000/day x 30 h = 5000
    assert book.room(GZ, NOW, NOW + 30 * H) == 2000
    assert book.room(GZ, NOW, GZ.due(NOW), ignore="t-early") == 8000


def test_room_for_an_early_batch_keeps_later_deadlines_feasible() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-late", GZ, 7000), "n", ALL, NOW)  # due in 48 h; 8000 fit
    # a batch due in 24 h would fit 4000 on its own, but only 1000 leave the 48 h batch on time
    assert book.room(GZ, NOW, NOW + 24 * H) == 1000


def test_overdue_commitments_count_until_the_factory_reports() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-old", GZ, 6000, now=NOW - 72 * H), "n", ALL, NOW - 72 * H)  # due a day ago
    assert book.room(GZ, NOW, GZ.due(NOW)) == 2000
    book.apply_status(status(GZ, "t-old", "completed", 6000))
    assert book.room(GZ, NOW, GZ.due(NOW)) == 8000


def test_announced_capacity_overrides_the_declared_one() -> None:
    book = CapacityBook()
    assert book.apply_status(status(GZ, None, "capacity", revision=None, capacity=1000)) is None
    assert book.capacity_per_day(GZ) == 1000
    assert book.room(GZ, NOW, GZ.due(NOW)) == 2000
    assert book.capacity_per_day(FS) == 2500


def test_route_prefers_the_fastest_factory_that_takes_it_all() -> None:
    book = CapacityBook()
    route = book.route("dress", 270, NOW, ALL)
    assert [(p.factory.id, p.units, p.due_by_ts) for p in route.parts] == [("f-gz-dress", 300, GZ.due(NOW))]
    assert route.short == 0
    assert route.reason == ""
    # GZ cannot take 8100 whole but FS (2500/day x 72 h = 7500) cannot either: split, fastest first
    split = book.route("dress", 8100, NOW, ALL)
    assert [(p.factory.id, p.units) for p in split.parts] == [("f-gz-dress", 8000), ("f-fs-knit", 100)]
    # 7600 fits whole only at GZ: no split
    assert [(p.factory.id, p.units) for p in book.route("dress", 7600, NOW, ALL).parts] == [("f-gz-dress", 7600)]


def test_route_takes_a_slower_factory_whole_rather_than_split() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 7000), "n", ALL, NOW)
    route = book.route("dress", 2000, NOW, ALL)
    assert [(p.factory.id, p.units) for p in route.parts] == [("f-fs-knit", 2000)]


def test_route_leaves_short_what_no_factory_can_take() -> None:
    book = CapacityBook()
    route = book.route("dress", 20_000, NOW, ALL)
    assert [(p.factory.id, p.units) for p in route.parts] == [("f-gz-dress", 8000), ("f-fs-knit", 7500)]
    assert route.short == 4500
    assert "no room for 4500 units of dress" in route.reason
    none = book.route("shoes", 100, NOW, ALL)
    assert none.parts == ()
    assert none.reason == "no factory makes 'shoes'"
    excluded = book.route("jeans", 200, NOW, ALL, exclude={"f-nt-denim"})
    assert excluded.parts == ()
    assert excluded.reason == "no factory makes 'jeans' (excluding f-nt-denim)"


def test_route_never_makes_a_batch_for_less_than_a_min_batch_of_need() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 7950), "n", ALL, NOW)  # 50 left at GZ, below its min batch
    route = book.route("dress", 80, NOW, ALL)
    assert route.parts == ()
    assert route.short == 80
    assert "less than a min batch" in route.reason
    assert book.route("dress", 120, NOW, ALL).parts[0].factory == FS


def test_exact_routes_are_not_rounded_and_split_exactly() -> None:
    book = CapacityBook()
    assert [(p.factory.id, p.units) for p in book.route("dress", 7, NOW, ALL, exact=True).parts] == [
        ("f-gz-dress", 7)]
    assert book.admit(trig("t-1", GZ, 7990), "n", ALL, NOW)
    assert book.admit(trig("t-2", FS, 7480), "n", ALL, NOW)
    route = book.route("dress", 25, NOW, ALL, exact=True)
    assert [(p.factory.id, p.units) for p in route.parts] == [("f-gz-dress", 10), ("f-fs-knit", 15)]
    assert route.units == 25
    assert route.short == 0


def test_admit_books_once_and_is_idempotent() -> None:
    book = CapacityBook()
    t = trig("t-1", GZ, 300)
    assert book.admit(t, "niche-a", ALL, NOW)
    assert book.admit(t, "niche-a", ALL, NOW)  # redelivered: admitted again, booked once
    assert book.committed("f-gz-dress") == 300
    booking = book.find("t-1")
    assert booking is not None
    assert (booking.niche_key, booking.group_id, booking.revision, booking.due_by_ts) == ("niche-a", None, 1,
                                                                                            GZ.due(NOW))
    assert not book.admit(Trig("t-1", 1, "start", "f-fs-knit", 300, FS.due(NOW)), "niche-a", ALL, NOW)
    assert not book.admit(Trig("t-1", 2, "start", "f-gz-dress", 300, GZ.due(NOW)), "niche-a", ALL, NOW)
    assert not book.admit(trig("t-x", Factory("f-unknown", ("dress",), 1, 1, 1, 1), 1), "n", ALL, NOW)


def test_admit_bounces_what_does_not_fit() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 7000), "n", ALL, NOW)
    assert not book.admit(trig("t-2", GZ, 1050), "n", ALL, NOW)
    assert book.find("t-2") is None
    assert book.admit(trig("t-2", GZ, 1000), "n", ALL, NOW)


def test_revisions_grow_within_room_shrink_freely_and_cancel_frees() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 4000), "n", ALL, NOW)
    assert book.admit(trig("t-2", GZ, 3000), "n", ALL, NOW)
    assert not book.admit(trig("t-1", GZ, 5050, revision=2, action="revise"), "n", ALL, NOW)
    assert book.committed("f-gz-dress") == 7000
    assert book.admit(trig("t-1", GZ, 5000, revision=2, action="revise"), "n", ALL, NOW)
    assert book.committed("f-gz-dress") == 8000
    assert book.admit(trig("t-1", GZ, 100, revision=3, action="revise"), "n", ALL, NOW)
    assert book.committed("f-gz-dress") == 3100
    assert book.admit(trig("t-1", GZ, 100, revision=2, action="revise"), "n", ALL, NOW)  # stale: no change
    assert book.committed("f-gz-dress") == 3100
    assert book.admit(trig("t-2", GZ, 3000, revision=2, action="cancel"), "n", ALL, NOW)
    assert book.committed("f-gz-dress") == 100
    assert not book.admit(trig("t-2", GZ, 3000, revision=3, action="revise"), "n", ALL, NOW)  # gone


def test_once_accepted_a_trigger_is_the_factorys() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 300), "n", ALL, NOW)
    book.apply_status(status(GZ, "t-1", "accepted", 300))
    assert not book.admit(trig("t-1", GZ, 400, revision=2, action="revise"), "n", ALL, NOW)
    assert not book.admit(trig("t-1", GZ, 300, revision=2, action="cancel"), "n", ALL, NOW)
    assert book.committed("f-gz-dress") == 300


def test_factory_answers_move_the_book() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 300), "niche-a", ALL, NOW)
    assert book.admit(trig("t-2", GZ, 500), "niche-b", ALL, NOW)
    accepted = book.apply_status(status(GZ, "t-1", "accepted", 200))
    assert accepted is not None
    assert accepted.niche_key == "niche-a"
    assert book.committed("f-gz-dress") == 700  # accepted 200 of 300: 100 come back
    assert book.apply_status(status(FS, "t-1", "completed", 200)) is None  # not that factory's trigger
    assert book.apply_status(status(GZ, "t-9", "completed", 200)) is None  # unknown trigger
    done = book.apply_status(status(GZ, "t-1", "completed", 200))
    assert done is not None
    assert done.trigger_id == "t-1"
    assert book.find("t-1") is None
    rejected = book.apply_status(status(GZ, "t-2", "rejected", 500))
    assert rejected is not None
    assert rejected.niche_key == "niche-b"
    assert book.committed("f-gz-dress") == 0
    assert book.find("t-2") is None
    assert book.apply_status(status(GZ, "t-2", "rejected", 500)) is None  # redelivered


def test_reroute_excludes_the_rejecting_factory() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 300), "n", ALL, NOW)
    rejected = book.apply_status(status(GZ, "t-1", "rejected", 300))
    assert rejected is not None
    route = reroute(rejected, "dress", 300, book, ALL, NOW, exact=False)
    assert [(p.factory.id, p.units) for p in route.parts] == [("f-fs-knit", 300)]
    assert reroute(rejected, "dress", 300, book, ALL, NOW, exact=False, avoid={"f-fs-knit"}).parts == ()


def test_commitment_stages_only_move_forward() -> None:
    c = Commitment("t-1", "f-gz-dress", 2, 400, NOW)
    assert c.apply(status(GZ, "t-1", "in_production", 400, revision=2)) == "updated"
    assert c.stage == "in_production"
    assert c.apply(status(GZ, "t-1", "accepted", 400, revision=2)) == "updated"
    assert c.stage == "in_production"
    assert c.apply(status(GZ, "t-1", "accepted", 400, revision=3)) == "ignored"  # never issued
    assert c.apply(status(GZ, "t-1", "capacity", 400)) == "ignored"
    assert c.apply(status(GZ, "t-1", "completed", 390, revision=2)) == "completed"


def test_only_acceptance_lowers_the_units() -> None:
    c = Commitment("t-1", "f-gz-dress", 1, 400, NOW)
    assert c.apply(status(GZ, "t-1", "in_production", 0)) == "updated"
    assert (c.stage, c.units, c.accepted_revision, c.accepted_units) == ("in_production", 400, 1, 400)
    d = Commitment("t-2", "f-gz-dress", 1, 400, NOW)
    assert d.apply(status(GZ, "t-2", "accepted", 500)) == "updated"
    assert d.units == 400  # accepting more than asked holds it to what was asked


def test_accepting_an_older_revision_keeps_the_newer_one_open() -> None:
    c = Commitment("t-1", "f-gz-dress", 2, 400, NOW)
    assert c.apply(status(GZ, "t-1", "accepted", 300, revision=1)) == "updated"
    assert (c.stage, c.units, c.accepted_revision, c.accepted_units) == ("accepted", 400, 1, 300)
    # declining revision 2 after accepting revision 1: the accepted 300 stand
    assert c.apply(status(GZ, "t-1", "rejected", 400, revision=2)) == "updated"
    assert c.units == 300
    # rejecting what it accepted ends the trigger
    assert c.apply(status(GZ, "t-1", "rejected", 300, revision=1)) == "rejected"
    fresh = Commitment("t-2", "f-gz-dress", 2, 400, NOW)
    assert fresh.apply(status(GZ, "t-2", "rejected", 300, revision=1)) == "rejected"  # never accepted


def test_book_round_trips_through_json() -> None:
    book = CapacityBook()
    assert book.admit(trig("t-1", GZ, 300), "niche-a", ALL, NOW)
    assert book.admit(Trig("t-g", 1, "start", "f-fs-knit", 52, FS.due(NOW), group_id="g-7"), "niche-b", ALL, NOW)
    book.apply_status(status(GZ, "t-1", "accepted", 300))
    book.apply_status(status(HZ, None, "capacity", revision=None, capacity=900))
    raw = orjson.loads(orjson.dumps(book.to_dict()))
    assert set(raw) == {"f-gz-dress", "f-fs-knit", "f-hz-tops"}
    assert raw["f-hz-tops"] == {"bookings": {}, "capacity": 900}
    assert CapacityBook.from_dict(raw) == book
    assert CapacityBook.from_dict(None) == CapacityBook()
    # a worker keeps one table entry per factory and rewrites only the factory a change touched
    table = {fid: orjson.loads(orjson.dumps(book.factory_state(fid))) for fid in ("f-gz-dress", "f-fs-knit")}
    table["f-gz-dress"]["bookings"]["t-1"]["future_field"] = 1  # a newer writer's field is ignored
    partial = CapacityBook.from_dict(table)
    assert partial.find("t-1") == book.find("t-1")
    assert partial.find("t-g") == book.find("t-g")
    assert partial.capacity == {}


def _overbooked(book: CapacityBook, factories: tuple[Factory, ...], now: int) -> list[str]:
    """Factories with some deadline d >= now by which more is due than they can make by d."""
    out = []
    for f in factories:
        at = book.bookings.get(f.id, {}).values()
        assert all(b.factory_id == f.id for b in at)
        for d in sorted({b.due_by_ts for b in at if b.due_by_ts >= now}):
            load = sum(b.units for b in at if b.due_by_ts <= d)
            if load > book.window_capacity(f, now, d):
                out.append(f"{f.id}: {load} due by {d}")
    return out


FLEET = (
    Factory("f-a", ("dress",), 400, 100, 50, 24),
    Factory("f-b", ("dress", "top"), 300, 60, 20, 48),
    Factory("f-c", ("top",), 250, 50, 50, 12),
)

ops = st.lists(st.one_of(
    st.tuples(st.just("request"), st.sampled_from(["dress", "top"]), st.integers(1, 1500), st.booleans(),
              st.integers(0, 48)),
    st.tuples(st.just("answer"), st.integers(0, 30), st.sampled_from(["accepted", "rejected", "completed"]),
              st.integers(0, 1500), st.integers(0, 48)),
    st.tuples(st.just("revise"), st.integers(0, 30), st.integers(1, 1500), st.integers(0, 48), st.just(0)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops, st.booleans())
def test_declared_capacity_is_never_exceeded(steps: list[tuple[Any, ...]], time_moves: bool) -> None:
    """Any sequence of requests (routed, split, admitted), revisions and factory answers: no factory is
    ever booked past what it can make by any deadline. With time moving, capacity already behind us
    cannot be protected, so then the check is that a grant never creates an overload."""
    book = CapacityBook()
    issued: list[Trig] = []
    now = NOW
    for n, step in enumerate(steps):
        if time_moves:
            now += step[-1] * H
        before = _overbooked(book, FLEET, now)
        if step[0] == "request":
            _, category, units, exact, _ = step
            for i, part in enumerate(book.route(category, units, now, FLEET, exact=exact).parts):
                t = Trig(f"t-{n}-{i}", 1, "start", part.factory.id, part.units, part.due_by_ts)
                assert book.admit(t, "n", FLEET, now)
                issued.append(t)
                if not exact:
                    assert part.units % part.factory.batch_step == 0
                    assert part.units >= part.factory.min_batch
        elif issued and step[0] == "answer":
            t = issued[step[1] % len(issued)]
            factory = next(f for f in FLEET if f.id == t.factory_id)
            book.apply_status(FactoryStatus(factory_id=factory.id, status=step[2], ts=now, trigger_id=t.trigger_id,
                                            revision=t.revision, units=step[3]))
        elif issued and step[0] == "revise":
            t = issued[step[1] % len(issued)]
            new = Trig(t.trigger_id, t.revision + 1, "revise", t.factory_id, step[2], t.due_by_ts)
            if book.admit(new, "n", FLEET, now):
                issued[step[1] % len(issued)] = new
        if not before:
            assert _overbooked(book, FLEET, now) == []
        for f in FLEET:
            assert book.committed(f.id) >= 0


def reference_room(book: CapacityBook, factory: Factory, now_ms: int, due_by_ts: int, ignore: str | None = None) -> int:
    """room() as first written: sort every load on every call (the cached room must agree with it)."""
    loads = sorted((b.due_by_ts, b.units) for b in book.bookings.get(factory.id, {}).values()
                   if b.trigger_id != ignore)
    running = sum(units for due, units in loads if due <= due_by_ts)
    best = book.window_capacity(factory, now_ms, due_by_ts) - running
    for due, units in loads:
        if due > due_by_ts:
            running += units
            best = min(best, book.window_capacity(factory, now_ms, due) - running)
    return max(0, best)


room_steps = st.lists(st.tuples(
    st.sampled_from(["book", "grow", "drop", "replace", "ask"]),
    st.integers(min_value=0, max_value=5),  # trigger
    st.integers(min_value=0, max_value=400),  # units
    st.integers(min_value=-48, max_value=120),  # due, hours from T
    st.integers(min_value=0, max_value=100),  # now, hours from T
), max_size=40)


@given(room_steps)
def test_cached_room_agrees_with_sorting_every_time(steps: list[tuple[str, int, int, int, int]]) -> None:
    """Bookings added, grown (in place), dropped and swapped behind the book's back between calls."""
    book = CapacityBook()
    t0 = 1_764_000_000_000
    for op, i, units, due_h, now_h in steps:
        at = book.bookings.setdefault(GZ.id, {})
        tid = f"t-{i}"
        due = t0 + due_h * 3_600_000
        if op == "book":
            at[tid] = Booking(tid, GZ.id, 1, units, due)
        elif op == "grow" and tid in at:
            at[tid].units = units
        elif op == "drop":
            at.pop(tid, None)
        elif op == "replace":
            book.bookings[GZ.id] = {**at, tid: Booking(tid, GZ.id, 2, units, due)}
        now = t0 + now_h * 3_600_000
        for ignore in (None, tid, "t-none"):
            for due_by in (due, now + GZ.lead_time_hours * 3_600_000, now - 1):
                assert book.room(GZ, now, due_by, ignore) == reference_room(book, GZ, now, due_by, ignore)
