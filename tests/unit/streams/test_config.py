"""Settings.from_env: safe defaults, C2M_* overrides, clear errors, security passed through."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams import config
from streams.config import REPO_ROOT, Settings
from streams.errors import UserError
from tests.helpers import run_probe


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.bootstrap == "127.0.0.1:9092"
    assert s.bootstrap_explicit is False
    assert s.app_id == "c2m"
    assert s.topics_file == REPO_ROOT / "topics.yaml"
    assert s.api_host == "127.0.0.1"
    assert s.api_port == 6066
    assert s.bucket_seconds == 60
    assert s.plan_tick_seconds == 5.0
    assert s.max_record_bytes == 65536
    assert s.auto_offset_reset == "earliest"
    assert s.security == {}
    assert s.kafka_client_config() == {"bootstrap.servers": "127.0.0.1:9092"}


def test_defaults_equal_the_dataclass_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_empty_variables_mean_default() -> None:
    s = Settings.from_env({"C2M_API_PORT": "", "C2M_KAFKA_BOOTSTRAP": "", "C2M_SASL_PASSWORD": ""})
    assert s.api_port == 6066
    assert s.bootstrap_explicit is False
    assert s.security == {}


def test_env_overrides() -> None:
    s = Settings.from_env({
        "C2M_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "C2M_APP_ID": "c2m-test",
        "C2M_TOPICS_FILE": "/etc/c2m/topics.yaml",
        "C2M_API_HOST": "0.0.0.0",
        "C2M_API_PORT": "8080",
        "C2M_DATA_DIR": "/var/lib/c2m",
        "C2M_BUCKET_SECONDS": "3600",
        "C2M_PLAN_TICK_SECONDS": "0.5",
        "C2M_MAX_RECORD_BYTES": "1024",
        "C2M_AUTO_OFFSET_RESET": "latest",
    })
    assert s.bootstrap == "k1:9092,k2:9092"
    assert s.bootstrap_explicit is True
    assert s.app_id == "c2m-test"
    assert s.topics_file == Path("/etc/c2m/topics.yaml")
    assert s.api_host == "0.0.0.0"
    assert s.api_port == 8080
    assert s.data_dir == Path("/var/lib/c2m")
    assert s.bucket_seconds == 3600
    assert s.plan_tick_seconds == 0.5
    assert s.max_record_bytes == 1024
    assert s.auto_offset_reset == "latest"
    assert s.faust_broker == "kafka://k1:9092;kafka://k2:9092"


def test_reads_os_environ_when_no_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2M_API_PORT", "7001")
    assert Settings.from_env().api_port == 7001


@pytest.mark.parametrize("var", ["C2M_API_PORT", "C2M_BUCKET_SECONDS", "C2M_MAX_RECORD_BYTES"])
def test_bad_integer_names_the_variable(var: str) -> None:
    with pytest.raises(UserError) as info:
        Settings.from_env({var: "sixty"})
    assert var in str(info.value)
    assert "sixty" in str(info.value)


def test_bad_number_names_the_variable() -> None:
    with pytest.raises(UserError, match="C2M_PLAN_TICK_SECONDS"):
        Settings.from_env({"C2M_PLAN_TICK_SECONDS": "soon"})


def test_bad_offset_reset() -> None:
    with pytest.raises(UserError, match="C2M_AUTO_OFFSET_RESET"):
        Settings.from_env({"C2M_AUTO_OFFSET_RESET": "middle"})


@pytest.mark.parametrize("value", ["0", "-60"])
def test_non_positive_bucket(value: str) -> None:
    with pytest.raises(UserError, match="C2M_BUCKET_SECONDS"):
        Settings.from_env({"C2M_BUCKET_SECONDS": value})


class FakeContext:
    """Stands in for ssl.SSLContext where the test's certificate files are not real."""

    def __init__(self, **kwargs: Any) -> None:
        self.created = kwargs
        self.chain: tuple[Any, ...] | None = None

    def load_cert_chain(self, certfile: str, keyfile: str, password: str) -> None:
        self.chain = (certfile, keyfile, password)


@pytest.fixture
def fake_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Three readable files, and ssl.create_default_context replaced by FakeContext."""
    monkeypatch.setattr(config.ssl, "create_default_context", FakeContext)
    files = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("not parsed by FakeContext\n")
        files[name] = str(tmp_path / name)
    return files


def test_security_variables_pass_through_to_the_kafka_client_config(fake_tls: dict[str, str]) -> None:
    env = {
        "C2M_KAFKA_BOOTSTRAP": "broker:9093",
        "C2M_SECURITY_PROTOCOL": "SASL_SSL",
        "C2M_SASL_MECHANISM": "SCRAM-SHA-512",
        "C2M_SASL_USERNAME": "alice",
        "C2M_SASL_PASSWORD": "s3cret",
        "C2M_SSL_CAFILE": fake_tls["ca.pem"],
        "C2M_SSL_CERTFILE": fake_tls["client.pem"],
        "C2M_SSL_KEYFILE": fake_tls["client.key"],
        "C2M_SSL_KEY_PASSWORD": "key-pass",
        "UNRELATED": "x",
    }
    assert Settings.from_env(env).kafka_client_config() == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "s3cret",
        "ssl.ca.location": fake_tls["ca.pem"],
        "ssl.certificate.location": fake_tls["client.pem"],
        "ssl.key.location": fake_tls["client.key"],
        "ssl.key.password": "key-pass",
    }


def test_only_the_security_variables_that_are_set_pass_through(fake_tls: dict[str, str]) -> None:
    settings = Settings.from_env({"C2M_SECURITY_PROTOCOL": "SSL", "C2M_SSL_CAFILE": fake_tls["ca.pem"]})
    cfg = settings.kafka_client_config()
    assert cfg == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SSL",
                   "ssl.ca.location": fake_tls["ca.pem"]}


def test_protocol_and_mechanism_are_case_insensitive_and_sasl_defaults_to_plain() -> None:
    s = Settings.from_env({"C2M_SECURITY_PROTOCOL": "sasl_plaintext", "C2M_SASL_USERNAME": "a",
                           "C2M_SASL_PASSWORD": "b"})
    assert s.security == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                          "sasl.username": "a", "sasl.password": "b"}
    assert s.security_protocol == "SASL_PLAINTEXT"
    s = Settings.from_env({"C2M_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "C2M_SASL_MECHANISM": "scram-sha-256",
                           "C2M_SASL_USERNAME": "a", "C2M_SASL_PASSWORD": "b"})
    assert s.security["sasl.mechanism"] == "SCRAM-SHA-256"
    assert Settings.from_env({}).security_protocol == "PLAINTEXT"


@pytest.mark.parametrize(("env", "message"), [
    ({"C2M_SECURITY_PROTOCOL": "TLS"},
     r"C2M_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ({"C2M_SECURITY_PROTOCOL": "SASL_SSL", "C2M_SASL_MECHANISM": "GSSAPI", "C2M_SASL_USERNAME": "a",
      "C2M_SASL_PASSWORD": "b"}, r"C2M_SASL_MECHANISM must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"C2M_SECURITY_PROTOCOL": "SASL_SSL", "C2M_SASL_USERNAME": "a"},
     r"SASL_SSL needs C2M_SASL_USERNAME and C2M_SASL_PASSWORD"),
    ({"C2M_SECURITY_PROTOCOL": "SSL", "C2M_SASL_USERNAME": "a", "C2M_SASL_PASSWORD": "b"},
     r"C2M_SASL_USERNAME, C2M_SASL_PASSWORD set but C2M_SECURITY_PROTOCOL is SSL"),
    ({"C2M_SSL_CAFILE": "/ca.pem"}, r"C2M_SSL_CAFILE set but C2M_SECURITY_PROTOCOL is PLAINTEXT"),
    ({"C2M_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "C2M_SASL_USERNAME": "a", "C2M_SASL_PASSWORD": "b",
      "C2M_SSL_CAFILE": "/ca.pem"}, r"C2M_SSL_CAFILE set but C2M_SECURITY_PROTOCOL is SASL_PLAINTEXT"),
    ({"C2M_SECURITY_PROTOCOL": "SSL", "C2M_SSL_CERTFILE": "/c.pem"},
     r"C2M_SSL_CERTFILE and C2M_SSL_KEYFILE go together"),
])
def test_inconsistent_security_settings_are_one_line(env: dict[str, str], message: str) -> None:
    """Caught at start-up, not as a late handshake failure (or settings silently ignored)."""
    with pytest.raises(UserError, match=message):
        Settings.from_env(env)


# A throwaway CA certificate (public part only; made by broker.make_test_tls). Loading a CA does
# not check its validity dates, so this stays usable after it expires.
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBYzCCAQqgAwIBAgIID0Q5rqmDNJcwCgYIKoZIzj0EAwIwFjEUMBIGA1UEAxML
YzJtIHRlc3QgQ0EwHhcNMjYxMTIyMTgzMTUxWhcNMjYxMTI5MTgzMTUxWjAWMRQw
EgYDVQQDEwtjMm0gdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLgh
OG5RuyoUsAmTUIdEMLQc4sYWwqJ9apxaxQgGYRwQw1HkEoiAmJiQG29z7NvxnqFJ
wjfmyAqLNcV+0NHcYEWjQjBAMB0GA1UdDgQWBBRtdjSOh62sawNcCaHFH1OUQrMQ
pjAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNH
ADBEAiB4ToJAyFb+gZPlxafHE9eByAHtZfpdoeqUEK5OnZeOOAIgMHwQdYmaH8JU
qo2YMI7in6Py3lZmveYbrKxHXiPU4M8=
-----END CERTIFICATE-----
"""


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text(TEST_CA)
    return str(path)


def ssl_env(cafile: str, **extra: str) -> dict[str, str]:
    return {"C2M_SECURITY_PROTOCOL": "SSL", "C2M_SSL_CAFILE": cafile, **extra}


def test_ssl_context_trusts_the_ca_file_and_checks_the_hostname(ca_file: str) -> None:
    ctx = Settings.from_env(ssl_env(ca_file)).ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname  # as librdkafka verifies by default
    assert [dict(rdn[0] for rdn in ca["subject"]) for ca in ctx.get_ca_certs()] == [{"commonName": "c2m test CA"}]
    assert Settings.from_env({}).ssl_context() is None
    assert Settings.from_env({"C2M_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "C2M_SASL_USERNAME": "a",
                              "C2M_SASL_PASSWORD": "b"}).ssl_context() is None


@pytest.mark.parametrize(("files", "message"), [
    ({"C2M_SSL_CAFILE": "/nonexistent/ca.pem"}, r"^C2M_SSL_CAFILE=/nonexistent/ca.pem: no such file$"),
    ({"C2M_SSL_CAFILE": "{garbage}"}, r"^C2M_SSL_CAFILE=\S+ holds no usable PEM CA certificate \(.+\)$"),
    ({"C2M_SSL_CERTFILE": "{ca}", "C2M_SSL_KEYFILE": "/nonexistent/client.key"},
     r"^C2M_SSL_KEYFILE=/nonexistent/client.key: no such file$"),
    ({"C2M_SSL_CERTFILE": "/nonexistent/client.pem", "C2M_SSL_KEYFILE": "{garbage}"},
     r"^C2M_SSL_CERTFILE=/nonexistent/client.pem: no such file$"),
    ({"C2M_SSL_CERTFILE": "{ca}", "C2M_SSL_KEYFILE": "{garbage}"},
     r"^C2M_SSL_CERTFILE=\S+ and C2M_SSL_KEYFILE=\S+ are not a usable certificate and key \(.+\)"),
])
def test_bad_tls_files_are_one_line_before_any_client_is_made(
        ca_file: str, tmp_path: Path, files: dict[str, str], message: str) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    env = ssl_env(ca_file, **{k: v.format(ca=ca_file, garbage=garbage) for k, v in files.items()})
    settings = Settings.from_env(env)
    for use in (settings.kafka_client_config, settings.ssl_context, settings.faust_credentials):
        with pytest.raises(UserError, match=message):
            use()


def test_faust_gets_the_same_security_as_the_confluent_clients(ca_file: str) -> None:
    """What aiokafka (Faust's client) is given: the protocol, mechanism, user and TLS context."""
    assert Settings.from_env({}).faust_credentials() is None
    assert credentials_to_aiokafka_auth(Settings.from_env({}).faust_credentials()) == {
        "security_protocol": "PLAINTEXT"}

    tls = credentials_to_aiokafka_auth(Settings.from_env(ssl_env(ca_file)).faust_credentials())
    assert tls["security_protocol"] == "SSL"
    assert tls["ssl_context"].get_ca_certs() and tls["ssl_context"].check_hostname

    sasl_ssl = Settings.from_env(ssl_env(ca_file, C2M_SECURITY_PROTOCOL="SASL_SSL", C2M_SASL_MECHANISM="SCRAM-SHA-512",
                                         C2M_SASL_USERNAME="alice", C2M_SASL_PASSWORD="s3cret"))
    auth = credentials_to_aiokafka_auth(sasl_ssl.faust_credentials())
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice", "sasl_plain_password": "s3cret"}
    assert auth["ssl_context"].get_ca_certs()

    plain = Settings.from_env({"C2M_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "C2M_SASL_USERNAME": "bob",
                               "C2M_SASL_PASSWORD": "pw"})
    assert credentials_to_aiokafka_auth(plain.faust_credentials()) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": "bob",
        "sasl_plain_password": "pw", "ssl_context": None}


def test_a_faust_app_takes_the_credentials(ca_file: str) -> None:
    settings = Settings.from_env(ssl_env(ca_file, C2M_KAFKA_BOOTSTRAP="k1:9093,k2:9093"))
    app = faust.App("c2m-config-test", broker=settings.faust_broker, broker_credentials=settings.faust_credentials())
    assert credentials_to_aiokafka_auth(app.conf.broker_credentials)["security_protocol"] == "SSL"
    assert [str(url) for url in app.conf.broker] == ["kafka://k1:9093", "kafka://k2:9093"]


@pytest.fixture(scope="module")
def worker_app(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """streams.app (the worker's Faust app) as C2M_* variables configure it, in a fresh interpreter
    (the module reads the environment once, at import)."""
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_text(TEST_CA)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("C2M_")}, "C2M_API_HOST": "127.0.0.9",
           "C2M_API_PORT": "7071", "C2M_SECURITY_PROTOCOL": "SASL_SSL", "C2M_SSL_CAFILE": str(ca),
           "C2M_SASL_MECHANISM": "SCRAM-SHA-256", "C2M_SASL_USERNAME": "alice", "C2M_SASL_PASSWORD": "s3cret"}
    probe = (
        "import orjson\n"
        "from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth\n"
        "from streams.app import app\n"
        "auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)\n"
        "auth['ssl_context'] = auth.get('ssl_context') is not None\n"
        "print(orjson.dumps({'web_bind': app.conf.web_bind, 'web_port': app.conf.web_port, 'auth': auth}).decode())\n"
    )
    return dict(run_probe(probe, env))


def test_api_and_metrics_bind_to_c2m_api_host(worker_app: dict[str, Any]) -> None:
    """/api and /metrics are pages of the Faust web server: it binds C2M_API_HOST (127.0.0.1 by default)."""
    assert (worker_app["web_bind"], worker_app["web_port"]) == ("127.0.0.9", 7071)


def test_the_worker_app_gets_the_security_settings(worker_app: dict[str, Any]) -> None:
    assert worker_app["auth"] == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                                  "sasl_plain_username": "alice", "sasl_plain_password": "s3cret",
                                  "ssl_context": True}
