"""The production planner: from a niche's demand to a trigger for a factory. Pure.

This is the walking skeleton's rule: a threshold on recent funnel demand (ordered units plus a
fraction of carts) starts one first batch per niche. The River forecaster and the rolling
planner (reorder, revise, cancel) replace it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models.demand import NicheDemand, bucket_of
from models.routing import Factory, batch_units, choose_factory

RULE_MODEL = "threshold-rule/v1"


@dataclass(frozen=True)
class RuleConfig:
    window_buckets: int = 5
    cart_weight: float = 0.25
    start_threshold: float = 100.0
    first_batch_max: int = 200


@dataclass
class PlanState:
    """What the planner has issued for one niche; lives in a changelogged table beside demand."""

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


def plan_niche(niche_key: str, niche: dict[str, str], demand: NicheDemand, state: PlanState,
               factories: Iterable[Factory], open_units: dict[str, int], now_ms: int,
               bucket_ms: int, cfg: RuleConfig) -> Trigger | None:
    """Start a first batch when recent demand crosses the threshold and nothing is open yet."""
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
    end = bucket_of(now_ms, bucket_ms)
    window = (cfg.window_buckets, bucket_ms)
    evidence = {
        "views": demand.window("view", end, *window),
        "add_to_cart": demand.window("add_to_cart", end, *window),
        "orders": demand.window("orders", end, *window),
        "drift": False,
    }
    return Trigger(
        trigger_id=trigger_id(niche_key, state.seq + 1),
        revision=1,
        action="start",
        kind="forecast",
        factory_id=factory.id,
        niche=niche,
        units=units,
        due_by_ts=now_ms + factory.lead_time_hours * 3_600_000,
        emitted_ts=now_ms,
        forecast={"horizon_hours": factory.lead_time_hours, "p50": round(signal),
                  "p90": round(signal * 1.3), "model": RULE_MODEL, "cold_start": True},
        evidence=evidence,
        reason=(f"recent demand signal {signal:.0f} (ordered units + {cfg.cart_weight:g} x carts over "
                f"{cfg.window_buckets} buckets) crossed {cfg.start_threshold:g}; first batch of {units}"),
    )


def record_issued(state: PlanState, trig: Trigger) -> PlanState:
    return PlanState(seq=state.seq + 1, open={"trigger_id": trig.trigger_id, "revision": trig.revision,
                                              "factory_id": trig.factory_id, "units": trig.units})
