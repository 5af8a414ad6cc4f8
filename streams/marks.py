"""The dedupe table (event_id -> mark) with one changelog record per partition per batch.

A plain Faust table sends one changelog record per key written: for the dedupe marks, one per
event, each through Table.on_key_set, the producer's buffer and a delivery callback, which cost a
third of the niche worker's CPU. A MarkTable keeps a mark pending (a later row of the same batch
sees it there); `flush`, once per batch, writes the batch's marks of each partition to the local
store as ONE RocksDB write batch (a put per mark, each with its own WAL append, was a quarter of
the worker's CPU at 30k events/s) and sends them as ONE changelog record, keyed by a batch key,
valued {event_id: mark}.
Recovery (and standby replicas, which take the same path) explode such a record into one store
entry per event id, byte for byte what `table.data[event_id] = mark` writes, so reads cannot tell
a recovered mark from a live one. Per-id records (written before batching) still apply as ever.

Exactness (streams.ledger) is unchanged: a crash may lose marks whose changelog record was not
delivered yet, as before; the niche-events offsets of their batch are then not committed either
(Faust flushes the producer before it commits), so the batch is replayed and re-marks them. A
batch record is in fact all or nothing, where per-id records could be lost in part.

Batch keys are JSON arrays, [BATCH_TAG, highest niche-events offset of the batch, unique token],
and event ids are JSON strings (streams.records: any non-empty string, so no string prefix could
be reserved): the first byte of a changelog key tells the two apart. The token makes every flush
a key of its own, replays included. A replay must not reuse an earlier batch's key: under
compaction the later record would replace the earlier, and a replay holds only the marks that
were missing locally (its batch may also start later), so the earlier batch's other marks would
be dropped from the changelog. The records leave the changelog by its retention instead (the
topic is compact,delete; every batch key is written once, so compaction has nothing to merge).

Faust internals relied on (faust-streaming 0.15.3), each commented where used:
- Collection.data is the Store; SerializedStore._get/_encode_key/_encode_value/_decode_value;
- the RocksDB store reads the current event's partition database (Store._get uses
  faust.streams.current_event()); Store._db_for_partition(partition) opens or returns the
  partition's database (an Rdict in raw mode: rocksdict, as Faust's store uses);
- Collection.send_changelog(partition, key, value) delivers with Collection._on_changelog_sent,
  which records the persisted offset of the changelog partition in its database;
- recovery and standbys call Collection.apply_changelog_batch(events), and the store's
  apply_changelog_batch reads only event.message.{tp, partition, offset, key, value} (RocksDB:
  raw bytes, put as they are; the persisted offset is the highest offset per tp) or event.key /
  event.value (the in-memory store, which keeps decoded keys and values).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Iterator
from typing import Any

import faust
import orjson
import rocksdict
from faust.stores.base import SerializedStore
from faust.streams import current_event
from faust.types import TP, AppT, EventT

BATCH_TAG = "c2m.marks"
# A batch record's marks are split past this many (estimated) bytes: the producer refuses
# requests over 1 MB (max.request.size) and the broker messages over max.message.bytes (1 MiB
# by default for the changelog). A batch of 1000 niche messages can carry far more rows.
MAX_RECORD_BYTES = 256 * 1024
_ENTRY_OVERHEAD = 4  # the ':' and ',' and a little slack per entry beyond orjson's [id, value]


class MarkTable(faust.Table):
    """A non-windowed table of marks, read with `first_seen`, written with `mark` and `flush`.

    Faust's own table operations (table[key], table.get) keep working and send per-id records."""

    def __init__(self, app: AppT, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._pending: dict[int, dict[str, Any]] = {}  # partition -> {event_id: mark} since the last flush
        self._last_offset: dict[int, int] = {}  # partition -> highest offset of the marking events
        self._nonce = secrets.token_hex(6)  # this process's; with the sequence, unique batch keys
        self._seq = itertools.count()

    # -- live path ---------------------------------------------------------------------------

    def first_seen(self, event_id: str) -> Any | None:
        """The mark of event_id in the current event's partition (pending or stored), None if there is none.

        Straight from the store: Table.get would pass every read through Faust's table sensors.
        The RocksDB store reads the database of the current event's partition (Store._get); the
        caller makes the niche-events event current (streams.app.acting_for)."""
        event = current_event()
        if event is not None:
            pending = self._pending.get(event.message.partition)
            if pending is not None and event_id in pending:
                return pending[event_id]
        store = self.data
        if isinstance(store, SerializedStore):
            # SerializedStore._get: bytes or None, no KeyError raised and caught for every new id
            raw = store._get(store._encode_key(event_id))
            return None if raw is None else store._decode_value(raw)
        return store.get(event_id)

    def mark(self, event_id: str, value: Any) -> None:
        """Mark event_id in the current event's partition: `first_seen` sees it at once, `flush`
        stores and sends it."""
        event = current_event()
        if event is None:
            raise TypeError("MarkTable.mark outside of stream iteration: no current event")
        # Faust's check that the source topic and the changelog have as many partitions, as a
        # table write makes it (once per source topic); the partition is the event's.
        partition = self.partition_for_key(event_id)
        assert partition is not None
        self._pending.setdefault(partition, {})[event_id] = value
        offset = event.message.offset
        if offset > self._last_offset.get(partition, -1):
            self._last_offset[partition] = offset

    def pending(self) -> int:
        """How many marks wait for `flush`."""
        return sum(len(marks) for marks in self._pending.values())

    def flush(self) -> int:
        """Store and send the pending marks: one write batch and one changelog record per partition
        (more records only for a batch past MAX_RECORD_BYTES). Returns how many records were sent."""
        sent = 0
        pending, self._pending = self._pending, {}
        offsets, self._last_offset = self._last_offset, {}
        for partition, marks in sorted(pending.items()):
            self._write_marks(partition, marks)
            for chunk in _chunks(marks):
                # Collection.send_changelog: the delivery callback (_on_changelog_sent) stores
                # the persisted offset of this changelog partition, as for a per-key write.
                self.send_changelog(partition, self.batch_key(offsets[partition]), chunk)
                sent += 1
        return sent

    def _write_marks(self, partition: int, marks: dict[str, Any]) -> None:
        """Put `marks` into the partition's database in one write, as the bytes a Faust table write
        would store there (SerializedStore.__setitem__ encodes keys and values this way)."""
        store = self.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        if not isinstance(store, SerializedStore) or db_for_partition is None:
            for event_id, value in marks.items():  # the in-memory store: a dict, no partitions
                store[event_id] = value
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        for event_id, value in marks.items():
            batch.put(store._encode_key(event_id), store._encode_value(value))
        db_for_partition(partition).write(batch)

    def batch_key(self, offset: int) -> list[Any]:
        """A new batch key: [BATCH_TAG, the niche-events offset, a token no other flush has]."""
        return [BATCH_TAG, offset, f"{self._nonce}-{next(self._seq)}"]

    # -- recovery and standbys ---------------------------------------------------------------

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        """Apply changelog records to the local store: a batch record as one entry per event id
        (in the record's place, so later records of an id still win), any other as Faust does."""
        super().apply_changelog_batch(self._exploded(batch))

    def _exploded(self, batch: Iterable[EventT]) -> Iterator[Any]:
        store = self.data
        for event in batch:
            msg = event.message
            marks = self._batch_marks(msg.key, msg.value)
            if marks is None:
                yield event
                continue
            for event_id, value in marks.items():
                # the bytes `self.data[event_id] = value` writes (SerializedStore.__setitem__)
                yield _Exploded(_ExplodedMessage(msg.tp, msg.partition, msg.offset, store._encode_key(event_id),
                                                 store._encode_value(value)), event_id, value)

    def _batch_marks(self, key: Any, value: Any) -> dict[str, Any] | None:
        """The marks of a batch record, None for any other record."""
        if value is None or not isinstance(key, bytes | bytearray | memoryview) or bytes(key[:1]) != b"[":
            return None  # an event id's key is a JSON string: '"...'
        store = self.data
        decoded_key = store._decode_key(bytes(key))
        if not (isinstance(decoded_key, list | tuple) and decoded_key and decoded_key[0] == BATCH_TAG):
            return None
        marks = store._decode_value(bytes(value))
        if not isinstance(marks, dict):
            raise ValueError(f"changelog of table {self.name}: batch record {decoded_key} holds "
                             f"{type(marks).__name__}, not a dict of marks")
        return marks


def mark_table(app: AppT, name: str, *, retention_s: float, **kwargs: Any) -> MarkTable:
    """A MarkTable of `app`, as app.Table would add one, with a compact,delete changelog keeping
    `retention_s` seconds (marks past it are gone from Kafka as from the store's TTL)."""
    table = MarkTable(app, name=name, beacon=app.tables.beacon, **kwargs)
    table.changelog_topic = table._new_changelog_topic(retention=retention_s, compacting=True, deleting=True)
    app.tables.add(table)
    return table


class _ExplodedMessage:
    """What a store's apply_changelog_batch reads of a changelog message, for one exploded mark."""

    __slots__ = ("key", "offset", "partition", "tp", "value")

    def __init__(self, tp: TP, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        self.tp = tp
        self.partition = partition
        self.offset = offset  # the batch record's: the persisted offset moves past it
        self.key = key
        self.value = value


class _Exploded:
    """One mark of a batch record as a changelog event: raw bytes in `message` (RocksDB store),
    decoded key and value as `key` / `value` (in-memory store)."""

    __slots__ = ("key", "message", "value")

    def __init__(self, message: _ExplodedMessage, key: str, value: Any) -> None:
        self.message = message
        self.key = key
        self.value = value


def _chunks(marks: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`marks` whole when small (the usual case), else in parts of at most ~MAX_RECORD_BYTES."""
    size = 0
    chunk: dict[str, Any] = {}
    for event_id, value in marks.items():
        n = len(orjson.dumps([event_id, value])) + _ENTRY_OVERHEAD
        if chunk and size + n > MAX_RECORD_BYTES:
            yield chunk
            chunk, size = {}, 0
        chunk[event_id] = value
        size += n
    if chunk:
        yield chunk
