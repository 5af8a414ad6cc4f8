"""The niche stage's decisions without Faust: deduplicated rows in, state writes and proposals out.

The worker's niche agent owns the Kafka side (the dedupe table, changelogs, sends); what it decides
per niche goes through here, so it is tested without a broker:
- fresh rows update the niche's counters, the demand engine, its stock (placed and cancelled
  orders) and its groups (group_join: the fast path, a filled group proposes its trigger at once);
- every batch re-plans the niches it touched; a bucket close re-plans the niches whose forecasts
  moved (active recently, or with open lots); drift re-plans at once;
- verdicts of the capacity book and factory answers settle lots and group parts.

Writes come back keyed by the niche they belong to, so the agent writes each one with an event of
that niche's partition and changelogs stay co-partitioned. Triggers are proposals: the capacity
agent, the one writer of the capacity book, admits and publishes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.demand import NicheDemand
from models.engine import HOUR_MS, DemandEngine
from models.groups import GroupResult, GroupState, Join, on_bounce, on_join, tick
from models.groups import on_status as group_on_status
from models.planner import NichePlan, PlannerConfig, Trigger, evidence_of, plan, planning_factory
from models.routing import CapacityBook, Factory, StatusLike

DEMAND, PLANS, GROUPS, MODELS = "demand", "plans", "groups", "models"
KEEP_BUCKETS = 48
STOCK_TYPES = ("placed", "cancelled")
EVIDENCE_BUCKETS = 6


@dataclass
class Effects:
    """What the agent must do after a stage call, in order."""

    writes: list[tuple[str, str, Any, str]] = field(default_factory=list)  # (table, key, value, niche key)
    proposals: list[tuple[Trigger, str]] = field(default_factory=list)  # (trigger, niche key)
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # group outcomes to publish
    drift: list[str] = field(default_factory=list)  # niches where a demand shift was detected
    closed: list[int] = field(default_factory=list)  # buckets the engine closed
    notes: dict[str, str] = field(default_factory=dict)  # niche key -> the planner's last word
    latest: dict[tuple[str, str], Any] = field(default_factory=dict)  # the newest of `writes` per (table, key)

    def write(self, table: str, key: str, value: Any, niche_key: str) -> None:
        self.writes.append((table, key, value, niche_key))
        self.latest[(table, key)] = value

    def written(self) -> None:
        """The agent has stored the writes."""
        self.writes.clear()
        self.latest.clear()


Reader = Callable[[str, str, str], Any]  # (table, key, niche key) -> the stored value or None


class NicheStage:
    """One worker's niche decisions. `read` sees the niche's state as the agent has written it so far
    (DEMAND and PLANS keyed by niche key, GROUPS by group id within the niche's state);
    `book` is this worker's view of the capacity book (the capacity agent's table, refreshed by the
    agent, plus what this stage proposed since), used to route before proposing."""

    def __init__(self, engine: DemandEngine, factories: Sequence[Factory], read: Reader,
                 planner: PlannerConfig | None = None) -> None:
        self.engine = engine
        self.factories = tuple(factories)
        self.read = read
        self.cfg = planner or PlannerConfig()
        self.bucket_ms = engine.config.bucket_ms
        self.book = CapacityBook()
        self.watermark = 0  # newest event time seen
        self.recent: dict[str, int] = {}  # niche key -> last bucket with an event or an open lot
        self.open_groups: dict[str, str] = {}  # group id -> niche key, for expiry and retries
        self.held: dict[str, int] = {}  # niche key -> when the hold on revising its open lot ends
        self._touched: dict[str, int] = {}  # niche key -> its newest event in this batch

    # -- input ------------------------------------------------------------------------------

    def on_events(self, key: str, niche: Mapping[str, str], rows: Sequence[Sequence[Any]], eff: Effects) -> None:
        """Count one niche's fresh (deduplicated) rows; the niche is planned at the end of the batch."""
        if not rows:
            return
        bm = self.bucket_ms
        demand = NicheDemand.from_dict(self._get(DEMAND, key, eff))
        for row in rows:
            demand.add(row[1], row[2], row[3], bm)
        demand.trim(KEEP_BUCKETS, bm)
        eff.write(DEMAND, key, {**demand.to_dict(), "niche": dict(niche)}, key)
        self.engine.observe(key, niche, rows)
        newest = max(int(r[2]) for r in rows)
        self.watermark = max(self.watermark, newest)
        self.recent[key] = newest // bm
        orders = [row for row in rows if row[1] in STOCK_TYPES]
        if orders:  # only orders move the stock; funnel events move the forecast, at the next close
            state = self._plan_state(key, eff)
            for row in orders:
                state.stock.order(row[1], row[3])
            self._save(key, niche, state, eff)
            self._touched[key] = max(newest, self._touched.get(key, 0))
        for row in rows:
            if row[1] == "group_join" and len(row) >= 7:
                join = Join(row[0], row[3], row[2], row[5], row[6])
                self._group(key, row[4], lambda st, gid=row[4], j=join: on_join(
                    st, gid, key, niche, j, self.book, self.factories, j.ts), eff)

    def plan_touched(self, eff: Effects) -> None:
        """Re-plan the niches this batch touched (their orders and stock moved), each at the time of
        its own newest event: a replay of the same events decides the same, whatever the batching."""
        for key, newest in sorted(self._touched.items()):
            self.plan_niche(key, newest, eff)
        self._touched.clear()

    def advance(self, now_ms: int, eff: Effects) -> None:
        """Close the buckets that ended by `now_ms`; re-plan what moved, drifting niches first."""
        adv = self.engine.advance(now_ms)
        if not adv.closed:
            return
        eff.closed.extend(adv.closed)
        drifting = sorted({d.niche for d in adv.drift})
        eff.drift.extend(drifting)
        oldest = adv.closed[-1] - max(self.engine.config.horizons)
        for key in [k for k, b in self.recent.items() if b < oldest]:
            if not self._plan_state(key, eff).stock.lots:
                del self.recent[key]
        plan_now = (adv.closed[-1] + 1) * self.bucket_ms  # the close itself, not the clock: replays agree
        for key in drifting:
            self.plan_niche(key, plan_now, eff, drift=True)
        for key in sorted(self.recent.keys() - set(drifting)):
            self.plan_niche(key, plan_now, eff)

    def on_verdict(self, key: str, verdict: Mapping[str, Any], now_ms: int, eff: Effects) -> None:
        """The capacity book's answer to a proposal: a refused one is settled and planned again."""
        tid, rev, admitted = str(verdict["trigger_id"]), int(verdict["revision"]), bool(verdict["admitted"])
        gid = verdict.get("group_id")
        if admitted:
            return
        factory = verdict.get("factory")
        if factory:  # the view admitted what the book refused: take the book's word for that factory
            self.book.bookings.pop(factory["id"], None)
            self.book.capacity.pop(factory["id"], None)
            fresh = CapacityBook.from_dict({factory["id"]: factory})
            self.book.bookings.update(fresh.bookings)
            self.book.capacity.update(fresh.capacity)
        if gid:
            self._group(key, gid, lambda st: on_bounce(st, tid, self.book, self.factories, now_ms), eff)
            return
        state = self._plan_state(key, eff)
        if state.stock.settle(tid, rev, False):
            self._save(key, self._niche(key, eff), state, eff)
            # a refused new lot is routed again now; a refused revision or cancel means the factory
            # answered first, and its answer (on its way) decides what comes next
            if verdict.get("action") in ("start", "reorder"):
                self.plan_niche(key, now_ms, eff)

    def on_status(self, key: str, status: StatusLike, group_id: str | None, now_ms: int, eff: Effects) -> None:
        """A factory's answer about one of this niche's lots or group parts, forwarded by the book."""
        if group_id:
            self._group(key, group_id, lambda st: group_on_status(st, status, self.book, self.factories, now_ms),
                        eff)
            return
        state = self._plan_state(key, eff)
        outcome = state.on_status(status, now_ms, self.cfg)
        if outcome == "ignored":
            return
        self._save(key, self._niche(key, eff), state, eff)
        if outcome in ("rejected", "completed"):
            self.plan_niche(key, now_ms, eff)

    def tick_groups(self, now_ms: int, eff: Effects) -> None:
        """Expire open groups past their expiry; retry filled units that found no room."""
        for gid, key in sorted(self.open_groups.items()):
            self._group(key, gid, lambda st: tick(st, self.book, self.factories, now_ms), eff)

    def track(self, group_id: str, raw: Mapping[str, Any]) -> None:
        """Know a group found in the table (after a restart), so ticks reach it."""
        st = GroupState.from_dict(raw)
        if not st.closed:
            self.open_groups[group_id] = st.niche_key

    # -- planning ---------------------------------------------------------------------------

    def plan_niche(self, key: str, now_ms: int, eff: Effects, drift: bool = False) -> None:
        """Plan one niche now on the engine's forecast over the planning factory's lead time."""
        niche = self._niche(key, eff)
        if not niche:
            return
        state = self._plan_state(key, eff)
        factory = planning_factory(niche.get("category", ""), state, self.book, self.factories, now_ms)
        if factory is None:
            return
        # The engine counts time in buckets and one bucket stands for an hour of the production
        # clock, so a lead time of L hours is L buckets: minute buckets run the same plan in minutes.
        fc = self.engine.forecast(key, factory.lead_time_hours * self.bucket_ms / HOUR_MS, niche)
        if fc is None:
            return
        forecast = {**fc.to_dict(), "horizon_hours": factory.lead_time_hours}
        demand = NicheDemand.from_dict(self._get(DEMAND, key, eff))
        evidence = evidence_of(demand, max(now_ms, demand.last_ts_ms), self.bucket_ms, EVIDENCE_BUCKETS,
                               drift=drift or fc.drift)
        result = plan(key, niche, state, forecast, evidence, self.book, self.factories, now_ms, self.cfg,
                      factory=factory)
        for trig in result.triggers:
            if self.book.admit(trig, key, self.factories, now_ms):
                eff.proposals.append((trig, key))
            else:  # this worker's view already has no room: never propose it
                result.state.stock.settle(trig.trigger_id, trig.revision, False)
        eff.notes[key] = result.note
        self._save(key, niche, result.state, eff, result.note)
        if result.state.stock.lots:
            self.recent[key] = max(self.recent.get(key, 0), now_ms // self.bucket_ms)
        pending = result.state.stock.pending()
        until = max((lot.changed_ms for lot in pending), default=0) + self.cfg.min_revision_interval_ms
        if pending and until > now_ms:  # a decision deferred by the hysteresis: take it when the hold ends
            self.held[key] = until
        else:
            self.held.pop(key, None)

    def plan_held(self, now_ms: int, eff: Effects) -> None:
        """Plan the niches whose revision hold has ended, each at the moment it ended."""
        for key, until in sorted(self.held.items(), key=lambda kv: (kv[1], kv[0])):
            if until <= now_ms:
                del self.held[key]
                self.plan_niche(key, until, eff)

    # -- helpers ----------------------------------------------------------------------------

    def _get(self, table: str, key: str, eff: Effects, niche_key: str | None = None) -> Any:
        """The value as this call left it: its own writes first, then the table."""
        if (table, key) in eff.latest:
            return eff.latest[(table, key)]
        return self.read(table, key, niche_key or key)

    def _niche(self, key: str, eff: Effects) -> dict[str, str]:
        raw = self._get(PLANS, key, eff) or self._get(DEMAND, key, eff) or {}
        return dict(raw.get("niche") or {})

    def _plan_state(self, key: str, eff: Effects) -> NichePlan:
        return NichePlan.from_dict(self._get(PLANS, key, eff))

    def _save(self, key: str, niche: Mapping[str, str], state: NichePlan, eff: Effects, note: str = "") -> None:
        old = self._get(PLANS, key, eff) or {}
        value = {**state.to_dict(), "niche": dict(niche), "note": note or old.get("note", "")}
        if value != old:  # most plans change nothing: no changelog write for those
            eff.write(PLANS, key, value, key)

    def _group(self, key: str, gid: str, step: Callable[[GroupState | None], GroupResult], eff: Effects) -> None:
        """Run one group step and propose its triggers whatever this worker's view says: a group's
        units are owed to buyers, so only the book itself may refuse them (and a refusal re-routes)."""
        raw = self._get(GROUPS, gid, eff, key)
        res = step(GroupState.from_dict(raw) if raw else None)
        if res.outcome is not None:
            eff.outcomes.append(res.outcome)
        for trig in res.triggers:
            self.book.admit(trig, key, self.factories, trig.emitted_ts)
            eff.proposals.append((trig, key))
        value = res.state.to_dict()
        if value != raw:  # ticks mostly change nothing: no changelog write for those
            eff.write(GROUPS, gid, value, key)
        if res.state.closed:
            self.open_groups.pop(gid, None)
        else:
            self.open_groups[gid] = key
