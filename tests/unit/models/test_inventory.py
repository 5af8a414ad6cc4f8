"""Per-niche stock: orders against stock and backorders, batches through factory answers, JSON state."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from hypothesis import given
from hypothesis import strategies as st

from models.inventory import Lot, NicheStock
from streams.records import FactoryStatus

NOW = 1_764_000_000_000
DUE = NOW + 48 * 3_600_000


@dataclass(frozen=True)
class Trig:
    trigger_id: str
    revision: int
    action: str
    factory_id: str
    units: int
    due_by_ts: int
    group_id: str | None = None


def answer(tid: str, kind: str, units: int, revision: int = 1, factory: str = "f-gz-dress") -> FactoryStatus:
    return FactoryStatus(factory_id=factory, status=kind, ts=NOW, trigger_id=tid, revision=revision, units=units)


def with_lot(units: int = 300, tid: str = "t-1") -> NicheStock:
    stock = NicheStock()
    stock.record(Trig(tid, 1, "start", "f-gz-dress", units, DUE), basis=units - 20, now_ms=NOW)
    return stock


def test_placed_orders_draw_stock_and_the_rest_is_backordered() -> None:
    stock = NicheStock(on_hand=10)
    stock.order("placed", 4)
    assert (stock.on_hand, stock.backorder) == (6, 0)
    stock.order("placed", 9)
    assert (stock.on_hand, stock.backorder) == (0, 3)
    stock.order("placed", 2)
    assert (stock.on_hand, stock.backorder) == (0, 5)


def test_cancelled_orders_return_to_the_backorder_first() -> None:
    stock = NicheStock(backorder=5)
    stock.order("cancelled", 3)
    assert (stock.on_hand, stock.backorder) == (0, 2)
    stock.order("cancelled", 4)
    assert (stock.on_hand, stock.backorder) == (2, 0)


def test_other_events_do_not_touch_stock() -> None:
    stock = NicheStock(on_hand=3)
    for etype in ("group_join", "view", "add_to_cart"):
        stock.order(etype, 7)
    assert stock == NicheStock(on_hand=3)


@given(st.lists(st.tuples(st.sampled_from(["placed", "cancelled", "made"]), st.integers(1, 500)), max_size=50))
def test_stock_and_backorder_are_one_balance(events: list[tuple[str, int]]) -> None:
    stock = NicheStock()
    net = 0
    for n, (kind, qty) in enumerate(events):
        if kind == "made":
            stock.record(Trig(f"t-{n}", 1, "start", "f-gz-dress", qty, DUE), qty, NOW)
            assert stock.apply_status(answer(f"t-{n}", "completed", qty)) == "completed"
            net += qty
        else:
            stock.order(kind, qty)
            net += -qty if kind == "placed" else qty
        assert min(stock.on_hand, stock.backorder) == 0
        assert stock.on_hand - stock.backorder == net
    assert stock.produced == sum(q for k, q in events if k == "made")
    assert stock.lots == {}


def test_a_completed_batch_serves_backorders_first_and_closes_the_lot() -> None:
    stock = with_lot(300)
    stock.order("placed", 40)
    assert stock.open_units == 300
    assert stock.apply_status(answer("t-1", "completed", 290)) == "completed"
    assert (stock.on_hand, stock.backorder, stock.produced, stock.open_units) == (250, 0, 290, 0)
    assert stock.apply_status(answer("t-1", "completed", 290)) == "ignored"  # redelivered: counted once
    assert stock.on_hand == 250


def test_answers_move_a_lot_forward_only() -> None:
    stock = with_lot(300)
    assert [lot.trigger_id for lot in stock.pending()] == ["t-1"]
    assert stock.apply_status(answer("t-1", "accepted", 250)) == "updated"
    assert stock.lots["t-1"].stage == "accepted"
    assert stock.open_units == 250  # the factory took 250 of 300
    assert stock.pending() == []
    assert stock.apply_status(answer("t-1", "in_production", 250)) == "updated"
    assert stock.apply_status(answer("t-1", "accepted", 250)) == "updated"
    assert stock.lots["t-1"].stage == "in_production"


def test_a_rejection_closes_the_lot_without_stock() -> None:
    stock = with_lot(300)
    assert stock.apply_status(answer("t-1", "rejected", 300)) == "rejected"
    assert (stock.lots, stock.on_hand, stock.produced) == ({}, 0, 0)


def test_answers_about_other_triggers_or_factories_are_ignored() -> None:
    stock = with_lot(300)
    assert stock.apply_status(answer("t-2", "completed", 300)) == "ignored"
    assert stock.apply_status(answer("t-1", "completed", 300, factory="f-fs-knit")) == "ignored"
    assert stock.apply_status(answer("t-1", "completed", 300, revision=2)) == "ignored"  # never issued
    assert stock == with_lot(300)


def test_record_tracks_revisions() -> None:
    stock = with_lot(300)
    stock.record(Trig("t-1", 2, "revise", "f-gz-dress", 450, DUE), basis=430, now_ms=NOW + 1)
    lot = stock.lots["t-1"]
    assert (lot.revision, lot.units, lot.prev_units, lot.basis, lot.changed_ms) == (2, 450, 300, 430, NOW + 1)
    stock.record(Trig("t-1", 2, "revise", "f-gz-dress", 999, DUE), basis=999, now_ms=NOW + 2)  # replayed
    assert stock.lots["t-1"].units == 450
    assert stock.settle("t-1", 2, admitted=True)
    assert stock.lots["t-1"].units == 450


def test_a_cancel_holds_the_lot_until_the_book_settles_it() -> None:
    stock = with_lot(300)
    stock.record(Trig("t-1", 2, "cancel", "f-gz-dress", 300, DUE), basis=0, now_ms=NOW + 3)
    assert stock.open_units == 300  # still open production until settled
    assert stock.pending() == []  # but no longer the planner's to change
    assert stock.settle("t-1", 2, admitted=True)
    assert stock.lots == {}
    refused = with_lot(300)
    refused.record(Trig("t-1", 2, "cancel", "f-gz-dress", 300, DUE), basis=0, now_ms=NOW + 3)
    assert refused.apply_status(answer("t-1", "accepted", 300)) == "updated"  # the factory was first
    assert refused.settle("t-1", 2, admitted=False)
    lot = refused.lots["t-1"]
    assert (lot.units, lot.stage, lot.cancelling, lot.revision) == (300, "accepted", 0, 2)
    made = with_lot(300)
    made.record(Trig("t-1", 2, "cancel", "f-gz-dress", 300, DUE), basis=0, now_ms=NOW + 3)
    assert made.apply_status(answer("t-1", "completed", 300)) == "completed"  # made anyway: it is stock
    assert (made.on_hand, made.lots) == (300, {})
    assert not made.settle("t-1", 2, admitted=True)


def test_a_refused_revision_falls_back_and_a_refused_lot_goes() -> None:
    stock = with_lot(300)
    stock.record(Trig("t-1", 2, "revise", "f-gz-dress", 450, DUE), basis=430, now_ms=NOW + 1)
    assert not stock.settle("t-1", 1, admitted=False)  # not the latest revision
    assert stock.settle("t-1", 2, admitted=False)
    lot = stock.lots["t-1"]
    assert (lot.units, lot.revision, lot.basis) == (300, 2, 300)  # the next revision is 3: revisions only grow
    assert not stock.settle("t-9", 1, admitted=False)
    fresh = with_lot(200, "t-2")
    assert fresh.settle("t-2", 1, admitted=False)
    assert fresh.lots == {}


def test_round_trip_through_json() -> None:
    stock = with_lot(300)
    stock.order("placed", 12)
    stock.apply_status(answer("t-1", "accepted", 300))
    raw = orjson.loads(orjson.dumps(stock.to_dict()))
    back = NicheStock.from_dict(raw)
    assert back == stock
    assert isinstance(back.lots["t-1"], Lot)
    assert NicheStock.from_dict(None) == NicheStock()
