"""The ingest step, pure: a batch of raw Kafka records in, per-niche messages and dead letters out.

Events are grouped by niche so the repartition topic carries one message per niche per batch
rather than one per click: that keeps Kafka and Faust per-message overhead off the hot path.
Valid events are counted "ok" by the niche stage, after dedupe; this step counts the invalid ones
(and free-text searches, which belong to no niche and so never reach that stage).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from streams.niches import MissingAttribute, niche_of
from streams.records import ORDER_TYPES, Event, Rejection, dead_letter, parse_click, parse_order

CLICKSTREAM = "c2m.clickstream"
ORDERS = "c2m.orders"
DEAD_LETTER_RECORD_BYTES = 65536


class RawRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class IngestBatch:
    """What one batch produced: niche messages keyed by niche key, dead letters, counters."""

    niche_messages: dict[str, bytes] = field(default_factory=dict)
    dead_letters: list[tuple[str, bytes]] = field(default_factory=list)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    event_ts: list[int] = field(default_factory=list)


def source_topic(etype: str) -> str:
    """The input topic an event type arrives on: order types and click types never overlap."""
    return ORDERS if etype in ORDER_TYPES else CLICKSTREAM


def compact(event: Event) -> list[Any]:
    """The per-event row of a niche message: only what the niche stage uses."""
    row: list[Any] = [event.event_id, event.type, event.ts, event.quantity]
    if event.group_id is not None:
        row += [event.group_id, event.group_target, event.group_expires_ts]
    return row


def ingest(records: Iterable[RawRecord], now_ms: int, attributes: tuple[str, ...],
           size_bands: Mapping[str, str], catalog: Mapping[str, dict[str, str]],
           max_bytes: int) -> IngestBatch:
    out = IngestBatch()
    grouped: dict[str, tuple[dict[str, str], list[list[Any]], list[list[Any]]]] = {}
    for rec in records:
        parser = parse_order if rec.topic == ORDERS else parse_click
        parsed = parser(rec.value, now_ms, max_bytes)
        if isinstance(parsed, Rejection):
            _reject(out, rec, parsed.reason)
            continue
        attrs = parsed.attrs
        known = catalog.get(parsed.sku) if parsed.sku is not None else None
        if known is not None:
            attrs = {**known, **(attrs or {})}
        if attrs is None:
            if parsed.sku is None:
                # a search by free-text query has no product: it is counted, not attributed
                out.outcomes[(rec.topic, parsed.type, "ok")] += 1
                continue
            _reject(out, rec, f"unknown sku {parsed.sku!r} and no attrs on the event", parsed.type)
            continue
        try:
            key, niche = niche_of(attrs, parsed.region, attributes, size_bands)
        except MissingAttribute as exc:
            _reject(out, rec, f"field 'attrs.{exc.args[0]}': required for the niche key", parsed.type)
            continue
        entry = grouped.setdefault(key, (niche, [], []))
        entry[1].append(compact(parsed))
        entry[2].append([f"{rec.topic}/{rec.partition}", rec.offset])
        out.event_ts.append(parsed.ts)
    for key, (niche, rows, sources) in grouped.items():
        # "src": where each row was read, for the niche's ledger (streams.ledger)
        out.niche_messages[key] = orjson.dumps({"niche": niche, "events": rows, "src": sources})
    return out


def _reject(out: IngestBatch, rec: RawRecord, reason: str, etype: str = "unknown") -> None:
    raw = rec.value
    if raw is not None and len(raw) > DEAD_LETTER_RECORD_BYTES:
        # a 10 MB record would not fit the dead-letter topic (nor help anyone reading it)
        raw = raw[:DEAD_LETTER_RECORD_BYTES]
        reason += f" (record truncated to its first {DEAD_LETTER_RECORD_BYTES} bytes)"
    out.dead_letters.append((rec.topic, dead_letter(reason, rec.topic, rec.partition, rec.offset, raw)))
    out.outcomes[(rec.topic, etype, "invalid")] += 1
