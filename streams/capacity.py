"""The capacity desk: the one writer of the capacity book, without Faust.

Every worker plans on a view of the book; proposals from all of them meet here, on a single
partition, so declared capacity is never exceeded across workers. A proposal the book admits is
published exactly as booked; a refused one goes back to its niche as a verdict. Factory answers
pass through the book (capacity returns with rejected and completed) on to the niche or group.

Replays after a crash: the body published for a (trigger_id, revision) is kept, and a repeat of
that pair re-publishes the kept body rather than whatever the repeat carries, so one pair never
appears with two contents on a factory topic; a proposal older than what was published, or for a
trigger already closed, is a replay and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.planner import Trigger
from models.routing import CapacityBook, Factory, StatusLike, from_fields


@dataclass
class DeskOutput:
    """What the agent sends and stores after one desk call."""

    publish: list[dict[str, Any]] = field(default_factory=list)  # trigger bodies, to c2m.triggers.<factory>
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (niche key, message) to the niche
    factories: set[str] = field(default_factory=set)  # factories whose book entry changed
    published: dict[str, dict[str, Any]] = field(default_factory=dict)  # trigger id -> new published record


class CapacityDesk:
    """`published(trigger_id)` reads the kept record {"revision", "body", "closed"} of a trigger."""

    def __init__(self, book: CapacityBook, factories: Sequence[Factory],
                 published: Callable[[str], Mapping[str, Any] | None]) -> None:
        self.book = book
        self.factories = tuple(factories)
        self.published = published

    def propose(self, body: Mapping[str, Any], niche_key: str, now_ms: int) -> DeskOutput:
        out = DeskOutput()
        tid, rev = str(body["trigger_id"]), int(body["revision"])
        kept = self.published(tid)
        if kept is not None and (kept.get("closed") or rev < int(kept["revision"])):
            return out  # a replay of something already superseded or finished
        if kept is not None and rev == int(kept["revision"]):
            out.publish.append(dict(kept["body"]))  # a replay: the body as first published
            return out
        trig = from_fields(Trigger, body)
        admitted = self.book.admit(trig, niche_key, self.factories, now_ms)
        verdict: dict[str, Any] = {"trigger_id": tid, "revision": rev, "action": trig.action,
                                   "admitted": admitted, "group_id": body.get("group_id")}
        if not admitted:  # the niche's view was stale: it re-plans on the factory as the book has it
            verdict["factory"] = {"id": trig.factory_id, **self.book.factory_state(trig.factory_id)}
        out.replies.append((niche_key, {"verdict": verdict}))
        if admitted:
            out.factories.add(trig.factory_id)
            out.publish.append(dict(body))
            out.published[tid] = {"revision": rev, "body": dict(body), "closed": trig.action == "cancel"}
        return out

    def status(self, status: StatusLike, raw: Mapping[str, Any]) -> DeskOutput:
        """Apply a factory answer; the niche (or group) that owns the trigger gets it next."""
        out = DeskOutput()
        booking = self.book.apply_status(status)
        out.factories.add(status.factory_id)
        if booking is None:
            return out
        if self.book.find(booking.trigger_id) is None:  # completed or rejected: the trigger is over
            kept = self.published(booking.trigger_id)
            if kept is not None:
                out.published[booking.trigger_id] = {**kept, "closed": True}
        out.replies.append((booking.niche_key, {"status": dict(raw), "group_id": booking.group_id}))
        return out
