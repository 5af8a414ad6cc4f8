"""`c2m simulate`'s progress bar, with publishing faked: counts, errors and Ctrl-C reach the caller."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from rich.console import Console

from streams import progress
from streams import simulate as sim
from streams.config import Settings
from streams.errors import UserError
from streams.simulator import SimEvent

EVENTS = [SimEvent(i * 0.01, "c2m.clickstream", "u", {"i": i}) for i in range(30)]


def fake_publish(settings: Settings, events: Iterable[SimEvent], stop: threading.Event | None = None,
                 on_sent: Any = None) -> int:
    n = 0
    for _ in events:
        if stop is not None and stop.is_set():
            break
        time.sleep(0.01)
        n += 1
    return n


def console() -> Console:
    return Console(record=True, file=io.StringIO(), force_terminal=True, width=120, color_system=None)


def test_bar_counts_what_was_published(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "publish", fake_publish)
    out = console()
    assert progress.publish(Settings(), EVENTS, 0.3, out, threading.Event()) == 30
    text = out.export_text()
    assert "publishing" in text and "30 events" in text and "of 0.3 s" in text


def test_without_duration_a_spinner_and_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "publish", fake_publish)
    assert progress.publish(Settings(), EVENTS, None, console(), threading.Event()) == 30


def test_a_publishing_error_is_raised_in_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> int:
        raise UserError("publishing to x failed: boom")

    monkeypatch.setattr(sim, "publish", broken)
    with pytest.raises(UserError, match="boom"):
        progress.publish(Settings(), EVENTS, 1.0, console(), threading.Event())
