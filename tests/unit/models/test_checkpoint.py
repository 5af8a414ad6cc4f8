"""Checkpoints: versioned, and never trusted -- a hostile pickle is refused before it runs."""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

import numpy as np
import orjson
import pytest
import river

from models import checkpoint
from models.checkpoint import MAGIC, CheckpointError


def blob_with(header: dict[str, Any], payload: Any) -> bytes:
    raw = orjson.dumps(header)
    return MAGIC + struct.pack(">I", len(raw)) + raw + pickle.dumps(payload, protocol=5)


def header(**over: Any) -> dict[str, Any]:
    return {"format": checkpoint.FORMAT, "kind": "k", "river": river.__version__, **over}


class Shell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


class Getattr:
    """getattr reaches anything from an admitted object (a class's __init__.__globals__...)."""

    def __reduce__(self) -> tuple[Any, tuple[Any, str]]:
        return (getattr, ("text", "upper"))


def test_round_trip_keeps_numpy_and_river_state() -> None:
    from river import linear_model

    model = linear_model.LinearRegression()
    model.learn_one({"x": 1.0}, 2.0)
    state = {"rings": np.arange(6, dtype=np.float16).reshape(2, 3), "model": model}
    back = checkpoint.loads(checkpoint.dumps(state, "k"), "k")
    assert np.array_equal(back["rings"], state["rings"]) and back["rings"].dtype == np.float16
    assert back["model"].predict_one({"x": 1.0}) == model.predict_one({"x": 1.0})


def test_a_pickle_that_would_run_a_shell_command_is_refused(tmp_path: Any) -> None:
    marker = tmp_path / "owned"
    blob = checkpoint.dumps(Shell(f"touch {marker}"), "k")
    with pytest.raises(CheckpointError, match=r"system.*never contains"):
        checkpoint.loads(blob, "k")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [Getattr(), eval, os.getenv, pickle.loads])
def test_functions_and_getattr_are_refused(payload: Any) -> None:
    with pytest.raises(CheckpointError, match="never contains"):
        checkpoint.loads(checkpoint.dumps(payload, "k"), "k")


def test_another_river_version_is_refused_before_anything_is_unpickled(tmp_path: Any) -> None:
    marker = tmp_path / "owned"
    blob = blob_with(header(river="0.21.0"), Shell(f"touch {marker}"))
    with pytest.raises(CheckpointError, match=r"river 0\.21\.0.*do not load across versions"):
        checkpoint.loads(blob, "k")
    assert not marker.exists()


@pytest.mark.parametrize(("blob", "match"), [
    (b"", "not a c2m model checkpoint"),
    (b"PK\x03\x04zipfile", "not a c2m model checkpoint"),
    (MAGIC + b"\x00", "truncated"),
    (MAGIC + struct.pack(">I", 3) + b"{x}", "header is not JSON"),
    (blob_with(header(format=99), 1), "format 99"),
    (blob_with(header(kind="other"), 1), "holds 'other'"),
    (blob_with(header(), 1)[:-3], "corrupt checkpoint"),
])
def test_malformed_checkpoints_are_refused_with_a_reason(blob: bytes, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        checkpoint.loads(blob, "k")


def test_the_expected_type_is_enforced() -> None:
    with pytest.raises(CheckpointError, match="holds a dict"):
        checkpoint.loads(checkpoint.dumps({"a": 1}, "k"), "k", expected_type=list)
