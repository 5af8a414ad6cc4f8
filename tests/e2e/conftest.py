"""e2e tests run the `c2m` command as a user does, on the session broker with topics applied."""

from __future__ import annotations

import pytest

from streams import admin, topology
from streams.config import REPO_ROOT, Settings


@pytest.fixture(scope="session")
def bootstrap(kafka_bootstrap: str) -> str:
    admin.apply(Settings.from_env({"C2M_KAFKA_BOOTSTRAP": kafka_bootstrap}), topology.load(REPO_ROOT / "topics.yaml"))
    return kafka_bootstrap
