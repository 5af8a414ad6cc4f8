"""`c2m`: the command line. User mistakes end as one line on stderr and a non-zero exit."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import click
import orjson
from rich.console import Console

from streams.config import MIN_STORE_MEMORY_MB, Settings
from streams.errors import UserError

console = Console(stderr=False, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """c2m: consumer clicks and orders in, right-sized production triggers out."""


@cli.group()
def broker() -> None:
    """The local Apache Kafka broker (KRaft, resolved from Maven Central)."""


@broker.command("start")
@click.option("--port", default=9092, show_default=True, help="PLAINTEXT port on 127.0.0.1")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="log and state directory [default: ~/.cache/c2m/broker-PORT]")
def broker_start(port: int, data_dir: Path | None) -> None:
    """Start the broker (idempotent) and print its bootstrap address."""
    from streams import broker as local

    local.ensure_jars(progress=lambda line: console.print(f"[dim]{line}[/dim]"))
    with console.status(f"starting Kafka {local.KAFKA_VERSION} on 127.0.0.1:{port}"):
        st = local.start(port=port, data_dir=data_dir)
    console.print(f"broker running (pid {st.pid}, data {st.data_dir})")
    click.echo(st.bootstrap)


@broker.command("stop")
@click.option("--port", default=9092, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def broker_stop(port: int, data_dir: Path | None) -> None:
    """Stop the broker with a controlled shutdown (SIGTERM) and wait for it."""
    from streams import broker as local

    click.echo("broker stopped" if local.stop(port=port, data_dir=data_dir) else "broker was not running")


@broker.command("status")
@click.option("--port", default=9092, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def broker_status(port: int, data_dir: Path | None) -> None:
    """Tell whether the local broker runs; exit 1 when it does not."""
    from streams import broker as local

    st = local.status(port=port, data_dir=data_dir)
    if not st.running:
        click.echo(f"broker not running (data {st.data_dir})")
        sys.exit(1)
    click.echo(f"broker running: {st.bootstrap} (pid {st.pid}, data {st.data_dir})")


@cli.group()
def topics() -> None:
    """Topics from topics.yaml."""


@topics.command("apply")
@click.option("--file", "path", type=click.Path(path_type=Path), default=None,
              help="topics file [default: C2M_TOPICS_FILE or ./topics.yaml]")
@click.option("--dry-run", is_flag=True, help="print what would change, change nothing")
def topics_apply(path: Path | None, dry_run: bool) -> None:
    """Create missing topics, grow partitions, set configs. Never deletes."""
    from streams import admin, topology

    settings = Settings.from_env()
    topo = topology.load(path or settings.topics_file)
    changes = admin.apply(settings, topo, dry_run=dry_run)
    click.echo(admin.render(changes, dry_run))


@cli.command()
@click.option("--loglevel", "-l", default="warn", show_default=True,
              type=click.Choice(["debug", "info", "warn", "error"]))
def worker(loglevel: str) -> None:
    """Run a Faust worker (same as `faust -A streams.app worker`); run as many as you like."""
    from streams import admin, kafka

    settings = Settings.from_env()
    kafka.ensure_topics(settings, ["c2m.clickstream", "c2m.orders", "c2m.catalog", "c2m.dead-letter"])
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"C2M_DATA_DIR {settings.data_dir}: cannot create it ({exc.strerror})") from None
    from streams.app import app, internal_topic_specs

    admin.apply_specs(settings, internal_topic_specs())

    # mode leaves the root logger at DEBUG and filters in the handler, so every debug call in
    # aiokafka's and Faust's per-message paths would build a LogRecord only to drop it.
    level = logging.getLevelName("WARNING" if loglevel == "warn" else loglevel.upper())
    for name in ("aiokafka", "faust", "mode", "rocksdict", "streams"):
        logging.getLogger(name).setLevel(level)
    sys.argv = ["c2m worker", "worker", "--loglevel", loglevel]
    app.main()


@cli.command()
@click.option("--rate", default=200.0, show_default=True, help="events per second")
@click.option("--duration", default=None, type=float, help="seconds to run [default: until Ctrl-C]")
@click.option("--seed", default=7, show_default=True)
@click.option("--scenario", default="surge", show_default=True,
              help="live demo: surge, steady; day-scale, to a file: default, seasonal, fads, shock, launch")
@click.option("--days", default=None, type=float,
              help="day-scale scenarios: simulated days [default: the scenario's, 10]")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="write events to this JSONL file instead of Kafka (no pacing)")
def simulate(rate: float, duration: float | None, seed: int, scenario: str, days: float | None,
             out: Path | None) -> None:
    """Publish realistic shop events (or write them to a file).

    The day-scale scenarios (--days of consumers, funnel lags, seasonality, fads, a conversion
    shock, launches and group buys) are for `c2m backtest`: they are written to --out, with the
    ground truth beside it as <name>.truth.json; --rate and --duration do not apply to them.
    """
    from streams import scenarios, simulator
    from streams import simulate as sim

    if scenario in scenarios.SCENARIOS:
        if out is None:
            raise UserError(f"scenario {scenario!r} covers days of traffic: write it to a file with --out")
        spec = scenarios.spec(scenario, days)
        with console.status(f"writing {spec.days:g} days of scenario {scenario!r} (seed {seed})"):
            n, truth = scenarios.write(out, spec, seed)
        click.echo(f"wrote {n} events to {out} (ground truth: {truth})")
        return
    if days is not None:
        raise UserError(f"--days applies to the day-scale scenarios ({', '.join(scenarios.SCENARIOS)})")
    if rate <= 0:
        raise UserError("--rate must be positive")
    niches = simulator.scenario(scenario)
    start_ms = int(time.time() * 1000)
    if out is not None:
        if duration is None:
            raise UserError("--out needs --duration (a file cannot be endless)")
        n = sim.write_jsonl(out, simulator.generate(niches, rate, duration, seed, start_ms))
        click.echo(f"wrote {n} events to {out}")
        return
    from streams import kafka

    settings = Settings.from_env()
    kafka.ensure_topics(settings, ["c2m.clickstream", "c2m.orders"])
    from streams import progress

    stop = threading.Event()
    try:
        n = progress.publish(settings, simulator.generate(niches, rate, duration, seed, start_ms), duration,
                             console, stop)
    except KeyboardInterrupt:
        stop.set()
        raise
    click.echo(f"published {n} events to {settings.bootstrap}")


@cli.command()
@click.option("--events", "events", required=True, type=click.Path(path_type=Path),
              help="JSONL event log, as `c2m simulate --out` writes it")
@click.option("--json", "as_json", is_flag=True, help="print the figures as one JSON object")
def backtest(events: Path, as_json: bool) -> None:
    """Replay an event log through the worker's models and planner, without Kafka; forecast error
    per horizon against the baselines, P90 coverage, cold start, drift, and inventory outcomes of
    the planner against make-to-stock."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from models.planner import PlannerConfig
    from streams import backtest as replaying
    from streams import topology
    from streams.plan_replay import PlanReplay

    settings = Settings.from_env()  # the worker's factories and service level (C2M_SERVICE_LEVEL)
    hook = PlanReplay(topology.load(settings.topics_file).factories,
                      PlannerConfig(service_level=settings.service_level))
    err = Console(stderr=True)
    with Progress("replaying", BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("replay", total=None)
        result = replaying.replay(events, hook=hook, progress=lambda done, total: bar.update(task, completed=done,
                                                                                            total=total))
    if as_json:
        click.echo(orjson.dumps(result).decode())
    else:
        replaying.render(result, console)


@cli.command()
@click.option("--factory", "factory_id", required=True, help="factory id from topics.yaml")
@click.option("--from-beginning", is_flag=True, help="replay the topic from its start")
def tail(factory_id: str, from_beginning: bool) -> None:
    """Follow one factory's triggers, human-readable."""
    from streams import tail as tailing
    from streams import topology

    settings = Settings.from_env()
    topo = topology.load(settings.topics_file)
    topo.factory(factory_id)
    since_ms = 0 if from_beginning else int(time.time() * 1000)
    tailing.follow(settings, [topology.trigger_topic(factory_id)], console, since_ms=since_ms)


@cli.command()
@click.option("--duration", default=None, type=float, help="seconds to run [default: until Ctrl-C]")
@click.option("--rate", default=200.0, show_default=True, help="simulated events per second")
@click.option("--port", default=9092, show_default=True, help="local broker port")
def demo(duration: float | None, rate: float, port: int) -> None:
    """Broker, topics, worker and simulator in one command, with triggers shown live."""
    from streams import demo as running

    raise SystemExit(running.run(duration=duration, rate=rate, port=port, console=console))


@cli.command()
@click.option("--only", default=None, metavar="PARTS",
              help="comma-separated parts to run: ingest, latency, memory, tick [default: all]")
@click.option("--events", default=200_000, show_default=True, help="ingest: events to pre-load and process")
@click.option("--groups", default=200, show_default=True, help="latency: group buys to fill under load")
@click.option("--memory-niches", default=2_000, show_default=True, help="memory: niches to build and measure")
@click.option("--tick-niches", default=100_000, show_default=True, help="tick: niches in the worker's state")
@click.option("--json", "as_json", is_flag=True, help="print the figures as one JSON object")
def bench(only: str | None, events: int, groups: int, memory_niches: int, tick_niches: int, as_json: bool) -> None:
    """Throughput, group-buy latency, memory per niche and planning tick time.

    ingest and latency run on a private local broker (worker against a raw confluent-kafka consumer;
    a filled group's trigger under 1,000 events/s); memory and tick need no broker.
    """
    from streams import bench as benchmark

    try:
        parts = benchmark.parse_parts(only)
    except ValueError as exc:
        raise UserError(f"--only: {exc}") from None
    if min(events, groups, memory_niches, tick_niches) <= 0:
        raise UserError("--events, --groups, --memory-niches and --tick-niches must be positive")
    if tick_niches > 288_000:
        raise UserError("--tick-niches: at most 288,000 (the synthetic niches are all distinct)")
    with console.status("benchmark") as status:
        try:
            result = benchmark.run(parts, events=events, groups=groups, memory_niches=memory_niches,
                                   tick_population=tick_niches, progress=lambda step: status.update(step))
        except RuntimeError as exc:  # a measurement that could not finish: say which, in one line
            raise UserError(f"bench: {exc}") from None
    if as_json:
        click.echo(orjson.dumps(result.figures()).decode())
        return
    for line in result.lines():
        console.print(line)


@cli.command()
@click.option("--rate", default=None, type=float, help="events per second [default: half the maximum, measured first]")
@click.option("--duration", default=600.0, show_default=True, help="seconds of steady load")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="write the samples and the verdict as JSON")
@click.option("--store-memory-mb", default=32, show_default=True,
              help="the worker's C2M_STORE_MEMORY_MB (production: 128); see above")
def soak(rate: float | None, duration: float, out: Path | None, store_memory_mb: int) -> None:
    """One worker under steady load on a private local broker; RSS and consumer lag, sampled every
    10 s, must not grow without bound. Exits 1 when they do.

    The maximum is measured first, live, with the load and the broker beside the worker. Memory
    bounded by configuration is judged against its bound: the worker's RocksDB stores share a
    cache that fills only as reads pull blocks in, still filling after 10 minutes at production's
    128 MiB, so the soak runs them at 32 MiB, nearly full by mid-run. Their memory
    (c2m_store_memory_bytes) must stay within that bound, and RSS outside them must not trend up.
    """
    from streams import soak as soaking

    if rate is not None and rate <= 0:
        raise UserError("--rate must be positive")
    if store_memory_mb < MIN_STORE_MEMORY_MB:
        raise UserError(f"--store-memory-mb: at least {MIN_STORE_MEMORY_MB}")
    if duration < soaking.SAMPLE_EVERY_S * (soaking.MIN_SAMPLES - 1):
        raise UserError(f"--duration: at least {soaking.SAMPLE_EVERY_S * (soaking.MIN_SAMPLES - 1):.0f} s")
    try:
        result = soaking.run(rate, duration, say=lambda line: console.print(line, markup=False, soft_wrap=True),
                             store_memory_mb=store_memory_mb)
    except RuntimeError as exc:  # the maximum could not be measured: say why, in one line
        raise UserError(f"soak: {exc}") from None
    if out is not None:
        result.write(out)
    for line in result.lines():
        console.print(line, markup=False, soft_wrap=True)
    if not result.judged()[0]:
        raise SystemExit(1)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo(f"c2m: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
