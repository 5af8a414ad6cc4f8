"""`c2m demo`: broker, topics, worker and simulator in one command, watched live; everything it starts, it stops.

On a terminal the view is a rich Live screen redrawn twice a second from the worker's /metrics and the
trigger topics; piped or captured, it is plain lines (each trigger, a status line every 10 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams import admin, simulator, tail, topology
from streams.config import REPO_ROOT, Settings, cache_dir
from streams.errors import UserError
from streams.simulate import publish
from streams.workers import WorkerProcess

SECONDS_PER_HOUR = 0.5  # the example factories' clock: a 48 h lead time takes 24 s


def run(duration: float | None, rate: float, port: int, console: Console, scenario: str = "surge") -> int:
    env = dict(os.environ)
    started_broker = False
    worker: WorkerProcess | None = None
    factories: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    run_id = uuid.uuid4().hex[:8]
    state_dir = cache_dir() / "demo" / run_id
    try:
        if not env.get("C2M_KAFKA_BOOTSTRAP"):
            from streams import broker

            broker.ensure_jars(progress=lambda line: console.print(f"[dim]{line}[/dim]"))
            started_broker = not broker.status(port=port).running
            with console.status(f"starting Kafka on 127.0.0.1:{port}"):
                env["C2M_KAFKA_BOOTSTRAP"] = broker.start(port=port).bootstrap
            console.print(f"broker: {env['C2M_KAFKA_BOOTSTRAP']}" + ("" if started_broker else " (already running)"))
        settings = Settings.from_env(env)
        topo = topology.load(settings.topics_file)
        console.print(admin.render(admin.apply(settings, topo), dry_run=False))

        env.update(C2M_APP_ID=f"c2m-demo-{run_id}", C2M_DATA_DIR=str(state_dir),
                   C2M_AUTO_OFFSET_RESET="latest")
        # a 10 s bucket stands for an hour: forecasts move within the demo's minute or two
        env.setdefault("C2M_BUCKET_SECONDS", "10")
        worker = WorkerProcess(env, state_dir).start()
        factories = [_factory(env, f.id, state_dir) for f in topo.factories]
        with console.status("waiting for the worker to own its partitions"):
            worker.wait_ready()
        base = f"http://{settings.api_host}:{settings.api_port}"
        console.print(f"worker ready (dashboard {base}/, metrics {base}/metrics); "
                      f"simulating {rate:g} events/s" + (f" for {duration:g} s" if duration else ", Ctrl-C to stop"))

        niches = simulator.scenario(scenario)
        failures: list[str] = []

        def simulate() -> None:
            try:
                publish(settings, simulator.generate(niches, rate, duration, seed=int(time.time()),
                                                     start_ms=int(time.time() * 1000)), stop)
            except UserError as exc:
                failures.append(str(exc))
                stop.set()

        seen: list[dict[str, Any]] = []
        since_ms = int(time.time() * 1000)
        live = console.is_terminal

        def follow() -> None:
            try:
                tail.follow(settings, [topology.trigger_topic(f.id) for f in topo.factories], console,
                            since_ms=since_ms, stop=stop, on_trigger=seen.append, show=not live)
            except UserError as exc:
                failures.append(str(exc))
                stop.set()
            except Exception as exc:  # a dead follower would leave the demo silently trigger-less
                failures.append(f"following the trigger topics failed: {exc}")
                stop.set()

        follower = threading.Thread(target=follow, name="triggers", daemon=True)
        follower.start()
        threading.Thread(target=simulate, name="simulator", daemon=True).start()
        if duration is not None:
            timer = threading.Timer(duration, stop.set)
            timer.daemon = True
            timer.start()
        scrape = _scraper(worker)
        try:
            if live:
                watch_live(console, scrape, seen, [f.id for f in topo.factories], stop)
            else:
                watch_plain(console, scrape, seen, stop)
        except KeyboardInterrupt:
            console.print("stopping")
        stop.set()
        follower.join(5)
        if failures:
            raise UserError(failures[0])
        _summary(console, seen, niches, state_dir)
        return 0
    finally:
        stop.set()
        for proc in factories:
            _stop(proc)
        if worker is not None:
            worker.stop()
        if started_broker:
            from streams import broker

            broker.stop(port=port)
            console.print("broker stopped")
        shutil.rmtree(state_dir, ignore_errors=True)


def _factory(env: dict[str, str], factory_id: str, state_dir: Path) -> subprocess.Popen[bytes]:
    """examples/factory.py for one factory: accepts what fits, completes it after its lead time at
    SECONDS_PER_HOUR, so the demo shows the loop from click to finished batch."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / f"factory-{factory_id}.log").open("ab") as log:
        return subprocess.Popen([sys.executable, str(REPO_ROOT / "examples" / "factory.py"), "--factory", factory_id,
                                 "--seconds-per-hour", str(SECONDS_PER_HOUR)], env=env, cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # the example commits what it answered and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _summary(console: Console, seen: list[dict[str, Any]], niches: tuple[simulator.NicheSpec, ...],
             state_dir: Path) -> None:
    per_factory = Counter(t.get("factory_id") for t in seen)
    console.print(f"\n{len(seen)} triggers: " + (", ".join(f"{f} {n}" for f, n in sorted(per_factory.items()))
                                                  or "none"))
    done = {log.stem.removeprefix("factory-"): sum(" completed " in line for line in log.read_text().splitlines())
            for log in sorted(state_dir.glob("factory-*.log"))}
    console.print(f"batches completed: {sum(done.values())} "
                  f"({', '.join(f'{f} {n}' for f, n in done.items() if n) or 'none yet'})")
    for spec in niches:
        if spec.surge_at_s is None:
            continue
        hit = [t for t in seen if (t.get("niche") or {}).get("category") == spec.category
               and t["niche"].get("style") == spec.style and t["niche"].get("region") == spec.region]
        mark = "[green]triggered[/green]" if hit else "[red]no trigger yet[/red]"
        console.print(f"surging niche {spec.category}/{spec.style}/{spec.color}/{spec.size}/{spec.region}: {mark}")


# ---- the live view: pure parts (Snapshot, DemoView.observe, render) and the loops that drive them ----

SPARK = "▁▂▃▄▅▆▇█"
REFRESH_S = 0.5
RATE_WINDOW_S = 2.0  # events/s over this much history: one scrape apart is mostly batching noise
PLAIN_EVERY_S = 10.0
SHOWN_TRIGGERS = 10


@dataclass(frozen=True)
class Snapshot:
    """What the view needs from one scrape of a worker's /metrics (counters are per worker process)."""

    events: float = 0.0  # c2m_events_total over every topic, type and outcome
    events_ok: float = 0.0
    niches_active: float = 0.0
    triggers: dict[str, float] = field(default_factory=dict)  # c2m_triggers_total by factory
    units: dict[str, float] = field(default_factory=dict)  # c2m_trigger_units_total by factory
    open_units: dict[str, float] = field(default_factory=dict)  # c2m_factory_open_units by factory


def parse_metrics(text: str) -> Snapshot:
    """The c2m_ series of a Prometheus text exposition; an unreadable one reads as empty."""
    events = ok = niches = 0.0
    triggers: Counter[str] = Counter()
    units: Counter[str] = Counter()
    open_units: Counter[str] = Counter()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "c2m_events_total":
                    events += value
                    ok += value if labels.get("outcome") == "ok" else 0.0
                elif name == "c2m_niches_active":
                    niches = value
                elif name == "c2m_triggers_total":
                    triggers[labels.get("factory", "?")] += value
                elif name == "c2m_trigger_units_total":
                    units[labels.get("factory", "?")] += value
                elif name == "c2m_factory_open_units":
                    open_units[labels.get("factory", "?")] += value
    except ValueError:
        return Snapshot()
    return Snapshot(events, ok, niches, dict(triggers), dict(units), dict(open_units))


@dataclass
class DemoView:
    """The state between scrapes: the last snapshot and the events/s history for the sparkline."""

    factories: Sequence[str]
    started: float = field(default_factory=time.monotonic)
    last: Snapshot | None = None
    last_at: float = 0.0
    rates: deque[float] = field(default_factory=lambda: deque(maxlen=60))
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    reachable: bool = False

    def observe(self, text: str | None, now: float) -> None:
        """Fold one scrape in (None: the worker did not answer); a counter going down means a restart."""
        self.reachable = text is not None
        if text is None:
            return
        snap = parse_metrics(text)
        if self.samples and snap.events < self.samples[-1][1]:
            self.samples.clear()
        self.samples.append((now, snap.events))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW_S:
            self.samples.popleft()
        first_at, first_events = self.samples[0]
        if now > first_at:
            self.rates.append((snap.events - first_events) / (now - first_at))
        self.last, self.last_at = snap, now

    def rate(self) -> float | None:
        return self.rates[-1] if self.rates else None


def sparkline(values: Sequence[float], width: int = 30) -> str:
    tail_ = list(values)[-width:]
    if not tail_:
        return ""
    top = max(tail_) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in tail_)


def _niche(trig: dict[str, Any]) -> str:
    return "/".join(str(v) for v in (trig.get("niche") or {}).values()) or "?"


def _n(value: Any) -> str:
    """Thousands-separated; whatever a malformed trigger carries is shown as it is."""
    try:
        return f"{float(value):,.0f}"
    except (TypeError, ValueError):
        return str(value)


def render(view: DemoView, triggers: Sequence[dict[str, Any]], now: float | None = None) -> RenderableType:
    """The whole screen: headline figures, open production per factory, the latest triggers."""
    snap = view.last or Snapshot()
    now = time.monotonic() if now is None else now
    rate = view.rate()
    head = Table.grid(padding=(0, 3), expand=True)
    for _ in range(4):
        head.add_column()
    spark = sparkline(view.rates)
    head.add_row(
        Text.assemble(("events/s ", "dim"), ("-" if rate is None else _n(rate), "bold cyan"), "  ", (spark, "cyan")),
        Text.assemble(("active niches ", "dim"), (_n(snap.niches_active), "bold")),
        Text.assemble(("triggers ", "dim"), (_n(sum(snap.triggers.values()) or len(triggers)), "bold green")),
        Text.assemble(("units asked ", "dim"), (_n(sum(snap.units.values())), "bold")),
    )

    # Open units: the worker's gauge; before its first scrape, what the triggers seen so far asked.
    asked_by_triggers: Counter[str] = Counter()
    count_by_triggers: Counter[str] = Counter()
    for t in triggers:
        units = t.get("units")
        asked_by_triggers[str(t.get("factory_id", "?"))] += units if isinstance(units, int) else 0
        count_by_triggers[str(t.get("factory_id", "?"))] += 1
    open_units = snap.open_units or dict(asked_by_triggers)
    peak = max(open_units.values(), default=0) or 1
    factories = Table(box=box.SIMPLE_HEAD, expand=True, title="open production per factory", title_justify="left",
                      title_style="bold")
    factories.add_column("factory", style="bold")
    factories.add_column("triggers", justify="right")
    factories.add_column("units asked", justify="right")
    factories.add_column("open units", justify="right", style="bold")
    factories.add_column("", ratio=1, no_wrap=True, overflow="crop")
    for fid in sorted({*view.factories, *open_units}):
        opened = open_units.get(fid, 0)
        bar = "█" * round(20 * opened / peak) if opened else ""
        factories.add_row(escape(fid), _n(snap.triggers.get(fid, count_by_triggers.get(fid, 0))),
                          _n(snap.units.get(fid, asked_by_triggers.get(fid, 0))), _n(opened),
                          Text(bar, style="green"))

    latest = Table(box=box.SIMPLE_HEAD, expand=True, title="latest triggers", title_justify="left",
                   title_style="bold")
    latest.add_column("time", style="dim", no_wrap=True)
    latest.add_column("factory", no_wrap=True)
    latest.add_column("action", no_wrap=True)
    latest.add_column("units", justify="right", no_wrap=True, min_width=5)
    latest.add_column("niche", style="cyan", no_wrap=True, overflow="ellipsis", min_width=16)
    latest.add_column("reason", style="dim", no_wrap=True, overflow="ellipsis", ratio=1)
    newest = sorted(triggers, key=lambda t: (t.get("emitted_ts", 0), t.get("revision", 0)), reverse=True)
    for t in newest[:SHOWN_TRIGGERS]:
        action = str(t.get("action", "?"))
        latest.add_row(time.strftime("%H:%M:%S", time.localtime(t.get("emitted_ts", 0) / 1000)),
                       escape(str(t.get("factory_id", "?"))),
                       Text(action.upper(), style=tail.ACTION_STYLE.get(action, "bold")),
                       _n(t.get("units", "?")), escape(_niche(t)), escape(str(t.get("reason", ""))))
    if not newest:
        latest.add_row("", "", "", "", "waiting for the first trigger…", "")

    elapsed = int(now - view.started)
    status = "[green]worker up[/green]" if view.reachable else "[red]worker not answering[/red]"
    return Panel(Group(head, factories, latest), box=box.ROUNDED,
                 title=f"[bold]c2m demo[/bold] · {elapsed // 60:02d}:{elapsed % 60:02d}",
                 subtitle=f"{status} · Ctrl-C stops", subtitle_align="right")


def plain_status(view: DemoView, triggers: Sequence[dict[str, Any]], now: float) -> str:
    """One line for logs and pipes, where a live screen would be noise."""
    snap = view.last or Snapshot()
    rate = view.rate()
    open_units = ", ".join(f"{f} {_n(u)}" for f, u in sorted(snap.open_units.items()) if u) or "none"
    return (f"t+{int(now - view.started)}s events/s {'-' if rate is None else _n(rate)} · "
            f"niches {_n(snap.niches_active)} · triggers {len(triggers)} · open units: {open_units}")


def _scraper(worker: WorkerProcess) -> Callable[[], str | None]:
    def scrape() -> str | None:
        try:
            return str(worker.get("/metrics", timeout=1.0))
        except OSError:
            return None

    return scrape


def watch_live(console: Console, scrape: Callable[[], str | None], seen: list[dict[str, Any]],
               factories: Sequence[str], stop: threading.Event) -> None:
    """Redraw about twice a second until `stop`; the last frame stays on screen above the summary."""
    view = DemoView(factories)
    view.observe(scrape(), time.monotonic())
    with Live(render(view, seen), console=console, refresh_per_second=4, transient=False) as live:
        while not stop.wait(REFRESH_S):
            view.observe(scrape(), time.monotonic())
            live.update(render(view, list(seen)))


def watch_plain(console: Console, scrape: Callable[[], str | None], seen: list[dict[str, Any]],
                stop: threading.Event) -> None:
    """Triggers are printed as they come (by tail.follow); add a status line every PLAIN_EVERY_S."""
    view = DemoView(())
    view.observe(scrape(), time.monotonic())
    while not stop.wait(PLAIN_EVERY_S):
        now = time.monotonic()
        view.observe(scrape(), now)
        console.print(plain_status(view, list(seen), now), highlight=False)
