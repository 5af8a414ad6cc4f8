"""One record per niche: the stage's logical tables map onto it, and a batch writes it once."""

from __future__ import annotations

from typing import Any

from models.groups import GroupState
from models.routing import Commitment
from streams.ledger import Ledger
from streams.niche_records import NicheRecords
from streams.stage import DEMAND, GROUPS, PLANS

DAY = 86_400_000


def records(table: dict[str, Any], keep_ms: int = DAY) -> tuple[NicheRecords, list[tuple[str, dict[str, Any]]]]:
    stored: list[tuple[str, dict[str, Any]]] = []

    def store(key: str, rec: dict[str, Any]) -> None:
        stored.append((key, rec))
        table[key] = rec

    return NicheRecords(table, store, keep_ms), stored


def group(status: str, expires: int, filled: int = 0, owed: bool = False) -> dict[str, Any]:
    parts = {"t": Commitment("t", "f", 1, 10, expires)} if owed else {}
    return GroupState("g", "k", {}, 10, expires, status=status, filled_ts=filled, parts=parts).to_dict()


def test_writes_of_one_batch_land_in_one_record_written_once() -> None:
    table: dict[str, Any] = {}
    recs, stored = records(table)
    recs.write(DEMAND, "k", {"counts": {"view": 1}}, "k")
    recs.write(PLANS, "k", {"note": "hold"}, "k")
    recs.write(GROUPS, "g1", group("open", DAY), "k")
    recs.set_ledger("k", Ledger(5, {"c/0": 9}))
    assert recs.read(DEMAND, "k", "k") == {"counts": {"view": 1}}
    assert recs.read(GROUPS, "g1", "k") == group("open", DAY)
    assert recs.flush(0) == 1
    assert stored == [("k", {DEMAND: {"counts": {"view": 1}}, PLANS: {"note": "hold"},
                             GROUPS: {"g1": group("open", DAY)}, "ledger": {"offset": 5, "sources": {"c/0": 9}}})]
    assert recs.flush(0) == 0  # nothing changed since


def test_reads_go_through_to_the_table_and_unchanged_records_are_not_rewritten() -> None:
    table: dict[str, Any] = {"k": {DEMAND: {"counts": {"view": 3}}, "ledger": {"offset": 2, "sources": {}}}}
    recs, stored = records(table)
    assert recs.read(DEMAND, "k", "k") == {"counts": {"view": 3}}
    assert recs.ledger("k").offset == 2
    assert recs.read(GROUPS, "g", "k") is None and recs.read(PLANS, "other", "other") is None
    assert recs.flush(0) == 0 and stored == []


def test_closed_groups_are_dropped_once_the_dedupe_window_has_passed_and_open_ones_never() -> None:
    now = 10 * DAY
    table: dict[str, Any] = {}
    recs, stored = records(table, keep_ms=DAY)
    recs.write(GROUPS, "old-expired", group("expired", now - 2 * DAY), "k")
    recs.write(GROUPS, "new-expired", group("expired", now - DAY // 2), "k")
    recs.write(GROUPS, "old-filled-made", group("filled", now + DAY, filled=now - 3 * DAY), "k")
    recs.write(GROUPS, "old-filled-owed", group("filled", now - 3 * DAY, now - 3 * DAY, owed=True), "k")
    recs.write(GROUPS, "old-open", group("open", now - 3 * DAY), "k")
    recs.flush(now)
    assert sorted(stored[0][1][GROUPS]) == ["new-expired", "old-filled-made", "old-filled-owed", "old-open"]


def test_a_touched_record_is_written_again_unchanged() -> None:
    table: dict[str, Any] = {"k": {DEMAND: {"counts": {"view": 3}}}}
    recs, stored = records(table)
    recs.touch("k")
    assert recs.flush(0) == 1 and stored == [("k", {DEMAND: {"counts": {"view": 3}}})]
