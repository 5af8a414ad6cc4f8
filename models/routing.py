"""Factory routing under capacity: which factories make a batch, how it is split, and the one book of
what every factory has been asked for. Pure.

Capacity is a rate (units per day), so room is a matter of deadlines: a batch due at `d` must be made
between now and `d`, alongside everything else already due by then. The book is feasible when, for
every deadline `d` it holds, the units due by `d` fit `capacity_units_per_day * (d - now)`; a request
is granted only if the book stays feasible (earliest-deadline-first scheduling makes that exact for
one production line per factory). Commitments leave the book when the factory completes or rejects
them, or the planner cancels them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from itertools import accumulate
from typing import Any, ClassVar, Protocol, TypeVar

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STAGES = ("issued", "accepted", "in_production")
_NO_LOADS: tuple[list[int], list[int], list[int], dict[str, list[int]]] = ([], [], [0], {})

_D = TypeVar("_D")


@dataclass(frozen=True)
class Factory:
    id: str
    categories: tuple[str, ...]
    capacity_units_per_day: int
    min_batch: int
    batch_step: int
    lead_time_hours: int

    def makes(self, category: str) -> bool:
        return category in self.categories

    def due(self, now_ms: int) -> int:
        """When a batch asked for now is due: one lead time later."""
        return now_ms + self.lead_time_hours * HOUR_MS


def batch_units(wanted: float, factory: Factory) -> int:
    """Whole multiples of the factory's batch step, never below its minimum batch."""
    # round the larger of the two up to a step: a min batch that is not itself a multiple of the
    # step must not be returned as is
    return math.ceil(max(wanted, factory.min_batch) / factory.batch_step) * factory.batch_step


def batch_floor(room: float, factory: Factory) -> int:
    """The largest valid batch (whole steps, at least min batch) within `room`; 0 when none fits."""
    units = max(0, math.floor(room / factory.batch_step) * factory.batch_step)
    return units if units >= batch_units(0, factory) else 0


def choose_factory(category: str, units: int, factories: Iterable[Factory],
                   open_units: dict[str, int]) -> Factory | None:
    """The walking skeleton's choice (one day of capacity as the budget); CapacityBook.route replaces it.

    A factory that makes the category and has room for `units`, shortest lead time first;
    `open_units` is what each factory already has in flight. None when no capable factory has room.
    """
    capable = sorted((f for f in factories if f.makes(category)), key=lambda f: (f.lead_time_hours, f.id))
    for f in capable:
        if open_units.get(f.id, 0) + batch_units(units, f) <= f.capacity_units_per_day:
            return f
    return None


class StatusLike(Protocol):
    """A factory answer (streams.records.FactoryStatus has exactly these fields)."""

    @property
    def factory_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def trigger_id(self) -> str | None: ...
    @property
    def revision(self) -> int | None: ...
    @property
    def units(self) -> int | None: ...
    @property
    def capacity_units_per_day(self) -> int | None: ...


class TriggerLike(Protocol):
    """What the book needs of a trigger (models.planner.Trigger and streams.records.TriggerRecord fit)."""

    @property
    def trigger_id(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def action(self) -> str: ...
    @property
    def factory_id(self) -> str: ...
    @property
    def units(self) -> int: ...
    @property
    def due_by_ts(self) -> int: ...
    @property
    def group_id(self) -> str | None: ...


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def from_fields(cls: type[_D], raw: Mapping[str, Any]) -> _D:
    """A flat dataclass from its dict; unknown keys (a newer writer) are ignored."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    return cls(**{name: raw[name] for name in names if name in raw})


@dataclass
class Commitment:
    """One trigger at one factory as its answers move it along issued → accepted → in_production.

    `units` is what the factory is held to: the latest revision asked for, lowered to what the
    factory accepted. Shared by the capacity book, a niche's stock and a group's parts, so all three
    read a factory answer the same way.
    """

    trigger_id: str
    factory_id: str
    revision: int
    units: int
    due_by_ts: int
    stage: str = "issued"
    accepted_revision: int = 0
    accepted_units: int = 0

    def apply(self, status: StatusLike) -> str:
        """Apply a factory answer about this trigger: "updated", "completed", "rejected" or "ignored".

        Stages only move forward (answers may arrive twice or out of order); only "accepted" may
        lower the units. An answer about a revision this side never issued (or one the book
        bounced) is ignored. A rejection of a
        revision newer than the one the factory accepted declines only that change: the accepted
        units stand. Any other rejection ends the trigger, whatever its revision.
        """
        rev, units = status.revision or 0, status.units or 0
        if rev > self.revision or status.status not in (*STAGES, "completed", "rejected"):
            return "ignored"
        if status.status == "completed":
            return "completed"
        if status.status == "rejected":
            if self.accepted_revision and rev > self.accepted_revision:
                self.units = self.accepted_units
                return "updated"
            return "rejected"
        if STAGES.index(status.status) > STAGES.index(self.stage):
            self.stage = status.status
        if status.status == "accepted":  # the factory's word on units: never more than it was asked
            if rev >= self.accepted_revision:
                self.accepted_revision, self.accepted_units = rev, min(units, self.units)
            if rev == self.revision:
                self.units = min(units, self.units)
        elif not self.accepted_revision:  # in production without a word of acceptance: as asked
            self.accepted_revision, self.accepted_units = rev, self.units
        return "updated"

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # flat fields only: cheaper than dataclasses.asdict's deep copy


@dataclass
class Booking(Commitment):
    """A commitment in the capacity book, with where its factory answers must be forwarded.

    `changes` counts attribute writes on every Booking (creation included): the book's cached
    loads (CapacityBook._loads) are valid only while it stands still.
    """

    niche_key: str = ""
    group_id: str | None = None
    changes: ClassVar[int] = 0

    def __setattr__(self, name: str, value: Any) -> None:
        Booking.changes += 1
        object.__setattr__(self, name, value)


@dataclass(frozen=True)
class Part:
    factory: Factory
    units: int
    due_by_ts: int


@dataclass(frozen=True)
class Route:
    """Where a request goes: parts on factories, and what found no room (`short`, with the reason)."""

    parts: tuple[Part, ...]
    short: float
    reason: str = ""

    @property
    def units(self) -> int:
        return sum(p.units for p in self.parts)


@dataclass
class CapacityBook:
    """Every open commitment on every factory: factory id → trigger id → booking. One per deployment.

    `capacity` holds the per-day capacity factories announced (status "capacity"), overriding
    topics.yaml. Change it only through admit and apply_status. Each factory's part serialises on its
    own (factory_state), so a worker can store the book as one table entry per factory and rewrite
    only the factory a change touched.
    """

    bookings: dict[str, dict[str, Booking]] = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=dict)
    # factory id -> (its bookings dict, Booking.changes, its bookings, their loads): see _loads
    _cache: dict[str, tuple[Any, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def find(self, trigger_id: str) -> Booking | None:
        for at in self.bookings.values():
            if trigger_id in at:
                return at[trigger_id]
        return None

    def capacity_per_day(self, factory: Factory) -> int:
        return self.capacity.get(factory.id, factory.capacity_units_per_day)

    def committed(self, factory_id: str) -> int:
        return sum(b.units for b in self.bookings.get(factory_id, {}).values())

    def window_capacity(self, factory: Factory, now_ms: int, due_by_ts: int) -> int:
        """Units the factory can make between now and `due_by_ts`."""
        return self.capacity_per_day(factory) * max(0, due_by_ts - now_ms) // DAY_MS

    def room(self, factory: Factory, now_ms: int, due_by_ts: int, ignore: str | None = None) -> int:
        """The most units due by `due_by_ts` the factory can still take without missing a deadline.

        Everything due by then competes for the same window, and a new batch also pushes back
        everything due later, so every later deadline is checked too. `ignore` leaves one trigger
        out (to size a revision of it). Overdue commitments keep counting until the factory reports.
        """
        dues, units, running_at, positions = self._loads(factory.id)
        skip = positions.get(ignore) if ignore is not None else None
        k = bisect_right(dues, due_by_ts)  # loads[:k] are due by due_by_ts (sorted by due, then units)
        per_day = self.capacity_per_day(factory)
        # summed in the same order as the loads themselves: the same total, to the last bit
        running = sum(units[i] for i in range(k) if i not in skip) if skip else running_at[k]
        best = per_day * max(0, due_by_ts - now_ms) // DAY_MS - running
        for i in range(k, len(dues)):
            if skip and i in skip:
                continue
            running += units[i]
            best = min(best, per_day * max(0, dues[i] - now_ms) // DAY_MS - running)
        return max(0, best)

    def _loads(self, factory_id: str) -> tuple[list[int], list[int], list[int], dict[str, list[int]]]:
        """The factory's bookings sorted by (due, units): dues, units, running totals (running_at[k]:
        the sum of the first k) and each trigger id's positions. Cached until the bookings change:
        the same dict with the same Booking objects, and no Booking changed since (see Booking)."""
        at = self.bookings.get(factory_id)
        if at is None:
            return _NO_LOADS
        values = tuple(at.values())
        held = self._cache.get(factory_id)
        if held is not None and held[0] is at and held[1] == Booking.changes and held[2] == values:
            return held[3]
        order = sorted(range(len(values)), key=lambda i: (values[i].due_by_ts, values[i].units))
        dues = [values[i].due_by_ts for i in order]
        units = [values[i].units for i in order]
        running_at = list(accumulate(units, initial=0))
        positions: dict[str, list[int]] = {}
        for pos, i in enumerate(order):
            positions.setdefault(values[i].trigger_id, []).append(pos)
        loads = (dues, units, running_at, positions)
        self._cache[factory_id] = (at, Booking.changes, values, loads)
        return loads

    def route(self, category: str, units: float, now_ms: int, factories: Iterable[Factory], *,
              exact: bool = False, exclude: Collection[str] = ()) -> Route:
        """Where `units` of `category` can be made, each part due one lead time from now.

        The fastest factory that can take it all; otherwise split, fastest first. Forecast batches
        (exact=False) are whole steps and at least the factory's min batch, and a factory is only
        given a part when at least its min batch is still wanted (no batch that is mostly rounding).
        Group buys (exact=True) are split into exact parts that add up to `units`.
        """
        capable = sorted((f for f in factories if f.makes(category) and f.id not in exclude),
                         key=lambda f: (f.lead_time_hours, f.id))
        if not capable:
            skip = f" (excluding {', '.join(sorted(exclude))})" if exclude else ""
            return Route((), units, f"no factory makes {category!r}{skip}")
        rooms = {f.id: self.room(f, now_ms, f.due(now_ms)) for f in capable}
        for f in capable:
            whole = units if exact else batch_units(units, f)
            if (exact or units >= f.min_batch) and whole <= rooms[f.id]:
                return Route((Part(f, math.ceil(whole), f.due(now_ms)),), 0)
        parts: list[Part] = []
        remaining = units
        for f in capable:
            if exact:
                take = min(math.ceil(remaining), rooms[f.id])
            elif remaining >= f.min_batch:
                take = min(batch_units(remaining, f), batch_floor(rooms[f.id], f))
            else:
                take = 0
            if take > 0:
                parts.append(Part(f, take, f.due(now_ms)))
                remaining -= take
            if remaining <= 0:
                break
        short = max(0.0, remaining)
        at = ", ".join(f.id for f in capable)
        if not short:
            reason = ""
        elif not exact and short < min(f.min_batch for f in capable):
            reason = f"{short:.0f} units of {category} are less than a min batch at {at}"
        else:
            reason = f"no room for {short:.0f} units of {category} at {at} within their lead times"
        return Route(tuple(parts), short, reason)

    def admit(self, trig: TriggerLike, niche_key: str, factories: Iterable[Factory], now_ms: int) -> bool:
        """Book a trigger revision before it is published; False means do not publish it (bounce).

        Idempotent: a revision already booked is admitted again without booking twice. Once the
        factory has accepted a trigger, revisions and cancels of it are refused: its answer came
        first. Otherwise a cancel frees the units; a revision that grows must fit the room left with
        the trigger's own previous units set aside; one that shrinks always fits.
        """
        held = self.find(trig.trigger_id)
        if held is not None and (held.factory_id != trig.factory_id or trig.revision <= held.revision):
            return held.factory_id == trig.factory_id
        if held is not None and held.stage != "issued":
            return False
        if trig.action == "cancel":
            self.bookings.get(trig.factory_id, {}).pop(trig.trigger_id, None)
            return True
        factory = next((f for f in factories if f.id == trig.factory_id), None)
        if factory is None:
            return False
        if trig.action == "revise" and held is None:
            return False  # no longer booked: rejected, completed or cancelled meanwhile
        if trig.action != "revise" and held is not None:
            return False  # a new trigger must not reuse a booked id
        if (held is None or trig.units > held.units) and \
                trig.units > self.room(factory, now_ms, trig.due_by_ts, ignore=trig.trigger_id):
            return False
        if held is None:
            self.bookings.setdefault(factory.id, {})[trig.trigger_id] = Booking(
                trig.trigger_id, trig.factory_id, trig.revision, trig.units, trig.due_by_ts,
                niche_key=niche_key, group_id=trig.group_id)
        else:
            held.revision, held.units = trig.revision, trig.units
        return True

    def apply_status(self, status: StatusLike) -> Booking | None:
        """Apply a factory answer; returns the booking it concerned (to forward it to the niche or group).

        Completed and rejected free the units; accepted may lower them; "capacity" sets the factory's
        rate. None for a capacity update or an answer about a trigger not booked at that factory.
        """
        if status.status == "capacity":
            if status.capacity_units_per_day is not None:
                self.capacity[status.factory_id] = status.capacity_units_per_day
            return None
        at = self.bookings.get(status.factory_id, {})
        booking = at.get(status.trigger_id or "")
        if booking is None:
            return None
        if booking.apply(status) in ("completed", "rejected"):
            del at[booking.trigger_id]
        return booking

    def factory_state(self, factory_id: str) -> dict[str, Any]:
        """One factory's part of the book as JSON: store it under the factory id."""
        return {"bookings": {k: b.to_dict() for k, b in self.bookings.get(factory_id, {}).items()},
                "capacity": self.capacity.get(factory_id)}

    def to_dict(self) -> dict[str, Any]:
        """The whole book: factory id → factory_state."""
        return {fid: self.factory_state(fid) for fid in sorted({*self.bookings, *self.capacity})}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Mapping[str, Any]] | None) -> CapacityBook:
        """From to_dict(), or from the factory_state entries of a table (its items())."""
        book = cls()
        for fid, state in (raw or {}).items():
            at = {k: from_fields(Booking, v) for k, v in state.get("bookings", {}).items()}
            if at:
                book.bookings[fid] = at
            if state.get("capacity") is not None:
                book.capacity[fid] = int(state["capacity"])
        return book


def reroute(rejected: Commitment, category: str, units: float, book: CapacityBook, factories: Iterable[Factory],
            now_ms: int, *, exact: bool, avoid: Collection[str] = ()) -> Route:
    """Where a rejected trigger's units go instead: the same routing without the rejecting factory."""
    return book.route(category, units, now_ms, factories, exact=exact, exclude={*avoid, rejected.factory_id})
