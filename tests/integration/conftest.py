"""Integration fixtures: topics applied once, and one worker for the session on the shared broker."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from streams import admin, topology
from streams.config import REPO_ROOT, Settings
from streams.workers import WorkerProcess
from tests.helpers import free_port
from tests.integration.kafka_io import produce


@pytest.fixture(scope="session")
def topo() -> topology.Topology:
    return topology.load(REPO_ROOT / "topics.yaml")


@pytest.fixture(scope="session")
def topics(kafka_bootstrap: str, topo: topology.Topology) -> str:
    """The repo's topics.yaml applied to the session broker; returns the bootstrap address."""
    admin.apply(Settings.from_env({"C2M_KAFKA_BOOTSTRAP": kafka_bootstrap}), topo)
    return kafka_bootstrap


def worker_env(bootstrap: str, **extra: str) -> dict[str, str]:
    """A worker's environment: its own consumer group (app id) and API port on the shared broker."""
    return {**os.environ, "C2M_KAFKA_BOOTSTRAP": bootstrap, "C2M_APP_ID": f"c2m-it-{uuid.uuid4().hex[:8]}",
            "C2M_API_PORT": str(free_port()), **extra}


@pytest.fixture(scope="session")
def worker(topics: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker shared by the pipeline tests; each test uses niches (regions) of its own.

    It reads every test's events from the start of the topics and no factory ever completes a
    batch here, so its factories get a capacity no session can fill (capacity is test_planner's)."""
    tmp = Path(tmp_path_factory.mktemp("worker"))
    roomy = yaml.safe_load((REPO_ROOT / "topics.yaml").read_text())
    for factory in roomy["factories"]:
        factory["capacity_units_per_day"] = 100_000_000
    (tmp / "topics.yaml").write_text(yaml.safe_dump(roomy))
    proc = WorkerProcess(worker_env(topics, C2M_TOPICS_FILE=str(tmp / "topics.yaml")), tmp / "state").start()
    try:
        proc.wait_ready(timeout=120)
        yield proc
    finally:
        proc.stop()


def wait_until_live(proc: WorkerProcess, bootstrap: str, timeout: float = 90) -> None:
    """With "latest", a partition's start is fixed at its first fetch: records produced before that
    are skipped. A sentinel (a catalog record plus an event relying on it) is re-sent until the
    worker counts it, which proves both the catalog and the event path are live."""
    sku, region = f"SKU-SENTINEL-{uuid.uuid4().hex[:6]}", f"SENTINEL-{uuid.uuid4().hex[:6]}"
    attrs = {"category": "top", "style": "basic", "color": "grey", "size": "M"}
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        i += 1
        produce(bootstrap, [("c2m.catalog", sku.encode(), orjson.dumps({"sku": sku, "attrs": attrs, "ts": 1}))])
        time.sleep(0.5)
        produce(bootstrap, [("c2m.clickstream", None, orjson.dumps(
            {"event_id": f"{region}-{i}", "type": "view", "ts": int(time.time() * 1000), "sku": sku,
             "region": region}))])
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            if any(n["attrs"].get("region") == region for n in proc.get("/api/niches?limit=1000")["niches"]):
                time.sleep(2)  # let any sentinel still in flight be counted before the baseline
                return
            time.sleep(0.3)
    raise AssertionError("the fresh worker never counted the sentinel")
