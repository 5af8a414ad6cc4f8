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
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from streams.niches import MissingAttribute, niche_of
from streams.records import ORDER_TYPES, Event, Rejection, dead_letter, event_fields

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


def _row(fields: tuple[Any, ...]) -> list[Any]:
    """compact() of the Event these fields make (Event's order: event_id, type, ts, region, sku,
    attrs, user_id, quantity, order_id, group_id, group_target, group_expires_ts)."""
    if len(fields) < 8:  # a click: quantity 0, no group
        return [fields[0], fields[1], fields[2], 0]
    row = [fields[0], fields[1], fields[2], fields[7]]
    if fields[9] is not None:
        row += [fields[9], fields[10], fields[11]]
    return row


def ingest(records: Iterable[RawRecord], now_ms: int, attributes: tuple[str, ...],
           size_bands: Mapping[str, str], catalog: Mapping[str, dict[str, str]],
           max_bytes: int) -> IngestBatch:
    out = IngestBatch()
    grouped: dict[str, tuple[dict[str, str], list[list[Any]], list[list[Any]]]] = {}
    pick, niches = _niche_memo(attributes, size_bands)
    sources: dict[tuple[str, int], str] = {}
    # the catalog is a Faust table: each get passes its sensors (a sixth of the ingest task's CPU
    # at 30k events/s). A batch asks about few SKUs many times, and nothing changes the table
    # between its records (the task does not yield), so each SKU is looked up once per batch.
    products: dict[str, dict[str, str] | None] = {}
    for rec in records:
        # parse_order / parse_click, as Event's fields (see event_fields)
        parsed = event_fields(rec.value, now_ms, max_bytes, order=rec.topic == ORDERS)
        if isinstance(parsed, Rejection):
            _reject(out, rec, parsed.reason)
            continue
        etype, ts, region, sku, attrs = parsed[1:6]
        if sku is None:
            known = None
        elif sku in products:
            known = products[sku]
        else:
            known = products[sku] = catalog.get(sku)
        if known is not None:
            attrs = {**known, **(attrs or {})}
        if attrs is None:
            if sku is None:
                # a search by free-text query has no product: it is counted, not attributed
                out.outcomes[(rec.topic, etype, "ok")] += 1
                continue
            _reject(out, rec, f"unknown sku {sku!r} and no attrs on the event", etype)
            continue
        try:
            memo: tuple[str, Any] | None = (region, pick(attrs))
            known_niche = niches.get(memo)  # type: ignore[arg-type]
        except (KeyError, TypeError):  # an attribute missing (niche_of says which) or not hashable
            memo = known_niche = None
        if known_niche is None:
            try:
                known_niche = niche_of(attrs, region, attributes, size_bands)
            except MissingAttribute as exc:
                _reject(out, rec, f"field 'attrs.{exc.args[0]}': required for the niche key", etype)
                continue
            if memo is not None:
                niches[memo] = known_niche
        key, niche = known_niche
        entry = grouped.get(key)
        if entry is None:
            entry = grouped[key] = (niche, [], [])
        entry[1].append(_row(parsed))
        where = sources.get((rec.topic, rec.partition))
        if where is None:
            where = sources[(rec.topic, rec.partition)] = f"{rec.topic}/{rec.partition}"
        entry[2].append([where, rec.offset])
        out.event_ts.append(ts)
    for key, (niche, rows, sources) in grouped.items():
        # "src": where each row was read, for the niche's ledger (streams.ledger)
        out.niche_messages[key] = orjson.dumps({"niche": niche, "events": rows, "src": sources})
    return out


# (attributes, size bands) -> {(region, the attributes the niche names): niche_of(...)}
_NICHES: dict[tuple[Any, ...], dict[tuple[str, Any], tuple[str, dict[str, str]]]] = {}
NICHE_MEMO = 1 << 16


def _niche_memo(attributes: tuple[str, ...], size_bands: Mapping[str, str]
                ) -> tuple[itemgetter[Any], dict[tuple[str, Any], tuple[str, dict[str, str]]]]:
    """niche_of depends only on the region and the attributes the niche names (given the niche
    definition): each niche is worked out once and remembered (up to NICHE_MEMO of them). The
    remembered niche dicts are only ever serialised, never changed."""
    names = [("size" if a == "size_band" else a) for a in attributes if a != "region"] or ["size"]
    definition = (tuple(attributes), tuple(size_bands.items()))
    memo = _NICHES.get(definition)
    if memo is None or len(memo) >= NICHE_MEMO:
        if len(_NICHES) >= 8:
            _NICHES.clear()
        memo = _NICHES[definition] = {}
    return itemgetter(*names), memo


def _reject(out: IngestBatch, rec: RawRecord, reason: str, etype: str = "unknown") -> None:
    raw = rec.value
    if raw is not None and len(raw) > DEAD_LETTER_RECORD_BYTES:
        # a 10 MB record would not fit the dead-letter topic (nor help anyone reading it)
        raw = raw[:DEAD_LETTER_RECORD_BYTES]
        reason += f" (record truncated to its first {DEAD_LETTER_RECORD_BYTES} bytes)"
    out.dead_letters.append((rec.topic, dead_letter(reason, rec.topic, rec.partition, rec.offset, raw)))
    out.outcomes[(rec.topic, etype, "invalid")] += 1
