"""`c2m simulate` on a terminal: a progress bar when the run has a known length, a spinner otherwise.

Publishing runs in a thread so the bar moves with the clock (the simulator paces events in real
time, so elapsed time is the progress) and Ctrl-C in the main thread can stop it cleanly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from streams import simulate as sim
from streams.config import Settings
from streams.simulator import SimEvent

TICK_S = 0.2


def publish(settings: Settings, events: Iterable[SimEvent], duration: float | None, console: Console,
            stop: threading.Event) -> int:
    """Publish `events` (see simulate.publish) while showing progress; returns how many were sent."""
    if duration is None:
        with console.status("publishing") as status:
            return sim.publish(settings, events, stop,
                               on_sent=lambda k: status.update(f"published {k} events to {settings.bootstrap}"))
    sent = 0

    def counted() -> Iterator[SimEvent]:
        nonlocal sent
        for ev in events:
            yield ev
            sent += 1

    result: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            result.append(sim.publish(settings, counted(), stop))
        except BaseException as exc:  # handed to the main thread, which raises it
            failed.append(exc)

    columns = (SpinnerColumn(), TextColumn("[bold]publishing[/bold]"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn(f"of {duration:g} s"),
               TextColumn("{task.fields[sent]:,} events · {task.fields[rate]:,.0f}/s"))
    publisher = threading.Thread(target=run, name="publisher", daemon=True)
    start = time.monotonic()
    publisher.start()
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("publish", total=duration, sent=0, rate=0.0)
            while publisher.is_alive():
                publisher.join(TICK_S)
                elapsed = time.monotonic() - start
                progress.update(task, completed=min(elapsed, duration), sent=sent,
                                rate=sent / elapsed if elapsed > 0 else 0.0)
    except KeyboardInterrupt:
        stop.set()
        publisher.join(15)
        raise
    if failed:
        raise failed[0]
    return result[0]
