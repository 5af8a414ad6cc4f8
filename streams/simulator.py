"""Realistic shop traffic for the demo and tests: a funnel per niche, some niches surging.

The generator is pure and seeded (same seed, same events); `publish` and `write_jsonl` move its
output to Kafka or a file.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class NicheSpec:
    category: str
    style: str
    color: str
    size: str
    region: str
    weight: float  # share of views before any surge
    cart_rate: float  # P(add_to_cart | view)
    order_rate: float  # P(placed | add_to_cart)
    surge_at_s: float | None = None  # from this second on, views x surge_factor, rates x 3
    surge_factor: float = 1.0

    @property
    def sku(self) -> str:
        return f"SKU-{self.category}-{self.style}-{self.color}-{self.size}".upper()

    @property
    def attrs(self) -> dict[str, str]:
        return {"category": self.category, "style": self.style, "color": self.color, "size": self.size}

    def surging(self, t: float) -> bool:
        return self.surge_at_s is not None and t >= self.surge_at_s


@dataclass(frozen=True)
class SimEvent:
    offset_s: float
    topic: str
    key: str
    value: dict[str, object]


SCENARIOS: dict[str, tuple[NicheSpec, ...]] = {
    "surge": (
        NicheSpec("dress", "boho", "sage", "M", "CN-GD", 3, 0.04, 0.15, surge_at_s=10, surge_factor=6),
        NicheSpec("jeans", "wide-leg", "indigo", "L", "CN-ZJ", 3, 0.04, 0.15, surge_at_s=20, surge_factor=6),
        NicheSpec("dress", "minimal", "black", "S", "CN-SH", 4, 0.03, 0.15),
        NicheSpec("top", "basic", "white", "M", "CN-GD", 5, 0.03, 0.12),
        NicheSpec("top", "crop", "pink", "S", "CN-BJ", 3, 0.03, 0.12),
        NicheSpec("skirt", "pleated", "navy", "M", "CN-SH", 2, 0.03, 0.15),
        NicheSpec("jacket", "bomber", "olive", "L", "CN-BJ", 2, 0.02, 0.15),
        NicheSpec("knitwear", "cable", "cream", "M", "CN-ZJ", 2, 0.03, 0.12),
    ),
    "steady": (
        NicheSpec("dress", "minimal", "black", "S", "CN-SH", 4, 0.03, 0.15),
        NicheSpec("top", "basic", "white", "M", "CN-GD", 5, 0.03, 0.12),
        NicheSpec("jeans", "straight", "blue", "M", "CN-ZJ", 3, 0.03, 0.15),
        NicheSpec("skirt", "pleated", "navy", "M", "CN-SH", 2, 0.03, 0.15),
    ),
}


def scenario(name: str) -> tuple[NicheSpec, ...]:
    try:
        return SCENARIOS[name]
    except KeyError:
        from streams.errors import UserError

        raise UserError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}") from None


def surging(name: str) -> list[NicheSpec]:
    return [n for n in scenario(name) if n.surge_at_s is not None]


def generate(niches: tuple[NicheSpec, ...], rate: float, duration_s: float | None, seed: int,
             start_ms: int) -> Iterator[SimEvent]:
    """Views arrive as a Poisson stream at roughly `rate` events/s; carts and orders follow a view
    of the same user a few seconds later with the niche's funnel probabilities."""
    rng = random.Random(seed)
    t = 0.0
    seq = 0
    pending: list[SimEvent] = []
    view_rate = rate / 1.1  # carts and orders add roughly a tenth on top of the views
    while duration_s is None or t < duration_s:
        t += rng.expovariate(view_rate)
        due = [e for e in pending if e.offset_s <= t]
        if due:
            pending = [e for e in pending if e.offset_s > t]
            yield from sorted(due, key=lambda e: e.offset_s)
        weights = [n.weight * (n.surge_factor if n.surging(t) else 1.0) for n in niches]
        niche = rng.choices(niches, weights)[0]
        seq += 1
        user = f"u-{rng.randrange(100_000)}"
        boost = 3.0 if niche.surging(t) else 1.0
        base = {"user_id": user, "session_id": f"s-{seed}-{seq}", "sku": niche.sku, "region": niche.region,
                "attrs": niche.attrs}
        yield SimEvent(t, "c2m.clickstream", user,
                       {"event_id": f"e-{seed}-{seq}-v", "type": "view", "ts": start_ms + int(t * 1000), **base})
        if rng.random() < min(1.0, niche.cart_rate * boost):
            tc = t + rng.uniform(0.5, 3.0)
            pending.append(SimEvent(tc, "c2m.clickstream", user, {
                "event_id": f"e-{seed}-{seq}-c", "type": "add_to_cart", "ts": start_ms + int(tc * 1000), **base}))
            if rng.random() < min(1.0, niche.order_rate * boost):
                to = tc + rng.uniform(0.5, 3.0)
                pending.append(SimEvent(to, "c2m.orders", f"o-{seed}-{seq}", {
                    "event_id": f"e-{seed}-{seq}-o", "type": "placed", "ts": start_ms + int(to * 1000),
                    "order_id": f"o-{seed}-{seq}", "user_id": user, "sku": niche.sku,
                    "quantity": rng.choice((1, 1, 1, 2, 3)), "unit_price": 19.9, "region": niche.region,
                    "attrs": niche.attrs}))
