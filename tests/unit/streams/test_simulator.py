"""The simulator: seeded and reproducible, surges visible in the funnel, and every record valid."""

from __future__ import annotations

import itertools

import orjson
import pytest

from streams.errors import UserError
from streams.records import Event, parse_click, parse_order
from streams.simulator import SCENARIOS, NicheSpec, SimEvent, generate, scenario, surging

START_MS = 1_764_000_000_000


def run(name: str, rate: float, duration_s: float, seed: int) -> list[SimEvent]:
    return list(generate(scenario(name), rate=rate, duration_s=duration_s, seed=seed, start_ms=START_MS))


def test_same_seed_same_events() -> None:
    assert run("surge", 200, 15, seed=7) == run("surge", 200, 15, seed=7)


def test_different_seed_different_events() -> None:
    a = run("surge", 200, 15, seed=7)
    b = run("surge", 200, 15, seed=8)
    assert a
    assert b
    assert [e.value["sku"] for e in a[:50]] != [e.value["sku"] for e in b[:50]]


def test_rate_and_duration_are_roughly_respected() -> None:
    events = run("steady", 100, 30, seed=1)
    views = sum(1 for e in events if e.value["type"] == "view")
    assert 2000 < views < 3500  # ~ 30 s x 100/1.1 views/s
    assert all(e.offset_s < 30 + 6 for e in events)  # carts/orders trail their view by at most 6 s


def test_events_come_out_in_time_order_per_kind() -> None:
    events = run("surge", 300, 20, seed=3)
    views = [e.offset_s for e in events if e.value["type"] == "view"]
    assert views == sorted(views)
    for e in events:
        assert e.value["ts"] == START_MS + int(e.offset_s * 1000)


def test_no_duration_is_an_endless_stream() -> None:
    stream = generate(scenario("steady"), rate=50, duration_s=None, seed=1, start_ms=START_MS)
    assert len(list(itertools.islice(stream, 5000))) == 5000


def test_every_generated_record_parses() -> None:
    events = run("surge", 300, 40, seed=11)
    now_ms = START_MS + 50_000
    seen_types = set()
    for e in events:
        raw = orjson.dumps(e.value)
        parsed = parse_order(raw, now_ms) if e.topic == "c2m.orders" else parse_click(raw, now_ms)
        assert isinstance(parsed, Event), (e, parsed)
        seen_types.add((e.topic, parsed.type))
    assert seen_types == {("c2m.clickstream", "view"), ("c2m.clickstream", "add_to_cart"), ("c2m.orders", "placed")}


def test_order_keys_are_order_ids_and_click_keys_users() -> None:
    for e in run("steady", 300, 20, seed=5):
        if e.topic == "c2m.orders":
            assert e.key == e.value["order_id"]
        else:
            assert e.key == e.value["user_id"]


def test_event_ids_are_unique() -> None:
    events = run("surge", 300, 30, seed=2)
    ids = [e.value["event_id"] for e in events]
    assert len(ids) == len(set(ids))


def _share(events: list[SimEvent], niche: NicheSpec, etype: str, after: bool) -> float:
    assert niche.surge_at_s is not None
    chosen = [e for e in events if e.value["type"] == etype and (e.offset_s >= niche.surge_at_s) == after]
    assert len(chosen) >= 30, f"too few {etype} events to compare"
    return sum(1 for e in chosen if e.value["sku"] == niche.sku) / len(chosen)


def test_surging_niches_gain_a_larger_share_of_carts_and_orders() -> None:
    events = run("surge", 1500, 40, seed=1)
    niches = surging("surge")
    assert len(niches) >= 1
    for niche in niches:
        for etype in ("add_to_cart", "placed"):
            before = _share(events, niche, etype, after=False)
            after = _share(events, niche, etype, after=True)
            assert after >= 2 * before, (niche.sku, etype, before, after)
            assert after > 0.25, (niche.sku, etype, after)


def test_steady_scenario_has_no_surge() -> None:
    assert surging("steady") == []
    assert surging("surge")
    assert all(not n.surging(10_000) for n in scenario("steady"))


def test_surging_flag() -> None:
    niche = SCENARIOS["surge"][0]
    assert niche.surge_at_s is not None
    assert not niche.surging(niche.surge_at_s - 0.001)
    assert niche.surging(niche.surge_at_s)


def test_unknown_scenario_is_a_user_error_listing_the_choices() -> None:
    with pytest.raises(UserError) as info:
        scenario("apocalypse")
    assert "apocalypse" in str(info.value)
    for name in SCENARIOS:
        assert name in str(info.value)
    with pytest.raises(UserError):
        surging("apocalypse")
