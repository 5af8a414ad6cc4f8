"""Factory routing: which factory makes a niche's batch, and how big the batch may be."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Factory:
    id: str
    categories: tuple[str, ...]
    capacity_units_per_day: int
    min_batch: int
    batch_step: int
    lead_time_hours: int

    def makes(self, category: str) -> bool:
        return category in self.categories


def batch_units(wanted: float, factory: Factory) -> int:
    """Whole multiples of the factory's batch step, never below its minimum batch."""
    # round the larger of the two up to a step: a min batch that is not itself a multiple of the
    # step must not be returned as is
    return math.ceil(max(wanted, factory.min_batch) / factory.batch_step) * factory.batch_step


def choose_factory(category: str, units: int, factories: Iterable[Factory],
                   open_units: dict[str, int]) -> Factory | None:
    """A factory that makes the category and has room for `units`, shortest lead time first.

    `open_units` is what each factory already has accepted or in flight; a day's capacity is the
    budget. Returns None when no capable factory has room.
    """
    capable = sorted((f for f in factories if f.makes(category)), key=lambda f: (f.lead_time_hours, f.id))
    for f in capable:
        if open_units.get(f.id, 0) + batch_units(units, f) <= f.capacity_units_per_day:
            return f
    return None
