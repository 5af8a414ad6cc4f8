"""NicheDemand: bucket arithmetic, lifetime counts, trimming, windows and a JSON round trip."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from models.demand import NicheDemand, bucket_of

B = 60_000  # one-minute buckets
T0 = 1_764_000_000_000  # a bucket boundary (divisible by 60 000)


def test_bucket_of_floors_to_the_bucket_start() -> None:
    assert T0 % B == 0
    assert bucket_of(T0, B) == T0
    assert bucket_of(T0 + 1, B) == T0
    assert bucket_of(T0 + B - 1, B) == T0
    assert bucket_of(T0 + B, B) == T0 + B
    assert bucket_of(90_500, 3_600_000) == 0


@given(st.integers(min_value=0, max_value=2**62), st.integers(min_value=1, max_value=10**9))
def test_bucket_of_properties(ts: int, size: int) -> None:
    start = bucket_of(ts, size)
    assert start % size == 0
    assert start <= ts < start + size


def test_funnel_events_are_counted_by_type() -> None:
    d = NicheDemand()
    for etype in ("view", "view", "add_to_cart", "search", "share"):
        d.add(etype, T0 + 10, 0, B)
    assert d.counts == {"view": 2, "add_to_cart": 1, "search": 1, "share": 1}
    assert d.buckets == {T0: {"view": 2, "add_to_cart": 1, "search": 1, "share": 1}}


def test_orders_count_orders_and_units_and_cancellations_give_units_back() -> None:
    d = NicheDemand()
    d.add("placed", T0, 3, B)
    d.add("placed", T0 + B, 2, B)
    d.add("cancelled", T0 + B, 2, B)
    d.add("group_join", T0 + B, 5, B)
    assert d.counts == {"orders": 2, "units": 3, "cancelled": 1, "group_join": 1, "group_units": 5}
    assert d.buckets[T0] == {"orders": 1, "units": 3}
    assert d.buckets[T0 + B] == {"orders": 1, "units": 0, "cancelled": 1, "group_join": 1, "group_units": 5}


def test_counts_are_since_first_seen_and_survive_trimming() -> None:
    d = NicheDemand()
    d.add("view", T0 + 5 * B, 0, B)
    d.add("view", T0 + 2 * B, 0, B)  # late event: earlier than the first one seen
    d.add("view", T0 + 9 * B + 7, 0, B)
    assert d.first_seen_ms == T0 + 2 * B
    assert d.last_ts_ms == T0 + 9 * B + 7
    d.trim(2, B)
    assert d.counts["view"] == 3
    assert d.first_seen_ms == T0 + 2 * B


def test_trim_keeps_the_newest_buckets() -> None:
    d = NicheDemand()
    for i in range(10):
        d.add("view", T0 + i * B + 1, 0, B)
    d.trim(3, B)
    assert sorted(d.buckets) == [T0 + 7 * B, T0 + 8 * B, T0 + 9 * B]


def test_trim_counts_back_from_the_newest_event_not_from_gaps() -> None:
    d = NicheDemand()
    d.add("view", T0, 0, B)
    d.add("view", T0 + 100 * B, 0, B)
    d.trim(5, B)
    assert sorted(d.buckets) == [T0 + 100 * B]


def test_trim_with_fewer_buckets_than_kept_keeps_all() -> None:
    d = NicheDemand()
    d.add("view", T0, 0, B)
    d.add("view", T0 + B, 0, B)
    d.trim(10, B)
    assert sorted(d.buckets) == [T0, T0 + B]


def test_window_sums_the_n_buckets_ending_with_end() -> None:
    d = NicheDemand()
    for i in range(6):
        for _ in range(i + 1):  # bucket i holds i+1 views
            d.add("view", T0 + i * B, 0, B)
    assert d.window("view", T0 + 5 * B, 3, B) == 4 + 5 + 6
    assert d.window("view", T0 + 5 * B, 1, B) == 6
    assert d.window("view", T0 + 2 * B, 2, B) == 2 + 3
    assert d.window("view", T0 + 5 * B, 100, B) == 21
    assert d.window("view", T0 - B, 3, B) == 0  # before anything
    assert d.window("orders", T0 + 5 * B, 6, B) == 0  # a key never seen


def test_window_ignores_buckets_after_the_end() -> None:
    d = NicheDemand()
    d.add("add_to_cart", T0, 0, B)
    d.add("add_to_cart", T0 + 3 * B, 0, B)
    assert d.window("add_to_cart", T0 + 2 * B, 3, B) == 1


def test_round_trip_through_json() -> None:
    d = NicheDemand()
    d.add("view", T0 + 1, 0, B)
    d.add("placed", T0 + B + 2, 4, B)
    d.add("add_to_cart", T0 + 2 * B, 0, B)
    wire = orjson.dumps(d.to_dict())
    back = NicheDemand.from_dict(orjson.loads(wire))
    assert back == d
    assert all(isinstance(k, int) for k in back.buckets)
    assert back.window("units", T0 + 2 * B, 3, B) == 4


def test_from_dict_of_nothing_is_empty() -> None:
    assert NicheDemand.from_dict(None) == NicheDemand()
    assert NicheDemand.from_dict({}) == NicheDemand()


def test_from_dict_copies_so_the_stored_dict_is_not_mutated() -> None:
    raw = orjson.loads(orjson.dumps(NicheDemand(counts={"view": 1}, buckets={T0: {"view": 1}},
                                                first_seen_ms=T0, last_ts_ms=T0).to_dict()))
    d = NicheDemand.from_dict(raw)
    d.add("view", T0, 0, B)
    assert raw["counts"] == {"view": 1}
    assert raw["buckets"] == {str(T0): {"view": 1}}


events = st.lists(st.tuples(st.sampled_from(["view", "add_to_cart", "placed", "cancelled", "search"]),
                            st.integers(min_value=0, max_value=30 * B), st.integers(min_value=1, max_value=5)),
                  max_size=40)


@given(events)
def test_bucket_sums_equal_lifetime_counts_until_trimmed(evs: list[tuple[str, int, int]]) -> None:
    d = NicheDemand()
    for etype, offset, qty in evs:
        d.add(etype, T0 + offset, qty, B)
    for key, total in d.counts.items():
        assert sum(b.get(key, 0) for b in d.buckets.values()) == total
    assert NicheDemand.from_dict(orjson.loads(orjson.dumps(d.to_dict()))) == d


@given(events, st.integers(min_value=0, max_value=30), st.integers(min_value=1, max_value=40))
def test_windows_is_window_of_each_key(evs: list[tuple[str, int, int]], end: int, n: int) -> None:
    d = NicheDemand()
    for etype, offset, qty in evs:
        d.add(etype, T0 + offset, qty, B)
    keys = ("view", "add_to_cart", "orders", "units")
    assert d.windows(keys, T0 + end * B, n, B) == [d.window(k, T0 + end * B, n, B) for k in keys]


@given(events, events)
def test_from_dict_then_add_equals_adding_to_the_original_and_leaves_the_stored_value_alone(
        before: list[tuple[str, int, int]], after: list[tuple[str, int, int]]) -> None:
    d = NicheDemand()
    for etype, offset, qty in before:
        d.add(etype, T0 + offset, qty, B)
    d.trim(20, B)
    snapshot = orjson.dumps(d.to_dict())
    stored = orjson.loads(snapshot)
    back = NicheDemand.from_dict(stored)
    for etype, offset, qty in after:
        d.add(etype, T0 + offset, qty, B)
        back.add(etype, T0 + offset, qty, B)
    d.trim(20, B)
    back.trim(20, B)
    assert back == d
    assert orjson.dumps(back.to_dict()) == orjson.dumps(d.to_dict())
    assert orjson.dumps(stored) == snapshot
