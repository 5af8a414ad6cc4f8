"""Shared fixtures. Integration tests get a broker from, in order: C2M_KAFKA_BOOTSTRAP (an existing
cluster), a Docker engine that answers (testcontainers), the local JVM broker (streams.broker)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from streams import broker
from streams.errors import UserError
from tests.helpers import free_port as _free_port
from tests.helpers import unavailable

CP_KAFKA_IMAGE = "confluentinc/cp-kafka:8.0.0"  # Confluent Platform 8.0 = Apache Kafka 4.0


@pytest.fixture
def free_port() -> int:
    return _free_port()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception:  # no SDK, no socket, daemon down: all mean "no Docker"
        return False
    return True


def _start_container() -> Any:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.15
        from testcontainers.kafka import KafkaContainer

    return KafkaContainer(CP_KAFKA_IMAGE).with_kraft().start()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The "host:port" of a real Kafka broker, shared by the whole session (starting one takes seconds)."""
    explicit = os.environ.get("C2M_KAFKA_BOOTSTRAP", "").strip()
    if explicit:
        yield explicit
        return
    reasons = ["C2M_KAFKA_BOOTSTRAP is not set"]
    if _docker_answers():
        try:
            container = _start_container()
        except Exception as exc:  # e.g. the image cannot be pulled: try the local broker instead
            reasons.append(f"the Kafka container did not start ({exc})")
        else:
            try:
                yield container.get_bootstrap_server()
            finally:
                container.stop()
            return
    else:
        reasons.append("no Docker engine answers")
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("kafka")
    try:
        started = broker.start(port=port, data_dir=data_dir, timeout=120)
    except UserError as exc:
        reasons.append(f"the local broker could not start: {exc}")
        started = None
    if started is None:
        unavailable("no Kafka broker for the integration tests: " + "; ".join(reasons))
    try:
        yield started.bootstrap
    finally:
        broker.stop(port=port, data_dir=data_dir)
