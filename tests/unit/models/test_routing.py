"""Routing: batch sizes in whole steps never below the minimum; the fastest capable factory with room."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.routing import Factory, batch_units, choose_factory

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
