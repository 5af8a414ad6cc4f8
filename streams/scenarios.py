"""Day-scale shop scenarios for backtests: days of seeded traffic written to a file, never paced.

The seconds-scale `streams.simulator` feeds the live demo; this one feeds `c2m backtest`. It models
what the demand models have to cope with:

- consumers with latent preferences over category, style and colour, a home region and a size;
- a funnel where a view leads to a cart after tens of minutes and a cart to an order hours later;
- daily and weekly seasonality (China local time), and an hourly "buzz" on each product (feeds,
  influencers) that moves views first and orders hours later;
- fads that rise and fade within days, a conversion-rate shock on one category, products launched
  mid-run in colours never seen before (new niches), group buys that fill or expire.

Everything is vectorised per simulated hour with numpy and seeded, so a seed gives the same file.
Beside the events it writes the ground truth per niche (expected and realised ordered units per
hour, launches, fads, the shock) as `<name>.truth.json`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streams.errors import UserError
from streams.niches import niche_of
from streams.simulator import SimEvent
from streams.topology import NICHE_ATTRIBUTES

HOUR_MS = 3_600_000
# Monday 2025-11-24 00:00 in China (UTC+8): scenario time is local time in CN regions
START_MS = 1_763_913_600_000
REGIONS = ("CN-GD", "CN-ZJ", "CN-SH", "CN-BJ")
REGION_SHARE = (0.34, 0.26, 0.25, 0.15)
CATALOG = {  # category -> styles; colours are drawn per product
    "dress": ("boho", "minimal", "wrap"),
    "top": ("basic", "crop"),
    "jeans": ("wide-leg", "straight"),
    "skirt": ("pleated", "midi"),
    "jacket": ("bomber", "denim"),
    "knitwear": ("cable", "oversized"),
}
COLORS = ("black", "white", "navy", "sage", "cream", "pink", "olive", "grey")
NEW_COLORS = ("lilac", "rust", "mint", "butter", "cobalt", "mocha")  # only launched products wear them
SIZES = ("S", "M", "L")
SIZE_SHARE = (0.35, 0.4, 0.25)
SIZE_BANDS: dict[str, str] = {}  # the scenario only sells S/M/L: each size is its own band
# shopping activity per local hour (evening peak), and per weekday Monday..Sunday
DAILY = np.array([0.55, 0.3, 0.18, 0.12, 0.1, 0.12, 0.22, 0.45, 0.7, 0.9, 1.0, 1.1,
                  1.15, 1.0, 0.95, 0.95, 1.0, 1.05, 1.1, 1.3, 1.55, 1.7, 1.55, 1.05])
WEEKLY = np.array([0.93, 0.92, 0.95, 0.98, 1.05, 1.1, 1.07])
MAX_LAG_H = 48  # funnel lags are capped: nothing trails its view by more than two days
BURN_IN_H = 48


@dataclass(frozen=True)
class Fad:
    product: int
    peak_h: float
    rise_h: float
    fade_h: float
    height: float


@dataclass(frozen=True)
class Shock:
    category: str
    at_h: float
    factor: float  # multiplies P(order | cart) from at_h on


@dataclass(frozen=True)
class ScenarioSpec:
    """A named recipe; the seed draws the concrete products, consumers, fads and launches."""

    name: str
    about: str
    days: float = 10.0
    products: int = 48
    consumers: int = 20_000
    views_per_hour: float = 5_000.0  # mean over the week, all products
    buzz_sd: float = 0.45  # stationary s.d. of the hourly log-buzz per product
    buzz_phi: float = 0.93  # hourly persistence of the buzz
    fads: int = 4
    fad_height: float = 3.5
    shocks: tuple[tuple[str, float, float], ...] = ()  # (category, from hour, factor on P(order | cart))
    launches: int = 4  # new products launched after day 1, in new colours
    groups_per_day: float = 4.0
    p_cart: float = 0.1
    p_order: float = 0.45


SCENARIOS: dict[str, ScenarioSpec] = {s.name: s for s in (
    ScenarioSpec("default", "everything at once: seasonality, buzz, fads, a conversion shock on day 6, "
                 "launches, group buys", shocks=(("dress", 6 * 24.0, 0.5),)),
    ScenarioSpec("seasonal", "seasonality and buzz only: a stationary control (drift false alarms)",
                 fads=0, launches=0, groups_per_day=0.0),
    ScenarioSpec("fads", "fast fashion: many strong fads rising and fading within days",
                 fads=12, fad_height=5.0),
    ScenarioSpec("shock", "conversion collapses for dresses on day 4 and doubles for jeans on day 7",
                 fads=1, shocks=(("dress", 4 * 24.0, 0.4), ("jeans", 7 * 24.0, 2.0))),
    ScenarioSpec("launch", "many products launched mid-run in new colours: cold start",
                 launches=12, fads=2),
)}


def spec(name: str, days: float | None = None) -> ScenarioSpec:
    try:
        chosen = SCENARIOS[name]
    except KeyError:
        raise UserError(f"unknown day-scale scenario {name!r}; choose one of: {', '.join(SCENARIOS)}") from None
    if days is not None:
        if not 1 <= days <= 60:
            raise UserError("--days must be between 1 and 60")
        chosen = replace(chosen, days=days)
    return chosen


@dataclass
class Truth:
    """Ground truth written beside the events: what the models should have seen."""

    scenario: str
    about: str
    seed: int
    days: float
    start_ms: int
    bucket_ms: int = HOUR_MS
    shocks: list[dict[str, Any]] = field(default_factory=list)
    fads: list[dict[str, Any]] = field(default_factory=list)
    launches: list[dict[str, Any]] = field(default_factory=list)
    niches: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True)
class _Product:
    sku: str
    category: str
    style: str
    color: str
    size: str
    launch_h: float  # 0 for the opening catalogue

    @property
    def attrs(self) -> dict[str, str]:
        return {"category": self.category, "style": self.style, "color": self.color, "size": self.size}


class _World:
    """The seeded, static part of a scenario: products, consumers and their preferences."""

    def __init__(self, s: ScenarioSpec, seed: int) -> None:
        rng = np.random.default_rng([seed, 1])
        self.rng = np.random.default_rng([seed, 2])
        self.spec = s
        hours = round(s.days * 24)
        self.hours = hours
        cats = list(CATALOG)
        products: list[_Product] = []
        seen: set[str] = set()
        while len(products) < s.products:
            cat = cats[rng.integers(len(cats))]
            style = CATALOG[cat][rng.integers(len(CATALOG[cat]))]
            color = COLORS[rng.integers(len(COLORS))]
            size = SIZES[rng.integers(len(SIZES))]
            sku = f"SKU-{cat}-{style}-{color}-{size}".upper()
            if sku not in seen:
                seen.add(sku)
                products.append(_Product(sku, cat, style, color, size, 0.0))
        for i in range(s.launches):
            cat = cats[rng.integers(len(cats))]
            style = CATALOG[cat][rng.integers(len(CATALOG[cat]))]
            color = NEW_COLORS[i % len(NEW_COLORS)]
            size = SIZES[rng.integers(len(SIZES))]
            launch = float(rng.uniform(30, max(31.0, hours - 48)))
            products.append(_Product(f"SKU-{cat}-{style}-{color}-{size}-N{i}".upper(), cat, style, color, size,
                                     launch))
        self.products = products
        n_p = len(products)
        # consumers: home region, size, and Dirichlet tastes over categories, styles and colours
        n_c = s.consumers
        self.region_of = rng.choice(len(REGIONS), size=n_c, p=REGION_SHARE)
        size_of = rng.choice(len(SIZES), size=n_c, p=SIZE_SHARE)
        taste_cat = rng.dirichlet(np.full(len(cats), 0.6), size=n_c)
        styles = sorted({st for sts in CATALOG.values() for st in sts})
        taste_style = rng.dirichlet(np.full(len(styles), 0.8), size=n_c)
        colors = COLORS + NEW_COLORS
        taste_color = rng.dirichlet(np.full(len(colors), 1.0), size=n_c)
        ci = np.array([cats.index(p.category) for p in products])
        si = np.array([styles.index(p.style) for p in products])
        ki = np.array([colors.index(p.color) for p in products])
        zi = np.array([SIZES.index(p.size) for p in products])
        fit = np.where(size_of[:, None] == zi[None, :], 1.0, 0.15)
        self.affinity = taste_cat[:, ci] * taste_style[:, si] * taste_color[:, ki] * fit  # [consumers, products]
        self.activity = rng.gamma(2.0, 0.5, size=n_c)  # heavy and light shoppers
        self.region_mask = np.stack([self.region_of == r for r in range(len(REGIONS))])  # [regions, consumers]
        self.appeal = rng.lognormal(0.0, 0.6, size=n_p)  # product quality beyond taste
        self.appeal[[i for i, p in enumerate(products) if p.launch_h > 0]] *= 1.5  # launches are promoted
        self.p_cart = np.clip(rng.normal(s.p_cart, s.p_cart * 0.25, size=n_p), 0.02, 0.3)
        self.p_order = np.clip(rng.normal(s.p_order, 0.06, size=n_p), 0.1, 0.8)
        peaks = (24, hours - 12) if hours >= 48 else (hours / 4, hours * 3 / 4)
        self.fads = [Fad(int(rng.integers(n_p)), float(rng.uniform(*peaks)), float(rng.uniform(8, 20)),
                         float(rng.uniform(18, 40)), float(s.fad_height * rng.uniform(0.6, 1.4)))
                     for _ in range(s.fads)]
        self.shocks = [Shock(*x) for x in s.shocks]
        self.shocked = [np.array([p.category == sh.category for p in products]) for sh in self.shocks]
        # per (region, product): the consumers most likely to view it, for user ids
        top = np.argsort(-self.affinity, axis=0)[:400]  # [400, products]
        self.viewers = top
        self.viewer_region = self.region_of[top]
        # hourly funnel lags as a pmf, to compute the expected units per hour (the truth)
        lag = self._lag_cart(200_000) + self._lag_order(200_000)
        self.lag_pmf = np.bincount(np.minimum(lag / HOUR_MS, MAX_LAG_H).astype(int), minlength=MAX_LAG_H + 1)
        self.lag_pmf = self.lag_pmf / self.lag_pmf.sum()

    def _lag_cart(self, n: int) -> np.ndarray:
        return np.minimum(self.rng.lognormal(np.log(0.4 * HOUR_MS), 0.9, size=n), 12 * HOUR_MS)

    def _lag_order(self, n: int) -> np.ndarray:
        return np.minimum(self.rng.lognormal(np.log(3.5 * HOUR_MS), 0.8, size=n), 36 * HOUR_MS)

    def conversion(self, hour: float) -> np.ndarray:
        """P(order | cart) per product at a given hour, shocks applied."""
        p = self.p_order.copy()
        for sh, hit in zip(self.shocks, self.shocked, strict=True):
            if hour >= sh.at_h:
                p[hit] *= sh.factor
        return np.clip(p, 0.0, 0.95)

    def popularity(self, h: int, buzz: np.ndarray) -> np.ndarray:
        pop = self.appeal * np.exp(buzz)
        for f in self.fads:
            dt = h - f.peak_h
            width = f.rise_h if dt < 0 else f.fade_h
            pop[f.product] *= 1.0 + f.height * np.exp(-0.5 * (dt / width) ** 2)
        for i, p in enumerate(self.products):
            if p.launch_h > 0:
                if h < p.launch_h:
                    pop[i] = 0.0
                else:  # new-in promotion fading over two days
                    pop[i] *= 1.0 + 1.5 * np.exp(-(h - p.launch_h) / 48.0)
        return pop


def _view_rates(w: _World, h: int, buzz: np.ndarray) -> np.ndarray:
    """Expected views per (region, product) in hour h: consumers spread their activity over the
    products they like, in proportion to taste x popularity."""
    lh, dow = h % 24, (h // 24) % 7
    pop = w.popularity(h, buzz)
    scores = w.affinity * pop[None, :]
    z = scores.sum(axis=1)
    share = np.divide(w.activity, z, out=np.zeros_like(z), where=z > 0)
    per_region = (w.region_mask * share[None, :]) @ scores  # [regions, products]
    total = per_region.sum()
    scale = w.spec.views_per_hour * DAILY[lh] * WEEKLY[dow] / total if total > 0 else 0.0
    # the share of activity by region stays fixed; popularity moves views between products
    return per_region * scale * (pop.sum() / w.appeal.sum()) ** 0.5


def generate(s: ScenarioSpec, seed: int, truth: Truth | None = None) -> Iterator[SimEvent]:
    """Yield the scenario's events in timestamp order; fill `truth` as a side effect."""
    w = _World(s, seed)
    rng = w.rng
    n_p = len(w.products)
    niche_keys = [[niche_of(p.attrs, r, NICHE_ATTRIBUTES, SIZE_BANDS)[0] for p in w.products] for r in REGIONS]
    expected = np.zeros((len(REGIONS), n_p, BURN_IN_H + w.hours + MAX_LAG_H + 1))  # from -BURN_IN_H
    realised = np.zeros((len(REGIONS), n_p, w.hours))
    buzz = rng.normal(0.0, s.buzz_sd, size=n_p)
    innovation = s.buzz_sd * np.sqrt(1 - s.buzz_phi**2)
    by_hour: dict[int, list[tuple[int, int, str, str, dict[str, Any]]]] = {}  # hour -> (ts, seq, topic, key, value)
    seq = 0
    orders = 0
    groups = _Groups(w, seed)
    catalog = [(p.sku, p.attrs, p.color, p.category) for p in w.products]

    def push(ts: int, topic: str, key: str, value: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        value["event_id"] = f"e-{seed}-{seq}"
        by_hour.setdefault((ts - START_MS) // HOUR_MS, []).append((ts, seq, topic, key, value))

    # a log extract starts mid-stream: the shop ran for BURN_IN_H hours before the first line, so
    # carts and orders are already in flight at the start (the burn-in itself is not written)
    for h in range(-BURN_IN_H, w.hours):
        t0 = START_MS + h * HOUR_MS
        buzz = s.buzz_phi * buzz + rng.normal(0.0, innovation, size=n_p)
        rates = _view_rates(w, h, buzz)
        conv = w.conversion(h)
        at = h + BURN_IN_H
        expected[:, :, at:at + MAX_LAG_H + 1] += (rates * w.p_cart * 0.88 * conv / 0.67)[:, :, None] * w.lag_pmf
        views = rng.poisson(rates)
        region_idx, prod_idx = np.nonzero(views)
        counts = views[region_idx, prod_idx]
        r_of = np.repeat(region_idx, counts)
        p_of = np.repeat(prod_idx, counts)
        n = len(p_of)
        ts = (t0 + rng.integers(0, HOUR_MS, size=n)).tolist()
        users = _users(w, rng, r_of, p_of).tolist()
        kind = rng.random(n).tolist()
        cart = (rng.random(n) < w.p_cart[p_of]).tolist()
        cart_ts = (np.array(ts) + w._lag_cart(n).astype(np.int64)).tolist()
        removed = (rng.random(n) < 0.12).tolist()
        order = (rng.random(n) < conv[p_of]).tolist()
        order_ts = (np.array(cart_ts) + w._lag_order(n).astype(np.int64)).tolist()
        qty = rng.geometric(0.67, size=n).tolist()  # 1 most of the time, mean 1.5
        cancel = (rng.random(n) < 0.03).tolist()
        for i, (pi, ri) in enumerate(zip(p_of.tolist(), r_of.tolist(), strict=True)):
            if not cart[i] and ts[i] < START_MS:
                continue  # a burn-in view that leads nowhere
            sku, attrs, color, category = catalog[pi]
            region = REGIONS[ri]
            user = f"u-{users[i]}"
            base = {"user_id": user, "session_id": f"s-{users[i]}-{h // 6}", "sku": sku, "region": region,
                    "attrs": attrs}
            t = ts[i]
            if t >= START_MS:
                if kind[i] < 0.08:
                    push(t - 20_000, "c2m.clickstream", user, {"type": "search", "ts": t - 20_000, **base})
                elif kind[i] < 0.09:
                    push(t - 20_000, "c2m.clickstream", user, {"type": "search", "ts": t - 20_000, "user_id": user,
                                                                 "region": region, "query": f"{color} {category}"})
                push(t, "c2m.clickstream", user, {"type": "view", "ts": t, **base})
                if kind[i] > 0.97:
                    etype = "wishlist" if kind[i] > 0.98 else "share"
                    push(t + 5_000, "c2m.clickstream", user, {"type": etype, "ts": t + 5_000, **base})
            if not cart[i]:
                continue
            tc = cart_ts[i]
            if tc >= START_MS:
                push(tc, "c2m.clickstream", user, {"type": "add_to_cart", "ts": tc, **base})
            if removed[i]:
                if tc >= START_MS:
                    push(tc + 600_000, "c2m.clickstream", user,
                         {"type": "remove_from_cart", "ts": tc + 600_000, **base})
                continue
            if not order[i]:
                continue
            to = order_ts[i]
            orders += 1
            oh = (to - START_MS) // HOUR_MS
            if to < START_MS:
                continue
            oid = f"o-{seed}-{orders}"
            body = {"order_id": oid, "user_id": user, "sku": sku, "quantity": qty[i], "unit_price": 19.9,
                    "region": region, "attrs": attrs}
            push(to, "c2m.orders", oid, {"type": "placed", "ts": to, **body})
            if oh < w.hours:
                realised[ri, pi, oh] += qty[i]
            if cancel[i]:
                push(to + 2 * HOUR_MS, "c2m.orders", oid, {"type": "cancelled", "ts": to + 2 * HOUR_MS, **body})
                if oh + 2 < w.hours:
                    realised[ri, pi, oh + 2] -= qty[i]
        for ts_j, topic, key, value in groups.hour(h, rates):
            push(ts_j, topic, key, value)
        due = by_hour.pop(h, [])
        if h < 0:
            continue  # burn-in: nothing is written
        for ev_ts, _, topic, key, value in sorted(due):
            if truth is not None:
                truth.events += 1
            yield SimEvent((ev_ts - START_MS) / 1000, topic, key, value)
    if truth is not None:
        _fill_truth(truth, w, niche_keys, expected, realised)


def _users(w: _World, rng: np.random.Generator, r_of: np.ndarray, p_of: np.ndarray) -> np.ndarray:
    """A likely viewer of each product from the viewer's region (falls back to any fan)."""
    pick = rng.integers(0, w.viewers.shape[0], size=len(p_of))
    users = w.viewers[pick, p_of]
    wrong = w.viewer_region[pick, p_of] != r_of
    # a consumer of the right region for most views; the rest keep the fan picked (travel, gifts)
    retry = rng.integers(0, w.viewers.shape[0], size=len(p_of))
    fix = wrong & (w.viewer_region[retry, p_of] == r_of)
    users[fix] = w.viewers[retry[fix], p_of[fix]]
    return users


class _Groups:
    """Group buys: a product opens a group with a target; fans join until it fills or expires."""

    def __init__(self, w: _World, seed: int) -> None:
        self.w = w
        self.seed = seed
        self.open: list[dict[str, Any]] = []
        self.n = 0

    def hour(self, h: int, rates: np.ndarray) -> list[tuple[int, str, str, dict[str, Any]]]:
        w, rng = self.w, self.w.rng
        out: list[tuple[int, str, str, dict[str, Any]]] = []
        t0 = START_MS + h * HOUR_MS
        for _ in range(rng.poisson(w.spec.groups_per_day / 24)):
            r, p = np.unravel_index(rng.choice(rates.size, p=(rates / rates.sum()).ravel()), rates.shape)
            self.n += 1
            self.open.append({"group_id": f"g-{self.seed}-{self.n}", "region": int(r), "product": int(p),
                              "target": int(rng.integers(3, 9)) * 10, "joined": 0,
                              "expires": t0 + int(rng.integers(12, 36)) * HOUR_MS, "rate": float(rng.uniform(1, 4))})
        still: list[dict[str, Any]] = []
        for g in self.open:
            if g["expires"] <= t0 or g["joined"] >= g["target"]:
                continue
            prod = w.products[g["product"]]
            for _ in range(rng.poisson(g["rate"] * DAILY[h % 24])):
                qty = int(rng.integers(1, 3))
                ts = t0 + int(rng.integers(0, HOUR_MS))
                if ts >= g["expires"] or g["joined"] >= g["target"]:
                    break
                g["joined"] += qty
                user = f"u-{int(rng.integers(w.spec.consumers))}"
                oid = f"o-{g['group_id']}-{g['joined']}"
                out.append((ts, "c2m.orders", oid, {
                    "type": "group_join", "ts": ts, "order_id": oid, "user_id": user, "sku": prod.sku,
                    "quantity": qty, "unit_price": 15.9, "region": REGIONS[g["region"]], "attrs": prod.attrs,
                    "group_id": g["group_id"], "group_target": g["target"], "group_expires_ts": g["expires"]}))
            still.append(g)
        self.open = still
        return out


def _fill_truth(truth: Truth, w: _World, keys: list[list[str]], expected: np.ndarray, realised: np.ndarray) -> None:
    h = w.hours
    for r, region in enumerate(REGIONS):
        for i, p in enumerate(w.products):
            key = keys[r][i]
            entry = truth.niches.setdefault(key, {
                "attrs": niche_of(p.attrs, region, NICHE_ATTRIBUTES, SIZE_BANDS)[1], "launch_hour": p.launch_h,
                "shocked": any(bool(hit[i]) for sh, hit in zip(w.shocks, w.shocked, strict=True) if sh.at_h < h),
                "expected_units": np.zeros(h), "units": np.zeros(h)})
            entry["expected_units"] = entry["expected_units"] + expected[r, i, BURN_IN_H:BURN_IN_H + h]
            entry["units"] = entry["units"] + realised[r, i]
    for entry in truth.niches.values():
        entry["expected_units"] = np.round(entry["expected_units"], 3)
        entry["units"] = entry["units"].astype(int)
    truth.fads = [{"sku": w.products[f.product].sku, "peak_hour": round(f.peak_h, 1), "height": round(f.height, 2)}
                  for f in w.fads]
    truth.launches = [{"sku": p.sku, "launch_hour": round(p.launch_h, 1)} for p in w.products if p.launch_h > 0]
    truth.shocks = [{"category": sh.category, "at_hour": sh.at_h, "factor": sh.factor} for sh in w.shocks
                    if sh.at_h < h]


def truth_path(events_path: Path) -> Path:
    return events_path.with_name(events_path.stem + ".truth.json")


def write(path: Path, s: ScenarioSpec, seed: int) -> tuple[int, Path]:
    """Write the events as JSONL (the format of `streams.simulate.write_jsonl`) and the truth beside."""
    from streams.simulate import write_jsonl

    truth = Truth(scenario=s.name, about=s.about, seed=seed, days=s.days, start_ms=START_MS)
    try:
        n = write_jsonl(path, generate(s, seed, truth))
        tpath = truth_path(path)
        tpath.write_bytes(truth.to_json())
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return n, tpath
