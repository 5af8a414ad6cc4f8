"""Integration fixtures: topics applied once, and one worker for the session on the shared broker."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import admin, topology
from streams.config import REPO_ROOT, Settings
from streams.workers import WorkerProcess
from tests.helpers import free_port


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
    """One worker shared by the pipeline tests; each test uses niches (regions) of its own."""
    proc = WorkerProcess(worker_env(topics), Path(tmp_path_factory.mktemp("worker"))).start()
    try:
        proc.wait_ready(timeout=120)
        yield proc
    finally:
        proc.stop()
