"""Kafka security end to end: a private local broker with SSL and SASL_SSL listeners (a throwaway CA),
and c2m configured by C2M_* variables only. Over SSL `c2m topics apply` works, a Faust worker consumes
what the Publisher SDK sends and shows it in /api/niches; over SASL_SSL the confluent-kafka clients
and Faust's own client (aiokafka, given settings.faust_credentials()) work. A plaintext client on the
SSL port, a wrong CA, a wrong password or a missing key file fail with one line, no traceback."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams import broker
from streams.config import REPO_ROOT, Settings
from streams.errors import UserError
from streams.publisher import Publisher
from streams.workers import WorkerProcess
from tests.helpers import free_port, unavailable

pytestmark = pytest.mark.integration

ATTRS = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}


@dataclass(frozen=True)
class SecureBroker:
    plaintext: str
    ssl: str
    sasl_ssl: str
    ca: Path
    other_ca: Path  # a CA that did not sign the broker's certificate
    password: str  # of SASL user "alice"

    def env(self, **c2m: str) -> dict[str, str]:
        """This process's environment without any C2M_* variable, plus `c2m`."""
        return {**{k: v for k, v in os.environ.items() if not k.startswith("C2M_")}, **c2m}

    def ssl_env(self, **extra: str) -> dict[str, str]:
        return self.env(**{"C2M_KAFKA_BOOTSTRAP": self.ssl, "C2M_SECURITY_PROTOCOL": "SSL",
                           "C2M_SSL_CAFILE": str(self.ca), **extra})

    def sasl_env(self, password: str | None = None) -> dict[str, str]:
        return self.env(C2M_KAFKA_BOOTSTRAP=self.sasl_ssl, C2M_SECURITY_PROTOCOL="SASL_SSL",
                        C2M_SSL_CAFILE=str(self.ca), C2M_SASL_MECHANISM="PLAIN", C2M_SASL_USERNAME="alice",
                        C2M_SASL_PASSWORD=password or self.password)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker of this module's own (the session broker has no TLS), stopped when the module ends."""
    work = tmp_path_factory.mktemp("secure-kafka")
    port, ssl_port, sasl_port = free_port(), free_port(), free_port()
    password = secrets.token_hex(8)
    try:
        tls = broker.make_test_tls(work / "tls")
        other = broker.make_test_tls(work / "other-tls")
        broker.start(port=port, data_dir=work / "kafka", timeout=120, secure=broker.SecureListeners(
            tls, ssl_port=ssl_port, sasl_ssl_port=sasl_port, sasl_users={"alice": password}))
    except UserError as exc:
        unavailable(f"no local broker with TLS listeners: {exc}")
    try:
        yield SecureBroker(f"127.0.0.1:{port}", f"127.0.0.1:{ssl_port}", f"127.0.0.1:{sasl_port}", tls.ca_pem,
                           other.ca_pem, password)
    finally:
        broker.stop(port=port, data_dir=work / "kafka")


def c2m(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def applied(secure: SecureBroker) -> subprocess.CompletedProcess[str]:
    """`c2m topics apply` over SSL, once for the module."""
    return c2m(secure.ssl_env(), "topics", "apply")


def test_topics_apply_over_ssl(applied: subprocess.CompletedProcess[str]) -> None:
    assert applied.returncode == 0, applied.stderr
    assert "c2m.clickstream" in applied.stdout


def test_worker_consumes_what_the_publisher_sends_over_ssl(
        secure: SecureBroker, applied: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    assert applied.returncode == 0, applied.stderr
    env = secure.ssl_env(C2M_APP_ID=f"c2m-ssl-{uuid.uuid4().hex[:6]}", C2M_API_PORT=str(free_port()))
    worker = WorkerProcess(env, tmp_path / "worker").start()
    try:
        worker.wait_ready(timeout=120)
        region = f"SSL-{uuid.uuid4().hex[:6]}"
        with Publisher(Settings.from_env(env)) as pub:
            for i in range(20):
                pub.view("SKU-S", region=region, user_id=f"u-{i}", attrs=ATTRS)
            for i in range(5):
                pub.add_to_cart("SKU-S", region=region, user_id=f"u-{i}", attrs=ATTRS)
            pub.order(f"o-{region}", "SKU-S", 3, region=region, attrs=ATTRS)
        key = f"dress|boho|sage|M|{region}"
        deadline = time.monotonic() + 60
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            niches = {n["niche"]: n for n in worker.get("/api/niches?limit=1000")["niches"]}
            counts = niches.get(key, {}).get("counts", {})
            if counts.get("orders"):
                break
            time.sleep(0.5)
        assert (counts.get("view"), counts.get("add_to_cart"), counts.get("orders"), counts.get("units")) == (
            20, 5, 1, 3), f"{key} in /api/niches: {counts}; worker log: {worker.last_error()}"
    finally:
        worker.stop()


def test_sasl_ssl_for_confluent_kafka_and_faust_clients(
        secure: SecureBroker, applied: subprocess.CompletedProcess[str]) -> None:
    assert applied.returncode == 0, applied.stderr
    env = secure.sasl_env()
    done = c2m(env, "topics", "apply")
    assert done.returncode == 0, done.stderr
    settings = Settings.from_env(env)
    marker = f"u-{uuid.uuid4().hex[:8]}"
    with Publisher(settings) as pub:
        ids = {pub.view("SKU-Q", region="SASL", attrs=ATTRS, user_id=marker) for _ in range(3)}

    async def read_back() -> set[str]:
        """What Faust's worker does: an aiokafka client given the app's broker_credentials."""
        auth = credentials_to_aiokafka_auth(settings.faust_credentials())
        assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "PLAIN"
        consumer = AIOKafkaConsumer("c2m.clickstream", bootstrap_servers=settings.bootstrap,
                                    auto_offset_reset="earliest", group_id=None, **auth)
        await consumer.start()
        seen: set[str] = set()
        try:
            async with asyncio.timeout(60):
                async for msg in consumer:
                    record = orjson.loads(msg.value)
                    if record.get("user_id") == marker:
                        seen.add(record["event_id"])
                    if ids <= seen:
                        break
        finally:
            await consumer.stop()
        return seen

    assert asyncio.run(read_back()) >= ids


@pytest.mark.parametrize(("case", "expected"), [
    ("plaintext client on the SSL port", "is unreachable"),
    ("a CA that did not sign the broker", "certificate verify failed"),
    ("a CA file that does not exist", "C2M_SSL_CAFILE=/nonexistent/ca.pem: no such file"),
    ("a key file that does not exist", "C2M_SSL_KEYFILE=/nonexistent/client.key: no such file"),
    ("a wrong SASL password", "refused the SASL login (Invalid username or password)"),
])
def test_security_mistakes_are_one_line(secure: SecureBroker, case: str, expected: str) -> None:
    env = {
        "plaintext client on the SSL port": secure.env(C2M_KAFKA_BOOTSTRAP=secure.ssl),
        "a CA that did not sign the broker": secure.ssl_env(C2M_SSL_CAFILE=str(secure.other_ca)),
        "a CA file that does not exist": secure.ssl_env(C2M_SSL_CAFILE="/nonexistent/ca.pem"),
        "a key file that does not exist": secure.ssl_env(C2M_SSL_CERTFILE=str(secure.ca),
                                                         C2M_SSL_KEYFILE="/nonexistent/client.key"),
        "a wrong SASL password": secure.sasl_env(password="wrong-password"),
    }[case]
    for command in (["topics", "apply"], ["worker"]):
        done = c2m(env, *command, timeout=60)
        assert done.returncode == 1, f"{command}: {done.stdout} {done.stderr}"
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("c2m: error: "), f"{command}: {done.stderr}"
        assert expected in lines[0]
