"""Day-scale scenarios: seeded, valid in the public contract, in time order, with ground truth."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from streams import scenarios
from streams.errors import UserError
from streams.records import Event, parse_click, parse_order
from streams.simulator import SimEvent

FAR_FUTURE = 4_000_000_000_000
TINY = replace(scenarios.spec("default", days=3), products=8, consumers=2000, views_per_hour=400.0, launches=2,
               groups_per_day=24.0, shocks=(("dress", 30.0, 0.5),))


def run(spec: scenarios.ScenarioSpec, seed: int) -> tuple[list[SimEvent], scenarios.Truth]:
    truth = scenarios.Truth(spec.name, spec.about, seed, spec.days, scenarios.START_MS)
    return list(scenarios.generate(spec, seed, truth)), truth


def test_same_seed_same_file_and_another_seed_another() -> None:
    a, truth_a = run(TINY, 1)
    b, truth_b = run(TINY, 1)
    c, _ = run(TINY, 2)
    assert a == b
    assert truth_a.to_json() == truth_b.to_json()
    assert [e.value for e in a[:200]] != [e.value for e in c[:200]]


def test_every_event_is_valid_in_the_public_contract_and_in_time_order() -> None:
    events, truth = run(TINY, 3)
    assert truth.events == len(events) > 10_000
    types: set[str] = set()
    last = 0
    for ev in events:
        raw = orjson.dumps(ev.value)
        parsed = (parse_order if ev.topic == "c2m.orders" else parse_click)(raw, FAR_FUTURE)
        assert isinstance(parsed, Event), (parsed, ev.value)
        assert parsed.ts >= last
        last = parsed.ts
        types.add(parsed.type)
        if parsed.type == "group_join":
            assert parsed.group_id and parsed.group_target and parsed.group_expires_ts
    assert types == {"view", "search", "add_to_cart", "remove_from_cart", "wishlist", "share", "placed",
                     "cancelled", "group_join"}
    assert events[0].value["ts"] >= scenarios.START_MS  # type: ignore[operator]
    assert last < scenarios.START_MS + 3 * 24 * scenarios.HOUR_MS + 2 * scenarios.HOUR_MS  # cancels trail orders


def test_orders_trail_views_by_hours() -> None:
    events, _ = run(TINY, 4)
    seen: dict[tuple[object, object], int] = {}
    lags = []
    for e in events:
        key = (e.value.get("user_id"), e.value.get("sku"))
        if e.value["type"] == "add_to_cart":
            seen[key] = e.value["ts"]  # type: ignore[assignment]
        elif e.value["type"] == "placed" and key in seen:
            lags.append(e.value["ts"] - seen[key])  # type: ignore[operator]
    lags.sort()
    assert len(lags) > 100
    assert 2 * scenarios.HOUR_MS < lags[len(lags) // 2] < 6 * scenarios.HOUR_MS  # cart to order: hours


def test_truth_has_every_niche_its_units_and_the_changes() -> None:
    events, truth = run(TINY, 5)
    hours = round(TINY.days * 24)
    launched = {t["sku"] for t in truth.launches}
    assert len(launched) == 2
    assert truth.shocks == [{"category": "dress", "at_hour": 30.0, "factor": 0.5}]
    assert len(truth.fads) == TINY.fads
    ordered = sum(e.value["quantity"] for e in events if e.value["type"] == "placed")  # type: ignore[misc]
    cancelled = sum(e.value["quantity"] for e in events if e.value["type"] == "cancelled"  # type: ignore[misc]
                    and e.value["ts"] < scenarios.START_MS + hours * scenarios.HOUR_MS)  # type: ignore[operator]
    total = 0
    for key, niche in truth.niches.items():
        assert key == "|".join(niche["attrs"].values())
        assert len(niche["units"]) == len(niche["expected_units"]) == hours
        total += int(sum(niche["units"]))
    assert total == ordered - cancelled
    expected = sum(float(sum(n["expected_units"])) for n in truth.niches.values())
    assert 0.8 < expected / total < 1.25


def test_write_puts_the_truth_beside_the_events(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    n, tpath = scenarios.write(out, replace(TINY, days=1), seed=1)
    assert tpath == tmp_path / "events.truth.json"
    lines = out.read_bytes().splitlines()
    assert len(lines) == n
    first = orjson.loads(lines[0])
    assert set(first) == {"topic", "key", "value"}
    assert orjson.loads(tpath.read_bytes())["events"] == n


def test_named_scenarios_and_bad_input() -> None:
    assert {"default", "seasonal", "fads", "shock", "launch"} <= set(scenarios.SCENARIOS)
    assert scenarios.spec("shock", days=2).days == 2
    with pytest.raises(UserError, match="unknown day-scale scenario 'nope'"):
        scenarios.spec("nope")
    with pytest.raises(UserError, match="--days"):
        scenarios.spec("default", days=0.5)


def test_an_unwritable_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot write"):
        scenarios.write(tmp_path / "missing-dir" / "events.jsonl", replace(TINY, days=1), seed=1)
