"""Forecast evaluation for backtests: the baselines and the scoreboard. Pure numpy.

The scoreboard keeps its own per-niche history of ordered units, built from the same rows the
engine sees but independently of the engine's internals, and scores the engine and the baselines
on exactly the points the engine scored (niche, issue bucket, horizon), against actuals it sums
itself. Baselines see only order history, as a planner without a demand model would:

- last value: the units of the last H buckets, as the forecast of the next H;
- seasonal naive: each of the next H buckets repeats the same bucket one season (a day) earlier;
- moving average: the mean bucket of the last season, times H.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.engine import Scored
from models.features import ORDER_SIGN

BASELINES = ("last_value", "seasonal_naive", "moving_average")


def last_value(hist: np.ndarray, h: int) -> np.ndarray:
    """hist: [n, L] units per bucket, oldest first, ending with the issue bucket."""
    return hist[:, -h:].sum(axis=1)


def seasonal_naive(hist: np.ndarray, h: int, season: int) -> np.ndarray:
    k = np.arange(1, h + 1)
    pos = hist.shape[1] - 1 + k - season * np.ceil(k / season).astype(int)
    return hist[:, pos].sum(axis=1)


def moving_average(hist: np.ndarray, h: int, window: int) -> np.ndarray:
    return hist[:, -window:].mean(axis=1) * h


def history_needed(h: int, season: int, window: int) -> int:
    return max(h, season * math.ceil(h / season), window)


@dataclass
class _Tally:
    n: int = 0
    model: float = 0.0
    covered: int = 0
    baselines: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BASELINES, 0.0))
    truth: float = 0.0
    truth_n: int = 0

    def to_dict(self, hours: float) -> dict[str, Any]:
        def mean(x: float, n: int) -> float | None:
            return round(x / n, 4) if n else None

        out = {"model_mae": mean(self.model, self.n),
               "baselines": {b: mean(v, self.n) for b, v in self.baselines.items()},
               "p90_coverage": mean(self.covered, self.n), "n": self.n, "horizon_hours": hours}
        if self.truth_n:
            out["truth_intensity_mae"] = mean(self.truth, self.truth_n)
        return out


class Scoreboard:
    """Model vs baselines on the engine's scored points issued after a warm-up (the same for every
    horizon, long enough for every baseline to have its full history: the log's first buckets
    would handicap them), plus
    the first-day forecasts of niches born a day or more into the log (new to the engine and to
    the world alike)."""

    def __init__(self, bucket_ms: int, horizons: Sequence[int], ahead_buckets: int, season: int = 24,
                 window: int = 24, first_day: int = 24) -> None:
        self.bucket_ms = bucket_ms
        self.horizons = tuple(horizons)
        self.ahead = ahead_buckets
        self.season = season
        self.window = window
        self.warmup = max(history_needed(h, season, window) for h in self.horizons)
        self.first_day = first_day
        need = max(history_needed(h, season, window) for h in self.horizons) + max(self.horizons)
        self.ring = 1 << (need + ahead_buckets + 1).bit_length()
        self._row: dict[str, int] = {}
        self._units = np.zeros((0, self.ring), dtype=np.float64)
        self._first: dict[str, int] = {}
        self.start: int | None = None
        self.tallies = {h: _Tally() for h in self.horizons}
        self.new_niches: dict[str, tuple[float, float]] = {}  # key -> (first-day P50, actual)
        self._truth: dict[str, np.ndarray] = {}
        self._truth_start = 0

    def know_truth(self, expected: dict[str, np.ndarray], start_bucket: int) -> None:
        """Expected units per bucket per niche, from a scenario's truth: forecasting with them is
        the best any model could do without knowing the dice, which puts the MAEs in scale."""
        self._truth = expected
        self._truth_start = start_bucket

    def observe(self, key: str, rows: Iterable[Sequence[Any]], open_bucket: int) -> None:
        """The same rows, bucketed like the engine buckets them (late rows into the open bucket)."""
        r = self._row.get(key)
        if r is None:
            r = self._row[key] = len(self._row)
            if r >= len(self._units):
                grown = np.zeros((max(64, 2 * len(self._units)), self.ring))
                grown[:len(self._units)] = self._units
                self._units = grown
            self._first[key] = open_bucket
        if self.start is None:
            self.start = open_bucket
        for row in rows:
            sign = ORDER_SIGN.get(row[1])
            if sign is None:
                continue
            b = min(max(int(row[2]) // self.bucket_ms, open_bucket), open_bucket + self.ahead)
            self._units[r, b % self.ring] += sign * row[3]

    def closed(self, b: int) -> None:
        """Bucket b closed: the ring slot that becomes reachable ahead must start empty."""
        self._units[:, (b + 1 + self.ahead) % self.ring] = 0.0

    def add(self, sc: Scored) -> None:
        if self.start is None or sc.horizon not in self.tallies:
            return
        h = sc.horizon
        rows = np.fromiter((self._row[k] for k in sc.keys), dtype=np.int64, count=len(sc.keys))
        units = self._units[rows]
        actual = np.maximum(units[:, (sc.issued + 1 + np.arange(h)) % self.ring].sum(axis=1), 0.0)
        if h == self.first_day:
            self._first_day(sc, actual)
        if sc.issued < self.start + self.warmup:
            return
        past = units[:, (sc.issued - np.arange(history_needed(h, self.season, self.window))[::-1]) % self.ring]
        tally = self.tallies[h]
        tally.n += len(rows)
        tally.model += float(np.abs(actual - sc.p50).sum())
        tally.covered += int((actual <= sc.p90).sum())
        for name, pred in (("last_value", last_value(past, h)),
                           ("seasonal_naive", seasonal_naive(past, h, self.season)),
                           ("moving_average", moving_average(past, h, self.window))):
            tally.baselines[name] += float(np.abs(actual - np.maximum(pred, 0.0)).sum())
        if self._truth:
            lo = sc.issued + 1 - self._truth_start
            for key, y in zip(sc.keys, actual.tolist(), strict=True):
                expected = self._truth.get(key)
                if expected is not None and lo >= 0 and lo + h <= len(expected):
                    tally.truth += abs(y - float(expected[lo:lo + h].sum()))
                    tally.truth_n += 1

    def _first_day(self, sc: Scored, actual: np.ndarray) -> None:
        assert self.start is not None
        for i, key in enumerate(sc.keys):
            born = self._first[key]
            # issued at the close of the first full bucket of a niche born a day or more into the
            # log (new to the world, not just to the engine): its first-day forecast
            if born >= self.start + self.first_day and sc.issued == born + 1:
                self.new_niches[key] = (float(sc.p50[i]), float(actual[i]))

    def result(self) -> dict[str, Any]:
        hours = {h: h * self.bucket_ms / 3_600_000 for h in self.horizons}
        out: dict[str, Any] = {"horizons": {f"{hours[h]:g}": t.to_dict(hours[h]) for h, t in self.tallies.items()},
                               "warmup_hours": self.warmup * self.bucket_ms / 3_600_000}
        out["cold_start"] = cold_start_summary(self.new_niches)
        return out


def cold_start_summary(new: dict[str, tuple[float, float]], min_units: float = 5.0) -> dict[str, Any]:
    """First-day forecast of new niches against what they sold: the share within 50%, the
    median absolute percentage error (niches that sold at least `min_units`, where a percentage
    means something), and the total forecast over the total sold."""
    sized = [(p, a) for p, a in new.values() if a >= min_units]
    ape = np.array([abs(p - a) / a for p, a in sized])
    total = sum(a for _, a in new.values())
    return {
        "new_niches": len(new), "scored": len(sized),
        "within_50pct": round(float((ape <= 0.5).mean()), 4) if len(ape) else None,
        "median_ape": round(float(np.median(ape)), 4) if len(ape) else None,
        "forecast_over_actual": round(sum(p for p, _ in new.values()) / total, 4) if total else None,
    }
