"""The local JVM broker end to end: its own broker on a free port (never the session's shared one)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams import broker
from streams.errors import UserError
from tests.helpers import unavailable

pytestmark = pytest.mark.integration


def _round_trip(bootstrap: str, topic: str, value: bytes | None) -> list[bytes]:
    """Produce ``value`` (if given) and read the whole topic back from the beginning."""
    if value is not None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        producer.produce(topic, key=b"k", value=value)
        assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while not seen and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append(message.value())
    finally:
        consumer.close()
    return seen


def test_local_broker_lifecycle(tmp_path: Path, free_port: int) -> None:
    data_dir = tmp_path / "broker"
    try:
        first = broker.start(port=free_port, data_dir=data_dir)
    except UserError as exc:
        unavailable(f"the local Kafka broker could not start: {exc}")
    try:
        assert first.running
        assert first.bootstrap == f"127.0.0.1:{free_port}"
        assert first.pid is not None

        again = broker.start(port=free_port, data_dir=data_dir)
        assert again == first  # idempotent: the same process, not a second broker

        assert broker.status(port=free_port, data_dir=data_dir) == first

        topic = f"c2m.test-broker-{uuid.uuid4().hex[:8]}"
        assert _round_trip(first.bootstrap, topic, b"hello") == [b"hello"]

        assert broker.stop(port=free_port, data_dir=data_dir) is True
        stopped = broker.status(port=free_port, data_dir=data_dir)
        assert not stopped.running
        assert stopped.pid is None
        assert not (data_dir / "broker.pid").exists()
        assert broker.stop(port=free_port, data_dir=data_dir) is False

        # a restart keeps the cluster id and the data
        restarted = broker.start(port=free_port, data_dir=data_dir)
        assert restarted.pid != first.pid
        assert _round_trip(restarted.bootstrap, topic, None) == [b"hello"]
    finally:
        broker.stop(port=free_port, data_dir=data_dir)
    assert not broker.status(port=free_port, data_dir=data_dir).running
