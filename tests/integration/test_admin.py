"""`c2m topics apply` against a real broker: create, idempotence, grow, config, dry run, errors.

Every test works on topics named with a unique prefix (and a unique factory id, hence a unique
trigger topic), so it neither sees nor disturbs other tests sharing the broker, and deletes them
at the end.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from streams.admin import Change, apply
from streams.config import Settings
from streams.errors import UserError
from streams.topology import Topology, parse, trigger_topic

pytestmark = pytest.mark.integration

_QUIET = logging.getLogger("c2m.tests.admin")
_QUIET.setLevel(logging.CRITICAL)


@pytest.fixture(scope="module")
def bootstrap(request: pytest.FixtureRequest) -> str:
    """The session broker (tests/conftest.py), or C2M_KAFKA_BOOTSTRAP when run on its own."""
    try:
        return str(request.getfixturevalue("kafka_bootstrap"))
    except pytest.FixtureLookupError:
        env = os.environ.get("C2M_KAFKA_BOOTSTRAP")
        if not env:
            pytest.fail("no kafka_bootstrap fixture and C2M_KAFKA_BOOTSTRAP is not set")
        return env


@pytest.fixture
def settings(bootstrap: str) -> Settings:
    return replace(Settings.from_env(), bootstrap=bootstrap, bootstrap_explicit=True)


@pytest.fixture
def admin(bootstrap: str) -> AdminClient:
    return AdminClient({**Settings.from_env().kafka_client_config(), "bootstrap.servers": bootstrap,
                        "logger": _QUIET})


Make = Callable[..., Topology]


@pytest.fixture
def make_topology(admin: AdminClient) -> Iterator[Make]:
    """Builds topologies over one unique set of topic names; deletes those topics afterwards."""
    tag = uuid.uuid4().hex[:10]
    prefix = f"c2m-test-admin-{tag}"
    factory_id = f"admin-{tag}"
    names: set[str] = set()

    def make(clicks_partitions: int = 2, clicks_retention: str = "604800000",
             **extra_topics: dict[str, Any]) -> Topology:
        raw = {
            "defaults": {"partitions": 2, "replication_factor": 1},
            "topics": {
                f"{prefix}.clicks": {"partitions": clicks_partitions,
                                     "config": {"retention.ms": clicks_retention}},
                f"{prefix}.catalog": {"partitions": 1, "config": {"cleanup.policy": "compact"}},
                f"{prefix}.status": {},
                **{f"{prefix}.{k}": v for k, v in extra_topics.items()},
            },
            "trigger_topics": {"partitions": 1, "config": {"retention.ms": "2592000000"}},
            "factories": [{"id": factory_id, "categories": ["dress"], "capacity_units_per_day": 100,
                           "min_batch": 10, "lead_time_hours": 24}],
        }
        topology = parse(raw)
        names.update(t.name for t in topology.topics)
        return topology

    yield make
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = sorted(names & existing)
    if doomed:
        for future in admin.delete_topics(doomed, request_timeout=30).values():
            future.result()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Broker metadata converges within moments; poll rather than sleep a fixed time."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def partitions(admin: AdminClient, topic: str) -> int | None:
    meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    return len(meta.partitions)


def topic_config(admin: AdminClient, topic: str) -> dict[str, str | None]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource], request_timeout=10)[resource].result()
    return {key: entry.value for key, entry in entries.items()}


def present(admin: AdminClient, topology: Topology) -> set[str]:
    return {t.name for t in topology.topics} & set(admin.list_topics(timeout=10).topics)


def test_first_apply_creates_everything_and_the_second_changes_nothing(
        settings: Settings, admin: AdminClient, make_topology: Make) -> None:
    topology = make_topology()
    changes = apply(settings, topology)

    assert [(c.action, c.topic) for c in changes] == [("create", t.name) for t in topology.topics]
    catalog = next(t for t in topology.topics if t.name.endswith(".catalog"))
    assert Change("create", catalog.name, "1 partitions, rf 1, cleanup.policy=compact") in changes
    for spec in topology.topics:
        wait_for(lambda spec=spec: partitions(admin, spec.name) == spec.partitions, spec.name)
        config = topic_config(admin, spec.name)
        for key, value in spec.config.items():
            assert config[key] == value
    assert trigger_topic(topology.factories[0].id) in {t.name for t in topology.topics}

    assert apply(settings, topology) == []


def test_growing_partitions_is_one_grow_change(
        settings: Settings, admin: AdminClient, make_topology: Make) -> None:
    apply(settings, make_topology(clicks_partitions=2))
    grown = make_topology(clicks_partitions=4)
    clicks = next(t.name for t in grown.topics if t.name.endswith(".clicks"))
    # no wait here on purpose: metadata can lag the create by a moment, and apply must still judge
    # the grow against the topic that exists rather than report nothing

    assert apply(settings, grown) == [Change("grow", clicks, "partitions 2 -> 4")]
    wait_for(lambda: partitions(admin, clicks) == 4, f"{clicks} to have 4 partitions")
    assert apply(settings, grown) == []
    # asking for fewer partitions than the topic has is not a change: never shrink
    assert apply(settings, make_topology(clicks_partitions=1)) == []
    assert partitions(admin, clicks) == 4


def test_config_drift_is_set_and_other_keys_are_left_alone(
        settings: Settings, admin: AdminClient, make_topology: Make) -> None:
    apply(settings, make_topology(clicks_retention="604800000"))
    changed = make_topology(clicks_retention="2592000000")
    clicks = next(t.name for t in changed.topics if t.name.endswith(".clicks"))
    # a key topics.yaml does not mention, set by an operator: apply must not reset it
    resource = ConfigResource(ResourceType.TOPIC, clicks, incremental_configs=[
        ConfigEntry("segment.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource], request_timeout=10)[resource].result()

    assert apply(settings, changed) == [
        Change("config", clicks, "retention.ms 604800000 -> 2592000000")]
    config = topic_config(admin, clicks)
    assert config["retention.ms"] == "2592000000"
    assert config["segment.ms"] == "3600000"
    assert apply(settings, changed) == []


def test_dry_run_changes_nothing(settings: Settings, admin: AdminClient, make_topology: Make) -> None:
    topology = make_topology()
    planned = apply(settings, topology, dry_run=True)
    assert [c.action for c in planned] == ["create"] * len(topology.topics)
    time.sleep(0.5)
    assert present(admin, topology) == set()

    assert apply(settings, topology) == planned
    drifted = make_topology(clicks_partitions=3, clicks_retention="86400000")
    clicks = next(t.name for t in drifted.topics if t.name.endswith(".clicks"))
    planned = apply(settings, drifted, dry_run=True)
    assert [(c.action, c.topic) for c in planned] == [("grow", clicks), ("config", clicks)]
    time.sleep(0.5)
    assert partitions(admin, clicks) == 2
    assert topic_config(admin, clicks)["retention.ms"] == "604800000"


def test_dry_run_still_has_the_broker_validate_configs(
        settings: Settings, admin: AdminClient, make_topology: Make) -> None:
    topology = make_topology(bad={"config": {"retention.ms": "not-a-number"}})
    bad = next(t.name for t in topology.topics if t.name.endswith(".bad"))
    with pytest.raises(UserError, match=bad):
        apply(settings, topology, dry_run=True)
    assert present(admin, topology) == set()


def test_replication_factor_above_broker_count_names_the_topic(
        settings: Settings, admin: AdminClient, make_topology: Make) -> None:
    brokers = len(admin.list_topics(timeout=10).brokers)
    topology = make_topology(wide={"replication_factor": brokers + 1})
    wide = next(t.name for t in topology.topics if t.name.endswith(".wide"))
    with pytest.raises(UserError, match=wide) as info:
        apply(settings, topology)
    assert "replication_factor" in str(info.value)
    assert present(admin, topology) == set()


def test_concurrent_appliers_both_succeed(
        settings: Settings, admin: AdminClient, make_topology: Make) -> None:
    topology = make_topology()
    results: list[list[Change]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(apply(settings, topology))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(results) == 2
    wait_for(lambda: present(admin, topology) == {t.name for t in topology.topics}, "all topics")
    assert apply(settings, topology) == []


def test_unreachable_broker_is_one_quick_quiet_user_error(
        make_topology: Make, capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = replace(Settings.from_env(), bootstrap=f"127.0.0.1:{port}", bootstrap_explicit=True)

    started = time.monotonic()
    with pytest.raises(UserError) as info:
        apply(settings, make_topology())
    elapsed = time.monotonic() - started

    message = str(info.value)
    assert elapsed < 10, elapsed
    assert f"Kafka broker at 127.0.0.1:{port} is unreachable" in message
    assert "c2m broker start" in message and "C2M_KAFKA_BOOTSTRAP" in message
    assert "\n" not in message
    assert capfd.readouterr().err == ""
