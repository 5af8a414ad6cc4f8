"""What a niche has already applied, kept in the niche's own state record. Pure.

Faust (like Kafka Streams without exactly-once) writes each table to its own changelog, and a
worker killed with SIGKILL loses whatever was not flushed yet, table by table: counters could
survive while the dedupe markers of the same events do not, or the other way round. So the
niche's counters, plan, groups and this ledger are one record, written once per batch: whatever
survives a crash is consistent with itself, and the ledger says which inputs it already holds.

- `offset`: the last `<app>-niche-events` offset applied. A message at or below it is a replay
  of the niche-events partition (the consumer's offsets lag the changelog) and is skipped whole.
- `sources`: per source partition ("c2m.clickstream/3"), the highest source offset applied. The
  ingest step re-sends events after a crash (its own offsets lag too) in new niche-events
  messages; a row from a partition at or below its high-water mark is such a re-send. Events of
  one source partition reach a niche in their source order (one ingest stream per partition,
  one niche-events partition per niche), which is what makes a high-water mark enough.

Upstream duplicates (one event_id published twice, as two source records) are a different
matter: the dedupe table catches those; see `is_duplicate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Source = tuple[str, int]  # ("c2m.clickstream/3", offset): where a row was read from


@dataclass
class Ledger:
    offset: int = -1
    sources: dict[str, int] = field(default_factory=dict)

    def replayed(self, offset: int) -> bool:
        """True for a niche-events message this niche has already applied."""
        return offset <= self.offset

    def split(self, rows: Sequence[Any], sources: Sequence[Sequence[Any]] | None
              ) -> tuple[list[tuple[Any, Source | None]], list[tuple[Any, Source]]]:
        """(new rows, re-sent rows), each row with its source, and the marks moved past the new
        ones. Rows without sources (a message from before sources were carried) are all new: only
        the dedupe table can judge them."""
        if sources is None or len(sources) != len(rows):
            return [(row, None) for row in rows], []
        new: list[tuple[Any, Source | None]] = []
        resent: list[tuple[Any, Source]] = []
        marks = self.sources
        for row, (part, off) in zip(rows, sources, strict=True):
            src = (str(part), int(off))
            if src[1] <= marks.get(src[0], -1):
                resent.append((row, src))
            else:
                new.append((row, src))
                marks[src[0]] = src[1]
        return new, resent

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "sources": self.sources}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Ledger:
        if not raw:
            return cls()
        return cls(int(raw.get("offset", -1)), {str(k): int(v) for k, v in (raw.get("sources") or {}).items()})


def source_mark(source: Source) -> str:
    """The dedupe table's value for an event: where it was first read."""
    return f"{source[0]}@{source[1]}"


def is_duplicate(first_seen: str | None, source: Source | None) -> bool:
    """Whether an event the ledger has not applied is an upstream duplicate.

    `first_seen` is the dedupe mark of its event_id: None when not seen within the window, else the
    source mark of its first sighting. A mark equal to this row's own source means the row is the
    same record again (its dedupe marker survived a crash its counters did not), so it counts.
    """
    if not first_seen:
        return False
    return source is None or first_seen != source_mark(source)
