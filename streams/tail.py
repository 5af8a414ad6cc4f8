"""Following trigger topics as a person reads them: one line per trigger."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer
from rich.console import Console
from rich.markup import escape

from streams.config import Settings
from streams.kafka import ensure_reachable, quiet_logger

ACTION_STYLE = {"start": "bold green", "reorder": "green", "revise": "yellow", "cancel": "red"}


def format_trigger(trig: dict[str, Any]) -> str:
    """Rich markup for one trigger; tolerant of missing fields (factories may run older writers)."""
    when = time.strftime("%H:%M:%S", time.localtime(trig.get("emitted_ts", 0) / 1000))
    action = str(trig.get("action", "?"))
    style = ACTION_STYLE.get(action, "bold")
    niche = "/".join(str(v) for v in (trig.get("niche") or {}).values())
    fc = trig.get("forecast") or {}
    group = f" group {trig['group_id']}" if trig.get("group_id") else ""
    return (f"{when} [bold]{escape(str(trig.get('factory_id', '?')))}[/bold] [{style}]{action.upper()}[/{style}] "
            f"{trig.get('units', '?')} units of [cyan]{escape(niche)}[/cyan] ({trig.get('kind', '?')}{group}) "
            f"{trig.get('trigger_id', '?')} r{trig.get('revision', '?')} "
            f"p50 {fc.get('p50', '-')} p90 {fc.get('p90', '-')} over {fc.get('horizon_hours', '-')}h"
            f"\n         [dim]{escape(str(trig.get('reason', '')))}[/dim]")


def consumer(settings: Settings, topics: list[str]) -> Consumer:
    """A plain consumer that is not part of any worker: its own throwaway group, no commits."""
    c = Consumer({**settings.kafka_client_config(), "group.id": f"c2m-tail-{os.getpid()}-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "logger": quiet_logger()})
    c.subscribe(topics)
    return c


def follow(settings: Settings, topics: list[str], console: Console, since_ms: int = 0,
           stop: threading.Event | None = None,
           on_trigger: Callable[[dict[str, Any]], None] | None = None, show: bool = True) -> None:
    """Print triggers published at or after `since_ms` (0: the whole topic) until `stop` is set.

    Reading from the start and filtering by record timestamp, rather than starting at the end,
    means no trigger is missed while the consumer group is still being assigned. With show=False
    only `on_trigger` sees them (the demo's live view draws them itself).
    """
    ensure_reachable(settings)
    c = consumer(settings, topics)
    try:
        while stop is None or not stop.is_set():
            msg = c.poll(0.5)
            if msg is None or msg.error() or msg.timestamp()[1] < since_ms:
                continue
            try:
                trig = orjson.loads(msg.value())
            except orjson.JSONDecodeError:
                console.print(f"[red]unreadable record at {msg.topic()}/{msg.partition()}@{msg.offset()}[/red]")
                continue
            if on_trigger is not None:
                on_trigger(trig)
            if show:
                console.print(format_trigger(trig))
    finally:
        c.close()
