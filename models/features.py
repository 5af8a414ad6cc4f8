"""Per-niche features of one closed bucket, computed for many niches at once. Pure numpy.

Counts live in per-niche ring buffers indexed by absolute bucket number (see engine). A feature
row describes the niche at the close of bucket b from the buckets up to and including b only,
so a row computed at b can be stored and learned from later, once its label is known.

The features are log ratios of smoothed, seasonally adjusted per-bucket rates -- the last hours'
views and carts against the day's, carts against views and orders against carts against the
niche's own norm, the niche's conversion against the pool's -- so they are centred near zero and
scale-free: the same weight serves a niche selling 2 units a day and one selling 200, and an
online linear model stays well conditioned. The niche's level is not something the model has to
learn: it is the offset (`offsets`: the funnel-implied units over the horizon) its prediction
starts from.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# funnel ring channels (ORDERS: orders placed, for drift); ordered units (placed minus cancelled)
# live in their own, longer ring
VIEW, SEARCH, CART, REMOVE, INTEREST, ORDERS = range(6)
N_FUNNEL = 6
CHANNEL_OF = {"view": VIEW, "search": SEARCH, "add_to_cart": CART, "remove_from_cart": REMOVE,
              "wishlist": INTEREST, "share": INTEREST, "group_join": INTEREST}
ORDER_SIGN = {"placed": 1, "cancelled": -1}
UNITS = N_FUNNEL  # index of units in the stacked window sums
DAY = 24  # the reference window, in buckets
MAX_WINDOW = DAY
N_LEVELS = 5  # slow EW levels of units, views, carts, carts FUNNEL_LAG buckets ago, and orders
MATCHED = np.array([0, 3, 4])  # the levels that count towards conversion, against lagged carts
FUNNEL_LAG = 5  # buckets an order typically trails its cart (carts follow views within the hour)
AGE_CAP = 168  # a niche a week old is simply "established"
SMOOTH = 0.5  # pseudo-count added to every window sum before taking a log

NAMES: tuple[str, ...] = (
    "views_1", "views_3", "carts_3", "carts_6", "carts_12", "units_24", "cart_rate", "conversion",
    "removes", "interest", "searches", "niche_conversion", "scale", "young", "age",
)
N_FEATURES = len(NAMES)
PSEUDO_VIEWS = 200.0  # views of evidence a niche needs before its own cart rate counts as much as the pool's
PSEUDO_CARTS = 100.0  # carts of evidence before its own units per cart count as much as the pool's


def window_features(funnel: np.ndarray, units: np.ndarray, bucket: int, levels: np.ndarray,
                    span: np.ndarray, age: np.ndarray, new: np.ndarray, pooled: tuple[float, float],
                    shift: np.ndarray, profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows [n, N_FEATURES] for n niches at the close of `bucket`, and their base rates
    [n, 2] (units per day-mean bucket: from the last day's views, and from the slow level).

    `funnel` is [n, RF, N_FUNNEL] and `units` [n, RU]: rings indexed by bucket % ring length.
    `levels` [n, N_LEVELS] are the niche's slow EW means per bucket (bias-corrected) of units,
    views, carts and lagged carts, over `span` buckets; `age` the buckets since its first event
    (1 in its first bucket); `new` whether that was a launch rather than the engine's start (a
    niche already selling when the engine started has orders in flight from its first bucket);
    `pooled` the carts per view and units per (lagged) cart of all niches, and `shift` [n] how
    far the conversion of each niche's attribute groups moved lately (1: not at all; see
    drift.Groups.shift), which moves the pool's units per cart as a prior;
    `profile` [3, MAX_WINDOW] the pooled daily profile (views, units, carts) of buckets b, b-1,
    ... relative to a day's mean.

    Rates are seasonally adjusted: counts over the window divided by the profile's share of the
    window, so the last hour compares with the day whatever the hour, and a niche born at 3 a.m.
    is not taken for a dud.

    The two base rates are the demand the funnel implies: views per bucket (of the last day, and
    of the slow level) times the niche's units per view. Views are dense where orders are sparse,
    so this is a steadier level than past orders, and a new niche has one from its first bucket.
    Units per view is estimated in two steps of the funnel, each shrunk towards the pool's while
    the niche has little evidence: carts per view (carts come within the hour: a new niche shows
    its cart rate on its first day) times units per cart, against the carts of FUNNEL_LAG buckets
    earlier (orders come hours after the cart: against the latest carts, a young or growing niche
    would look as if it did not convert).
    """
    rf, ru = funnel.shape[1], units.shape[1]
    back = bucket - np.arange(MAX_WINDOW)  # newest first
    sums = np.concatenate([np.cumsum(funnel[:, back % rf, :], axis=1),
                           np.cumsum(np.maximum(units[:, back % ru], 0.0), axis=1)[:, :, None]], axis=2)
    life = np.minimum(np.maximum(age, 1.0), MAX_WINDOW).astype(np.intp)
    share = np.cumsum(profile, axis=1)  # expected buckets' worth of a day-mean bucket in w buckets

    def rate(ch: int, w: int) -> np.ndarray:
        """log of the smoothed, seasonally adjusted mean per bucket over the last w buckets (or
        the niche's life, when shorter)."""
        return np.log((sums[:, w - 1, ch] + SMOOTH) / share[int(ch == UNITS), np.minimum(w, life) - 1])

    day = {ch: rate(ch, DAY) for ch in (VIEW, SEARCH, CART, REMOVE, INTEREST, UNITS)}
    lu, lv, lc, lcl = (levels[:, i] * span for i in range(4))  # EW sums over the span
    carts_per_view, units_per_cart = pooled
    conv = ((lc + PSEUDO_VIEWS * carts_per_view) / (lv + PSEUDO_VIEWS)
            * (lu + PSEUDO_CARTS * units_per_cart * shift) / (lcl + PSEUDO_CARTS))
    base = conv * np.exp(day[VIEW])
    log_base = np.log(base + SMOOTH / DAY)
    young = ((age < DAY) & new).astype(np.float64)
    # a new niche younger than a day has sold less than its funnel implies simply because orders
    # trail views by hours: its sales-based features would read as a collapse, so they are off
    grown = 1.0 - young
    cols = [
        rate(VIEW, 1) - day[VIEW], rate(VIEW, 3) - day[VIEW],
        rate(CART, 3) - day[CART], rate(CART, 6) - day[CART], rate(CART, 12) - day[CART],
        grown * (day[UNITS] - log_base),
        day[CART] - day[VIEW] - np.log((lc + SMOOTH) / (lv + SMOOTH)),
        grown * (day[UNITS] - day[CART] - np.log((lu + SMOOTH) / (lcl + SMOOTH))),
        rate(REMOVE, 6) - rate(CART, 6), day[INTEREST] - day[VIEW], day[SEARCH] - day[VIEW],
        np.log(conv / (carts_per_view * units_per_cart)), log_base / 4.0,
        young, np.log1p(np.minimum(age, AGE_CAP)) / 4.0,
    ]
    rates = np.stack([base, conv * np.maximum(levels[:, 1], np.exp(day[VIEW]) * young)], axis=1)
    # stored as float16 until the label arrives; round now so prediction and learning see one x
    return np.stack(cols, axis=1).astype(np.float16).astype(np.float32), rates


def bucket_levels(funnel: np.ndarray, units: np.ndarray, lagged: np.ndarray) -> np.ndarray:
    """One bucket's units, views, carts, the carts of FUNNEL_LAG buckets before, and orders
    [n, N_LEVELS] (from its funnel [n, N_FUNNEL], units [n] and the lagged bucket's funnel): what
    the EW levels are fed."""
    return np.stack([np.maximum(units, 0.0), funnel[:, VIEW], funnel[:, CART], lagged[:, CART], funnel[:, ORDERS]],
                    axis=1)


def profile_factors(profile: np.ndarray) -> np.ndarray:
    """[2, season] factors from a pooled [2, season] profile of per-slot means (NaN where a slot
    has not been seen yet, which then counts as an average slot)."""
    seen = ~np.isnan(profile)
    mean = np.array([row[ok].mean() if ok.any() else 1.0 for row, ok in zip(profile, seen, strict=True)])
    factors = np.where(seen, profile / np.where(mean > 0, mean, 1.0)[:, None], 1.0)
    return np.clip(factors, 0.05, 20.0)


def behind(factors: np.ndarray, bucket: int, phase: int) -> np.ndarray:
    """Factors of buckets bucket, bucket-1, ... (newest first), for the window features."""
    return factors[:, (bucket + phase - np.arange(MAX_WINDOW)) % factors.shape[1]]


def offsets(rates: np.ndarray, horizons: tuple[int, ...], factors: np.ndarray, bucket: int,
            phase: int, age: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Where each horizon's model starts [n, horizons]: log1p of the funnel-implied units over
    the next H buckets, shaped by the pooled units profile of those buckets. The last day's
    views for the first day ahead; the slow level for the days after (buzz mean-reverts within
    a day or so).

    A niche launched `age` buckets ago had no views before: the orders its rate implies for the
    next buckets are short of those that would have come from earlier views (orders trail views
    by FUNNEL_LAG buckets or so; the share of lags of at least d buckets taken as exp(-d/lag)).
    """
    prof = factors[1, (bucket + phase + 1 + np.arange(max(horizons))) % factors.shape[1]]
    ahead = np.broadcast_to(np.cumsum(prof), (len(rates), len(prof))).copy()
    ramping = np.flatnonzero(new & (age < DAY))  # a day on, under 1% of the orders are missing
    if len(ramping):
        lag = age[ramping, None] + np.arange(1, len(prof) + 1)
        ahead[ramping] = np.cumsum(prof * (1 - np.exp(-lag / FUNNEL_LAG)), axis=1)
    day = ahead[:, min(DAY, len(prof)) - 1]
    cols = [np.log1p(rates[:, 0] * ahead[:, h - 1] if h <= DAY
                     else rates[:, 0] * day + rates[:, 1] * (ahead[:, h - 1] - day)) for h in horizons]
    return np.stack(cols, axis=1).astype(np.float16).astype(np.float32)


def season_features(bucket: int, season_buckets: int, week_cycles: int, phase: int) -> dict[str, float]:
    """Slot of the day and day of the week as one-hots: additive in log space = multiplicative."""
    b = bucket + phase
    return {f"slot={b % season_buckets}": 1.0, f"day={(b // season_buckets) % week_cycles}": 1.0}


def attribute_features(attrs: Mapping[str, str]) -> dict[str, float]:
    """Niche attributes as one-hots: what the pooled model knows about a niche with no history."""
    return {f"{name}={value}": 1.0 for name, value in sorted(attrs.items())}


def as_dict(row: list[float], *extra: Mapping[str, float]) -> dict[str, float]:
    """A River feature dict from a stored row (its offset columns are not inputs); zeros are
    left out, which keeps the sparse update cheap."""
    x = {name: v for name, v in zip(NAMES, row, strict=False) if v}  # stops before the offsets
    for part in extra:
        x.update(part)
    return x
