"""Helpers for the deploy/ tests: promtool, the metric names a worker really exports, PromQL
metric-name extraction, Grafana query variables and parsing `c2m` command lines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.registry import Collector

from streams.config import REPO_ROOT
from tests.helpers import unavailable

DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "c2m.json"
K8S_DIR = DEPLOY / "k8s"

# Faust's sensor prefixes its metric names with the app id; deploy/ files assume the default.
FAUST_PREFIX = "c2m"
# Series Prometheus itself adds for every scrape target (not exported by the worker).
PROMETHEUS_SYNTHETIC = frozenset({"up"})
# What a Grafana variable becomes when an expression is checked as plain PromQL.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "job": ".*"}


def promtool() -> str:
    """The promtool binary; without it a skip (or, with CI=true, a failure)."""
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool is not installed (Debian/Ubuntu: apt-get install prometheus; .ci/run does it)")
    return path


def run_promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the assertion message carries its whole output."""
    proc = subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=120,
                          cwd=cwd)
    assert proc.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _series_names(registry: CollectorRegistry | Collector) -> set[str]:
    """Every series name a registry exposes, including those of labelled metrics with no child yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(sample.name for sample in family.samples)
        base = family.name
        if family.type == "counter":
            names.update({f"{base}_total", f"{base}_created"})
        elif family.type == "histogram":
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"})
        elif family.type == "summary":
            names.update({base, f"{base}_sum", f"{base}_count", f"{base}_created"})
        elif family.type == "info":
            names.add(f"{base}_info")
        else:
            names.add(base)
    return names


def c2m_metric_names() -> set[str]:
    """Series names of the metrics streams/metrics.py declares (DESIGN §8)."""
    from prometheus_client.metrics import MetricWrapperBase

    import streams.metrics

    registry = CollectorRegistry()
    for metric in vars(streams.metrics).values():
        if isinstance(metric, MetricWrapperBase):
            registry.register(metric)
    return _series_names(registry)


def faust_metric_names(prefix: str = FAUST_PREFIX) -> set[str]:
    """Series names of Faust's Prometheus sensor, built exactly as setup_prometheus_sensors does."""
    from faust.sensors.prometheus import FaustMetrics

    registry = CollectorRegistry()
    FaustMetrics.create(registry, prefix)
    return _series_names(registry)


def exported_metric_names() -> frozenset[str]:
    """The series names a c2m worker (C2M_APP_ID=c2m) serves at /metrics, plus Prometheus's `up`.

    The c2m_* metrics come from the default registry once streams.metrics is imported; Faust's
    sensor metrics are rebuilt on a fresh registry exactly as setup_prometheus_sensors does.
    """
    import streams.metrics  # noqa: F401  (registers the DESIGN §8 metrics on the default registry)

    return frozenset(_series_names(REGISTRY) | c2m_metric_names() | faust_metric_names() | PROMETHEUS_SYNTHETIC)


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                       "bool", "offset", "inf", "nan", "start", "end"})


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (identifiers that are not functions, keywords or labels)."""
    text = re.sub(r"\$\{?\w+\}?", " ", expr)           # Grafana variables
    text = _STRING.sub('""', text)                      # string literals (label values)
    text = re.sub(r"\{[^}]*\}", " ", text)              # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)             # ranges and subqueries
    text = _GROUPING.sub(" ", text)                     # by (...), on (...), group_left (...)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)       # offset 30m
    text = re.sub(r"(?<![\w:])\d[\w.]*", " ", text)     # numbers and durations
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        if name in _KEYWORDS or re.match(r"\s*\(", text[match.end():]):
            continue
        names.add(name)
    return names


def substitute_grafana_variables(expr: str) -> str:
    """A dashboard query as plain PromQL: $__rate_interval, $__range, $job, ... replaced."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    return [(panel.get("title", "?"), target["expr"]) for panel in panels(board)
            for target in panel.get("targets", []) if target.get("expr")]


def alert_rules() -> list[dict[str, Any]]:
    import yaml

    doc = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def parse_c2m(args: Iterable[str]) -> list[str]:
    """Parse a `c2m` command line as the CLI would, options and values validated, running nothing.

    Returns the command path (e.g. ["topics", "apply"]); raises click.UsageError when `c2m`
    would reject the line.
    """
    from streams.cli import cli

    rest = list(args)
    command: click.Command = cli
    ctx = click.Context(cli, info_name="c2m")
    path: list[str] = []
    while isinstance(command, click.Group):
        if not rest:
            raise click.UsageError(f"`c2m {' '.join(path)}` needs a subcommand")
        name, rest = rest[0], rest[1:]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"`c2m {' '.join([*path, name])}` is not a command")
        path.append(name)
        if isinstance(sub, click.Group):
            ctx = click.Context(sub, info_name=name, parent=ctx)
        command = sub
    with command.make_context(path[-1], rest, parent=ctx):
        pass
    return path
