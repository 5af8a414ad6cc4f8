"""streams.broker without a JVM: properties, cluster ids, status from disk, prerequisite errors."""

from __future__ import annotations

import base64
import os
import socket
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams import broker
from streams.errors import UserError
from tests.helpers import free_port


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch (or download into) the real ~/.cache/c2m from a unit test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("C2M_CACHE_DIR", str(cache))
    return cache


def _parse(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    props = _parse(broker.render_properties(port=39092, controller_port=39093, log_dir=tmp_path / "logs"))

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:39093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:39092"
    assert props["log.dirs"] == str(tmp_path / "logs")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["log.cleaner.dedupe.buffer.size"] == "2097152"
    assert "0.0.0.0" not in broker.render_properties(1, 2, tmp_path)
    assert "log.cleaner.enable" not in props  # the cleaner stays on: changelogs are compacted


def test_secure_listeners_beside_plaintext_on_loopback(tmp_path: Path) -> None:
    tls = broker.TlsFiles(ca_pem=tmp_path / "ca.pem", keystore=tmp_path / "broker.p12", password="pw0")
    secure = broker.SecureListeners(tls, ssl_port=39094, sasl_ssl_port=39095, sasl_users={"alice": "a-1", "bob": "b-2"})
    text = broker.render_properties(port=39092, controller_port=39093, log_dir=tmp_path / "logs", secure=secure)
    props = _parse(text)

    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093,"
                                  "SSL://127.0.0.1:39094,SASL_SSL://127.0.0.1:39095")
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:39092,SSL://127.0.0.1:39094,SASL_SSL://127.0.0.1:39095")
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"  # the broker's own traffic and the readiness probe
    assert (props["ssl.keystore.type"], props["ssl.keystore.location"]) == ("PKCS12", str(tmp_path / "broker.p12"))
    assert props["ssl.keystore.password"] == props["ssl.key.password"] == "pw0"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "PLAIN"
    assert props["listener.name.sasl_ssl.plain.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="a-1" user_bob="b-2";')
    assert "0.0.0.0" not in text
    path = tmp_path / "server.properties"
    path.write_text(text)
    read = broker._read_properties(path)
    ports = {name: broker._listener_port(read, name) for name in ("PLAINTEXT", "CONTROLLER", "SSL", "SASL_SSL")}
    assert ports == {"PLAINTEXT": 39092, "CONTROLLER": 39093, "SSL": 39094, "SASL_SSL": 39095}  # not SASL_SSL as SSL


def test_ssl_only_listener_has_no_sasl(tmp_path: Path) -> None:
    tls = broker.TlsFiles(ca_pem=tmp_path / "ca.pem", keystore=tmp_path / "broker.p12", password="pw0")
    props = _parse(broker.render_properties(1, 2, tmp_path, broker.SecureListeners(tls, ssl_port=3)))
    assert props["listeners"].endswith(",SSL://127.0.0.1:3")
    assert not [key for key in props if "sasl" in key]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "needs ssl_port, sasl_ssl_port or both"),
    ({"sasl_ssl_port": 3}, "needs at least one user"),
    ({"sasl_ssl_port": 3, "sasl_users": {"alice": 'x" user_admin="y'}}, "must be 1-64 of"),
])
def test_secure_listeners_refuse_what_would_break_the_properties(
        tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    tls = broker.TlsFiles(ca_pem=tmp_path / "ca.pem", keystore=tmp_path / "broker.p12", password="pw0")
    with pytest.raises(ValueError, match=message):
        broker.SecureListeners(tls, **kwargs)


def test_start_refuses_a_secure_port_another_process_holds(tmp_path: Path) -> None:
    tls = broker.TlsFiles(ca_pem=tmp_path / "ca.pem", keystore=tmp_path / "broker.p12", password="pw0")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        secure = broker.SecureListeners(tls, ssl_port=taken)
        with pytest.raises(UserError, match=rf"port {taken} on 127.0.0.1 is already in use"):
            broker.start(port=free_port(), data_dir=tmp_path / "broker", secure=secure)


def test_listener_ports_read_back_from_rendered_properties(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text(broker.render_properties(port=41000, controller_port=41001, log_dir=tmp_path))
    props = broker._read_properties(path)
    assert broker._listener_port(props, "PLAINTEXT") == 41000
    assert broker._listener_port(props, "CONTROLLER") == 41001


def test_cluster_id_is_urlsafe_base64_of_16_bytes() -> None:
    for _ in range(200):
        cluster_id = broker.new_cluster_id()
        assert len(cluster_id) == 22
        assert "=" not in cluster_id
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_cluster_id_retried_when_it_would_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # first 6 bits 111110 -> '-' in the URL-safe alphabet
    plain = uuid.UUID(bytes=bytes(range(16)))
    assert base64.urlsafe_b64encode(dashed.bytes).startswith(b"-")
    answers = iter([dashed, plain])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(answers))
    assert broker.new_cluster_id() == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")


def test_cluster_id_kept_for_an_existing_data_dir(tmp_path: Path) -> None:
    paths = broker._Paths(tmp_path)
    first = broker._cluster_id(paths)
    assert broker._cluster_id(paths) == first
    paths.kafka_logs.mkdir()
    (paths.kafka_logs / "meta.properties").write_text("cluster.id=FormattedByKafka00000000\nnode.id=1\n")
    assert broker._cluster_id(paths) == "FormattedByKafka00000000"  # what the log dir says wins


def test_default_data_dir_is_per_port_under_the_cache(_isolated_cache: Path) -> None:
    assert broker.default_data_dir(9092) == _isolated_cache / "broker-9092"
    assert broker.jars_dir() == _isolated_cache / f"kafka-{broker.KAFKA_VERSION}" / "lib"


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ("no version here", None),
    ],
)
def test_parse_java_version(text: str, major: int | None) -> None:
    assert broker.parse_java_version(text) == major


def test_status_ignores_a_stale_pid_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    (data_dir / "server.properties").write_text(broker.render_properties(45000, 45001, data_dir))
    for pid in (os.getpid(), _dead_pid()):  # alive but not a broker; not alive at all
        (data_dir / "broker.pid").write_text(f"{pid}\n")
        st = broker.status(port=45000, data_dir=data_dir)
        assert st == broker.BrokerStatus(
            running=False, bootstrap="127.0.0.1:45000", pid=None, data_dir=data_dir.resolve()
        )


def test_stop_with_a_stale_pid_file_removes_it_and_says_nothing_was_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    (data_dir / "broker.pid").write_text(f"{_dead_pid()}\n")
    assert broker.stop(port=45000, data_dir=data_dir) is False
    assert not (data_dir / "broker.pid").exists()
    assert broker.stop(port=45000, data_dir=tmp_path / "never-created") is False


def test_status_without_anything_on_disk(tmp_path: Path) -> None:
    st = broker.status(port=45002, data_dir=tmp_path / "nothing")
    assert not st.running
    assert st.pid is None
    assert st.bootstrap == "127.0.0.1:45002"


def test_missing_java_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UserError, match=r"Java 17\+ is required .*openjdk-17-jre-headless.*C2M_KAFKA_BOOTSTRAP"):
        broker.ensure_jars()


def test_old_java_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _fake_bin(tmp_path, java_version="11.0.2")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UserError, match=r"Java 17\+ is required .*found Java 11"):
        broker.ensure_jars()


def test_missing_maven_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _fake_bin(tmp_path, java_version="17.0.15")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UserError, match=r"Maven \(mvn\) is required"):
        broker.ensure_jars()


def test_failing_maven_reports_its_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _fake_bin(tmp_path, java_version="17.0.15")
    _script(
        bin_dir / "mvn",
        "echo '[ERROR] Failed to execute goal on project x: Could not resolve dependencies -> [Help 1]'\n"
        "echo '[ERROR] '\n"
        "echo '[ERROR] Re-run Maven using the -X switch to enable full debug logging.'\n"
        "exit 1\n",
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UserError, match=r"Maven could not resolve Kafka .*: Failed to execute goal .*dependencies$"):
        broker.ensure_jars()
    lib = broker.jars_dir()
    assert not lib.exists()  # nothing half-done is taken for a complete download
    assert list(lib.parent.iterdir()) == []


def test_maven_output_boils_down_to_its_error() -> None:
    output = (
        "\x1b[0m\x1b[0m[ERROR] Failed to execute goal on project c2m: Could not resolve dependencies"
        " -> [Help 1]\n"
        "[ERROR] \n[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.\n"
        "[ERROR] For more information about the errors and possible solutions, please read:\n"
        "[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/DependencyResolutionException\n"
    )
    assert broker.last_meaningful_line(output) == (
        "Failed to execute goal on project c2m: Could not resolve dependencies"
    )
    assert broker.last_meaningful_line("") == "(no output)"
    assert broker.last_meaningful_line("first\nlast line\n\n") == "last line"


def test_last_error_digs_out_the_root_cause() -> None:
    log = (
        "[2026-01-01 00:00:00,000] INFO [KafkaRaftServer nodeId=1] Starting (kafka.server.KafkaRaftServer)\n"
        "[2026-01-01 00:00:01,000] ERROR Exiting Kafka due to fatal exception during startup. (kafka.Kafka$)\n"
        "java.lang.RuntimeException: Received a fatal error while waiting for the Acceptors to be started\n"
        "\tat kafka.server.BrokerServer.startup(BrokerServer.scala:1)\n"
        "Caused by: org.apache.kafka.common.KafkaException: Socket server failed to bind to "
        "127.0.0.1:9092: Address already in use.\n"
        "\t... 6 more\n"
        "Caused by: java.net.BindException: Address already in use\n"
        "\t... 6 more\n"
        "[2026-01-01 00:00:02,000] WARN closing (org.apache.kafka.clients.NetworkClient)\n"
    )
    assert broker.last_error(log) == "Socket server failed to bind to 127.0.0.1:9092: Address already in use."
    assert broker.last_error("[2026-01-01 00:00:00,000] ERROR Disk full (kafka.log.LogManager)\n") == "Disk full"
    assert broker.last_error("[2026-01-01 00:00:00,000] INFO fine (x.Y)\n") is None


def test_start_refuses_a_port_another_process_holds(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UserError, match=rf"port {port} on 127.0.0.1 is already in use by another process"):
            broker.start(port=port, data_dir=tmp_path / "broker")
    assert not (tmp_path / "broker" / "broker.pid").exists()


def _dead_pid() -> int:
    """A pid that no process has right now."""
    pid = 4_000_000  # above the default pid_max (4194304 is the ceiling on 64-bit Linux)
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _fake_bin(tmp_path: Path, java_version: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _script(bin_dir / "java", f"echo 'openjdk version \"{java_version}\" 2025-01-01' >&2\n")
    return bin_dir
