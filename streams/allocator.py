"""glibc malloc: the free pages the worker's heap holds, handed back to the OS on a timer.

Why: glibc returns freed memory to the OS only from the top of a heap. Everything the event loop
thread allocates comes from the main heap: Python's larger objects, and through rocksdict the
stores' memtable blocks and cache blocks, which churn all the time (memtables flushed every few
seconds, cache blocks evicted). Freed chunks below live ones stay resident. In the soak (32 MiB
of stores, 1,700 events/s) malloc_stats showed the main heap at 134 MB with 85 MB in use; it
grew from 55 to 125 MiB of RSS in 10 minutes while the stores stayed within their bound, and the
other 16 arenas (librdkafka's, RocksDB's and the executor's threads) held 15 MiB between them,
so capping arenas would not help. malloc_trim(0) gives back the free pages inside every heap.

Where malloc is not glibc's (macOS, musl, jemalloc preloaded), every function here does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
from typing import Any

# How often the worker hands free heap pages back (a Faust timer). Between trims the heap's free
# pages fill again as it allocates (~25 MiB a minute in the soak, a sawtooth on RSS); a trim takes
# milliseconds off the event loop, so trimming often keeps the sawtooth to a few MiB.
TRIM_EVERY_S = 5.0


def glibc_malloc(lib: Any = None) -> Any | None:
    """The C library whose malloc serves this process, if it is glibc's; None otherwise.

    `lib` stands in for the process's symbols (tests). jemalloc preloaded replaces malloc but
    not malloc_trim, which would then walk arenas nobody allocates from: skip it."""
    if lib is None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            lib = ctypes.CDLL(None)
        except OSError:
            return None
    if not all(hasattr(lib, name) for name in ("gnu_get_libc_version", "malloc_trim")):
        return None  # not glibc (musl has no gnu_get_libc_version)
    if hasattr(lib, "mallctl") or hasattr(lib, "je_mallctl"):
        return None  # jemalloc is the allocator
    return lib


def trim(lib: Any = None) -> bool:
    """Hand free heap pages of every arena back to the OS (malloc_trim(0)); True if any were.
    ctypes releases the GIL for the call, so it can run in an executor thread."""
    libc = glibc_malloc(lib)
    return libc is not None and libc.malloc_trim(0) == 1


async def trim_off_loop() -> bool:
    """trim() on the default executor: the walk over the arenas takes milliseconds, and ctypes
    releases the GIL for it, so the event loop keeps running meanwhile. The worker's trim timer;
    it takes no arguments, as Faust hands the app to a timer whose signature has any."""
    return await asyncio.get_running_loop().run_in_executor(None, trim)
