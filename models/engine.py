"""The demand engine: per-niche bucketed state, the pooled forecaster, delayed labels, drift,
progressive-validation metrics and checkpoints, behind a small API the worker and the backtest
both drive. Pure: no Kafka, no Faust, no asyncio.

Time is event time, in buckets (`bucket_ms`; an hour in production). The engine has one open
bucket; `observe` counts a niche's events into it (late events too; events up to
`ahead_buckets` early into their own bucket), `advance(now_ms)` closes every bucket that ended by
`now_ms`. Closing bucket b, for every active niche:

1. labels mature: the units of buckets t+1..b are now known for the features of t = b - H, for
   each horizon H; the forecast issued at t is scored (progressive validation) and its residual
   feeds the conformal calibration;
2. the niche's orders of b, against what its carts of the hours before predict, feed its drift
   detector and those of its attribute groups (see drift);
3. the pooled model learns the matured (features of t, units over t+1..b) pairs -- once per
   bucket per niche, never per click, and never from a bucket that has not closed (horizons
   beyond a day have no model to learn: see forecaster);
4. the features of b are computed and stored, and the forecast for b is issued. Every forecast
   is thus made before its label exists and learned from only after (predict, then learn).

A niche is active from its first event until `dormant_after` buckets without one: by then every
label it had pending has matured and its features are all zero, so skipping it costs nothing and
evicting it is exact. A niche first seen after the engine's first bucket was launched (its first
orders are still on their way); one seen from the start was already selling, history unknown.
State is a slab of numpy rings (one row per resident niche) so a bucket close is a few array
operations plus one short Python loop over active niches for River.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from models import checkpoint
from models import drift as drifting
from models.features import (
    CART,
    CHANNEL_OF,
    FUNNEL_LAG,
    MATCHED,
    MAX_WINDOW,
    N_FEATURES,
    N_FUNNEL,
    N_LEVELS,
    ORDER_SIGN,
    ORDERS,
    as_dict,
    attribute_features,
    behind,
    bucket_levels,
    offsets,
    profile_factors,
    season_features,
    window_features,
)
from models.forecaster import N_BANDS, PooledForecaster, quantiles

HOUR_MS = 3_600_000
MODEL_NAME = "river-pooled-linear+conformal/v2"
PROFILE_KEEP = 0.7  # per day: the pooled daily profile forgets with a half-life of about two days
CHUNK = 4096  # niches per vectorised step of a bucket close
MAX_GROUPS = 8  # attribute groups a niche's drift evidence joins (one per attribute)
NICHE_KIND = "c2m.niche-state"
POOLED_KIND = "c2m.pooled-model"


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine. Windows and horizons are in buckets: hourly buckets are production,
    and a demo with minute buckets simply runs the same model on a compressed clock."""

    bucket_ms: int = HOUR_MS
    horizons: tuple[int, ...] = (6, 24, 72)  # short (inside the funnel lag), a day, a factory lead time
    season_buckets: int = 24  # buckets per daily cycle
    week_cycles: int = 7
    phase_buckets: int = 8  # bucket 0 of a cycle is local midnight: UTC+8 with hourly buckets
    warm_buckets: int = 24  # a niche is cold_start until it is this many buckets old
    learning_rate: float = 0.01  # of the shortest horizon; longer ones take smaller steps
    calibration_window: int = 300  # residuals the shortest horizon's calibration remembers; longer ones more
    drift_hold_buckets: int = 24  # Forecast.drift stays true this long after a detection
    ahead_buckets: int = 2  # events this far ahead of the open bucket keep their own bucket
    level_halflife: float = 72.0  # buckets; the slow level feature
    min_learned: int = 2000  # labels a horizon's model learns before its forecasts are used

    def __post_init__(self) -> None:
        if self.bucket_ms <= 0 or not self.horizons or min(self.horizons) <= 0:
            raise ValueError("bucket_ms and horizons must be positive")
        if tuple(sorted(set(self.horizons))) != self.horizons:
            raise ValueError("horizons must be strictly increasing")

    @property
    def dormant_after(self) -> int:
        return max(max(self.horizons), MAX_WINDOW) + 1

    @property
    def horizon_hours(self) -> tuple[float, ...]:
        return tuple(h * self.bucket_ms / HOUR_MS for h in self.horizons)


def _ring(n: int) -> int:
    return 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class Forecast:
    """Ordered units over the next `horizon_hours`: what a trigger's "forecast" field carries."""

    horizon_hours: float
    p50: float
    p90: float
    model: str
    cold_start: bool
    drift: bool
    issued_ts: int  # end of the bucket whose data the forecast uses

    def to_dict(self) -> dict[str, Any]:
        return {"horizon_hours": self.horizon_hours, "p50": round(self.p50, 2), "p90": round(self.p90, 2),
                "model": self.model, "cold_start": self.cold_start}


@dataclass(frozen=True)
class Scored:
    """Forecasts issued at bucket `issued` for `horizon` buckets, scored now that it has closed."""

    horizon: int
    issued: int
    keys: list[str]
    actual: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    cold: np.ndarray


@dataclass
class Advance:
    """What one `advance` did: the buckets it closed (absolute numbers, ts // bucket_ms), the
    drift it detected (count them, re-plan those niches now) and the forecasts it scored."""

    closed: list[int] = field(default_factory=list)
    drift: list[drifting.DriftEvent] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)


@dataclass(frozen=True)
class HorizonScore:
    """Progressive validation of one horizon: forecasts scored, MAE of their P50, P90 coverage."""

    n: int
    mae: float
    p90_coverage: float


@dataclass
class NicheState:
    """One niche, out of the slab: what a changelogged table stores per niche key."""

    attrs: dict[str, str]
    funnel: np.ndarray
    units: np.ndarray
    feats: np.ndarray
    raw: np.ndarray
    levels: np.ndarray
    first: int
    last_event: int
    last_closed: int
    since: int
    drift_bucket: int
    saved_open: int
    detector: drifting.Cusum


@dataclass
class PooledState:
    """Everything shared by an engine's niches: what a table stores under the engine's own key."""

    config: EngineConfig
    forecaster: PooledForecaster
    calib: np.ndarray
    open: int | None
    n: np.ndarray
    abs_err: np.ndarray
    covered: np.ndarray
    profile: np.ndarray
    start: int | None  # the first bucket this engine saw: what came before is unknown, not zero
    groups: drifting.Groups


Loader = Callable[[str], bytes | None]


class _Sample(NamedTuple):
    """One matured (features of t, units over t+1..t+H) pair, waiting for its River step."""

    k: int
    row: list[float]
    season: dict[str, float]
    target: float  # log1p(units over the horizon) minus the offset the model starts from


class DemandEngine:
    """Per-niche demand state and the pooled models of one partition (or one process)."""

    def __init__(self, config: EngineConfig | None = None, loader: Loader | None = None,
                 pooled: PooledState | None = None) -> None:
        cfg = pooled.config if pooled is not None else (config or EngineConfig())
        self.config = cfg
        self.loader = loader
        nh = len(cfg.horizons)
        self.rf = _ring(MAX_WINDOW + FUNNEL_LAG + cfg.ahead_buckets + 1)
        self.ru = _ring(max(max(cfg.horizons), MAX_WINDOW) + cfg.ahead_buckets + 1)
        self.rh = max(cfg.horizons) + 1
        self.decay = 0.5 ** (1.0 / cfg.level_halflife)
        if pooled is None:
            pooled = PooledState(cfg, PooledForecaster(cfg.horizons, cfg.learning_rate, cfg.calibration_window,
                                                       cfg.min_learned, learned_upto=cfg.season_buckets),
                                 np.zeros((self.rh, nh, 2, N_BANDS, 2), dtype=np.float32), None,
                                 np.zeros(nh, dtype=np.int64), np.zeros(nh), np.zeros(nh, dtype=np.int64),
                                 np.full((3, cfg.season_buckets), np.nan), None, drifting.Groups())
            pooled.calib[:] = pooled.forecaster.tables()
        self.pooled = pooled
        self._slot: dict[str, int] = {}
        self._keys: list[str | None] = []
        self._free: list[int] = []
        self._attrs: list[dict[str, str]] = []
        self._attr_x: list[dict[str, float]] = []
        self._dirty: set[str] = set()
        # niche key -> (slot, {horizon_hours: Forecast}): a niche's forecast only changes when a
        # bucket closes (or the niche is installed anew), but it is asked for on every plan, so the
        # issued one is kept until then (cleared at every close)
        self._forecasts: dict[str, tuple[int, dict[float, Forecast]]] = {}
        self.late_events = 0
        self.rejected_checkpoints = 0
        self.updates = 0  # niche-bucket closes so far
        self._alloc(0)

    # -- slab ---------------------------------------------------------------------------------

    def _alloc(self, cap: int) -> None:
        nh = len(self.config.horizons)
        shapes: dict[str, tuple[tuple[int, ...], Any]] = {
            "funnel": ((self.rf, N_FUNNEL), np.float32), "units": ((self.ru,), np.float32),
            "feats": ((self.rh, N_FEATURES + nh), np.float16), "raw": ((self.rh, nh), np.float32),
            "levels": ((N_LEVELS,), np.float64), "first": ((), np.int64), "last_event": ((), np.int64),
            "last_closed": ((), np.int64), "since": ((), np.int64), "drift_bucket": ((), np.int64),
            "touched": ((), np.int64), "live": ((), np.bool_), "cusum": ((2,), np.float64),
            "group": ((MAX_GROUPS,), np.int32), "onset": ((2,), np.int64),
        }
        for name, (shape, dtype) in shapes.items():
            new = np.zeros((cap, *shape), dtype=dtype)
            old = getattr(self, "_" + name, None)
            if old is not None:
                new[:len(old)] = old
            setattr(self, "_" + name, new)
        self._cap = cap

    def _new_slot(self, key: str, attrs: Mapping[str, str]) -> int:
        if self._free:
            s = self._free.pop()
        else:
            s = len(self._keys)
            if s >= self._cap:
                self._alloc(max(64, self._cap * 3 // 2))
            self._keys.append(None)
            self._attrs.append({})
            self._attr_x.append({})
        self._keys[s] = key
        self._slot[key] = s
        self._forecasts.pop(key, None)
        self._live[s] = True
        self._attrs[s] = dict(attrs)
        self._attr_x[s] = attribute_features(attrs)
        self._group[s] = -1
        for i, name in enumerate(list(self._attr_x[s])[:MAX_GROUPS]):
            self._group[s, i] = self.pooled.groups.id_of(name)
        for name in ("_funnel", "_units", "_feats", "_raw", "_levels", "_cusum", "_onset"):
            getattr(self, name)[s] = 0
        return s

    def _resident(self, key: str) -> int | None:
        """The niche's slot: resident already, or reloaded through the loader; None if unknown."""
        s = self._slot.get(key)
        if s is not None or self.loader is None:
            return s
        blob = self.loader(key)
        if blob is None:
            return None
        try:
            return self._install(key, checkpoint.loads(blob, NICHE_KIND, NicheState))
        except checkpoint.CheckpointError:
            self.rejected_checkpoints += 1  # start the niche afresh rather than trust it
            return None

    def _create(self, key: str, attrs: Mapping[str, str], open_b: int) -> int:
        s = self._new_slot(key, attrs)
        self._first[s] = self._since[s] = self._last_event[s] = open_b
        self._last_closed[s] = open_b - 1
        self._drift_bucket[s] = -(1 << 40)
        return s

    @property
    def open_bucket(self) -> int | None:
        return self.pooled.open

    def _key(self, s: int) -> str:
        key = self._keys[s]
        assert key is not None, "a released slot has no key"
        return key

    def resident(self) -> int:
        return len(self._slot)

    def __contains__(self, key: str) -> bool:
        return key in self._slot

    # -- input --------------------------------------------------------------------------------

    def observe(self, key: str, attrs: Mapping[str, str], rows: Iterable[Sequence[Any]]) -> None:
        """Count one niche's rows (the ingest row format: [event_id, type, ts, quantity, ...]).

        Rows must already be deduplicated by event_id. A row older than the open bucket counts in
        the open bucket (its bucket has closed and been learned from); one more than
        `ahead_buckets` ahead counts `ahead_buckets` ahead.
        """
        rows = list(rows)
        if not rows:
            return
        bm = self.config.bucket_ms
        if self.pooled.open is None:
            self.pooled.open = self.pooled.start = min(int(r[2]) for r in rows) // bm
            self._forecasts.clear()
        open_b = self.pooled.open
        s = self._resident(key)
        if s is None:
            s = self._create(key, attrs, open_b)
        hi = open_b + self.config.ahead_buckets
        funnel, units = self._funnel[s], self._units[s]
        last = int(self._last_event[s])
        for row in rows:
            etype = row[1]
            b = int(row[2]) // bm
            if b < open_b:
                b = open_b
                self.late_events += 1
            elif b > hi:
                b = hi
            sign = ORDER_SIGN.get(etype)
            if sign is not None:
                units[b % self.ru] += sign * row[3]
                if sign > 0:
                    funnel[b % self.rf, ORDERS] += 1
            else:
                ch = CHANNEL_OF.get(etype)
                if ch is None:
                    continue
                funnel[b % self.rf, ch] += 1
            last = max(last, b)
        self._last_event[s] = last
        self._touched[s] = open_b
        self._dirty.add(key)

    # -- time ---------------------------------------------------------------------------------

    def advance(self, now_ms: int) -> Advance:
        """Close every bucket that ended at or before now_ms (event time, e.g. the partition's
        watermark); returns what closed, drift detected and forecasts scored."""
        out = Advance()
        if self.pooled.open is None:
            return out
        target = now_ms // self.config.bucket_ms
        while self.pooled.open < target:
            self._close(self.pooled.open, out)
            self.pooled.open += 1
            self._forecasts.clear()
        return out

    def _active(self, b: int) -> np.ndarray:
        n = len(self._keys)
        return np.flatnonzero(self._live[:n] & (self._first[:n] <= b)
                              & (self._last_event[:n] > b - self.config.dormant_after))

    def _close(self, b: int, out: Advance) -> None:
        cfg, p = self.config, self.pooled
        act = self._active(b)
        if len(act):
            self.updates += len(act)
            gap = b - self._last_closed[act]
            self._since[act] = np.where(gap != 1, b, self._since[act])
            now = bucket_levels(self._funnel[act, b % self.rf], self._units[act, b % self.ru],
                                self._funnel[act, (b - FUNNEL_LAG) % self.rf])
            self._learn_profile(b, now)
            if not self._carts_known(b):
                # a fresh engine's first orders come from carts placed before it started: they
                # count towards no conversion (nor do the carts standing in for those)
                now[:, MATCHED] = 0.0
            levels = self._levels[act] * (self.decay ** gap)[:, None] + (1 - self.decay) * now
            self._levels[act] = levels
            factors = profile_factors(p.profile)
            conversion = self._pooled_conversion(levels)
            # in chunks: the per-niche arrays of a close stay small however many niches are active
            for chunk in np.array_split(act, -(-len(act) // CHUNK)):
                self._close_chunk(b, chunk, factors, conversion, out)
            self._last_closed[act] = b
            self._dirty.update(self._key(s) for s in act.tolist())
        p.calib[b % self.rh] = p.forecaster.tables()
        nxt = b + 1 + cfg.ahead_buckets
        n = len(self._keys)
        self._funnel[:n, nxt % self.rf] = 0
        self._units[:n, nxt % self.ru] = 0
        out.closed.append(b)

    def _launched(self, slots: np.ndarray) -> np.ndarray:
        """Niches that appeared after the engine's first bucket: launched, not merely unknown to a
        fresh engine. Only their first day teaches (and calibrates) what a new niche sells."""
        start = self.pooled.start if self.pooled.start is not None else -(1 << 40)
        return self._first[slots] > start

    def _carts_known(self, b: int) -> bool:
        """Whether the carts that b's orders mostly come from were seen: not for a fresh engine's
        first FUNNEL_LAG buckets, whose orders come from carts placed before it started."""
        return self.pooled.start is None or b - FUNNEL_LAG >= self.pooled.start

    def _close_chunk(self, b: int, act: np.ndarray, factors: np.ndarray, conversion: tuple[float, float],
                     out: Advance) -> None:
        cfg = self.config
        matured = self._mature(b, act, out)
        age = (b - self._first[act] + 1).astype(np.float64)
        norm = 1 - self.decay ** age
        levels = self._levels[act] / norm[:, None]
        self._drift(b, act, levels, factors, out)
        new = self._launched(act)
        shift = self.pooled.groups.shift(b, self._group[act])
        x_now, rates = window_features(self._funnel[act], self._units[act], b, levels, norm / (1 - self.decay), age,
                                       new, conversion, shift, behind(factors, b, cfg.phase_buckets))
        offs = offsets(rates, cfg.horizons, factors, b, cfg.phase_buckets, age, new)
        self._feats[act, b % self.rh] = np.concatenate([x_now, offs], axis=1)
        self._raw[act, b % self.rh] = self._learn_and_predict(b, act, x_now, offs, matured)

    def _mature(self, b: int, act: np.ndarray, out: Advance) -> list[list[_Sample]]:
        """Labels that closing b completes: score the forecasts issued at b - H (progressive
        validation), feed their residuals to the calibration, and collect the samples to learn,
        per niche."""
        cfg, p = self.config, self.pooled
        hmax = max(cfg.horizons)
        cum = np.cumsum(self._units[act][:, (b - np.arange(hmax)) % self.ru], axis=1)
        samples: list[list[_Sample]] = [[] for _ in act]
        for k, h in enumerate(cfg.horizons):
            t = b - h
            idx = np.flatnonzero(self._since[act] <= t)  # only buckets this streak saw close
            if not len(idx):
                continue
            slots = act[idx]
            actual = np.maximum(cum[idx, h - 1], 0.0).astype(np.float64)
            raw_t = self._raw[slots, t % self.rh].astype(np.float64)
            cold = (t - self._first[slots] + 1) < cfg.warm_buckets
            group = cold & self._launched(slots)
            p50, p90 = _issued(raw_t, group, p.calib[t % self.rh])
            p.n[k] += len(idx)
            p.abs_err[k] += float(np.abs(actual - p50[:, k]).sum())
            p.covered[k] += int((actual <= p90[:, k]).sum())
            out.scored.append(Scored(h, t, [self._key(s) for s in slots.tolist()], actual, p50[:, k], p90[:, k],
                                     cold))
            if p.start is not None and t < p.start + cfg.season_buckets:
                # issued in the engine's first daily cycle, before the daily profile and the
                # niches' norms existed: such features and errors are not what later ones are
                continue
            # conformal: the residuals of forecasts as issued, a horizon ago, before any of their
            # label was known (a model that has since learned the overlapping neighbours would
            # look better than it is). Not those with a shift detected inside their window: it
            # breaks the exchangeability conformal relies on, that miss says nothing of the new
            # regime's forecasts, and a category's collapse would drag every niche's interval down
            calm = self._drift_bucket[slots] <= t
            p.forecaster.calibrators[k].update_many(raw_t[calm, k], group[calm],
                                                    np.log1p(actual[calm]) - raw_t[calm, k])
            if not p.forecaster.learns(k):
                continue
            # consecutive labels of a long horizon share all but one of their buckets: each niche
            # learns every `stride`-th (staggered across niches), which costs little information
            stride = max(1, round(h / cfg.horizons[0] / 2))
            take = np.flatnonzero((t + slots) % stride == 0)
            idx, slots, actual = idx[take], slots[take], actual[take]
            season = season_features(t, cfg.season_buckets, cfg.week_cycles, cfg.phase_buckets)
            rows = self._feats[slots, t % self.rh].astype(np.float32)
            target = np.log1p(actual) - rows[:, N_FEATURES + k]
            for i, row, y in zip(idx.tolist(), rows.tolist(), target.tolist(), strict=True):
                samples[i].append(_Sample(k, row, season, y))
        return samples

    def _learn_and_predict(self, b: int, act: np.ndarray, x_now: np.ndarray, offs: np.ndarray,
                           matured: list[list[_Sample]]) -> np.ndarray:
        """The per-niche River step: learn the matured samples, then issue the forecast for b."""
        cfg = self.config
        fc = self.pooled.forecaster
        season_b = season_features(b, cfg.season_buckets, cfg.week_cycles, cfg.phase_buckets)
        raw_b = np.empty((len(act), len(cfg.horizons)), dtype=np.float32)
        for i, (s, row, off) in enumerate(zip(act.tolist(), x_now.tolist(), offs.tolist(), strict=True)):
            ax = self._attr_x[s]
            for smp in matured[i]:
                fc.learn(smp.k, as_dict(smp.row, smp.season, ax), smp.target)
            raw_b[i] = fc.predict(as_dict(row, season_b, ax), off)
        return raw_b

    def _learn_profile(self, b: int, now: np.ndarray) -> None:
        """The daily profile of views, units and carts per niche, pooled over niches, EW across days."""
        slot = (b + self.config.phase_buckets) % self.config.season_buckets
        mean = now[:, [1, 0, 2]].mean(axis=0)
        prof = self.pooled.profile[:, slot]
        self.pooled.profile[:, slot] = np.where(np.isnan(prof), mean, PROFILE_KEEP * prof + (1 - PROFILE_KEEP) * mean)

    def _pooled_conversion(self, levels: np.ndarray) -> tuple[float, float]:
        """Carts per view and units per (lagged) cart across the active niches (their slow levels),
        with floors and a guess for a start."""
        units, views, carts, lagged = (float(x) for x in levels[:, :4].sum(axis=0))
        return (max(carts / views, 1e-4) if views > 0 else 0.1,
                max(units / lagged, 1e-3) if lagged > 0 else 0.5)

    def _drift(self, b: int, act: np.ndarray, levels: np.ndarray, factors: np.ndarray, out: Advance) -> None:
        """Feed each niche's orders of bucket b, against those its norm and recent carts expect, to
        its detector and its groups' (niches older than the dormancy span only: a young niche has
        no norm to deviate from)."""
        cfg = self.config
        grown = (b - self._first[act] + 1) >= cfg.dormant_after
        if not grown.any():
            return
        slots, levels = act[grown], levels[grown]
        lags = b - np.arange(drifting.CART_LAG[0], drifting.CART_LAG[1] + 1)
        carts = self._funnel[slots][:, lags % self.rf, CART].mean(axis=1)
        # the pooled profiles carry the season and the funnel lag: orders expected in this slot
        # for the carts of the slots before, relative to an average hour
        season = cfg.season_buckets
        shape = factors[1, (b + cfg.phase_buckets) % season] / factors[2, (lags + cfg.phase_buckets) % season].mean()
        expected = drifting.expected_orders(carts * shape, levels[:, 4], levels[:, 3])
        orders = self._funnel[slots, b % self.rf, ORDERS]
        up, down = drifting.llr_step(self._cusum[slots, 0], self._cusum[slots, 1], orders, expected)
        up_at, down_at = self.pooled.groups.thresholds(b, self._group[slots], orders, expected)
        # a group's alarm lowers the bar once per niche: not again right after its own alarm
        again = (b - self._drift_bucket[slots]) < drifting.GROUP_HOLD
        direction = drifting.alarms(up, down, np.where(again, drifting.THRESHOLD, up_at),
                                    np.where(again, drifting.THRESHOLD, down_at))
        fired = direction != 0
        # where a sum leaves zero is its estimate of when the shift began
        started = (self._cusum[slots] == 0) & (np.stack([up, down], axis=1) > 0)
        self._onset[slots] = np.where(started, b, self._onset[slots])
        self._cusum[slots, 0], self._cusum[slots, 1] = np.where(fired, 0.0, up), np.where(fired, 0.0, down)
        ts = (b + 1) * cfg.bucket_ms
        for i in np.flatnonzero(direction).tolist():
            s, d = int(slots[i]), int(direction[i])
            self._drift_bucket[s] = b
            self._forget(s, b, int(self._onset[s, 0 if d > 0 else 1]))
            out.drift.append(drifting.DriftEvent(self._key(s), b, ts, d))

    def _forget(self, s: int, b: int, onset: int) -> None:
        """After a shift in conversion, the niche's conversion norm (its units and orders per
        lagged cart) restarts from the buckets since the shift began -- with the evidence of
        those few buckets only, so the pool's prior (moved by its groups' shift) and the coming
        buckets weigh in. Traffic did not shift: its levels stay. (Only grown niches shift:
        their carts of the last day were all seen.)"""
        back = b - np.arange(min(max(b - onset + 1, FUNNEL_LAG + 1), MAX_WINDOW))
        since = [np.maximum(self._units[s, back % self.ru], 0.0).sum(),
                 self._funnel[s, (back - FUNNEL_LAG) % self.rf, CART].sum(),
                 self._funnel[s, back % self.rf, ORDERS].sum()]
        self._levels[s, MATCHED] = np.array(since) * (1 - self.decay)  # un-normalised EW sums of those buckets

    # -- output -------------------------------------------------------------------------------

    def forecast(self, key: str, horizon_hours: float, attrs: Mapping[str, str] | None = None) -> Forecast | None:
        """P50/P90 of ordered units over the next `horizon_hours`, as issued at the niche's last
        bucket close (forecasts change once per bucket, like the models).

        Model horizons are exact; others interpolate cumulative demand between them (and scale
        the rate beyond the longest). A niche with no closed bucket yet -- or unknown, when its
        `attrs` are given -- gets the pooled model's forecast from its attributes alone, flagged
        cold_start. Unknown without attrs: None.
        """
        cfg, p = self.config, self.pooled
        s = self._resident(key)
        if s is None and attrs is None:
            return None
        if s is not None and p.open is not None and self._last_closed[s] >= self._first[s]:
            self._touched[s] = p.open
            held = self._forecasts.get(key)
            if held is None or held[0] != s:
                held = self._forecasts[key] = (s, {})
            issued = held[1].get(horizon_hours)
            if issued is None:
                issued = held[1][horizon_hours] = self._issue(s, horizon_hours)
            return issued
        b = (p.open if p.open is not None else 0) - 1
        season = season_features(b, cfg.season_buckets, cfg.week_cycles, cfg.phase_buckets)
        ax = self._attr_x[s] if s is not None else attribute_features(attrs or {})
        raw = np.array([p.forecaster.predict(as_dict([0.0] * N_FEATURES, season, ax), [0.0] * len(cfg.horizons))])
        return self._quantiles(raw, True, True, p.forecaster.tables(), False, b, horizon_hours)

    def _issue(self, s: int, horizon_hours: float) -> Forecast:
        """The forecast issued at the last close of resident slot s (see forecast)."""
        cfg, p = self.config, self.pooled
        b = int(self._last_closed[s])
        raw = self._raw[s, b % self.rh][None, :].astype(np.float64)
        cold = bool((b - self._first[s] + 1) < cfg.warm_buckets)
        group = cold and bool(self._launched(np.array([s]))[0])
        drift = b - int(self._drift_bucket[s]) < cfg.drift_hold_buckets
        return self._quantiles(raw, cold, group, p.calib[b % self.rh], drift, b, horizon_hours)

    def _quantiles(self, raw: np.ndarray, cold: bool, group: bool, table: np.ndarray, drift: bool, b: int,
                   horizon_hours: float) -> Forecast:
        cfg = self.config
        p50, p90 = _issued(raw, np.array([group]), table)
        lo50, lo90 = _interpolate(cfg.horizon_hours, p50[0], p90[0], horizon_hours)
        return Forecast(horizon_hours=float(horizon_hours), p50=lo50, p90=lo90, model=MODEL_NAME, cold_start=cold,
                        drift=drift, issued_ts=(b + 1) * cfg.bucket_ms)

    def report(self) -> dict[float, HorizonScore]:
        """Progressive validation so far, per horizon in hours: MAE of P50 and P90 coverage."""
        p = self.pooled
        return {hh: HorizonScore(int(p.n[k]), float(p.abs_err[k] / p.n[k]) if p.n[k] else math.nan,
                                 float(p.covered[k] / p.n[k]) if p.n[k] else math.nan)
                for k, hh in enumerate(self.config.horizon_hours)}

    # -- state --------------------------------------------------------------------------------

    def _state(self, s: int) -> NicheState:
        return NicheState(
            attrs=dict(self._attrs[s]), funnel=self._funnel[s].copy(), units=self._units[s].copy(),
            feats=self._feats[s].copy(), raw=self._raw[s].copy(), levels=self._levels[s].copy(),
            first=int(self._first[s]), last_event=int(self._last_event[s]),
            last_closed=int(self._last_closed[s]), since=int(self._since[s]),
            drift_bucket=int(self._drift_bucket[s]),
            saved_open=self.pooled.open if self.pooled.open is not None else -1,
            detector=drifting.Cusum(float(self._cusum[s, 0]), float(self._cusum[s, 1]), int(self._onset[s, 0]),
                                    int(self._onset[s, 1])))

    def _install(self, key: str, st: NicheState) -> int:
        s = self._new_slot(key, st.attrs)
        if st.funnel.shape != self._funnel[s].shape or st.units.shape != self._units[s].shape \
                or st.feats.shape != self._feats[s].shape or st.raw.shape != self._raw[s].shape \
                or st.levels.shape != self._levels[s].shape:
            self._release(s)
            raise checkpoint.CheckpointError("niche state was written with another engine configuration")
        self._funnel[s], self._units[s], self._feats[s], self._raw[s] = st.funnel, st.units, st.feats, st.raw
        self._levels[s] = st.levels
        self._first[s], self._last_event[s] = st.first, st.last_event
        self._last_closed[s], self._since[s] = st.last_closed, st.since
        self._drift_bucket[s] = st.drift_bucket
        self._cusum[s] = (st.detector.up, st.detector.down)
        self._onset[s] = (st.detector.up_from, st.detector.down_from)
        now = self.pooled.open
        if now is not None and st.saved_open >= 0 and now > st.saved_open:
            # buckets that became reachable while the niche was away hold stale counts: clear them
            ahead = self.config.ahead_buckets
            for ring, size in ((self._funnel[s], self.rf), (self._units[s], self.ru)):
                for bkt in range(st.saved_open + ahead + 1, min(now + ahead, st.saved_open + ahead + size) + 1):
                    ring[bkt % size] = 0
        self._touched[s] = now if now is not None else 0
        return s

    def _release(self, s: int) -> None:
        key = self._keys[s]
        if key is not None:
            del self._slot[key]
            self._dirty.discard(key)
            self._forecasts.pop(key, None)
        self._keys[s] = None
        self._live[s] = False
        self._free.append(s)

    def dump_niche(self, key: str) -> bytes | None:
        s = self._slot.get(key)
        return None if s is None else checkpoint.dumps(self._state(s), NICHE_KIND)

    def load_niche(self, key: str, blob: bytes) -> None:
        """Install a niche from its checkpoint (replacing a resident copy); raises CheckpointError."""
        st = checkpoint.loads(blob, NICHE_KIND, NicheState)
        if key in self._slot:
            self._release(self._slot[key])
        self._install(key, st)

    def checkpoint(self) -> dict[str, bytes]:
        """Checkpoints of the niches changed since the last call: write them to the niche table."""
        out = {key: checkpoint.dumps(self._state(self._slot[key]), NICHE_KIND) for key in sorted(self._dirty)}
        self._dirty.clear()
        return out

    def evict(self, max_resident: int) -> dict[str, bytes]:
        """Drop niches beyond `max_resident`, dormant and least recently used first; returns their
        checkpoints, which the caller must write before the loader is asked for them again."""
        excess = len(self._slot) - max_resident
        if excess <= 0:
            return {}
        slots = np.fromiter(self._slot.values(), dtype=np.int64, count=len(self._slot))
        open_b = self.pooled.open if self.pooled.open is not None else 0
        active = self._last_event[slots] > open_b - 1 - self.config.dormant_after
        order = np.lexsort((self._touched[slots], active))[:excess]
        out: dict[str, bytes] = {}
        for s in slots[order].tolist():
            key = self._key(s)
            out[key] = checkpoint.dumps(self._state(s), NICHE_KIND)
            self._release(s)
        return out

    def release_all(self) -> dict[str, bytes]:
        """Checkpoint and drop every niche (partition revoked, shutdown)."""
        out = {key: checkpoint.dumps(self._state(s), NICHE_KIND) for key, s in list(self._slot.items())}
        for s in list(self._slot.values()):
            self._release(s)
        return out

    def pooled_checkpoint(self) -> bytes:
        return checkpoint.dumps(self.pooled, POOLED_KIND)

    @classmethod
    def restore(cls, blob: bytes, loader: Loader | None = None) -> DemandEngine:
        """An engine from its pooled checkpoint; niches come back lazily through `loader`."""
        return cls(loader=loader, pooled=checkpoint.loads(blob, POOLED_KIND, PooledState))


def _issued(raw: np.ndarray, cold: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The P50/P90 [n, horizons] forecasts as issued: calibrated, and cumulative demand never
    shrinking with a longer horizon."""
    p50 = np.empty_like(raw, dtype=np.float64)
    p90 = np.empty_like(raw, dtype=np.float64)
    for k in range(raw.shape[1]):
        p50[:, k], p90[:, k] = quantiles(raw[:, k], cold, table[k])
    return np.maximum.accumulate(p50, axis=1), np.maximum.accumulate(p90, axis=1)


def _interpolate(hours: tuple[float, ...], p50: np.ndarray, p90: np.ndarray, h: float) -> tuple[float, float]:
    if h <= hours[0]:
        f = max(h, 0.0) / hours[0]
        return float(p50[0] * f), float(p90[0] * f)
    if h >= hours[-1]:
        f = h / hours[-1]
        return float(p50[-1] * f), float(p90[-1] * f)
    i = int(np.searchsorted(hours, h)) - 1
    w = (h - hours[i]) / (hours[i + 1] - hours[i])
    return float(p50[i] + w * (p50[i + 1] - p50[i])), float(p90[i] + w * (p90[i + 1] - p90[i]))
