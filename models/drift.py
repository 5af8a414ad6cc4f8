"""Per-niche drift detection on a stationary signal: the niche's orders against its carts.

Raw hourly counts are useless to a detector: daily seasonality alone looks like drift every
evening, and a fad looks like drift for days. The signal here is what a conversion shock (a
competitor's price cut, a broken payment page, a promotion) changes and traffic does not: the
orders placed in a bucket against what the niche's own long-run orders per cart predicts from
the carts of the hours before (orders trail carts by hours). Seasonality and buzz move carts and
orders together, so the ratio holds; a shift in conversion moves it.

Orders are counted, not units: an order's quantity is noise to a conversion detector (units
have about twice the variance of orders per unit of mean), and the count of orders given its
expectation is close to Poisson. The detector is a two-sided CUSUM of the Poisson log-likelihood
ratio of "the rate moved by a factor RHO" against "it held" -- the sequential test that needs
the fewest buckets on average to catch such a shift at a given false-alarm rate, at every
level of traffic (a Gaussian z-score is too jumpy on the few orders of a quiet night).

A quiet niche places too few orders to show a halved conversion within days on its own. But a
shock rarely hits one niche: a price war hits a category, a payment outage a region. So the
same CUSUM also runs on every attribute group (category=dress, region=CN-GD, ...: the sums of
its grown members' orders and expectations); a group's alarm raises the prior odds that each
member shifted, so for GROUP_HOLD buckets a member needs only MEMBER_THRESHOLD of its own
evidence in the same direction. A group rarely fires on a shift diluted by unshifted members: it
takes about half its volume halving (below 72% of its expected orders) before its evidence grows.

River's ADWIN was tried first: on the `shock` scenario a 60% conversion drop moves a niche's
hourly residual by only about 0.4 s.d., and ADWIN (delta up to 0.05) flagged none of the 64
shocked niches within 48 h. The state here is two floats per niche, kept in the engine's slab,
and two per group, kept with the pooled state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CART_LAG = (1, 8)  # carts of buckets b-8..b-1 feed the orders of bucket b
RHO = 0.5  # the shift worth catching: conversion halved (downwards) or doubled (upwards)
THRESHOLD = 5.0  # log-likelihood ratio for a niche's alarm: under 0.01 false alarms per niche-day on `seasonal`
GROUP_THRESHOLD = 9.0  # a group's alarm flags many niches at once: it must be rarer
MEMBER_THRESHOLD = 1.0  # a niche's own evidence, once a group it belongs to shifted the same way
GROUP_HOLD = 48  # buckets a group's alarm lowers its members' threshold (and shifts new members' prior)
RECENT = 0.5 ** (1 / 12)  # per bucket: a group's recent orders against expectation, half-life 12 buckets
_LOG_DOWN, _LOG_UP = math.log(RHO), -math.log(RHO)


@dataclass(frozen=True)
class DriftEvent:
    """A detected shift in one niche: a metric, an event, and a reason to re-plan it now."""

    niche: str
    bucket: int
    ts_ms: int
    direction: int  # +1 conversion above the niche's norm, -1 below

    def to_dict(self) -> dict[str, int | str]:
        return {"niche": self.niche, "bucket": self.bucket, "ts_ms": self.ts_ms, "direction": self.direction}


def expected_orders(recent_carts: np.ndarray, orders_level: np.ndarray, carts_level: np.ndarray) -> np.ndarray:
    """Orders the niche's long-run orders per (lagged) cart predicts from recent carts per bucket,
    seasonally shaped."""
    return (orders_level + 1e-3) / (carts_level + 1e-3) * recent_carts


@dataclass
class Cusum:
    """One niche's detector state: the CUSUMs of the log-likelihood ratios for a rise (`up`) and
    a fall (`down`) of the order rate by the factor RHO, and the buckets each last left zero (the
    CUSUM's estimate of when a shift began)."""

    up: float = 0.0
    down: float = 0.0
    up_from: int = 0
    down_from: int = 0


def llr_step(up: np.ndarray, down: np.ndarray, orders: np.ndarray,
             expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One bucket of the two CUSUMs for many niches (or groups): (up, down) after `orders` were
    placed where `expected` were due."""
    lam = np.maximum(expected, 1e-6)
    return (np.maximum(0.0, up + orders * _LOG_UP - (1 / RHO - 1) * lam),
            np.maximum(0.0, down + orders * _LOG_DOWN + (1 - RHO) * lam))


def alarms(up: np.ndarray, down: np.ndarray, up_threshold: np.ndarray | float,
           down_threshold: np.ndarray | float) -> np.ndarray:
    """+1 where the rise passed its threshold, -1 where the fall did, else 0."""
    return np.where(up > up_threshold, 1, np.where(down > down_threshold, -1, 0))


@dataclass
class Groups:
    """The attribute groups' detectors, shared by an engine's niches: ids by name ("region=CN-GD"),
    their two CUSUMs, and each group's latest alarm (bucket, direction)."""

    ids: dict[str, int] = field(default_factory=dict)
    cusum: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    alarm_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    alarm_dir: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    recent: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # EW orders, expected

    def id_of(self, name: str) -> int:
        gid = self.ids.get(name)
        if gid is None:
            gid = self.ids[name] = len(self.ids)
            self.cusum = np.concatenate([self.cusum, np.zeros((1, 2))])
            self.alarm_at = np.append(self.alarm_at, -(1 << 40))
            self.alarm_dir = np.append(self.alarm_dir, 0)
            self.recent = np.concatenate([self.recent, np.zeros((1, 2))])
        return gid

    def thresholds(self, bucket: int, members: np.ndarray, orders: np.ndarray,
                   expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step every group of these niches (`members` [n, width]: their group ids, -1 padded) on
        the sums of their orders and expectations in `bucket`; returns each niche's thresholds
        for a rise and a fall: MEMBER_THRESHOLD in a direction a group of its alarmed in the last
        GROUP_HOLD buckets, THRESHOLD otherwise."""
        width = members.shape[1]
        flat = members.ravel()
        ok = flat >= 0
        gids = flat[ok]
        size = len(self.ids)
        seen = np.bincount(gids, minlength=size) > 0
        n = np.bincount(gids, weights=np.repeat(orders, width)[ok], minlength=size)
        lam = np.bincount(gids, weights=np.repeat(expected, width)[ok], minlength=size)
        self.recent = np.where(seen[:, None], RECENT * self.recent + np.stack([n, lam], axis=1), self.recent)
        up, down = llr_step(self.cusum[:, 0], self.cusum[:, 1], n, lam)
        fired = alarms(up, down, GROUP_THRESHOLD, GROUP_THRESHOLD) * seen
        self.alarm_at = np.where(fired != 0, bucket, self.alarm_at)
        self.alarm_dir = np.where(fired != 0, fired, self.alarm_dir)
        self.cusum = np.where((seen & (fired == 0))[:, None], np.stack([up, down], axis=1),
                              np.where(seen[:, None], 0.0, self.cusum))
        live = np.where(bucket - self.alarm_at < GROUP_HOLD, self.alarm_dir, 0)
        dirs = np.where(members >= 0, live[members], 0)
        return (np.where((dirs > 0).any(axis=1), MEMBER_THRESHOLD, THRESHOLD),
                np.where((dirs < 0).any(axis=1), MEMBER_THRESHOLD, THRESHOLD))

    def shift(self, bucket: int, members: np.ndarray) -> np.ndarray:
        """Per niche, how far its groups' conversion has moved: the recent orders over expected of
        the best-evidenced group of its that alarmed in the last GROUP_HOLD buckets, 1 where none
        did. A niche launched into a category whose conversion just halved starts from half."""
        live = (bucket - self.alarm_at < GROUP_HOLD) & (self.recent[:, 1] > 0)
        ratio = np.where(live, self.recent[:, 0] / np.maximum(self.recent[:, 1], 1e-9), 1.0)
        weight = np.where(live, self.recent[:, 1], 0.0)
        pick = np.take_along_axis(members, np.argmax(np.where(members >= 0, weight[members], -1.0), axis=1)[:, None],
                                  axis=1)[:, 0]
        return np.where(pick >= 0, ratio[pick], 1.0)
