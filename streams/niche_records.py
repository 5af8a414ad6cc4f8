"""One state record per niche: counters, plan, groups and ledger together. Pure.

Separate tables would be separate changelogs, and a crash keeps some and loses others (see
streams.ledger). One record per niche, written once per batch, is also one changelog message per
niche per batch rather than one per table per niche per message.

The record: {"demand": ..., "plans": ..., "groups": {group id: ...}, "ledger": ...}; the stage's
logical tables (streams.stage DEMAND, PLANS, GROUPS) map onto its slots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from models.groups import GroupState
from streams.ledger import Ledger
from streams.stage import GROUPS

LEDGER = "ledger"


class NicheRecords:
    """A read-through cache of niche records for one batch; `flush` writes each changed one once.

    `store(niche_key, record)` is the table write (the agent makes it in the niche's partition).
    Closed groups are dropped from a record `keep_closed_ms` after they closed: past the dedupe
    window a redelivered join can no longer re-create them.
    """

    def __init__(self, table: Mapping[str, Any], store: Callable[[str, dict[str, Any]], None],
                 keep_closed_ms: int) -> None:
        self.table = table
        self.store = store
        self.keep_closed_ms = keep_closed_ms
        self.cache: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()

    def record(self, niche_key: str) -> dict[str, Any]:
        rec = self.cache.get(niche_key)
        if rec is None:
            stored = self.table.get(niche_key)
            rec = self.cache[niche_key] = dict(stored) if stored else {}
        return rec

    def read(self, table: str, key: str, niche_key: str) -> Any:
        rec = self.record(niche_key)
        if table == GROUPS:
            return (rec.get(GROUPS) or {}).get(key)
        return rec.get(table)

    def write(self, table: str, key: str, value: Any, niche_key: str) -> None:
        rec = self.record(niche_key)
        if table == GROUPS:
            rec[GROUPS] = {**(rec.get(GROUPS) or {}), key: value}
        else:
            rec[table] = value
        self.dirty.add(niche_key)

    def ledger(self, niche_key: str) -> Ledger:
        return Ledger.from_dict(self.record(niche_key).get(LEDGER))

    def set_ledger(self, niche_key: str, ledger: Ledger) -> None:
        self.record(niche_key)[LEDGER] = ledger.to_dict()
        self.dirty.add(niche_key)

    def touch(self, niche_key: str) -> None:
        """Write the record again unchanged: after a crash the local store can be ahead of the
        changelog (written before its changelog record was acked), and a replay that changes
        nothing would otherwise leave the changelog behind for whoever recovers from it next."""
        self.record(niche_key)
        self.dirty.add(niche_key)

    def flush(self, now_ms: int) -> int:
        """Store every changed record once; forget the cache. Returns how many were stored."""
        for niche_key in sorted(self.dirty):
            rec = self.cache[niche_key]
            self._expire_groups(rec, now_ms)
            self.store(niche_key, rec)
        n = len(self.dirty)
        self.cache.clear()
        self.dirty.clear()
        return n

    def _expire_groups(self, rec: dict[str, Any], now_ms: int) -> None:
        groups = rec.get(GROUPS)
        if not groups:
            return
        kept = {gid: g for gid, g in groups.items() if not _closed_before(g, now_ms - self.keep_closed_ms)}
        if len(kept) != len(groups):
            rec[GROUPS] = kept


def _closed_before(group: Mapping[str, Any], cutoff_ms: int) -> bool:
    """A group over for good whose end (expiry, or fill) lies before the cutoff."""
    state = GroupState.from_dict(dict(group))
    return state.closed and max(state.expires_ts, state.filled_ts) < cutoff_ms
