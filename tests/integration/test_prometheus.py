"""A real Prometheus server (Debian's `prometheus`) scrapes the session worker every second; what
the worker counted comes back through Prometheus's HTTP query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.topology import Topology
from streams.workers import WorkerProcess
from tests.helpers import free_port, unavailable
from tests.integration.kafka_io import produce
from tests.integration.test_pipeline import funnel
from tests.unit.deploy.support import (
    PROMETHEUS_DIR,
    alert_rules,
    dashboard,
    dashboard_queries,
    substitute_grafana_variables,
)

pytestmark = pytest.mark.integration

JOB = "c2m-worker"
ORDERS_OK = {"topic": "c2m.orders", "type": "placed", "outcome": "ok"}


class Prometheus:
    """A Prometheus server on 127.0.0.1 with its own storage; stopped with terminate, then wait."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
            "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                                "static_configs": [{"targets": [target]}]}],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=5) as resp:
            return json.load(resp)

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = self.get("/api/v1/query", query=promql)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def scalar(self, promql: str) -> float:
        """The value of a single-series query; 0 when the series does not exist (yet)."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited ({self.proc.returncode}): {self.log.read_text()[-1500:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"prometheus was not ready within {timeout:.0f} s: {self.log.read_text()[-1500:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def prometheus(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """One Prometheus for this module, scraping the session worker every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("prometheus is not installed (Debian/Ubuntu: apt-get install prometheus; .ci/run does it)")
    server = Prometheus(binary, tmp_path_factory.mktemp("prometheus"), urllib.parse.urlsplit(worker.api).netloc)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def direct(worker: WorkerProcess, series: str, keep: Callable[[dict[str, str]], bool]) -> float:
    """Sum of a series' samples in the worker's own /metrics, over the labels `keep` accepts."""
    text = worker.get("/metrics", timeout=10)  # a busy worker can answer slowly
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == series and keep(sample.labels))


def wait_for(condition: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll `condition` until it holds; fail at `deadline` (a time.monotonic() value)."""
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def selector(**labels: str) -> str:
    """PromQL label matchers for job c2m-worker; a value with "|" becomes a regex match."""
    return ", ".join([f'job="{JOB}"', *(f'{k}=~"{v}"' if "|" in v else f'{k}="{v}"' for k, v in labels.items())])


def wait_until_caught_up(worker: WorkerProcess, prometheus: Prometheus, timeout: float) -> None:
    """Wait until the worker's consumer lag on the input topics, as Faust's sensor reports it
    through Prometheus, is small: a worker new to a broker with history reads that first."""
    prefix = "c2m"  # the worker exports Faust's metrics under c2m_ whatever its app id
    inputs = f'job="{JOB}", topic=~"c2m[.](clickstream|orders)"'
    end, committed = (f"{prefix}_topic_partition_end_offset{{{inputs}}}",
                      f"{prefix}_topic_partition_offset_commited{{{inputs}}}")

    def steady() -> bool:
        """Nothing fetched yet means no offset series at all: then the event count must hold still."""
        first = direct(worker, "c2m_events_total", lambda _: True)
        time.sleep(2)
        return direct(worker, "c2m_events_total", lambda _: True) == first

    def caught_up() -> bool:
        partitions = prometheus.scalar(f"count({end})")
        if partitions == 0:
            return steady()
        return (partitions == prometheus.scalar(f"count({committed})")
                and prometheus.scalar(f"sum({end}) - sum({committed})") < 500)

    wait_for(caught_up, time.monotonic() + timeout, "the worker to catch up with the input topics")


def test_prometheus_scrapes_events_and_triggers_from_a_worker(
        worker: WorkerProcess, prometheus: Prometheus, topo: Topology) -> None:
    wait_until_caught_up(worker, prometheus, timeout=240)
    deadline = time.monotonic() + 55  # from here on the test is bounded
    dress = [f.id for f in topo.factories if f.makes("dress")]
    events = f"c2m_events_total{{{selector(**ORDERS_OK)}}}"
    triggers = f'c2m_triggers_total{{{selector(factory="|".join(dress), action="start", kind="forecast")}}}'
    # last_over_time skips the stale markers a failed scrape leaves (a busy worker can miss the
    # 1 s scrape timeout), so such a moment reads as the last value scraped, not as no series
    events_last, triggers_last = (f"sum(last_over_time({s}[1m]))" for s in (events, triggers))

    wait_for(lambda: prometheus.scalar(f'up{{job="{JOB}"}}') == 1, deadline, "Prometheus to scrape the worker")
    events_before, triggers_before = prometheus.scalar(events_last), prometheus.scalar(triggers_last)

    region = f"PROM-{uuid.uuid4().hex[:6]}"
    attrs = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}
    produce(worker.env["C2M_KAFKA_BOOTSTRAP"], funnel(region, attrs, 150))

    wait_for(lambda: prometheus.scalar(events_last) - events_before >= 150
             and prometheus.scalar(triggers_last) - triggers_before >= 1,
             deadline, "150 more orders and a start trigger on a dress factory, read through Prometheus")

    def orders_ok(labels: dict[str, str]) -> bool:
        return ORDERS_OK.items() <= labels.items()

    def dress_starts(labels: dict[str, str]) -> bool:
        return labels["factory"] in dress and (labels["action"], labels["kind"]) == ("start", "forecast")

    for promql, series, keep in [(f"sum({events})", "c2m_events_total", orders_ok),
                                 (f"sum({triggers})", "c2m_triggers_total", dress_starts)]:
        assert_scraped_matches(worker, prometheus, promql, series, keep, deadline)


def assert_scraped_matches(worker: WorkerProcess, prometheus: Prometheus, promql: str, series: str,
                           keep: Callable[[dict[str, str]], bool], deadline: float) -> None:
    """Prometheus holds what the worker serves: its latest scrape falls between two direct reads
    taken more than a scrape interval apart (counters only grow). A failed scrape (a busy worker
    can miss the 1 s timeout) marks the series stale, so the query comes back empty: read again."""
    while True:
        low = direct(worker, series, keep)
        time.sleep(2.5)
        result = prometheus.query(promql)
        high = direct(worker, series, keep)
        if result:
            scraped = float(result[0]["value"][1])
            assert 0 < low <= scraped <= high, f"{promql}: Prometheus has {scraped}, the worker {low}..{high}"
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{promql}: no sample in Prometheus (scrapes failing?); the worker has {low}..{high}")


def test_prometheus_loads_the_repo_alert_rules(prometheus: Prometheus) -> None:
    groups = prometheus.get("/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == {rule["alert"] for rule in alert_rules()}
    assert all(rule["health"] != "err" for group in groups for rule in group["rules"])


def test_every_dashboard_query_runs_on_prometheus(prometheus: Prometheus) -> None:
    """The server accepts every Grafana query (variables filled in) against live worker data."""
    wait_for(lambda: prometheus.scalar(f'up{{job="{JOB}"}}') == 1, time.monotonic() + 15,
             "Prometheus to scrape the worker")
    for title, expr in dashboard_queries(dashboard()):
        promql = substitute_grafana_variables(expr)
        body = prometheus.get("/api/v1/query", query=promql)
        assert body["status"] == "success", f"panel {title!r}: {promql}: {body}"
