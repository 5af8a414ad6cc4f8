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
from residuals: per horizon, per band of predicted level and per new/established niche, tracked
quantiles of log1p(actual) - prediction over forecasts as issued. Adding the residual quantile
q to a prediction gives a forecast whose coverage is q by construction (split-conformal,
online), and a P50 that minimises the absolute error in units (a median survives a monotone
transform). A linear model with a Quantile(0.9) loss covered only 0.85-0.88 (NOTES, River).
Horizons longer than a day have no model at all: the offset and its calibration (see
PooledForecaster).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from river import linear_model, optim

# bands of predicted log1p(units): the spread of a count in log space shrinks as the count grows
EDGES = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0])
N_BANDS = len(EDGES) + 1
MIN_BAND_COUNT = 50  # below this a band borrows its nearest neighbour's residual quantiles
DEFAULT_SPREAD = 0.7  # log-space P90 offset before any label has matured
QUANTILES = (0.5, 0.9)
_Z90 = 1.2816  # the normal 90th percentile, in s.d.
_DENSITY = (0.3989, 0.1755)  # the normal density at the 50th and 90th percentiles
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


class LinearRegression(linear_model.LinearRegression):
    """River's LinearRegression with `learn_one` fused for an AdaGrad optimiser: the same
    arithmetic as GLM._fit (loss gradient, clipping, intercept step, AdaGrad step), without the
    masked copy of the weights and the gradient VectorDict River builds on every call -- the
    learning step is most of a niche's update, and this halves it. Prediction is River's."""

    def learn_one(self, x: dict[str, float], y: float, w: float = 1.0) -> None:
        weights, opt = self._weights, self.optimizer
        clip = self.clip_gradient
        grad = self.loss.gradient(y_true=y, y_pred=weights.dot(x) + self.intercept) * w
        grad = min(max(grad, -clip), clip)
        self.intercept -= self.intercept_lr.get(opt.n_iterations) * grad
        lr, g2, eps = opt.learning_rate, opt.g2, opt.eps
        for i, xi in x.items():
            gi = grad * xi
            acc = g2[i] + gi * gi
            g2[i] = acc
            weights[i] = weights.get(i, 0.0) - lr / (acc + eps) ** 0.5 * gi
        opt.n_iterations += 1


def _regressor(learning_rate: float) -> LinearRegression:
    """AdaGrad: per-feature steps that shrink as evidence accumulates (Adam kept oscillating on
    the pooled stream, SGD learned slower), clipped gradients."""
    return LinearRegression(optimizer=AdaGrad(learning_rate), intercept_lr=learning_rate * INTERCEPT_LR_SHARE,
                            clip_gradient=5.0)


class Calibrator:
    """Residual quantiles (P50, P90) by (cold, level band), for one horizon, tracked online.

    Each cell's first MIN_BAND_COUNT residuals set its quantiles; from then on each quantile
    follows the pinball-loss gradient (quantile tracking, the online-conformal update): for P90 a
    step up of 0.9 s for each residual above it and down of 0.1 s for each below, so its long-run
    miscoverage is 10% however the residuals drift. The step s is the residuals' s.d. over the
    normal density at the quantile over `window`: about `window` residuals of memory.

    Hand-written rather than River's RollingQuantile: the update is a few numpy operations per
    bucket for all niches of a horizon, where River's rolling windows take two Python calls per
    residual and a lookup per cell and table; and tracking aims at the coverage itself."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.q = np.zeros((2, N_BANDS, 2))  # [cold, band, (p50, p90)] in log space
        self.counts = np.zeros((2, N_BANDS), dtype=np.int64)
        self.first = np.zeros((2, N_BANDS, MIN_BAND_COUNT))  # each cell's first residuals

    def update_many(self, raw: np.ndarray, cold: np.ndarray, residual: np.ndarray) -> None:
        """Residuals log1p(actual) - raw of forecasts issued with these raw predictions."""
        if not len(raw):
            return
        cell = np.asarray(cold, dtype=np.intp) * N_BANDS + np.searchsorted(EDGES, raw)
        counts, q, first = self.counts.reshape(-1), self.q.reshape(-1, 2), self.first.reshape(-1, MIN_BAND_COUNT)
        order = np.argsort(cell, kind="stable")
        cell, residual = cell[order], np.asarray(residual, dtype=np.float64)[order]
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        rank = np.arange(len(cell)) - np.repeat(starts, np.diff(np.r_[starts, len(cell)]))
        seen = counts[cell] + rank  # residuals this cell had before each one
        filling = seen < MIN_BAND_COUNT
        first[cell[filling], seen[filling]] = residual[filling]
        tracking = ~filling
        if tracking.any():
            c, e = cell[tracking], residual[tracking]
            sigma = np.maximum(q[c, 1] - q[c, 0], 0.05) / _Z90
            for j, tau in enumerate(QUANTILES):
                step = sigma / (_DENSITY[j] * self.window)
                q[:, j] += np.bincount(c, weights=step * (tau - (e < q[c, j])), minlength=len(q))
        added = np.bincount(cell, minlength=len(counts))
        counts += added
        full = np.flatnonzero((counts >= MIN_BAND_COUNT) & (counts - added < MIN_BAND_COUNT))
        if len(full):
            q[full] = np.quantile(first[full], QUANTILES, axis=1).T

    def table(self, fallback: np.ndarray | None = None) -> np.ndarray:
        """Offsets [cold, band, (p50, p90)] in log space, as of now. A band with too few residuals
        borrows the nearest band of its group (cold or warm) that has enough; a group with none
        takes the spread (P90 over P50) of the `fallback` table (a shorter horizon's: a long
        horizon's first residuals come late), or else the default spread.

        New niches take their median from the warm group and only their spread (P90 over P50)
        from their own: their residuals come from a handful of launches, each one product's error
        shared by its regions and hours -- too few to place a median, enough for a width."""
        out = np.empty((2, N_BANDS, 2), dtype=np.float32)
        bands = np.arange(N_BANDS)
        for cold in range(2):
            ready = np.flatnonzero(self.counts[cold] >= MIN_BAND_COUNT)
            if len(ready):
                out[cold] = self.q[cold, ready[np.argmin(np.abs(ready[None, :] - bands[:, None]), axis=1)]]
            elif fallback is None:
                out[cold] = (0.0, DEFAULT_SPREAD)
            else:
                out[cold, :, 0], out[cold, :, 1] = 0.0, fallback[cold, :, 1] - fallback[cold, :, 0]
        out[1] += (out[0, :, :1] - out[1, :, :1])
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

    Horizons beyond `learned_upto` buckets (a daily cycle, in the engine) have no model: their
    forecast is the offset alone -- the funnel-implied demand at the niche's slow level -- and
    its calibration. What a correction could learn (today's buzz, the last hours' carts) fades
    within a day, while labels that overlap almost entirely and mature days late teach it the
    mood of a few past days: in backtests a learned 72 h correction was 5-20% worse than none.
    """

    def __init__(self, horizons: tuple[int, ...], learning_rate: float, window: int, min_learned: int,
                 learned_upto: int | None = None) -> None:
        self.horizons = horizons
        upto = max(horizons) if learned_upto is None else learned_upto
        # consecutive labels of a long horizon overlap almost entirely: smaller steps per sample
        self.models = [_regressor(learning_rate * (horizons[0] / h) ** 0.5) for h in horizons if h <= upto]
        # a long horizon's consecutive residuals share most of their buckets (fewer independent
        # errors per residual): its calibration remembers more of them
        self.calibrators = [Calibrator(round(window * (h / horizons[0]) ** 0.5)) for h in horizons]
        self.learned = [0] * len(self.models)
        self.min_learned = min_learned

    def predict(self, x: dict[str, float], offsets: list[float]) -> list[float]:
        """log1p(units) per horizon: each model predicts a correction to its horizon's offset."""
        out: list[float] = []
        for k, off in enumerate(offsets):
            if k >= len(self.models):
                out.append(off)
            elif self.learned[k] >= self.min_learned:
                out.append(off + self.models[k].predict_one(x))
            elif k and max(self.learned[:k]) >= self.min_learned:
                out.append(math.log1p(math.expm1(max(out[k - 1], 0.0)) * self.horizons[k] / self.horizons[k - 1]))
            else:
                out.append(off)
        return out

    def learns(self, k: int) -> bool:
        """Whether horizon k has a model to learn (the longer ones are the offset alone)."""
        return k < len(self.models)

    def learn(self, k: int, x: dict[str, float], target: float) -> None:
        """target: log1p(actual units) minus the offset the prediction started from."""
        # learn_one returns None: the model is updated in place
        self.models[k].learn_one(x, target)
        self.learned[k] += 1

    def tables(self) -> np.ndarray:
        """Calibration offsets for every horizon: [horizon, cold, band, (p50, p90)]."""
        out: list[np.ndarray] = []
        for c in self.calibrators:
            out.append(c.table(out[-1] if out else None))
        return np.stack(out)
