"""Group buys (DESIGN §5, §7): joins pool into a group; the join that fills it starts one make-to-order
batch of exactly the filled quantity at once; a group that does not fill by its expiry ends with an
outcome and nothing is made. Pure; one GroupState per group_id, JSON through to_dict/from_dict.

- A join counts once per event_id within its group: a redelivered join changes nothing, so replaying
  joins after a crash rebuilds the same state and the same trigger.
- The fill is the quantity joined when the target is first reached (≥ target: the filling join
  counts whole). Joins after the fill are overflow: counted in the state, never produced by this
  group (the worker may refund them or open a follow-up group). Joins stamped after the expiry
  (event time) are late: counted, never toward the target.
- The trigger: kind group_buy, action start, revision 1, units = the fill exactly (no batch
  rounding, no min batch), trigger_id = group_trigger_id(group_id, 1), deterministic. Only when no
  single factory has room for all of it is it split into exact parts (ids 2, 3, ...). What finds no
  room at all waits as `unrouted`, retried by `tick`; the filled outcome says so.
- A rejection re-routes that part, exactly, away from every factory that rejected the group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.planner import Trigger
from models.routing import CapacityBook, Commitment, Factory, Route, StatusLike, from_fields, reroute

GROUP_MODEL = "group-buy/exact"


@dataclass(frozen=True)
class Join:
    """One group_join order event, as the niche stage has it (already deduplicated or not)."""

    event_id: str
    quantity: int
    ts: int
    target: int
    expires_ts: int


@dataclass
class GroupState:
    """A group's pool and what became of it. Target and expiry come from the group's first join."""

    group_id: str
    niche_key: str
    niche: dict[str, str]
    target: int
    expires_ts: int
    status: str = "open"  # open → filled | expired
    joined: int = 0  # quantity toward the target; frozen at the fill
    joins: int = 0  # join events toward the target
    overflow: int = 0  # quantity joined after the fill
    late: int = 0  # quantity joined after the expiry
    event_ids: list[str] = field(default_factory=list)
    filled_ts: int = 0
    seq: int = 0  # trigger parts issued so far
    parts: dict[str, Commitment] = field(default_factory=dict)
    unrouted: int = 0  # filled units on no factory yet (no room, or rejected and not yet re-routed)
    made: int = 0
    rejected_by: list[str] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        """Nothing more can happen: expired, or filled and every unit made (the state may be dropped
        once the dedupe window has passed, so a redelivered join cannot re-create the group)."""
        return self.status == "expired" or (self.status == "filled" and not self.parts and not self.unrouted)

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out.update(niche=dict(self.niche), event_ids=list(self.event_ids), rejected_by=list(self.rejected_by),
                   parts={k: p.to_dict() for k, p in self.parts.items()})
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GroupState:
        st = from_fields(cls, raw)
        st.niche, st.event_ids, st.rejected_by = dict(st.niche), list(st.event_ids), list(st.rejected_by)
        st.parts = {k: from_fields(Commitment, v) for k, v in raw.get("parts", {}).items()}
        return st


@dataclass(frozen=True)
class GroupResult:
    """The group's new state, triggers to admit and publish in order, and an outcome record to publish
    (filled or expired; None when there is nothing to tell)."""

    state: GroupState
    triggers: tuple[Trigger, ...] = ()
    outcome: dict[str, Any] | None = None


def group_trigger_id(group_id: str, part: int) -> str:
    """Deterministic from the group, so a replay after a crash re-derives the same id."""
    return "t-" + hashlib.sha1(f"group:{group_id}#{part}".encode()).hexdigest()[:16]


def _copy(state: GroupState) -> GroupState:
    return GroupState.from_dict(state.to_dict())


def _dispatch(st: GroupState, book: CapacityBook, factories: Sequence[Factory], now_ms: int,
              exclude: set[str]) -> tuple[list[Trigger], str]:
    """Route the unrouted units, exactly, away from `exclude`."""
    route = book.route(st.niche.get("category", ""), st.unrouted, now_ms, factories, exact=True, exclude=exclude)
    return _issue(st, route, now_ms)


def _issue(st: GroupState, route: Route, now_ms: int) -> tuple[list[Trigger], str]:
    """One trigger per part of `route`; returns them and a line on where the units went."""
    head = f"group {st.group_id} filled: {st.joined} joined ≥ target {st.target}"
    if st.rejected_by:
        head += f" ({', '.join(st.rejected_by)} rejected it)"
    if not route.parts:
        return [], f"{head}: {route.reason}; {st.unrouted} units wait for room"
    triggers: list[Trigger] = []
    split = f" in {len(route.parts)} parts" if len(route.parts) > 1 else ""
    short = f"; {route.short:.0f} units wait for room" if route.short else ""
    for part in route.parts:
        st.seq += 1
        tid = group_trigger_id(st.group_id, st.seq)
        f = part.factory
        st.parts[tid] = Commitment(tid, f.id, 1, part.units, part.due_by_ts)
        st.unrouted -= part.units
        triggers.append(Trigger(
            trigger_id=tid, revision=1, action="start", kind="group_buy", factory_id=f.id, niche=dict(st.niche),
            units=part.units, due_by_ts=part.due_by_ts, emitted_ts=now_ms,
            forecast={"horizon_hours": f.lead_time_hours, "p50": st.joined, "p90": st.joined,
                      "model": GROUP_MODEL, "cold_start": False},
            evidence={"orders": st.joins, "units": st.joined, "group_target": st.target, "drift": False},
            reason=f"{head}: make {part.units} to order at {f.id}{split}{short}",
            group_id=st.group_id))
    return triggers, triggers[-1].reason


def _expire(st: GroupState, now_ms: int) -> GroupResult:
    st.status = "expired"
    return GroupResult(st, (), {
        "group_id": st.group_id, "outcome": "expired", "niche": dict(st.niche), "target": st.target,
        "joined": st.joined, "expires_ts": st.expires_ts, "ts": now_ms,
        "reason": f"group {st.group_id} had {st.joined} of {st.target} by its expiry: nothing is made"})


def on_join(state: GroupState | None, group_id: str, niche_key: str, niche: Mapping[str, str], join: Join,
            book: CapacityBook, factories: Sequence[Factory], now_ms: int) -> GroupResult:
    """Count one join; the join that fills the group dispatches it at once (triggers + filled outcome).

    A join stamped after the expiry of a group still open expires it (outcome) and counts as late.
    """
    st = _copy(state) if state is not None else GroupState(group_id, niche_key, dict(niche), join.target,
                                                           join.expires_ts)
    if join.event_id in st.event_ids:
        return GroupResult(st)
    st.event_ids.append(join.event_id)
    if st.status == "filled":
        st.overflow += join.quantity
        return GroupResult(st)
    if st.status == "expired" or join.ts > st.expires_ts:
        st.late += join.quantity
        return _expire(st, now_ms) if st.status == "open" else GroupResult(st)
    st.joined += join.quantity
    st.joins += 1
    if st.joined < st.target:
        return GroupResult(st)
    st.status, st.filled_ts, st.unrouted = "filled", now_ms, st.joined
    triggers, reason = _dispatch(st, book, factories, now_ms, set(st.rejected_by))
    return GroupResult(st, tuple(triggers), {
        "group_id": st.group_id, "outcome": "filled", "niche": dict(st.niche), "target": st.target,
        "units": st.joined, "ts": now_ms, "unrouted": st.unrouted, "reason": reason,
        "triggers": [{"trigger_id": t.trigger_id, "factory_id": t.factory_id, "units": t.units} for t in triggers]})


def on_status(state: GroupState, status: StatusLike, book: CapacityBook, factories: Sequence[Factory],
              now_ms: int) -> GroupResult:
    """Apply a factory answer about one of the group's parts; a rejection re-routes that part at once."""
    st = _copy(state)
    part = st.parts.get(status.trigger_id or "")
    if part is None or part.factory_id != status.factory_id:
        return GroupResult(st)
    outcome = part.apply(status)
    if outcome == "completed":
        del st.parts[part.trigger_id]
        st.made += status.units or 0
    elif outcome == "rejected":
        del st.parts[part.trigger_id]
        st.unrouted += part.units
        if part.factory_id not in st.rejected_by:
            st.rejected_by.append(part.factory_id)
        route = reroute(part, st.niche.get("category", ""), st.unrouted, book, factories, now_ms, exact=True,
                        avoid=st.rejected_by)
        return GroupResult(st, tuple(_issue(st, route, now_ms)[0]))
    return GroupResult(st)


def on_bounce(state: GroupState, trigger_id: str, book: CapacityBook, factories: Sequence[Factory],
              now_ms: int) -> GroupResult:
    """The capacity book refused a part (it was never published): route its units again without that factory."""
    st = _copy(state)
    part = st.parts.pop(trigger_id, None)
    if part is None:
        return GroupResult(st)
    st.unrouted += part.units
    return GroupResult(st, tuple(_dispatch(st, book, factories, now_ms, {*st.rejected_by, part.factory_id})[0]))


def tick(state: GroupState, book: CapacityBook, factories: Sequence[Factory], now_ms: int) -> GroupResult:
    """Time passing: an open group past its expiry expires (once); a filled one retries unrouted units."""
    st = _copy(state)
    if st.status == "open" and now_ms > st.expires_ts:
        return _expire(st, now_ms)
    if st.status == "filled" and st.unrouted:
        return GroupResult(st, tuple(_dispatch(st, book, factories, now_ms, set(st.rejected_by))[0]))
    return GroupResult(st)
