"""Settings.from_env: safe defaults, C2M_* overrides, clear errors, security passed through."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config import REPO_ROOT, Settings
from streams.errors import UserError


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


def test_security_variables_pass_through_to_the_kafka_client_config() -> None:
    env = {
        "C2M_KAFKA_BOOTSTRAP": "broker:9093",
        "C2M_SECURITY_PROTOCOL": "SASL_SSL",
        "C2M_SASL_MECHANISM": "SCRAM-SHA-512",
        "C2M_SASL_USERNAME": "alice",
        "C2M_SASL_PASSWORD": "s3cret",
        "C2M_SSL_CAFILE": "/certs/ca.pem",
        "C2M_SSL_CERTFILE": "/certs/client.pem",
        "C2M_SSL_KEYFILE": "/certs/client.key",
        "UNRELATED": "x",
    }
    assert Settings.from_env(env).kafka_client_config() == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/certs/ca.pem",
        "ssl.certificate.location": "/certs/client.pem",
        "ssl.key.location": "/certs/client.key",
    }


def test_only_the_security_variables_that_are_set_pass_through() -> None:
    cfg = Settings.from_env({"C2M_SECURITY_PROTOCOL": "SSL", "C2M_SSL_CAFILE": "/ca.pem"}).kafka_client_config()
    assert cfg == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}
