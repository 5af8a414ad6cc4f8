"""streams.marks: the dedupe table sees a mark at once and writes it to its store and its changelog
once per batch and partition; recovery (and standbys) explode a batch record into one entry per event id."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from faust.streams import _current_event
from faust.types import TP, Message

from streams import marks, stores
from tests.helpers import run_probe

APP_ID = "test-marks"
SOURCE = f"{APP_ID}-niche-events"
CHANGELOG = f"{APP_ID}-seen-changelog"
PARTITIONS = 4
JSON = faust.Schema(key_serializer="json", value_serializer="json")


def new_table(datadir: Path, store: str = "rocksdb://") -> marks.MarkTable:
    app = faust.App(APP_ID, store=store, datadir=str(datadir))
    return marks.mark_table(app, "seen", retention_s=7200, partitions=PARTITIONS, schema=JSON, options={"ttl": 7200})


@pytest.fixture(params=["rocksdb://", stores.url(16)], ids=["rocksdb", "c2m-rocksdb"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> marks.MarkTable:
    return new_table(tmp_path / "a", request.param)


def event(app: faust.App, partition: int, offset: int = 0) -> faust.Event:
    return faust.Event(app, b"niche", b"{}", {}, Message(SOURCE, partition, offset, 0.0, 0, {}, b"niche", b"{}", None))


@contextmanager
def acting_for(ev: faust.Event) -> Iterator[None]:
    """As streams.app.acting_for: the store reads and writes the current event's partition."""
    token = _current_event.set(weakref.ref(ev))
    try:
        yield
    finally:
        _current_event.reset(token)


class Sent:
    """A spy in place of Collection.send_changelog: what flush sends, encoded as the changelog holds it."""

    def __init__(self, table: marks.MarkTable) -> None:
        self.table = table
        self.calls: list[tuple[int, Any, Any]] = []

    def __call__(self, partition: int, key: Any, value: Any) -> None:
        self.calls.append((partition, key, value))

    def records(self, first_offset: int = 0) -> list[faust.Event]:
        """The sends as changelog events: json bytes, as Collection.send_changelog serializes them."""
        app = self.table.app
        out = []
        for i, (partition, key, value) in enumerate(self.calls):
            raw_key = app.serializers.dumps_key(None, key, serializer="json")
            raw_value = app.serializers.dumps_value(None, value, serializer="json")
            out.append(changelog_event(app, partition, first_offset + i, raw_key, raw_value))
        return out


def changelog_event(app: faust.App, partition: int, offset: int, key: bytes, value: bytes | None) -> faust.Event:
    msg = Message(CHANGELOG, partition, offset, 0.0, 0, {}, key, value, None)
    return faust.Event(app, key, value, {}, msg)


def spy(table: marks.MarkTable, monkeypatch: pytest.MonkeyPatch) -> Sent:
    sent = Sent(table)
    monkeypatch.setattr(table, "send_changelog", sent)
    return sent


def stored(table: marks.MarkTable, partition: int) -> dict[bytes, bytes]:
    """A partition database's entries as raw bytes, without Faust's persisted-offset key."""
    db = table.data._db_for_partition(partition)
    return {k: v for k, v in db.items() if k != table.data.offset_key}


def test_a_mark_is_visible_at_once_in_its_partition_only(table: marks.MarkTable,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sent = spy(table, monkeypatch)
    with acting_for(event(table.app, 1, 10)):
        assert table.first_seen("e1") is None
        table.mark("e1", ["c2m.clickstream/0@5", 1000])
        assert table.first_seen("e1") == ["c2m.clickstream/0@5", 1000]
    with acting_for(event(table.app, 1, 11)):  # a later row of the same batch
        assert table.first_seen("e1") == ["c2m.clickstream/0@5", 1000]
    with acting_for(event(table.app, 2, 10)):
        assert table.first_seen("e1") is None  # another partition's database
    assert sent.calls == []  # nothing goes to the changelog before flush
    assert stored(table, 1) == {}  # nor to the database: flush writes the batch's marks at once
    assert table.pending() == 1


def test_flush_stores_the_marks_as_a_table_write_would(table: marks.MarkTable, monkeypatch: pytest.MonkeyPatch) -> None:
    spy(table, monkeypatch)
    with acting_for(event(table.app, 2, 5)):
        table.mark("e1", ["c2m.orders/1@9", 7])
        table.mark("e2", ["c2m.orders/1@10", 8])
    table.flush()
    assert table.pending() == 0
    with acting_for(event(table.app, 2, 6)):  # read back through Faust's own table path
        assert table["e1"] == ["c2m.orders/1@9", 7]
        assert table.first_seen("e2") == ["c2m.orders/1@10", 8]
    store = table.data
    assert stored(table, 2) == {store._encode_key(k): store._encode_value(v)
                                for k, v in {"e1": ["c2m.orders/1@9", 7], "e2": ["c2m.orders/1@10", 8]}.items()}
    assert all(stored(table, p) == {} for p in (0, 1, 3))


def test_flush_sends_one_record_per_partition_with_all_its_marks(table: marks.MarkTable,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sent = spy(table, monkeypatch)
    for offset in range(100):
        partition = offset % 3
        with acting_for(event(table.app, partition, 1000 + offset)):
            table.mark(f"e{offset}", [f"c2m.orders/{partition}@{offset}", 7])
    assert table.flush() == 3
    assert sorted(p for p, _, _ in sent.calls) == [0, 1, 2]
    for partition, key, value in sent.calls:
        assert value == {f"e{o}": [f"c2m.orders/{partition}@{o}", 7] for o in range(partition, 100, 3)}
        tag, offset, token = key
        assert tag == marks.BATCH_TAG
        assert offset == max(1000 + o for o in range(partition, 100, 3))  # the batch's highest offset
        assert isinstance(token, str)
    assert table.pending() == 0
    assert table.flush() == 0  # nothing pending: nothing sent
    assert len(sent.calls) == 3


def test_every_flush_has_a_key_of_its_own_even_for_the_same_offsets(table: marks.MarkTable,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay of the same messages must not reuse a key: compaction would keep only the replay's
    record, which holds only the marks missing locally."""
    sent = spy(table, monkeypatch)
    for i in range(3):
        with acting_for(event(table.app, 0, 42)):
            table.mark(f"e{i}", ["x@1", 1])
        table.flush()
    keys = [orjson.dumps(k) for _, k, _ in sent.calls]
    assert len(set(keys)) == 3
    assert all(k[1] == 42 for _, k, _ in sent.calls)


def test_flush_goes_through_collection_send_changelog(table: marks.MarkTable, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Collection.send_changelog, so delivery records the persisted offset as for a table write."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(table.changelog_topic, "send_soon", lambda **kw: calls.append(kw))
    with acting_for(event(table.app, 3, 9)):
        table.mark("e1", ["x@1", 1])
        table.mark("e2", ["x@2", 1])
    table.flush()
    assert len(calls) == 1
    assert calls[0]["partition"] == 3
    assert calls[0]["value"] == {"e1": ["x@1", 1], "e2": ["x@2", 1]}
    assert calls[0]["callback"] == table._on_changelog_sent


def test_a_large_batch_is_split_below_the_record_limit(table: marks.MarkTable, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = spy(table, monkeypatch)
    ids = [f"{i:06d}-" + "x" * 250 for i in range(3000)]  # ids up to streams.records.MAX_ID_LEN
    with acting_for(event(table.app, 0, 5)):
        for event_id in ids:
            table.mark(event_id, ["c2m.clickstream/11@123456789", 1_700_000_000_000])
    n = table.flush()
    assert n == len(sent.calls) > 1
    merged: dict[str, Any] = {}
    for partition, _, value in sent.calls:
        assert partition == 0
        assert len(table.app.serializers.dumps_value(None, value, serializer="json")) <= marks.MAX_RECORD_BYTES
        merged.update(value)
    assert list(merged) == ids
    assert len({orjson.dumps(k) for _, k, _ in sent.calls}) == n


def test_recovery_explodes_a_batch_record_as_the_live_writes_stored_it(
        table: marks.MarkTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = spy(table, monkeypatch)
    for offset in range(40):
        with acting_for(event(table.app, offset % 2, offset)):
            table.mark(f"e{offset}-é", [f"c2m.clickstream/{offset % 5}@{offset}", 1000 + offset])
    table.flush()
    other = new_table(tmp_path / "b")  # another worker, recovering from the changelog
    other.apply_changelog_batch(sent.records(first_offset=7))
    for partition in (0, 1):
        assert stored(other, partition) == stored(table, partition)  # byte for byte
        assert len(stored(other, partition)) == 20  # no entry for the batch key
        with acting_for(event(other.app, partition)):
            for offset in range(partition, 40, 2):
                assert other.first_seen(f"e{offset}-é") == [f"c2m.clickstream/{offset % 5}@{offset}", 1000 + offset]
    assert other.persisted_offset(TP(CHANGELOG, 0)) == 7
    assert other.persisted_offset(TP(CHANGELOG, 1)) == 8


def test_recovery_still_applies_per_id_records_in_changelog_order(tmp_path: Path) -> None:
    """Records of an older version (one per id) and batch records, interleaved: the later wins."""
    table = new_table(tmp_path)
    app = table.app

    def key(k: Any) -> bytes:
        return app.serializers.dumps_key(None, k, serializer="json")

    def value(v: Any) -> bytes:
        return app.serializers.dumps_value(None, v, serializer="json")

    batch = [
        changelog_event(app, 2, 0, key("old"), value(["c2m.orders/1@1", 10])),
        changelog_event(app, 2, 1, key("both"), value(["c2m.orders/1@2", 11])),
        changelog_event(app, 2, 2, key([marks.BATCH_TAG, 99, "t-0"]),
                        value({"new": ["c2m.orders/1@3", 12], "both": ["c2m.orders/1@4", 13], "gone": ["x@1", 1]})),
        changelog_event(app, 2, 3, key("gone"), None),  # a tombstone still deletes
        changelog_event(app, 2, 4, key("old2"), value(["c2m.orders/1@5", 14])),
    ]
    table.apply_changelog_batch(batch)
    with acting_for(event(app, 2)):
        assert table.first_seen("old") == ["c2m.orders/1@1", 10]
        assert table.first_seen("both") == ["c2m.orders/1@4", 13]
        assert table.first_seen("new") == ["c2m.orders/1@3", 12]
        assert table.first_seen("old2") == ["c2m.orders/1@5", 14]
        assert table.first_seen("gone") is None
    assert len(stored(table, 2)) == 4
    assert table.persisted_offset(TP(CHANGELOG, 2)) == 4
    # a later batch record overrides a per-id one, too
    table.apply_changelog_batch([changelog_event(app, 2, 5, key([marks.BATCH_TAG, 100, "t-1"]),
                                                 value({"old": ["c2m.orders/1@6", 15]}))])
    with acting_for(event(app, 2)):
        assert table.first_seen("old") == ["c2m.orders/1@6", 15]
    assert table.persisted_offset(TP(CHANGELOG, 2)) == 5


def test_an_event_id_that_looks_like_a_batch_key_is_an_ordinary_id(tmp_path: Path) -> None:
    """Event ids are any string: one spelled like a batch key is still a JSON string key."""
    table = new_table(tmp_path)
    app = table.app
    tricky = '["c2m.marks",1,"t"]'
    raw_key = app.serializers.dumps_key(None, tricky, serializer="json")
    table.apply_changelog_batch([changelog_event(app, 0, 0, raw_key, b'["x@1",1]')])
    with acting_for(event(app, 0)):
        assert table.first_seen(tricky) == ["x@1", 1]


def test_the_memory_store_works_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = new_table(tmp_path / "a", "memory://")
    sent = spy(table, monkeypatch)
    with acting_for(event(table.app, 1, 3)):
        table.mark("e1", ["x@1", 1])
        assert table.first_seen("e1") == ["x@1", 1]
    table.flush()
    assert dict(table.data) == {"e1": ["x@1", 1]}
    other = new_table(tmp_path / "b", "memory://")
    other.apply_changelog_batch(sent.records())
    with acting_for(event(other.app, 1)):
        assert other.first_seen("e1") == ["x@1", 1]
    assert "e1" in other.data and len(other.data) == 1


def test_mark_outside_a_stream_is_refused(table: marks.MarkTable) -> None:
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table.mark("e1", ["x@1", 1])


def test_the_worker_app_dedupes_with_a_mark_table() -> None:
    """streams.app's seen table: a MarkTable with the RocksDB TTL and a compact,delete changelog of
    twice the dedupe window (in a fresh interpreter: the module reads the environment at import)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("C2M_")}, "C2M_DEDUPE_WINDOW_SECONDS": "600"}
    probe = (
        "import orjson\n"
        "from streams import app as a\n"
        "t = a.seen_table\n"
        "spec = next(s for s in a.internal_topic_specs() if s.name == t.changelog_topic.get_topic_name())\n"
        "print(orjson.dumps({'type': type(t).__name__, 'ttl': t.options.get('ttl'), 'config': spec.config,\n"
        "                    'registered': a.app.tables['seen'] is t}).decode())\n"
    )
    got = run_probe(probe, env)
    assert got == {"type": "MarkTable", "ttl": 1200, "registered": True,
                   "config": {"cleanup.policy": "compact,delete", "retention.ms": "1200000"}}
