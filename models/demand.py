"""Per-niche demand counters in time buckets: what the models and the planner read. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Per event type: what it adds to the counts (the add() rules, looked up rather than branched on)
_ADDS: dict[str, tuple[tuple[str, int], ...]] = {
    "placed": (("orders", 1), ("units", 1)),
    "cancelled": (("cancelled", 1), ("units", -1)),
    "group_join": (("group_join", 1), ("group_units", 1)),
}

class _Memo(dict[Any, Any]):
    """fn(key), remembered: bucket starts go to and from their JSON (string) keys on every message,
    and the same few dozen recur, so a lookup replaces int()/str() of a 13-digit number. Bounded."""

    def __init__(self, fn: Any, size: int = 1 << 16) -> None:
        super().__init__()
        self.fn, self.size = fn, size

    def __missing__(self, key: Any) -> Any:
        if len(self) >= self.size:
            self.clear()
        value = self[key] = self.fn(key)
        return value


_INT_OF = _Memo(int)  # "1764000000000" -> 1764000000000
_STR_OF = _Memo(str)  # and back (bucket starts are ints: no 1 == 1.0 == True aliasing to fear)

FUNNEL = ("view", "search", "add_to_cart", "remove_from_cart", "wishlist", "share")
COUNT_KEYS = (*FUNNEL, "orders", "units")


def bucket_of(ts_ms: int, bucket_ms: int) -> int:
    return ts_ms - ts_ms % bucket_ms


@dataclass
class NicheDemand:
    """Counts since the niche was first seen, and per-bucket counts for the recent past.

    Stored as a plain dict in a changelogged table (JSON), so bucket keys become strings on the
    way through; from_dict turns them back.
    """

    counts: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, dict[str, int]] = field(default_factory=dict)
    first_seen_ms: int = 0
    last_ts_ms: int = 0
    # Bucket starts whose dicts from_dict shares with the stored value: copied on first write, so
    # the stored value never changes (copying all of them up front was most of the cost of a message).
    _borrowed: set[int] = field(default_factory=set, init=False, repr=False, compare=False)

    def add(self, etype: str, ts_ms: int, quantity: int, bucket_ms: int) -> None:
        """Count one event: funnel events by type, placed orders as orders and units."""
        start = ts_ms - ts_ms % bucket_ms
        bucket = self.buckets.get(start)
        if bucket is None:
            bucket = self.buckets[start] = {}
        elif start in self._borrowed:
            bucket = self.buckets[start] = dict(bucket)
            self._borrowed.discard(start)
        counts = self.counts
        adds = _ADDS.get(etype)
        if adds is None:
            counts[etype] = counts.get(etype, 0) + 1
            bucket[etype] = bucket.get(etype, 0) + 1
        else:
            (first, _), (second, sign) = adds
            counts[first] = counts.get(first, 0) + 1
            bucket[first] = bucket.get(first, 0) + 1
            counts[second] = counts.get(second, 0) + sign * quantity
            bucket[second] = bucket.get(second, 0) + sign * quantity
        if not self.first_seen_ms or ts_ms < self.first_seen_ms:
            self.first_seen_ms = ts_ms
        if ts_ms > self.last_ts_ms:
            self.last_ts_ms = ts_ms

    def trim(self, keep_buckets: int, bucket_ms: int) -> None:
        """Forget buckets older than the retention, counted back from the newest event."""
        horizon = bucket_of(self.last_ts_ms, bucket_ms) - (keep_buckets - 1) * bucket_ms
        buckets = self.buckets
        if buckets and min(buckets) >= horizon:
            return
        for start in [b for b in buckets if b < horizon]:
            del buckets[start]
            self._borrowed.discard(start)

    def window(self, key: str, end_bucket: int, n_buckets: int, bucket_ms: int) -> int:
        """Sum of `key` over the n buckets ending with (and including) end_bucket."""
        start = end_bucket - (n_buckets - 1) * bucket_ms
        return sum(b.get(key, 0) for s, b in self.buckets.items() if start <= s <= end_bucket)

    def windows(self, keys: tuple[str, ...], end_bucket: int, n_buckets: int, bucket_ms: int) -> list[int]:
        """window() of each key, in one pass over the buckets."""
        start = end_bucket - (n_buckets - 1) * bucket_ms
        sums = [0] * len(keys)
        for s, b in self.buckets.items():
            if start <= s <= end_bucket:
                for i, key in enumerate(keys):
                    sums[i] += b.get(key, 0)
        return sums

    def to_dict(self) -> dict[str, Any]:
        buckets = self.buckets
        wire = dict(zip(map(_STR_OF.__getitem__, buckets), buckets.values(), strict=True))
        return {"counts": self.counts, "buckets": wire,
                "first_seen_ms": self.first_seen_ms, "last_ts_ms": self.last_ts_ms}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> NicheDemand:
        if not raw:
            return cls()
        stored = raw.get("buckets", {})
        buckets = dict(zip(map(_INT_OF.__getitem__, stored), stored.values(), strict=True))
        out = cls(counts=dict(raw.get("counts", {})), buckets=buckets,
                  first_seen_ms=int(raw.get("first_seen_ms", 0)), last_ts_ms=int(raw.get("last_ts_ms", 0)))
        out._borrowed = set(buckets)
        return out
