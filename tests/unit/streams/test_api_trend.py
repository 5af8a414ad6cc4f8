"""The additive "trend" and "last_ts_ms" fields of /api/niches entries: what the dashboard draws."""

from __future__ import annotations

from streams import api

MIN = 60_000


def test_trend_is_the_last_buckets_up_to_the_newest_with_gaps_as_zeros() -> None:
    buckets = {str(10 * MIN): {"view": 5, "units": 1}, str(12 * MIN): {"view": 7, "add_to_cart": 2, "orders": 1,
                                                                        "units": 3}}
    t = api.trend(buckets, MIN, n=4)
    assert t == {"bucket_ms": MIN, "start_ms": 9 * MIN, "view": [0, 5, 0, 7], "add_to_cart": [0, 0, 0, 2],
                 "orders": [0, 0, 0, 1], "units": [0, 1, 0, 3]}


def test_step_is_inferred_when_not_given() -> None:
    buckets = {str(2 * 30_000): {"units": 1}, str(6 * 30_000): {"units": 2}, str(8 * 30_000): {"units": 4}}
    t = api.trend(buckets, n=3)
    assert (t["bucket_ms"], t["start_ms"], t["units"]) == (60_000, 4 * 30_000, [0, 2, 4])


def test_no_buckets_no_trend() -> None:
    assert api.trend({}, MIN)["units"] == []


def test_niche_entry_keeps_the_contract_keys_and_adds_trend() -> None:
    demand = {"counts": {"view": 9, "units": 4}, "buckets": {str(5 * MIN): {"view": 9, "units": 4}},
              "last_ts_ms": 5 * MIN + 1234, "niche": {"category": "dress", "region": "CN-GD"}}
    lot = {"trigger_id": "t-1", "factory_id": "f-1", "revision": 2, "units": 150, "due_by_ts": 9 * MIN}
    plan = {"seq": 1, "stock": {"on_hand": 7, "backorder": 0, "lots": {"t-1": lot}}, "note": "p90 fits"}
    entry = api.niche_entry("dress|CN-GD", demand, plan, {"p50": 3, "p90": 5}, trend_buckets=2)
    assert list(entry)[:5] == ["niche", "attrs", "counts", "forecast", "open_units"]
    assert entry["counts"]["view"] == 9 and entry["open_units"] == 150
    assert entry["stock"]["on_hand"] == 7 and entry["stock"]["lots"][0]["revision"] == 2
    assert entry["plan_note"] == "p90 fits"
    assert entry["last_ts_ms"] == 5 * MIN + 1234
    assert entry["trend"]["units"] == [0, 4]
