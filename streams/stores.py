"""RocksDB stores whose native memory is one bound for the whole worker process, not one per store.

Faust's rocksdb store gives every store (one per table partition: 26 in a worker) its own block
cache and memtables, so a worker's memory is the sum of 26 bounds, reached only when the quietest
store fills (hours: the soak saw RSS still rising after 10 minutes). As Kafka Streams'
BoundedMemoryRocksDBConfig does, every store of the process here uses one LRU block cache and one
WriteBufferManager charged to that cache: memtables, index and filter blocks and data blocks all
count against one budget (C2M_STORE_MEMORY_MB). The memtables' share fills with writes, in about a
minute under the soak's load; the rest fills with the blocks reads bring in, as fast as reads do.

The app selects it with `store=url(settings.store_memory_mb)` (scheme `c2m-rocksdb`); per-table
options (write buffer size, `ttl`) work as with Faust's store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust.stores
import rocksdict
from faust.exceptions import ImproperlyConfigured
from faust.stores.rocksdb import RocksDBOptions, Store
from faust.types import AppT, CollectionT
from yarl import URL

SCHEME = "c2m-rocksdb"
MiB = 1024 * 1024
# The write-buffer manager's limit, as a share of the budget: the memtables may take this much of
# the shared cache, the blocks reads bring in the rest (and the memtables' room while it is unused).
MEMTABLE_SHARE = 0.5
# A store's write buffer is at most this share of the write-buffer manager's limit. The manager can
# only flush the store being written to: were the limit filled by quiet stores (models between
# checkpoints, say), every write to a busy one would flush a near-empty memtable, a storm of tiny
# flushes on RocksDB's one flush thread. (The app's 8 MiB is this at the default 128 MiB budget.)
STORE_WRITE_BUFFER_SHARE = 1 / 8
# Memtables allocate in blocks of this (RocksDB's default: an eighth of the write buffer, 1 MiB for
# 8 MiB). Each store that holds unflushed writes holds at least one block, and the write-buffer
# manager cannot flush below that floor: 26 stores at 1 MiB overran a 16 MiB budget threefold,
# at 64 KiB they stay within it.
ARENA_BLOCK_BYTES = 64 * 1024
# Per-table options that would undo the shared bound: the cache is the process's, set by the budget.
SHARED_OPTIONS = frozenset({"block_cache_size", "block_cache_compressed_size"})
# RocksDB's own figures for the memory it holds outside Python (what RSS shows and tracemalloc not)
MEMTABLES = "rocksdb.cur-size-all-mem-tables"
TABLE_READERS = "rocksdb.estimate-table-readers-mem"
BLOCK_CACHE = "rocksdb.block-cache-usage"
KINDS = ("memtables", "table_readers", "block_cache")


@dataclass(frozen=True, eq=False)
class SharedMemory:
    """The one block cache and write-buffer manager every store of the process opens with."""

    budget: int  # bytes: the cache's capacity, which the memtables are charged to as well
    cache: rocksdict.Cache
    write_buffers: rocksdict.WriteBufferManager

    @classmethod
    def create(cls, budget: int) -> SharedMemory:
        cache = rocksdict.Cache(budget)
        # Charged to the cache, memtable memory takes room in it (dummy entries), so the cache's
        # capacity bounds both. No stall: a stalled write would block the event loop, every agent
        # with it, until a background flush ends; the limit is soft instead (a flush is triggered).
        write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            int(budget * MEMTABLE_SHARE), False, cache)
        return cls(budget, cache, write_buffers)

    def block_cache_usage(self) -> int:
        """Bytes of blocks in the cache, without the memtables' reservation in it (counted as memtables).

        RocksDB gives back a shrinking reservation lazily (once it is a quarter too large), so for
        a while after flushes this includes up to a third of the memtables' figure as slack."""
        return max(0, self.cache.get_usage() - self.write_buffers.get_usage())


_SHARED: dict[int, SharedMemory] = {}  # budget in bytes -> the process's shared memory for it


def shared_memory(budget: int) -> SharedMemory:
    """The process's SharedMemory for `budget` bytes, created on first use."""
    if budget not in _SHARED:
        _SHARED[budget] = SharedMemory.create(budget)
    return _SHARED[budget]


def url(memory_mb: int) -> str:
    """The store URL for faust.App(store=...): RocksDB stores sharing `memory_mb` MiB."""
    return f"{SCHEME}://?memory_mb={int(memory_mb)}"


def budget_of(store_url: str | URL) -> int:
    """The budget in bytes a store URL carries (?memory_mb=N)."""
    raw = URL(store_url).query.get("memory_mb")
    try:
        mb = int(raw or "")
    except ValueError:
        raise ImproperlyConfigured(f"store URL {store_url} needs ?memory_mb=<positive integer>") from None
    if mb <= 0:
        raise ImproperlyConfigured(f"store URL {store_url} needs ?memory_mb=<positive integer>")
    return mb * MiB


class BoundedOptions(RocksDBOptions):
    """Faust's options for one store, with the process's shared cache and write-buffer manager."""

    def __init__(self, memory: SharedMemory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.memory = memory
        cap = int(memory.write_buffers.get_buffer_size() * STORE_WRITE_BUFFER_SHARE)
        self.write_buffer_size = min(self.write_buffer_size, cap)

    def as_options(self) -> rocksdict.Options:
        options = super().as_options()  # Faust's: create_if_missing, open files, write buffers, ...
        # ... and a table factory with a cache of its own, replaced by one on the shared cache.
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        table.set_block_cache(self.memory.cache)
        # Index and filter blocks live in the cache too, so they count against the budget rather
        # than growing with the SST files beside it; L0's stay pinned, as every lookup reads them.
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self.memory.write_buffers)
        options.set_arena_block_size(min(self.write_buffer_size // 8, ARENA_BLOCK_BYTES))
        return options


class BoundedStore(Store):
    """Faust's RocksDB store (rocksdict) opening its databases with the process's SharedMemory."""

    def __init__(self, url: str | URL, app: AppT, table: CollectionT, **kwargs: Any) -> None:
        memory = shared_memory(budget_of(url))
        super().__init__(url, app, table, **kwargs)
        if not self.use_rocksdict:
            raise ImproperlyConfigured(f"{SCHEME}:// stores need rocksdict (table {self.table_name})")
        if shared := SHARED_OPTIONS & set(self.options):
            raise ImproperlyConfigured(f"table {self.table_name}: {', '.join(sorted(shared))} cannot be set per "
                                       "table: the block cache is shared (C2M_STORE_MEMORY_MB)")
        self.memory = memory
        self.rocksdb_options = BoundedOptions(memory, **self.options, use_rocksdict=True)
        if self.rocksdb_options.extra_options:
            # Faust keeps unknown options for python-rocksdb and ignores them under rocksdict: say so
            raise ImproperlyConfigured(f"table {self.table_name}: unknown RocksDB options "
                                       f"{', '.join(sorted(self.rocksdb_options.extra_options))}")


def memory_usage(stores: Iterable[object]) -> dict[str, int]:
    """Native memory of the stores by kind (KINDS), as c2m_store_memory_bytes reports it.

    Table readers are each database's own and add up. Stores on a SharedMemory count it once:
    every database on a shared cache reports all of it as its own, and the write-buffer manager
    counts memtable memory until it is freed (flushed memtables still referenced included), which
    the databases' own figure leaves out. Other stores (Faust's own) are summed database by database."""
    totals = dict.fromkeys(KINDS, 0)
    shared: dict[int, SharedMemory] = {}
    for store in stores:
        # Faust keeps a store's open databases (one per partition) in `_dbs`; it has no public view
        dbs: Mapping[int, rocksdict.Rdict] = getattr(store, "_dbs", {})
        memory = getattr(store, "memory", None)
        for db in dbs.values():
            totals["table_readers"] += db.property_int_value(TABLE_READERS) or 0
            if not isinstance(memory, SharedMemory):
                totals["memtables"] += db.property_int_value(MEMTABLES) or 0
                totals["block_cache"] += db.property_int_value(BLOCK_CACHE) or 0
        if dbs and isinstance(memory, SharedMemory):
            shared[id(memory)] = memory
    for m in shared.values():
        totals["memtables"] += m.write_buffers.get_usage()
        totals["block_cache"] += m.block_cache_usage()
    return totals


# Faust finds a store class by the URL's scheme in this registry (faust.stores.by_url).
faust.stores.STORES.aliases[SCHEME] = f"{__name__}:BoundedStore"
