"""The ledger that makes a niche's state exact across crashes: replays and re-sends are told apart
from new rows, and upstream duplicates from a dedupe mark that outlived its counters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.ledger import Ledger, is_duplicate, source_mark


def rows(n: int, start: int = 0) -> list[list[object]]:
    return [[f"e{i}", "view", 0, 0] for i in range(start, start + n)]


def test_messages_at_or_below_the_applied_offset_are_replays() -> None:
    ledger = Ledger(offset=41)
    assert ledger.replayed(40) and ledger.replayed(41)
    assert not ledger.replayed(42)
    assert not Ledger().replayed(0)


def test_rows_re_sent_by_ingest_after_a_crash_are_split_off_per_source_partition() -> None:
    ledger = Ledger()
    first = [["c2m.clickstream/0", 10], ["c2m.clickstream/1", 5], ["c2m.clickstream/0", 11]]
    new, resent = ledger.split(rows(3), first)
    assert [r[0] for r, _ in new] == ["e0", "e1", "e2"] and resent == []
    assert ledger.sources == {"c2m.clickstream/0": 11, "c2m.clickstream/1": 5}
    # ingest restarts from an older committed offset: 10 and 11 again, then 12 which is new
    again = [["c2m.clickstream/0", 10], ["c2m.clickstream/0", 11], ["c2m.clickstream/0", 12]]
    new, resent = ledger.split(rows(3), again)
    assert [src for _, src in resent] == [("c2m.clickstream/0", 10), ("c2m.clickstream/0", 11)]
    assert [src for _, src in new] == [("c2m.clickstream/0", 12)]
    assert ledger.sources["c2m.clickstream/0"] == 12


def test_rows_without_sources_are_all_new() -> None:
    new, resent = Ledger(sources={"x/0": 99}).split(rows(2), None)
    assert [src for _, src in new] == [None, None] and resent == []


def test_the_ledger_round_trips_through_json_forms() -> None:
    ledger = Ledger(7, {"c2m.orders/2": 3})
    assert Ledger.from_dict(ledger.to_dict()) == ledger
    assert Ledger.from_dict(None) == Ledger()


def test_a_mark_left_by_the_same_record_is_not_a_duplicate_but_another_records_is() -> None:
    src = ("c2m.clickstream/3", 120)
    assert not is_duplicate(None, src)
    assert not is_duplicate(source_mark(src), src)  # its counters were lost, its mark was not
    assert is_duplicate(source_mark(("c2m.clickstream/3", 7)), src)  # published twice upstream
    assert is_duplicate(source_mark(src), None)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50)), max_size=60), st.integers(0, 60))
def test_replaying_any_suffix_after_a_crash_applies_each_source_record_once(
        reads: list[tuple[int, int]], crash_at: int) -> None:
    """Per partition the source offsets arrive in order; a crash re-sends everything from a point
    at or before the crash; every (partition, offset) is still applied exactly once."""
    per_part: dict[int, list[int]] = {}
    for part, gap in reads:
        last = per_part.setdefault(part, [-1])[-1]
        per_part[part].append(last + 1 + gap)
    stream = [(f"p/{p}", off) for p, offs in per_part.items() for off in offs[1:]]
    crash_at = min(crash_at, len(stream))
    ledger = Ledger()
    applied: list[tuple[str, int]] = []
    for chunk in (stream[:crash_at], stream):  # a crash after crash_at, then a re-send from the start
        new, _ = ledger.split([[f"{p}:{o}"] for p, o in chunk], [[p, o] for p, o in chunk])
        applied += [src for _, src in new if src is not None]
    assert sorted(applied) == sorted(stream)
