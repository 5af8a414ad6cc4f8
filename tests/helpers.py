"""Plain helpers shared by fixtures and tests (no pytest fixtures here, so they can be imported anywhere)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any, NoReturn

import orjson
import pytest

from streams.config import REPO_ROOT


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """Something a test needs is missing here (a broker, Faust's Cython extension, glibc): a failure
    in CI (no test may be skipped there), else a skip."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_probe(code: str, env: dict[str, str]) -> Any:
    """Run `code` in a fresh interpreter (streams.app reads the environment at import) and return
    the JSON its last output line holds."""
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout.strip().splitlines()[-1])


class FakeMessage:
    """A confluent_kafka.Message as our clients read one, for tests with fake Kafka clients."""

    def __init__(self, topic: str, partition: int = 0, offset: int = 0, value: bytes | None = b"{}",
                 error: Any = None, key: bytes | None = None) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._value, self._error, self._key = value, error, key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def error(self) -> Any:
        return self._error
