"""Per-niche stock: units on hand, confirmed orders still uncovered, and batches at factories. Pure.

Orders and made batches meet in one balance: a placed order draws stock down, and what stock cannot
cover is a backorder (an "uncovered confirmed order" for the planner) that the next completed batch
serves first; a cancelled order returns its units, to the backorder first. So `on_hand` and
`backorder` are never both positive. Group joins are made to order by their group (models.groups):
they neither draw stock nor become backorders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.routing import Commitment, StatusLike, TriggerLike, from_fields


@dataclass
class Lot(Commitment):
    """A forecast batch of this niche at one factory, with the planner's bookkeeping for hysteresis."""

    basis: float = 0.0  # the demand the lot was sized for (its units less rounding)
    changed_ms: int = 0  # when it was issued or last revised
    prev_units: int = 0  # units before the latest revision: restored if the book refuses that revision
    cancelling: int = 0  # the revision of a cancel the book has not settled yet (0: none)


@dataclass
class NicheStock:
    """One niche's balance and its lots at factories; changed in place by orders, factory answers and
    the planner's own triggers (record, settle)."""

    on_hand: int = 0
    backorder: int = 0
    produced: int = 0  # units completed for this niche, ever (unsold = on_hand of produced)
    lots: dict[str, Lot] = field(default_factory=dict)

    @property
    def open_units(self) -> int:
        """Units asked of factories and not yet made: open production."""
        return sum(lot.units for lot in self.lots.values())

    def pending(self) -> list[Lot]:
        """Lots no factory has accepted yet and not being cancelled: the ones the planner may change."""
        return [lot for lot in self.lots.values() if lot.stage == "issued" and not lot.cancelling]

    def order(self, etype: str, quantity: int) -> None:
        """Count one (deduplicated) order event; types other than placed and cancelled change nothing."""
        if etype == "placed":
            served = min(self.on_hand, quantity)
            self.on_hand -= served
            self.backorder += quantity - served
        elif etype == "cancelled":
            owed = min(self.backorder, quantity)
            self.backorder -= owed
            self.on_hand += quantity - owed

    def record(self, trig: TriggerLike, basis: float, now_ms: int) -> None:
        """Track a trigger this niche's planner issued: a new lot, a revision of one, or a cancel.

        A cancelled lot stays, still open production, until the capacity book settles the cancel.
        """
        lot = self.lots.get(trig.trigger_id)
        if lot is None:
            if trig.action != "cancel":
                self.lots[trig.trigger_id] = Lot(trig.trigger_id, trig.factory_id, trig.revision, trig.units,
                                                 trig.due_by_ts, basis=basis, changed_ms=now_ms)
        elif trig.revision > lot.revision:
            if trig.action == "cancel":
                lot.cancelling = trig.revision
            else:
                lot.prev_units, lot.units = lot.units, trig.units
            lot.revision, lot.basis, lot.changed_ms = trig.revision, basis, now_ms

    def apply_status(self, status: StatusLike) -> str:
        """Apply a factory answer: "updated", "completed", "rejected" or "ignored" (not one of ours).

        Completed adds the units made to stock (serving backorders first) and closes the lot;
        rejected closes it, so its units count as needed again and the planner re-routes them.
        """
        lot = self.lots.get(status.trigger_id or "")
        if lot is None or lot.factory_id != status.factory_id:
            return "ignored"
        outcome = lot.apply(status)
        if outcome == "completed":
            del self.lots[lot.trigger_id]
            made = status.units or 0
            self.produced += made
            served = min(self.backorder, made)
            self.backorder -= served
            self.on_hand += made - served
        elif outcome == "rejected":
            del self.lots[lot.trigger_id]
        return outcome

    def settle(self, trigger_id: str, revision: int, admitted: bool) -> bool:
        """The capacity book's verdict on a revision this niche issued (CapacityBook.admit).

        An admitted cancel closes its lot; a refused one leaves the lot as it was (the factory had
        accepted it first). A refused new lot goes; a refused revision falls back to the units its
        factory already has. Admitted lots and revisions need nothing. False when nothing matched.
        """
        lot = self.lots.get(trigger_id)
        if lot is None or lot.revision != revision:
            return False
        if lot.cancelling == revision:
            if admitted:
                del self.lots[trigger_id]
            else:
                lot.cancelling = 0
        elif not admitted:
            if lot.prev_units:
                lot.units, lot.prev_units = lot.prev_units, 0
                lot.basis = min(lot.basis, lot.units)
            else:
                del self.lots[trigger_id]
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"on_hand": self.on_hand, "backorder": self.backorder, "produced": self.produced,
                "lots": {k: lot.to_dict() for k, lot in self.lots.items()}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> NicheStock:
        if not raw:
            return cls()
        return cls(on_hand=int(raw.get("on_hand", 0)), backorder=int(raw.get("backorder", 0)),
                   produced=int(raw.get("produced", 0)),
                   lots={k: from_fields(Lot, v) for k, v in raw.get("lots", {}).items()})
