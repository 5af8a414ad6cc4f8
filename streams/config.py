"""12-factor settings: every knob is a C2M_* environment variable with a safe default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Where downloaded Kafka jars and local broker data live: outside the repo, shared by clones."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("C2M_CACHE_DIR", str(Path(base) / "c2m")))


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise UserError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    bootstrap: str = "127.0.0.1:9092"
    bootstrap_explicit: bool = False
    app_id: str = "c2m"
    topics_file: Path = REPO_ROOT / "topics.yaml"
    api_host: str = "127.0.0.1"
    api_port: int = 6066
    data_dir: Path = Path(".c2m/worker")
    bucket_seconds: int = 60
    plan_tick_seconds: float = 5.0
    max_record_bytes: int = 65536
    auto_offset_reset: str = "earliest"
    dedupe_window_seconds: int = 86400
    security: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        security = {
            key: e[var]
            for key, var in _SECURITY_VARS.items()
            if e.get(var)
        }
        settings = cls(
            bootstrap=e.get("C2M_KAFKA_BOOTSTRAP") or "127.0.0.1:9092",
            bootstrap_explicit=bool(e.get("C2M_KAFKA_BOOTSTRAP")),
            app_id=e.get("C2M_APP_ID") or "c2m",
            topics_file=Path(e.get("C2M_TOPICS_FILE") or REPO_ROOT / "topics.yaml"),
            api_host=e.get("C2M_API_HOST") or "127.0.0.1",
            api_port=_int(e, "C2M_API_PORT", 6066),
            data_dir=Path(e.get("C2M_DATA_DIR") or ".c2m/worker"),
            bucket_seconds=_int(e, "C2M_BUCKET_SECONDS", 60),
            plan_tick_seconds=_float(e, "C2M_PLAN_TICK_SECONDS", 5.0),
            max_record_bytes=_int(e, "C2M_MAX_RECORD_BYTES", 65536),
            auto_offset_reset=e.get("C2M_AUTO_OFFSET_RESET") or "earliest",
            dedupe_window_seconds=_int(e, "C2M_DEDUPE_WINDOW_SECONDS", 86400),
            security=security,
        )
        if settings.auto_offset_reset not in ("earliest", "latest"):
            raise UserError("C2M_AUTO_OFFSET_RESET must be earliest or latest")
        if settings.bucket_seconds <= 0:
            raise UserError("C2M_BUCKET_SECONDS must be positive")
        if settings.dedupe_window_seconds <= 0:
            raise UserError("C2M_DEDUPE_WINDOW_SECONDS must be positive")
        return settings

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka-style settings for confluent-kafka clients, security included."""
        return {"bootstrap.servers": self.bootstrap, **self.security}

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{host}" for host in self.bootstrap.split(","))


# librdkafka property -> environment variable. Passed through verbatim to confluent-kafka clients.
_SECURITY_VARS = {
    "security.protocol": "C2M_SECURITY_PROTOCOL",
    "sasl.mechanism": "C2M_SASL_MECHANISM",
    "sasl.username": "C2M_SASL_USERNAME",
    "sasl.password": "C2M_SASL_PASSWORD",
    "ssl.ca.location": "C2M_SSL_CAFILE",
    "ssl.certificate.location": "C2M_SSL_CERTFILE",
    "ssl.key.location": "C2M_SSL_KEYFILE",
}
