"""Inventory outcomes of a replay: the rolling planner against a make-to-stock baseline.

`PlanReplay` is the `ReplayHook` `c2m backtest` plugs into `streams.backtest.replay`. The planner
side runs the worker's pure code on the log's event time: every bucket close plans every niche
(`planning_factory`, the engine's forecast over that factory's lead time, `plan`), each trigger goes
through `CapacityBook.admit` and back to the niche (`NicheStock.settle`); placed and cancelled orders
meet the stock (`NicheStock.order`) at their own timestamps; group joins go through
`models.groups.on_join` (a bounced part through `on_bounce`, open groups through `tick`). A simulated
factory accepts every admitted trigger at once and completes it at its due time (one lead time
after it was issued), each answer a factory status through `CapacityBook.apply_status` to the
niche (`NichePlan.on_status`) or the group (`groups.on_status`).

The make-to-stock baseline is the buy-once practice the planner replaces: each niche, once it has
been seen for `observe_hours` (a day: the engine's forecast is then no longer cold start), gets one
batch and never another. The batch is the niche's P50 demand forecast for the rest of the log (the
rate of the engine's P50 forecast over its longest horizon, times the hours from the decision to
the end of the log) plus the orders already waiting, rounded up to the batch rules of the fastest
factory making the category; it lands one lead time after the decision, with no capacity limit. It
is sized when the log has ended (only its length is needed: the forecast rate is the one of the
decision time) and sold against the same orders. A niche first seen less than `observe_hours`
before the end gets nothing.

Figures, for each policy, at the end of the log (the newest event's time):
- produced: units whose batch completed by the end; production still in flight at the end is left
  out (neither produced nor unsold);
- sold: ordered units delivered from stock by the end, at once or, for an order that found no
  stock (a backorder), when the next batch landed; net of cancellations;
- unsold: produced - sold, the stock on hand at the end;
- stockouts: ordered units (net of cancellations) not delivered by the end: backorders still waiting;
- fill_rate: sold / (sold + stockouts), the share of demand delivered within the log.
Group buys are made to order the same way in both columns: a filled group's units count as produced
and sold when its batch completes; a group still in production at the end, or that expired, counts
in neither (its buyers wait, or are refunded).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models import groups
from models.demand import NicheDemand
from models.engine import HOUR_MS, Advance, DemandEngine
from models.inventory import Lot, NicheStock
from models.planner import NichePlan, PlannerConfig, Trigger, evidence_of, plan, planning_factory
from models.routing import CapacityBook, Factory, batch_units
from streams.records import FactoryStatus

EVIDENCE_BUCKETS = 6  # as the worker: the funnel behind a trigger, over the last six buckets
ORDER_TYPES = ("placed", "cancelled")


@dataclass
class Outcome:
    """One policy's inventory figures (see the module docstring for the definitions)."""

    produced: int = 0
    sold: int = 0
    unsold: int = 0
    stockouts: int = 0

    def add_stock(self, stock: NicheStock) -> None:
        self.produced += stock.produced
        self.sold += stock.produced - stock.on_hand
        self.unsold += stock.on_hand
        self.stockouts += stock.backorder

    def to_dict(self) -> dict[str, Any]:
        demand = self.sold + self.stockouts
        return {"produced": self.produced, "sold": self.sold, "unsold": self.unsold, "stockouts": self.stockouts,
                "fill_rate": round(self.sold / demand, 4) if demand else None}


@dataclass
class _Niche:
    """The planner's side of one niche, and what the baseline needs of it."""

    niche: dict[str, str]
    first_ms: int
    plan: NichePlan = field(default_factory=NichePlan)
    demand: NicheDemand = field(default_factory=NicheDemand)  # the evidence counters
    due: list[tuple[int, str]] = field(default_factory=list)  # heap of (completion ts, trigger id)
    orders: list[tuple[int, str, int]] = field(default_factory=list)  # (ts, type, units) for the baseline
    mts_ms: int = 0  # when the baseline decided (0: not yet)
    mts_rate: float = 0.0  # its P50 units per bucket then


class PlanReplay:
    """The planner and the make-to-stock baseline on one replay (a `streams.backtest.ReplayHook`)."""

    def __init__(self, factories: Sequence[Factory], config: PlannerConfig | None = None,
                 observe_hours: float = 24.0) -> None:
        self.factories = tuple(factories)
        self.cfg = config or PlannerConfig()
        self.observe_ms = int(observe_hours * HOUR_MS)
        self.book = CapacityBook()
        self.niches: dict[str, _Niche] = {}
        self.groups: dict[str, groups.GroupState] = {}
        self.group_due: list[tuple[int, str]] = []  # heap of (completion ts, trigger id) of group parts
        self.bucket_ms = HOUR_MS
        self.end_ms = 0  # the newest event time seen

    # -- the ReplayHook ---------------------------------------------------------------------

    def on_rows(self, niche_key: str, niche: dict[str, str], rows: list[list[Any]]) -> None:
        """One niche's rows: orders meet the stock at their own time (after any batch due by then)."""
        n = self.niches.get(niche_key)
        if n is None:
            n = self.niches[niche_key] = _Niche(dict(niche), min(int(r[2]) for r in rows))
        for row in sorted(rows, key=lambda r: r[2]):
            etype, ts, qty = row[1], int(row[2]), int(row[3])
            self.end_ms = max(self.end_ms, ts)
            self._complete(n, ts)
            n.demand.add(etype, ts, qty, self.bucket_ms)
            if etype in ORDER_TYPES:
                n.plan.stock.order(etype, qty)
                n.orders.append((ts, etype, qty))
            elif etype == "group_join" and len(row) >= 7:
                gid = str(row[4])
                join = groups.Join(str(row[0]), qty, ts, int(row[5]), int(row[6]))
                self._group(niche_key, groups.on_join(self.groups.get(gid), gid, niche_key, n.niche, join,
                                                      self.book, self.factories, ts), ts)
        n.demand.trim(EVIDENCE_BUCKETS, self.bucket_ms)

    def on_close(self, bucket_end_ms: int, engine: DemandEngine, advance: Advance) -> None:
        """A bucket closed: batches due land, groups tick, the baseline decides, every niche is planned."""
        self.bucket_ms = engine.config.bucket_ms
        now = bucket_end_ms
        self._complete_groups(now)
        for st in list(self.groups.values()):
            if not st.closed:
                self._group(st.niche_key, groups.tick(st, self.book, self.factories, now), now)
        drifting = {d.niche for d in advance.drift}
        for key, n in self.niches.items():
            self._complete(n, now)
            if not n.mts_ms and now - n.first_ms >= self.observe_ms:
                fc = engine.forecast(key, engine.config.horizon_hours[-1], n.niche)
                n.mts_ms, n.mts_rate = now, (fc.p50 / engine.config.horizons[-1] if fc is not None else 0.0)
            self._plan(key, n, engine, now, key in drifting)

    def summary(self) -> dict[str, Any]:
        """The figures at the end of the log, planner and make-to-stock side by side."""
        self._complete_groups(self.end_ms)
        made = sum(st.made for st in self.groups.values())
        planner, mts = Outcome(produced=made, sold=made), Outcome()
        for st in self.groups.values():
            factory = self._fastest(st.niche.get("category", ""))
            if st.filled_ts and factory is not None and st.filled_ts + factory.lead_time_hours * HOUR_MS <= self.end_ms:
                mts.produced += st.joined
                mts.sold += st.joined
        for n in self.niches.values():
            self._complete(n, self.end_ms)
            planner.add_stock(n.plan.stock)
            mts.add_stock(self._make_to_stock(n))
        return {"planner": planner.to_dict(), "make_to_stock": mts.to_dict()}

    # -- the planner side -------------------------------------------------------------------

    def _plan(self, key: str, n: _Niche, engine: DemandEngine, now: int, drift: bool) -> None:
        """The worker's call sequence for one niche at a bucket close."""
        f = planning_factory(n.niche.get("category", ""), n.plan, self.book, self.factories, now)
        if f is None:
            return
        # one bucket of the engine stands for an hour of the production clock
        fc = engine.forecast(key, f.lead_time_hours * self.bucket_ms / HOUR_MS, n.niche)
        if fc is None:
            return
        forecast = {**fc.to_dict(), "horizon_hours": f.lead_time_hours}
        # the window ends with the bucket that just closed (now is the first instant of the next one)
        evidence = evidence_of(n.demand, max(now - 1, n.demand.last_ts_ms), self.bucket_ms, EVIDENCE_BUCKETS,
                               drift=drift or fc.drift)
        res = plan(key, n.niche, n.plan, forecast, evidence, self.book, self.factories, now, self.cfg)
        n.plan = res.state
        for trig in res.triggers:
            admitted = self.book.admit(trig, key, self.factories, now)
            n.plan.stock.settle(trig.trigger_id, trig.revision, admitted)
            if admitted and trig.action != "cancel":
                self._accept(trig, now)
                heapq.heappush(n.due, (trig.due_by_ts, trig.trigger_id))

    def _group(self, key: str, res: groups.GroupResult, now: int) -> None:
        """Admit a group step's triggers; a bounced part is routed again (on_bounce) until none bounce."""
        st, todo = res.state, list(res.triggers)
        while todo:
            trig = todo.pop(0)
            if self.book.admit(trig, key, self.factories, now):
                st = groups.on_status(st, self._accept(trig, now), self.book, self.factories, now).state
                heapq.heappush(self.group_due, (trig.due_by_ts, trig.trigger_id))
            else:
                bounced = groups.on_bounce(st, trig.trigger_id, self.book, self.factories, now)
                st, todo = bounced.state, [*todo, *bounced.triggers]
        self.groups[st.group_id] = st

    def _accept(self, trig: Trigger, now: int) -> FactoryStatus:
        """The simulated factory takes every admitted trigger as asked."""
        status = FactoryStatus(trig.factory_id, "accepted", now, trig.trigger_id, trig.revision, trig.units)
        booking = self.book.apply_status(status)
        if booking is not None and booking.group_id is None:
            self.niches[booking.niche_key].plan.on_status(status, now, self.cfg)
        return status

    def _finish(self, trigger_id: str, ts: int) -> FactoryStatus | None:
        """The factory completes a trigger at its due time; None when it is no longer booked."""
        booking = self.book.find(trigger_id)
        if booking is None:
            return None
        status = FactoryStatus(booking.factory_id, "completed", ts, trigger_id, booking.revision, booking.units)
        self.book.apply_status(status)
        return status

    def _complete(self, n: _Niche, until: int) -> None:
        while n.due and n.due[0][0] <= until:
            ts, tid = heapq.heappop(n.due)
            status = self._finish(tid, ts)
            if status is not None:
                n.plan.on_status(status, ts, self.cfg)

    def _complete_groups(self, until: int) -> None:
        while self.group_due and self.group_due[0][0] <= until:
            ts, tid = heapq.heappop(self.group_due)
            booking = self.book.find(tid)
            status = self._finish(tid, ts)
            if status is not None and booking is not None and booking.group_id is not None:
                gid = booking.group_id
                self.groups[gid] = groups.on_status(self.groups[gid], status, self.book, self.factories, ts).state

    # -- the make-to-stock baseline ---------------------------------------------------------

    def _make_to_stock(self, n: _Niche) -> NicheStock:
        """The baseline's stock at the end of the log: its one batch against the niche's orders."""
        stock = NicheStock()
        factory = self._fastest(n.niche.get("category", ""))
        lands = n.mts_ms + factory.lead_time_hours * HOUR_MS if factory is not None and n.mts_ms else None
        for ts, etype, qty in n.orders:
            if factory is not None and lands is not None and lands <= ts:
                self._land(stock, factory, n, lands)
                lands = None
            stock.order(etype, qty)
        if factory is not None and lands is not None and lands <= self.end_ms:
            self._land(stock, factory, n, lands)
        return stock

    def _fastest(self, category: str) -> Factory | None:
        return min((f for f in self.factories if f.makes(category)), key=lambda f: (f.lead_time_hours, f.id),
                   default=None)

    def _land(self, stock: NicheStock, factory: Factory, n: _Niche, lands: int) -> None:
        """The baseline's batch completes: sized now the log's length is known, on the decision's forecast."""
        waiting = sum(q if t == "placed" else -q for ts, t, q in n.orders if ts < n.mts_ms)
        rest = max(0.0, (self.end_ms - n.mts_ms) / self.bucket_ms)
        units = batch_units(max(0, waiting) + n.mts_rate * rest, factory)
        stock.lots["mts"] = Lot("mts", factory.id, 1, units, lands)
        stock.apply_status(FactoryStatus(factory.id, "completed", lands, "mts", 1, units))
