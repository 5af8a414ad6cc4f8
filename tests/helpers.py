"""Plain helpers shared by fixtures and tests (no pytest fixtures here, so they can be imported anywhere)."""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """No broker to test against: a failure in CI (integration tests must never be skipped there), else a skip."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
