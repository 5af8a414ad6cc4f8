"""Per-niche demand counters in time buckets: what the models and the planner read. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    def add(self, etype: str, ts_ms: int, quantity: int, bucket_ms: int) -> None:
        """Count one event: funnel events by type, placed orders as orders and units."""
        bucket = self.buckets.setdefault(bucket_of(ts_ms, bucket_ms), {})
        if etype == "placed":
            keys: tuple[tuple[str, int], ...] = (("orders", 1), ("units", quantity))
        elif etype == "cancelled":
            keys = (("cancelled", 1), ("units", -quantity))
        elif etype == "group_join":
            keys = (("group_join", 1), ("group_units", quantity))
        else:
            keys = ((etype, 1),)
        for key, n in keys:
            self.counts[key] = self.counts.get(key, 0) + n
            bucket[key] = bucket.get(key, 0) + n
        if not self.first_seen_ms or ts_ms < self.first_seen_ms:
            self.first_seen_ms = ts_ms
        self.last_ts_ms = max(self.last_ts_ms, ts_ms)

    def trim(self, keep_buckets: int, bucket_ms: int) -> None:
        """Forget buckets older than the retention, counted back from the newest event."""
        horizon = bucket_of(self.last_ts_ms, bucket_ms) - (keep_buckets - 1) * bucket_ms
        for start in [b for b in self.buckets if b < horizon]:
            del self.buckets[start]

    def window(self, key: str, end_bucket: int, n_buckets: int, bucket_ms: int) -> int:
        """Sum of `key` over the n buckets ending with (and including) end_bucket."""
        start = end_bucket - (n_buckets - 1) * bucket_ms
        return sum(b.get(key, 0) for s, b in self.buckets.items() if start <= s <= end_bucket)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "buckets": {str(k): v for k, v in self.buckets.items()},
                "first_seen_ms": self.first_seen_ms, "last_ts_ms": self.last_ts_ms}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> NicheDemand:
        if not raw:
            return cls()
        return cls(counts=dict(raw.get("counts", {})),
                   buckets={int(k): dict(v) for k, v in raw.get("buckets", {}).items()},
                   first_seen_ms=int(raw.get("first_seen_ms", 0)),
                   last_ts_ms=int(raw.get("last_ts_ms", 0)))
