"""The niche stage with plain dicts for tables and the capacity desk in the loop: the worker's
decisions, end to end, without a broker."""

from __future__ import annotations

from typing import Any

import orjson

from models.engine import DemandEngine, EngineConfig
from models.planner import PlannerConfig
from models.routing import CapacityBook, Factory
from streams.capacity import CapacityDesk
from streams.records import FactoryStatus
from streams.stage import DEMAND, GROUPS, PLANS, Effects, NicheStage

HOUR = 3_600_000
T0 = 1_764_000_000_000
FAST = Factory("f-fast", ("dress",), 600, 100, 50, 48)
SLOW = Factory("f-slow", ("dress",), 400, 100, 50, 72)
NICHE = {"category": "dress", "style": "boho", "color": "sage", "size_band": "M", "region": "X"}


class World:
    """A stage, its tables and the desk; `run` plays a stage call and delivers what it proposes."""

    def __init__(self, factories: tuple[Factory, ...] = (FAST, SLOW), hold_ms: int = 0) -> None:
        self.tables: dict[str, dict[str, Any]] = {DEMAND: {}, PLANS: {}, GROUPS: {}}
        self.stage = NicheStage(DemandEngine(EngineConfig(bucket_ms=HOUR)), factories,
                                lambda t, k, _: self.tables[t].get(k), PlannerConfig(min_revision_interval_ms=hold_ms))
        self.published: dict[str, dict[str, Any]] = {}
        self.desk = CapacityDesk(CapacityBook(), factories, self.published.get)
        self.topic: list[dict[str, Any]] = []  # what reached the factory topics, in order
        self.outcomes: list[dict[str, Any]] = []
        self.writes: list[tuple[str, str, str]] = []  # (table, key, niche key)

    def store(self, eff: Effects) -> None:
        for table, key, value, niche_key in eff.writes:
            self.tables[table][key] = value
            self.writes.append((table, key, niche_key))
        eff.written()

    def deliver(self, eff: Effects, now: int) -> None:
        """Proposals to the desk; its replies back into the stage, until nothing is left."""
        self.store(eff)
        self.outcomes += eff.outcomes
        queue = list(eff.proposals)
        eff.proposals.clear()
        eff.outcomes.clear()
        while queue:
            trig, key = queue.pop(0)
            out = self.desk.propose(orjson.loads(orjson.dumps(trig.to_dict())), key, now)
            self.published.update(out.published)
            self.topic += out.publish
            for niche_key, reply in out.replies:
                more = Effects()
                self.stage.on_verdict(niche_key, reply["verdict"], now, more)
                self.store(more)
                queue += more.proposals

    def orders(self, n: int, ts: int, etype: str = "placed", tag: str = "o", key: str = "k") -> None:
        eff = Effects()
        self.stage.on_events(key, NICHE, [[f"{tag}{i}", etype, ts, 1] for i in range(n)], eff)
        self.store(eff)
        self.stage.plan_touched(eff)
        self.deliver(eff, ts)

    def status(self, trig: dict[str, Any], state: str, now: int) -> None:
        st = FactoryStatus(trig["factory_id"], state, now, trig["trigger_id"], trig["revision"], trig["units"])
        raw = {"factory_id": st.factory_id, "status": state, "ts": now, "trigger_id": st.trigger_id,
               "revision": st.revision, "units": st.units}
        out = self.desk.status(st, raw)
        self.published.update(out.published)
        for niche_key, reply in out.replies:
            eff = Effects()
            self.stage.on_status(niche_key, st, reply["group_id"], now, eff)
            self.deliver(eff, now)


def test_orders_start_a_batch_then_grow_it_then_cancel_it_when_they_are_cancelled() -> None:
    w = World(hold_ms=60_000)
    w.orders(150, T0)
    assert [(t["action"], t["revision"], t["factory_id"], t["units"]) for t in w.topic] == [
        ("start", 1, FAST.id, 150)]
    w.orders(150, T0 + 1000, tag="p")  # 300 confirmed; the hold defers the revision
    assert len(w.topic) == 1 and w.stage.held == {"k": T0 + 60_000}
    eff = Effects()
    w.stage.plan_held(T0 + 60_000, eff)
    w.deliver(eff, T0 + 60_000)
    assert [(t["action"], t["revision"]) for t in w.topic][1:] == [("revise", 2)]
    assert w.topic[1]["trigger_id"] == w.topic[0]["trigger_id"] and w.topic[1]["units"] >= 300
    w.orders(300, T0 + 200_000, etype="cancelled", tag="c")  # every order cancelled at once
    assert [(t["action"], t["revision"]) for t in w.topic][2:] == [("cancel", 3)]
    assert w.desk.book.committed(FAST.id) == 0


def test_a_rejection_reroutes_to_another_factory_and_frees_the_capacity() -> None:
    w = World()
    w.orders(120, T0)
    start = w.topic[0]
    assert start["factory_id"] == FAST.id and w.desk.book.committed(FAST.id) == 150
    w.status(start, "rejected", T0 + 5000)
    assert w.desk.book.committed(FAST.id) == 0
    moved = w.topic[1]
    assert moved["factory_id"] == SLOW.id and moved["trigger_id"] != start["trigger_id"]
    assert "avoiding f-fast" in moved["reason"]
    assert w.published[start["trigger_id"]]["closed"] is True


def test_the_book_refuses_what_a_stale_view_admitted_and_the_niche_plans_again() -> None:
    w = World()
    w.desk.book.capacity[FAST.id] = 0  # the factory announced no capacity; this worker's view missed it
    w.orders(120, T0)
    assert [t["factory_id"] for t in w.topic] == [SLOW.id]
    lots = w.tables[PLANS]["k"]["stock"]["lots"]
    assert [lot["factory_id"] for lot in lots.values()] == [SLOW.id]


def test_a_filled_group_proposes_one_exact_trigger_and_an_outcome_and_replays_change_nothing() -> None:
    w = World()
    joins = [[f"j{i}", "group_join", T0 + i, 7, "g-1", 30, T0 + HOUR] for i in range(5)]
    for row in joins:
        eff = Effects()
        w.stage.on_events("k", NICHE, [row], eff)
        w.deliver(eff, T0)
    assert [(t["kind"], t["units"], t["group_id"]) for t in w.topic] == [("group_buy", 35, "g-1")]
    assert [(o["outcome"], o["units"]) for o in w.outcomes] == [("filled", 35)]
    eff = Effects()
    w.stage.on_events("k", NICHE, joins, eff)  # a replay that got past dedupe
    w.deliver(eff, T0)
    assert len(w.topic) == 1 and len(w.outcomes) == 1
    assert ("groups", "g-1", "k") in w.writes, "group state is written in its niche's partition"


def test_an_open_group_expires_on_the_tick_once() -> None:
    w = World()
    eff = Effects()
    w.stage.on_events("k", NICHE, [["j0", "group_join", T0, 5, "g-2", 30, T0 + HOUR]], eff)
    w.deliver(eff, T0)
    for now in (T0 + HOUR + 1, T0 + HOUR + 2):
        eff = Effects()
        w.stage.tick_groups(now, eff)
        w.deliver(eff, now)
    assert [(o["outcome"], o["joined"]) for o in w.outcomes] == [("expired", 5)]
    assert w.topic == [] and "g-2" not in w.stage.open_groups


def test_a_repeated_proposal_is_published_as_first_booked_whatever_it_carries() -> None:
    w = World()
    w.orders(120, T0)
    first = w.topic[0]
    replay = {**first, "units": 400, "reason": "a replay that decided differently"}
    out = w.desk.propose(replay, "k", T0 + 10)
    assert out.publish == [first] and out.replies == []
    older = w.desk.propose({**first, "revision": 0}, "k", T0 + 10)
    assert older.publish == [] and older.replies == []


def test_bucket_closes_plan_with_the_engine_forecast_at_the_close() -> None:
    w = World()
    w.orders(120, T0)
    eff = Effects()
    w.stage.advance(T0 + 3 * HOUR, eff)
    assert eff.closed and "k" in eff.notes
    assert eff.notes["k"].startswith("p50 demand over 48 h")  # a cold-start prior is planned at P50
