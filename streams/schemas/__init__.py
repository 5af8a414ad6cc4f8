"""JSON Schema (draft 2020-12) files of the wire records, for upstream apps, factories and tests.

They describe the same contract as streams.records (tests/unit/streams/test_schemas.py keeps the
two in agreement); the few rules JSON Schema cannot express are named in each file's $comment.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

NAMES = ("clickstream", "order", "catalog", "factory-status", "trigger", "dead-letter")


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed schema `name` (one of NAMES); read once per process."""
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(NAMES)}")
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
