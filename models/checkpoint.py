"""Model checkpoints as bytes for a changelogged table: versioned, and loaded without trusting them.

A checkpoint is `MAGIC | header length | JSON header | pickle`. The header carries the River
version: River pickles do not load (or load wrongly) across versions, so a mismatch is refused
before a single byte is unpickled. The pickle is read by an unpickler that resolves only the
classes our model state is made of (an allowlist of module/name pairs, River classes by module
prefix), so a table written by someone hostile cannot make the worker call `os.system` or
`builtins.getattr`.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import orjson
import river

MAGIC = b"C2MCKPT"
FORMAT = 2  # 2: conversion levels, order-count drift with attribute groups, tracked calibration
_LEN = struct.Struct(">I")

# River state classes live in these modules; functions are never admitted, only classes.
_RIVER_PREFIXES = ("river.linear_model.", "river.optim.", "river.stats.", "river.drift.", "river.metrics.",
                   "river._river_rust.", "river.utils.")
_ALLOWED = frozenset({
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "float"), ("builtins", "int"), ("builtins", "bool"),
    ("builtins", "str"), ("builtins", "bytes"),
    ("collections", "OrderedDict"), ("collections", "deque"), ("collections", "defaultdict"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    # the engine's own state classes
    ("models.engine", "NicheState"), ("models.engine", "PooledState"), ("models.engine", "EngineConfig"),
    ("models.forecaster", "PooledForecaster"), ("models.forecaster", "Calibrator"),
    ("models.forecaster", "AdaGrad"), ("models.forecaster", "LinearRegression"), ("models.drift", "Cusum"),
    ("models.drift", "Groups"),
})


class CheckpointError(ValueError):
    """A checkpoint that must not be loaded: foreign, corrupt, another River version, or hostile."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module.startswith(_RIVER_PREFIXES):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which a model checkpoint never contains")


def dumps(state: Any, kind: str) -> bytes:
    header = orjson.dumps({"format": FORMAT, "kind": kind, "river": river.__version__})
    return MAGIC + _LEN.pack(len(header)) + header + pickle.dumps(state, protocol=5)


def read_header(blob: bytes) -> tuple[dict[str, Any], int]:
    """The header and the offset where the pickle starts; raises CheckpointError when malformed."""
    if not isinstance(blob, bytes | bytearray | memoryview) or bytes(blob[:len(MAGIC)]) != MAGIC:
        raise CheckpointError("not a c2m model checkpoint")
    start = len(MAGIC) + _LEN.size
    if len(blob) < start:
        raise CheckpointError("truncated checkpoint")
    (size,) = _LEN.unpack(bytes(blob[len(MAGIC):start]))
    try:
        header = orjson.loads(bytes(blob[start:start + size]))
    except orjson.JSONDecodeError:
        raise CheckpointError("checkpoint header is not JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError("checkpoint header is not an object")
    return header, start + size


def loads(blob: bytes, kind: str, expected_type: type | None = None) -> Any:
    """Load a checkpoint of `kind` written by this River version; nothing else gets unpickled."""
    header, offset = read_header(blob)
    if header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint format {header.get('format')!r}, this worker reads {FORMAT}")
    if header.get("kind") != kind:
        raise CheckpointError(f"checkpoint holds {header.get('kind')!r}, expected {kind!r}")
    if header.get("river") != river.__version__:
        raise CheckpointError(f"checkpoint written with river {header.get('river')}, this worker runs "
                              f"{river.__version__}: River pickles do not load across versions")
    try:
        state = _RestrictedUnpickler(io.BytesIO(bytes(blob[offset:]))).load()
    except CheckpointError:
        raise
    except Exception as exc:  # a corrupt pickle raises anything from EOFError to TypeError
        raise CheckpointError(f"corrupt checkpoint: {exc.__class__.__name__}: {exc}") from None
    if expected_type is not None and not isinstance(state, expected_type):
        raise CheckpointError(f"checkpoint holds a {type(state).__name__}, expected {expected_type.__name__}")
    return state
