"""The production planner: from a niche's forecast and stock to triggers for factories. Pure.

The rolling rule of DESIGN §7, for one niche per call, whenever the worker calls it (a planning
tick, a drift, a rejection, a completed batch):

    need = demand quantile over the lead time + uncovered orders - stock - open production

- nothing unaccepted is open: need ≥ the reorder point (`PlannerConfig.start_share` of the factory's
  min batch: all of it by default, DESIGN §7's rule) starts a batch ("start"
  when the niche has nothing open at all, else "reorder"), rounded up to whole steps and at least a
  min batch, split across factories when one cannot take it all;
- a batch is open and not yet accepted: need ≥ one batch step grows it with a new revision of the
  same trigger ("revise"); when what P90 demand still needs of it (whatever the service level:
  "increase or stop" stops only on P90) falls more than one batch step below what it was sized for,
  it shrinks ("revise" with fewer units) or, below the min batch, is cancelled ("cancel", units =
  the units to stop). Accepted batches are never changed.

A cold-start forecast (a prior from the niche's attributes) is planned at P50 and capped at a first
batch (`cold_start_level`, `cold_start_cap`); live signals then reorder or stop.

Hysteresis keeps a niche hovering at a threshold from flapping: a start lifts the stock position by
at least a min batch, so the need falls well below the reorder point at once, a revise needs a whole
step, a shrink or cancel a fall of more than a step from the batch's own basis (not
from its rounded-up units), and an open batch changes at most once per `min_revision_interval_ms`.

The walking skeleton's threshold rule (`plan_niche`, `PlanState`, `record_issued`) stays until the
worker switches over; its demand signal also gives a cold-start forecast (`rule_forecast`) when the
engine has none.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.demand import NicheDemand, bucket_of
from models.inventory import Lot, NicheStock
from models.routing import HOUR_MS, CapacityBook, Factory, StatusLike, batch_floor, batch_units, choose_factory

RULE_MODEL = "threshold-rule/v1"
RULE_P90_FACTOR = 1.3


@dataclass(frozen=True)
class RuleConfig:
    window_buckets: int = 5
    cart_weight: float = 0.25
    start_threshold: float = 100.0
    first_batch_max: int = 200


@dataclass
class PlanState:
    """What the skeleton's rule has issued for one niche; lives in a changelogged table beside demand."""

    seq: int = 0
    open: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "open": self.open}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> PlanState:
        if not raw:
            return cls()
        return cls(seq=int(raw.get("seq", 0)), open=raw.get("open"))


@dataclass(frozen=True)
class Trigger:
    trigger_id: str
    revision: int
    action: str
    kind: str
    factory_id: str
    niche: dict[str, str]
    units: int
    due_by_ts: int
    emitted_ts: int
    forecast: dict[str, Any]
    evidence: dict[str, Any]
    reason: str
    group_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trigger_id": self.trigger_id, "revision": self.revision, "action": self.action,
            "kind": self.kind, "factory_id": self.factory_id, "niche": self.niche,
            "units": self.units, "due_by_ts": self.due_by_ts, "emitted_ts": self.emitted_ts,
            "forecast": self.forecast, "evidence": self.evidence, "reason": self.reason,
        }
        if self.group_id is not None:
            out["group_id"] = self.group_id
        return out


def trigger_id(niche_key: str, seq: int) -> str:
    """Deterministic, so a replay after a crash re-derives the same id for the same decision."""
    return "t-" + hashlib.sha1(f"{niche_key}#{seq}".encode()).hexdigest()[:16]


def demand_signal(demand: NicheDemand, now_ms: int, bucket_ms: int, cfg: RuleConfig) -> float:
    end = bucket_of(now_ms, bucket_ms)
    units = demand.window("units", end, cfg.window_buckets, bucket_ms)
    carts = demand.window("add_to_cart", end, cfg.window_buckets, bucket_ms)
    return units + cfg.cart_weight * carts


def evidence_of(demand: NicheDemand, now_ms: int, bucket_ms: int, window_buckets: int,
                drift: bool = False) -> dict[str, Any]:
    """The funnel behind a decision: views, carts and orders over the recent window, and the drift flag."""
    views, carts, orders = demand.windows(("view", "add_to_cart", "orders"), bucket_of(now_ms, bucket_ms),
                                          window_buckets, bucket_ms)
    return {"views": views, "add_to_cart": carts, "orders": orders, "drift": drift}


def rule_forecast(demand: NicheDemand, now_ms: int, bucket_ms: int, cfg: RuleConfig,
                  horizon_hours: int) -> dict[str, Any]:
    """A cold-start stand-in when the engine has no forecast: the recent demand signal, taken as the
    demand over `horizon_hours` (crude on purpose; the pooled model replaces it as soon as it can)."""
    signal = demand_signal(demand, now_ms, bucket_ms, cfg)
    return {"horizon_hours": horizon_hours, "p50": round(signal, 2), "p90": round(signal * RULE_P90_FACTOR, 2),
            "model": RULE_MODEL, "cold_start": True}


def plan_niche(niche_key: str, niche: dict[str, str], demand: NicheDemand, state: PlanState,
               factories: Iterable[Factory], open_units: dict[str, int], now_ms: int,
               bucket_ms: int, cfg: RuleConfig) -> Trigger | None:
    """The skeleton's rule: start a first batch when recent demand crosses the threshold and nothing is open."""
    if state.open is not None:
        return None
    signal = demand_signal(demand, now_ms, bucket_ms, cfg)
    if signal < cfg.start_threshold:
        return None
    category = niche.get("category", "")
    wanted = min(max(signal, 1.0), float(cfg.first_batch_max))
    # ceil, not int: the room check must see the same batch that batch_units issues below
    factory = choose_factory(category, math.ceil(wanted), factories, open_units)
    if factory is None:
        return None
    units = batch_units(wanted, factory)
    return Trigger(
        trigger_id=trigger_id(niche_key, state.seq + 1),
        revision=1,
        action="start",
        kind="forecast",
        factory_id=factory.id,
        niche=niche,
        units=units,
        due_by_ts=factory.due(now_ms),
        emitted_ts=now_ms,
        forecast={"horizon_hours": factory.lead_time_hours, "p50": round(signal),
                  "p90": round(signal * RULE_P90_FACTOR), "model": RULE_MODEL, "cold_start": True},
        evidence=evidence_of(demand, now_ms, bucket_ms, cfg.window_buckets),
        reason=(f"recent demand signal {signal:.0f} (ordered units + {cfg.cart_weight:g} x carts over "
                f"{cfg.window_buckets} buckets) crossed {cfg.start_threshold:g}; first batch of {units}"),
    )


def record_issued(state: PlanState, trig: Trigger) -> PlanState:
    return PlanState(seq=state.seq + 1, open={"trigger_id": trig.trigger_id, "revision": trig.revision,
                                              "factory_id": trig.factory_id, "units": trig.units})


# -- the rolling planner ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannerConfig:
    """Service level = the demand quantile planned for: 0.5 is P50, 0.9 is P90, between interpolates.

    A category's level wins over a factory's, which wins over the default: how much stock-out risk
    is acceptable is first a property of the product.

    `start_share` is the reorder point, as a share of the factory's min batch: a batch starts once
    the need reaches it, rounded up to a min batch. 0.5 keeps the niche's stock position centred on
    its target (between target - half a batch and target + half a batch); 1.0 (a start needs a full
    min batch) always runs short, so slow niches wait on backorders; 0.0 always runs long.
    On the day-scale scenarios (`c2m backtest`), 0.5 against 1.0 served 2-6 points more orders
    from stock at once and delivered 1-3 points more within the log, for at most half a point more
    unsold.

    A cold-start forecast is a prior from the niche's attributes, not evidence: it is planned at
    most at `cold_start_level` and the niche's target is capped at `cold_start_cap` units (0: no
    cap): a first batch of 100-200 pieces, then live signals decide whether to reorder or stop
    (SHEIN's practice, DESIGN's reference points).
    """

    service_level: float = 0.9
    by_category: Mapping[str, float] = field(default_factory=dict)
    by_factory: Mapping[str, float] = field(default_factory=dict)
    min_revision_interval_ms: int = 10 * 60_000
    avoid_after_reject_ms: int = 12 * HOUR_MS
    start_share: float = 1.0
    cold_start_level: float = 0.5
    cold_start_cap: int = 200

    def __post_init__(self) -> None:
        levels = [self.service_level, self.cold_start_level, *self.by_category.values(), *self.by_factory.values()]
        if not all(0.5 <= level <= 0.9 for level in levels):
            raise ValueError("service levels must lie between 0.5 (P50) and 0.9 (P90)")
        if self.min_revision_interval_ms < 0 or self.avoid_after_reject_ms < 0:
            raise ValueError("intervals must not be negative")
        if not 0.0 <= self.start_share <= 1.0:
            raise ValueError("start_share must lie between 0 and 1 (a share of the min batch)")
        if self.cold_start_cap < 0:
            raise ValueError("cold_start_cap must not be negative (0: no cap)")

    def level(self, category: str, factory_id: str) -> float:
        return self.by_category.get(category, self.by_factory.get(factory_id, self.service_level))


@dataclass
class NichePlan:
    """Everything the planner keeps per niche (one table value keyed by niche key): the trigger
    sequence, the stock, and factories to avoid after they rejected this niche (id → until ms)."""

    seq: int = 0
    stock: NicheStock = field(default_factory=NicheStock)
    avoid: dict[str, int] = field(default_factory=dict)

    def on_status(self, status: StatusLike, now_ms: int, cfg: PlannerConfig) -> str:
        """Apply a factory answer about one of this niche's lots (see NicheStock.apply_status).

        A rejection also keeps the rejecting factory out of this niche's routing for a while; the
        worker should then plan the niche at once, which re-routes the units elsewhere.
        """
        outcome = self.stock.apply_status(status)
        if outcome == "rejected":
            self.avoid[status.factory_id] = now_ms + cfg.avoid_after_reject_ms
        return outcome

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "stock": self.stock.to_dict(), "avoid": dict(self.avoid)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> NichePlan:
        if not raw:
            return cls()
        return cls(seq=int(raw.get("seq", 0)), stock=NicheStock.from_dict(raw.get("stock")),
                   avoid={k: int(v) for k, v in raw.get("avoid", {}).items()})


@dataclass(frozen=True)
class PlanResult:
    """The niche's new state, the triggers to admit and publish in order, and the decision in a line."""

    state: NichePlan
    triggers: tuple[Trigger, ...]
    note: str


def _newest_pending(stock: NicheStock) -> Lot | None:
    return max(stock.pending(), key=lambda lot: (lot.changed_ms, lot.trigger_id), default=None)


def planning_factory(category: str, state: NichePlan, book: CapacityBook, factories: Iterable[Factory],
                     now_ms: int) -> Factory | None:
    """The factory `plan` sizes the niche's need for (ask the engine for a forecast over its lead time).

    The factory of the open, unaccepted lot if there is one (it may grow); otherwise the fastest
    capable factory, not being avoided, with room for a min batch; else the fastest capable one.
    """
    factories = tuple(factories)
    pending = _newest_pending(state.stock)
    for f in factories:
        if pending is not None and f.id == pending.factory_id:
            return f
    capable = sorted((f for f in factories if f.makes(category)), key=lambda f: (f.lead_time_hours, f.id))
    allowed = [f for f in capable if state.avoid.get(f.id, 0) <= now_ms]
    for f in allowed:
        if batch_floor(book.room(f, now_ms, f.due(now_ms)), f):
            return f
    return (allowed or capable or [None])[0]


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 0.05 else f"{x:.1f}"


@dataclass
class _Round:
    """One planning call: its inputs, the need it computed, and the triggers it issues."""

    niche_key: str
    niche: dict[str, str]
    st: NichePlan
    book: CapacityBook
    factories: tuple[Factory, ...]
    now_ms: int
    cfg: PlannerConfig
    factory: Factory
    forecast: dict[str, Any]
    evidence: dict[str, Any]
    need: float  # at the service level: what to start or grow
    explain: str
    need_p90: float  # at P90: what an open batch must still be justified by ("increase or stop")
    explain_p90: str
    triggers: list[Trigger] = field(default_factory=list)

    def issue(self, tid: str, revision: int, action: str, factory: Factory, units: int, due_by_ts: int,
              basis: float, reason: str) -> None:
        suffix = ""
        if self.st.avoid:
            suffix += f"; avoiding {', '.join(sorted(self.st.avoid))} after a rejection"
        if self.evidence.get("drift"):
            suffix += "; demand shift detected"
        trig = Trigger(trigger_id=tid, revision=revision, action=action, kind="forecast", factory_id=factory.id,
                       niche=self.niche, units=units, due_by_ts=due_by_ts, emitted_ts=self.now_ms,
                       forecast=dict(self.forecast), evidence=dict(self.evidence), reason=reason + suffix)
        self.st.stock.record(trig, basis, self.now_ms)
        self.triggers.append(trig)

    def new_lots(self, wanted: float, exclude: set[str], action: str, lead: str, basis: float | None = None) -> str:
        """Route `wanted` units as new lots (sized for `basis`, when less); returns what happened, in a line."""
        route = self.book.route(self.niche.get("category", ""), wanted, self.now_ms, self.factories,
                                exclude=exclude)
        if not route.parts:
            return f"{lead}: {route.reason}"
        split = ""
        if len(route.parts) > 1:
            split = " (split: " + ", ".join(f"{p.units} at {p.factory.id}" for p in route.parts) + ")"
        short = f"; {_num(route.short)} more found no room" if route.short else ""
        remaining = wanted if basis is None else basis
        for part in route.parts:
            self.st.seq += 1
            self.issue(trigger_id(self.niche_key, self.st.seq), 1, action, part.factory, part.units,
                       part.due_by_ts, min(float(part.units), max(0.0, remaining)),
                       f"{lead}: {action} {part.units} at {part.factory.id}{split}{short}")
            remaining -= part.units
        return self.triggers[-1].reason

    def start(self) -> str:
        """A new batch once the need reaches the reorder point: `start_share` of the min batch (a
        smaller need is rounded up to a min batch)."""
        f = self.factory
        share = self.cfg.start_share
        point = f"min batch {f.min_batch}" if share == 1 else f"{share:g} of min batch {f.min_batch}"
        if self.need < max(1.0, share * f.min_batch):
            return f"{self.explain} < {point}: nothing to start"
        if self.need >= f.min_batch:
            point = f"min batch {f.min_batch}"
        action = "reorder" if self.st.stock.lots else "start"
        return self.new_lots(max(self.need, f.min_batch), set(self.st.avoid), action, f"{self.explain} ≥ {point}",
                             basis=self.need)

    def adjust(self, lot: Lot) -> str:
        """Grow, shrink or cancel the open, unaccepted lot, or hold it."""
        f, step, units, basis = self.factory, self.factory.batch_step, lot.units, lot.basis
        justified = self.need_p90 + units  # what P90 demand still needs of this lot, given everything else
        grow = self.need >= step
        if not grow and justified >= basis - step:
            return f"{self.explain}: the {units} open at {f.id} still fit"
        wait = lot.changed_ms + self.cfg.min_revision_interval_ms - self.now_ms
        if wait > 0:
            return f"{self.explain}: holding {lot.trigger_id} {wait // 1000} s more before revising it"
        if grow:
            room = self.book.room(f, self.now_ms, lot.due_by_ts, ignore=lot.trigger_id)
            grown = min(units + math.ceil(self.need / step) * step, room // step * step)
            note = f"{self.explain}: no room at {f.id} to grow {units}"
            if grown >= units + step:
                note = f"{self.explain} ≥ step {step}: revise {units} → {grown} at {f.id}"
                self.issue(lot.trigger_id, lot.revision + 1, "revise", f, grown, lot.due_by_ts,
                           min(self.need + units, float(grown)), note)
            rest = self.need - max(0, grown - units)
            if rest > 0:  # what the lot's factory has no room for goes elsewhere
                note = self.new_lots(rest, {*self.st.avoid, f.id}, "reorder", f"{note}; {_num(rest)} more")
            return note
        fell = (f"{self.explain_p90}: the {units} open at {f.id} are needed for {_num(max(0.0, justified))}, "
                f"more than a step below the {_num(basis)} they were sized for")
        if justified < f.min_batch:
            self.issue(lot.trigger_id, lot.revision + 1, "cancel", f, units, lot.due_by_ts, 0.0,
                       f"{fell} and under min batch {f.min_batch}: cancel {units}")
            return self.triggers[-1].reason
        smaller = batch_units(justified, f)
        if smaller >= units:
            return f"{fell}: {units} is already the smallest batch for it"
        self.issue(lot.trigger_id, lot.revision + 1, "revise", f, smaller, lot.due_by_ts, justified,
                   f"{fell}: revise {units} → {smaller}")
        return self.triggers[-1].reason


def plan(niche_key: str, niche: Mapping[str, str], state: NichePlan, forecast: Mapping[str, Any],
         evidence: Mapping[str, Any], book: CapacityBook, factories: Sequence[Factory], now_ms: int,
         cfg: PlannerConfig | None = None, *, factory: Factory | None = None) -> PlanResult:
    """Plan one niche now. Pure: `state` and `book` are not changed; the new state is in the result.

    `forecast` is {"horizon_hours", "p50", "p90", "model", "cold_start"}: demand over horizon_hours,
    scaled linearly to the planning factory's lead time when the two differ (ask for
    planning_factory(...).lead_time_hours to avoid it). `evidence` is evidence_of(...): views,
    add_to_cart, orders, drift. Each trigger must be admitted to the capacity book
    (CapacityBook.admit) before it is published, and the verdict goes back to the niche
    (NicheStock.settle) whether or not it was admitted.

    `factory`: planning_factory(niche's category, state, book, factories, now_ms), when the caller
    has just asked for it (with the same book) to get the forecast: not worked out a second time.
    """
    cfg = cfg or PlannerConfig()
    st = NichePlan.from_dict(state.to_dict())
    st.avoid = {k: until for k, until in st.avoid.items() if until > now_ms}
    category = niche.get("category", "")
    if factory is None:
        factory = planning_factory(category, st, book, factories, now_ms)
    if factory is None:
        return PlanResult(st, (), f"no factory makes {category!r}")
    level = cfg.level(category, factory.id)
    horizon = float(forecast.get("horizon_hours") or factory.lead_time_hours)
    scale = factory.lead_time_hours / horizon
    p50 = max(0.0, float(forecast.get("p50", 0.0))) * scale
    p90 = max(p50, float(forecast.get("p90", 0.0)) * scale)
    stock = st.stock
    scaled = f", scaled from {_num(horizon)} h" if scale != 1 else ""

    cold = bool(forecast.get("cold_start", False))

    def need_at(q: float) -> tuple[float, float, str]:
        # a cold-start forecast is a prior, not evidence: plan it at most at its own level, capped
        q = min(q, cfg.cold_start_level) if cold else q
        demand = p50 + (p90 - p50) * (q - 0.5) / 0.4
        capped = cold and 0 < cfg.cold_start_cap < demand
        demand = min(demand, float(cfg.cold_start_cap)) if capped else demand
        need = demand + stock.backorder - stock.on_hand - stock.open_units
        label = {0.5: "p50", 0.9: "p90"}.get(q, f"p{round(q * 100)}")
        cap = f", capped at {cfg.cold_start_cap} on a cold start" if capped else ""
        return demand, need, (f"{label} demand over {factory.lead_time_hours} h ({_num(demand)}{scaled}{cap}) + "
                              f"{stock.backorder} confirmed - {stock.on_hand} stock - {stock.open_units} in "
                              f"production = {_num(need)}")

    demand, need, explain = need_at(level)
    fc = {"horizon_hours": factory.lead_time_hours, "p50": round(p50, 2), "p90": round(p90, 2),
          "model": str(forecast.get("model", "unknown")), "cold_start": bool(forecast.get("cold_start", False))}
    ev = {**evidence, "plan": {"service_level": level, "demand": round(demand, 2), "uncovered_orders": stock.backorder,
                               "inventory": stock.on_hand, "open_production": stock.open_units,
                               "need": round(need, 2)}}
    rnd = _Round(niche_key, dict(niche), st, book, tuple(factories), now_ms, cfg, factory, fc, ev, need, explain,
                 *need_at(0.9)[1:])
    pending = _newest_pending(stock)
    if pending is None:
        note = rnd.start()
    elif pending.factory_id != factory.id:
        note = f"{explain}: {pending.trigger_id} is open at {pending.factory_id}, which is no longer configured"
    else:
        note = rnd.adjust(pending)
    return PlanResult(st, tuple(rnd.triggers), note)
