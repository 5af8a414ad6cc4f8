"""streams.stores: every RocksDB store of a worker shares one block cache and one write-buffer
manager, so their native memory stays within one budget however many stores there are."""

from __future__ import annotations

import os
import random
from pathlib import Path

import faust
import faust.stores
import pytest
import rocksdict
from faust.exceptions import ImproperlyConfigured

from streams import stores
from streams.config import Settings
from streams.errors import UserError

MiB = stores.MiB
WRITE_BUFFER = 8 * MiB  # what the app gives each store (streams.app.STORE_OPTIONS)


def app_with(tmp_path: Path, memory_mb: int) -> faust.App:
    return faust.App(f"test-stores-{memory_mb}", store=stores.url(memory_mb), datadir=str(tmp_path))


def options_file(store: stores.BoundedStore, partition: int) -> str:
    """The options RocksDB opened a database with, as it wrote them next to its files."""
    path = store.partition_path(partition)
    return "".join(p.read_text() for p in path.glob("OPTIONS-*"))


def total(usage: dict[str, int]) -> int:
    return sum(usage.values())


def test_the_url_scheme_resolves_to_the_bounded_store() -> None:
    assert faust.stores.by_url(stores.url(64)) is stores.BoundedStore
    assert stores.budget_of(stores.url(64)) == 64 * MiB


@pytest.mark.parametrize("bad", ["c2m-rocksdb://", "c2m-rocksdb://?memory_mb=x", "c2m-rocksdb://?memory_mb=0"])
def test_a_store_url_without_a_budget_is_refused(bad: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="memory_mb"):
        stores.budget_of(bad)


def test_stores_of_an_app_share_one_cache_and_write_buffer_manager(tmp_path: Path) -> None:
    app = app_with(tmp_path, 32)
    a = app.Table("a", partitions=2, options={"write_buffer_size": WRITE_BUFFER})
    b = app.Table("b", partitions=2, options={"ttl": 60})
    store_a, store_b = a.data, b.data
    assert isinstance(store_a, stores.BoundedStore) and isinstance(store_b, stores.BoundedStore)
    assert store_a.memory is store_b.memory is stores.shared_memory(32 * MiB)
    db_a, db_b = store_a._db_for_partition(0), store_b._db_for_partition(1)
    for i in range(20_000):
        db_a[f"k{i:08d}".encode()] = os.urandom(100)
    db_a.flush()
    assert all(db_a[f"k{i:08d}".encode()] for i in range(0, 20_000, 7))
    # b never read a block, yet its cache holds a's: it is the same cache
    usage = store_a.memory.cache.get_usage()
    assert usage > 0
    assert db_b.property_int_value(stores.BLOCK_CACHE) == db_a.property_int_value(stores.BLOCK_CACHE) == usage


def test_per_table_options_still_apply(tmp_path: Path) -> None:
    app = app_with(tmp_path, 32)  # memtables: 16 MiB together, at most 2 MiB a store
    a = app.Table("a", partitions=1, options={"write_buffer_size": MiB})
    seen = app.Table("seen", partitions=1, options={"write_buffer_size": WRITE_BUFFER, "ttl": 3600})
    a.data._db_for_partition(0)
    seen.data._db_for_partition(0)
    opened_a, opened_seen = options_file(a.data, 0), options_file(seen.data, 0)
    assert f"write_buffer_size={MiB}\n" in opened_a
    assert f"write_buffer_size={2 * MiB}\n" in opened_seen  # capped: see STORE_WRITE_BUFFER_SHARE
    assert "ttl=3600;" in opened_seen  # the TTL compaction filter Faust's `ttl` option sets up
    assert "TtlCompactionFilterFactory" not in opened_a
    for opened in (opened_a, opened_seen):
        assert "cache_index_and_filter_blocks=true" in opened
        assert f"arena_block_size={stores.ARENA_BLOCK_BYTES}\n" in opened


@pytest.mark.parametrize("options", [{"block_cache_size": 32 * MiB}, {"write_bufer_size": MiB}])
def test_options_the_shared_bound_would_ignore_are_refused(tmp_path: Path, options: dict[str, int]) -> None:
    table = app_with(tmp_path, 32).Table("a", partitions=1, options=options)
    with pytest.raises(ImproperlyConfigured, match="table a"):
        table.data  # noqa: B018 (the store is built on first access)


def test_writes_to_many_stores_stay_within_the_budget(tmp_path: Path) -> None:
    """26 stores, as a worker has, each with 8 MiB write buffers: unbounded, the ~45 MiB written
    here would sit in their memtables; bounded, memtables and cache stay within 16 MiB."""
    budget_mb = 16
    app = app_with(tmp_path, budget_mb)
    tables = [app.Table(f"t{i}", partitions=2, options={"write_buffer_size": WRITE_BUFFER}) for i in range(13)]
    store_list = [t.data for t in tables]
    dbs: list[rocksdict.Rdict] = [s._db_for_partition(p) for s in store_list for p in (0, 1)]
    cache = stores.shared_memory(budget_mb * MiB).cache
    rnd = random.Random(7)
    memtables, in_cache = [], []
    for round_ in range(6):
        for i in range(60_000):
            dbs[rnd.randrange(len(dbs))][f"r{round_}-{i}".encode()] = rnd.randbytes(120)
        for i in range(0, 60_000, 5):
            dbs[rnd.randrange(len(dbs))].get(f"r{round_}-{i}".encode())
        # RocksDB's own figures, database by database: not streams.stores' accounting
        memtables.append(sum(db.property_int_value(stores.MEMTABLES) for db in dbs))
        in_cache.append(cache.get_usage())  # blocks, index and filters, and the memtables' charge
    # the limits are soft (no write stalls): a flush in progress may overshoot them briefly
    assert max(memtables) <= budget_mb * MiB * stores.MEMTABLE_SHARE * 1.15
    assert max(in_cache) > budget_mb * MiB // 2  # the budget was used, so this is a test of the bound
    assert max(in_cache) <= budget_mb * MiB * 1.15
    assert total(stores.memory_usage(store_list)) <= budget_mb * MiB * 1.15


def test_memory_usage_counts_the_shared_cache_once(tmp_path: Path) -> None:
    app = app_with(tmp_path, 24)
    store_list = [app.Table(f"t{i}", partitions=3).data for i in range(4)]
    dbs = [s._db_for_partition(p) for s in store_list for p in range(3)]
    for i in range(30_000):
        dbs[i % len(dbs)][f"k{i}".encode()] = os.urandom(100)
    usage = stores.memory_usage(store_list)
    memory = stores.shared_memory(24 * MiB)
    assert usage["memtables"] == memory.write_buffers.get_usage() > 0
    # memtables are charged to the cache, so together they are the cache (not 12 times it)
    assert usage["memtables"] + usage["block_cache"] == pytest.approx(memory.cache.get_usage(), rel=0.02)
    assert usage["table_readers"] >= 0
    assert stores.memory_usage([]) == dict.fromkeys(stores.KINDS, 0)


def test_store_memory_setting() -> None:
    assert Settings.from_env({}).store_memory_mb == 128
    assert Settings.from_env({"C2M_STORE_MEMORY_MB": "512"}).store_memory_mb == 512
    with pytest.raises(UserError, match="C2M_STORE_MEMORY_MB must be an integer"):
        Settings.from_env({"C2M_STORE_MEMORY_MB": "1GB"})
    with pytest.raises(UserError, match="C2M_STORE_MEMORY_MB must be at least 16"):
        Settings.from_env({"C2M_STORE_MEMORY_MB": "8"})
