"""The pooled demand forecaster: one River linear model per horizon, shared by all niches, and a
conformal calibration that turns its point forecast into P50 and P90.

Why pooled: a niche learns once per bucket, a few hundred times a month; a model per niche would
still be guessing when the season is over. One model per horizon learns from every niche's
buckets, sees attributes (so a new niche gets a forecast from its category, style, colour, size
and region: cold start) and the niche's own funnel and order history (niche-level state, kept
by the engine, refines it).

Target: log1p(units over the next H buckets) minus an offset (the funnel-implied demand, see
features), squared loss, AdaGrad with clipped gradients: counts never reach the optimiser raw
(plain SGD on counts diverges: River's documented trap), and a model that has learned nothing
forecasts the offset. The output is neither a median nor a 90th percentile, so quantiles come
from residuals: per horizon, per band of predicted level and per cold/warm niche, rolling
quantiles of log1p(actual) - prediction over forecasts as issued. Adding the residual quantile
q to a prediction gives a forecast whose coverage is q by construction (split-conformal,
online), and a P50 that minimises the absolute error in units (a median survives a monotone
transform). A linear model with a Quantile(0.9) loss covered only 0.85-0.88 (NOTES, River).
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np
from river import linear_model, optim, stats

# bands of predicted log1p(units): the spread of a count in log space shrinks as the count grows
EDGES = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0])
N_BANDS = len(EDGES) + 1
_EDGE_LIST = EDGES.tolist()
MIN_BAND_COUNT = 50  # below this a band borrows its nearest neighbour's residual quantiles
DEFAULT_SPREAD = 0.7  # log-space P90 offset before any label has matured
INTERCEPT_LR_SHARE = 0.3  # the intercept moves slower than the weights: it carries every niche


class AdaGrad(optim.AdaGrad):
    """River's AdaGrad, reading its learning rate once per step rather than once per feature
    (the same arithmetic, a third cheaper: this step is most of a model update)."""

    def _step_with_dict(self, w: Any, g: Any) -> Any:
        lr, g2, eps = self.learning_rate, self.g2, self.eps
        for i, gi in g.items():
            acc = g2[i] + gi * gi
            g2[i] = acc
            w[i] -= lr / (acc + eps) ** 0.5 * gi
        return w


def _regressor(learning_rate: float) -> linear_model.LinearRegression:
    """AdaGrad: per-feature steps that shrink as evidence accumulates (Adam kept oscillating on
    the pooled stream, SGD learned slower), clipped gradients."""
    return linear_model.LinearRegression(optimizer=AdaGrad(learning_rate),
                                         intercept_lr=learning_rate * INTERCEPT_LR_SHARE, clip_gradient=5.0)


class Calibrator:
    """Rolling residual quantiles (P50, P90) by (cold, level band), for one horizon."""

    def __init__(self, window: int) -> None:
        self.band_q = [[(stats.RollingQuantile(0.5, window), stats.RollingQuantile(0.9, window))
                        for _ in range(N_BANDS)] for _ in range(2)]
        self.counts = np.zeros((2, N_BANDS), dtype=np.int64)

    def update(self, raw: float, cold: bool, residual: float) -> None:
        band = bisect.bisect_left(_EDGE_LIST, raw)
        group = int(cold)
        q50, q90 = self.band_q[group][band]
        q50.update(residual)
        q90.update(residual)
        self.counts[group, band] += 1

    def table(self) -> np.ndarray:
        """Offsets [cold, band, (p50, p90)] in log space, as of now. A band with too few residuals
        borrows the nearest band of its group (cold or warm) that has enough; a group with none,
        the default spread."""
        out = np.empty((2, N_BANDS, 2), dtype=np.float32)
        for cold in range(2):
            ready = np.flatnonzero(self.counts[cold] >= MIN_BAND_COUNT)
            for band in range(N_BANDS):
                if not len(ready):
                    out[cold, band] = (0.0, DEFAULT_SPREAD)
                    continue
                near = int(ready[np.argmin(np.abs(ready - band))])
                q50, q90 = self.band_q[cold][near]
                out[cold, band] = (q50.get(), q90.get())
        return out


def quantiles(raw: np.ndarray, cold: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P50 and P90 in units from raw log predictions and a calibration table; P90 >= P50 >= 0."""
    raw = np.asarray(raw, dtype=np.float64)
    band = np.searchsorted(EDGES, raw)
    off = table[np.asarray(cold, dtype=np.intp), band]
    p50 = np.maximum(np.expm1(raw + off[..., 0]), 0.0)
    p90 = np.maximum(np.expm1(raw + off[..., 1]), p50)
    return p50, p90


class PooledForecaster:
    """Per horizon: a River regressor on log1p(units over the horizon) and its calibrator.

    A horizon's model learns only once its first labels mature (a 72-bucket horizon after 72
    buckets); until it has learned `min_learned` of them its forecast is the longest ready
    shorter horizon's, scaled by the horizon ratio, rather than an untrained model's guess.
    """

    def __init__(self, horizons: tuple[int, ...], learning_rate: float, window: int, min_learned: int) -> None:
        self.horizons = horizons
        # consecutive labels of a long horizon overlap almost entirely: smaller steps per sample
        self.models = [_regressor(learning_rate * (horizons[0] / h) ** 0.5) for h in horizons]
        self.calibrators = [Calibrator(window) for _ in horizons]
        self.learned = [0] * len(horizons)
        self.min_learned = min_learned

    def predict(self, x: dict[str, float], offsets: list[float]) -> list[float]:
        """log1p(units) per horizon: each model predicts a correction to its horizon's offset."""
        out: list[float] = []
        for k, (m, off) in enumerate(zip(self.models, offsets, strict=True)):
            if self.learned[k] >= self.min_learned:
                out.append(off + m.predict_one(x))
            elif k and max(self.learned[:k]) >= self.min_learned:
                out.append(math.log1p(math.expm1(max(out[k - 1], 0.0)) * self.horizons[k] / self.horizons[k - 1]))
            else:
                out.append(off)
        return out

    def learn(self, k: int, x: dict[str, float], target: float) -> None:
        """target: log1p(actual units) minus the offset the prediction started from."""
        # learn_one returns None: the model is updated in place
        self.models[k].learn_one(x, target)
        self.learned[k] += 1

    def tables(self) -> np.ndarray:
        """Calibration offsets for every horizon: [horizon, cold, band, (p50, p90)]."""
        return np.stack([c.table() for c in self.calibrators])
