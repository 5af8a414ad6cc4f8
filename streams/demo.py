"""`c2m demo`: broker, topics, worker and simulator in one command; everything it starts, it stops."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections import Counter
from typing import Any

from rich.console import Console

from streams import admin, simulator, tail, topology
from streams.config import Settings, cache_dir
from streams.errors import UserError
from streams.simulate import publish
from streams.workers import WorkerProcess


def run(duration: float | None, rate: float, port: int, console: Console, scenario: str = "surge") -> int:
    env = dict(os.environ)
    started_broker = False
    worker: WorkerProcess | None = None
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
        worker = WorkerProcess(env, state_dir).start()
        with console.status("waiting for the worker to own its partitions"):
            worker.wait_ready()
        console.print(f"worker ready (metrics http://{settings.api_host}:{settings.api_port}/metrics); "
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
        threading.Thread(target=simulate, name="simulator", daemon=True).start()
        if duration is not None:
            timer = threading.Timer(duration, stop.set)
            timer.daemon = True
            timer.start()
        try:
            tail.follow(settings, [topology.trigger_topic(f.id) for f in topo.factories], console,
                        since_ms=since_ms, stop=stop, on_trigger=seen.append)
        except KeyboardInterrupt:
            console.print("stopping")
        if failures:
            raise UserError(failures[0])
        _summary(console, seen, niches)
        return 0
    finally:
        stop.set()
        if worker is not None:
            worker.stop()
        if started_broker:
            from streams import broker

            broker.stop(port=port)
            console.print("broker stopped")
        shutil.rmtree(state_dir, ignore_errors=True)


def _summary(console: Console, seen: list[dict[str, Any]], niches: tuple[simulator.NicheSpec, ...]) -> None:
    per_factory = Counter(t.get("factory_id") for t in seen)
    console.print(f"\n{len(seen)} triggers: " + (", ".join(f"{f} {n}" for f, n in sorted(per_factory.items()))
                                                  or "none"))
    for spec in niches:
        if spec.surge_at_s is None:
            continue
        hit = [t for t in seen if (t.get("niche") or {}).get("category") == spec.category
               and t["niche"].get("style") == spec.style and t["niche"].get("region") == spec.region]
        mark = "[green]triggered[/green]" if hit else "[red]no trigger yet[/red]"
        console.print(f"surging niche {spec.category}/{spec.style}/{spec.color}/{spec.size}/{spec.region}: {mark}")
