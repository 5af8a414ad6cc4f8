"""streams.allocator: glibc's malloc is trimmed, off the event loop; every other allocator is left alone."""

from __future__ import annotations

import ctypes
import inspect
import platform
import threading
from pathlib import Path
from typing import Any

import pytest

from streams import allocator
from tests.helpers import unavailable


class FakeLibc:
    """The symbols of a C library, recording the malloc calls made through them."""

    def __init__(self, *names: str) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in names:
            setattr(self, name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def call(*args: Any) -> int:
            self.calls.append((name, args))
            return 1
        return call


GLIBC = ("gnu_get_libc_version", "malloc_trim")


def test_glibc_is_trimmed() -> None:
    libc = FakeLibc(*GLIBC)
    assert allocator.glibc_malloc(libc) is libc
    assert allocator.trim(lib=libc)
    assert libc.calls == [("malloc_trim", (0,))]


@pytest.mark.parametrize("names", [
    ("malloc_trim",),  # musl-like: no gnu_get_libc_version
    (*GLIBC, "mallctl"),  # jemalloc preloaded over glibc
    (*GLIBC, "je_mallctl"),
    ("gnu_get_libc_version",),  # no malloc_trim
])
def test_other_allocators_are_left_alone(names: tuple[str, ...]) -> None:
    libc = FakeLibc(*names)
    assert allocator.glibc_malloc(libc) is None
    assert not allocator.trim(lib=libc)
    assert libc.calls == []


def test_nothing_to_give_back_is_not_an_error() -> None:
    libc = FakeLibc(*GLIBC)
    libc.malloc_trim = lambda pad: 0  # type: ignore[attr-defined]  # glibc: no memory was released
    assert not allocator.trim(lib=libc)


async def test_the_timer_trims_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    monkeypatch.setattr(allocator, "trim", lambda: threads.append(threading.current_thread()) or True)
    assert await allocator.trim_off_loop()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


def test_the_timer_takes_no_arguments() -> None:
    """Faust calls a timer with the app when its signature has any parameter (inspect.signature
    through the timer's wrapper): a `lib=None` there would make every tick trim the app, silently."""
    assert not inspect.signature(allocator.trim_off_loop).parameters


def test_the_real_glibc_gives_freed_memory_back() -> None:
    """64 MiB in 16 KiB chunks (under the mmap threshold: from the heap), every other one freed, so
    no free space is at the heap's top: only a trim returns it."""
    if platform.libc_ver()[0] != "glibc":
        unavailable("glibc only")
    libc = allocator.glibc_malloc()
    assert libc is not None
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(16384) for _ in range(4096)]
    for c in chunks:
        ctypes.memset(c, 1, 16384)  # resident
    for c in chunks[::2]:
        libc.free(c)
    before = vmrss()
    assert allocator.trim()
    assert before - vmrss() > 16 * 2**20  # of the 32 MiB freed
    for c in chunks[1::2]:
        libc.free(c)


def vmrss() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) * 1024
