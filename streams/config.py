"""12-factor settings: every knob is a C2M_* environment variable with a safe default."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.errors import UserError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

REPO_ROOT = Path(__file__).resolve().parent.parent
# Below this the ~30 stores' memtables would share a few MiB and flush on nearly every batch.
MIN_STORE_MEMORY_MB = 16


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
    checkpoint_seconds: float = 30.0
    max_resident_niches: int = 200_000
    service_level: float = 0.9
    revision_hold_seconds: float | None = None  # None: a sixth of a bucket (revision_hold_ms)
    session_timeout_seconds: float = 45.0
    store_memory_mb: int = 128  # RocksDB block cache + memtables of all the worker's stores together
    security: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        security = _security(e)
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
            checkpoint_seconds=_float(e, "C2M_CHECKPOINT_SECONDS", 30.0),
            max_resident_niches=_int(e, "C2M_MAX_RESIDENT_NICHES", 200_000),
            service_level=_float(e, "C2M_SERVICE_LEVEL", 0.9),
            revision_hold_seconds=_float(e, "C2M_REVISION_HOLD_SECONDS", -1.0) if e.get("C2M_REVISION_HOLD_SECONDS")
            else None,
            session_timeout_seconds=_float(e, "C2M_SESSION_TIMEOUT_SECONDS", 45.0),
            store_memory_mb=_int(e, "C2M_STORE_MEMORY_MB", 128),
            security=security,
        )
        if settings.auto_offset_reset not in ("earliest", "latest"):
            raise UserError("C2M_AUTO_OFFSET_RESET must be earliest or latest")
        if settings.bucket_seconds <= 0:
            raise UserError("C2M_BUCKET_SECONDS must be positive")
        if settings.dedupe_window_seconds <= 0:
            raise UserError("C2M_DEDUPE_WINDOW_SECONDS must be positive")
        if settings.plan_tick_seconds <= 0 or settings.checkpoint_seconds <= 0:
            raise UserError("C2M_PLAN_TICK_SECONDS and C2M_CHECKPOINT_SECONDS must be positive")
        if settings.max_resident_niches <= 0:
            raise UserError("C2M_MAX_RESIDENT_NICHES must be positive")
        if settings.revision_hold_seconds is not None and settings.revision_hold_seconds < 0:
            raise UserError("C2M_REVISION_HOLD_SECONDS must not be negative")
        if not 3 <= settings.session_timeout_seconds <= 300:
            raise UserError("C2M_SESSION_TIMEOUT_SECONDS must lie between 3 and 300")
        if not 0.5 <= settings.service_level <= 0.9:
            raise UserError("C2M_SERVICE_LEVEL must lie between 0.5 (plan for P50) and 0.9 (P90)")
        if settings.store_memory_mb < MIN_STORE_MEMORY_MB:
            raise UserError(f"C2M_STORE_MEMORY_MB must be at least {MIN_STORE_MEMORY_MB} (MiB for all the "
                            f"worker's RocksDB stores together), got {settings.store_memory_mb}")
        return settings

    @property
    def security_protocol(self) -> str:
        return self.security.get("security.protocol", "PLAINTEXT").upper()

    @property
    def revision_hold_ms(self) -> int:
        """How long an open lot is left alone after a change (the planner's hysteresis in time)."""
        hold = self.revision_hold_seconds if self.revision_hold_seconds is not None else self.bucket_seconds / 6
        return int(hold * 1000)

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka-style settings for confluent-kafka clients, security included.

        The TLS files are loaded first (ssl_context): a wrong path or a file that holds no
        certificate is one clear line here, not librdkafka's "Failed to create client" traceback.
        """
        self.ssl_context()
        return {"bootstrap.servers": self.bootstrap, **self.security}

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{host}" for host in self.bootstrap.split(","))

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS for aiokafka (Faust's client) from the files librdkafka reads, so both verify the
        broker alike (CA and hostname); None when the protocol has no TLS. Without C2M_SSL_CAFILE
        the system's CA store is trusted, as librdkafka does."""
        if self.security_protocol not in _TLS_PROTOCOLS:
            return None
        cafile = self.security.get("ssl.ca.location")
        try:
            if cafile is None:
                context = ssl.create_default_context()
            elif Path(cafile).is_dir():
                context = ssl.create_default_context(capath=_readable("C2M_SSL_CAFILE", cafile))
            else:
                context = ssl.create_default_context(cafile=_readable("C2M_SSL_CAFILE", cafile))
        except ssl.SSLError as exc:
            reason = _ssl_reason(exc)
            raise UserError(f"C2M_SSL_CAFILE={cafile} holds no usable PEM CA certificate ({reason})") from None
        certfile = self.security.get("ssl.certificate.location")
        keyfile = self.security.get("ssl.key.location")
        if certfile and keyfile:
            try:
                # a password (empty when none is set): OpenSSL would otherwise prompt on the terminal
                context.load_cert_chain(_readable("C2M_SSL_CERTFILE", certfile), _readable("C2M_SSL_KEYFILE", keyfile),
                                        password=self.security.get("ssl.key.password", ""))
            except ssl.SSLError as exc:
                raise UserError(f"C2M_SSL_CERTFILE={certfile} and C2M_SSL_KEYFILE={keyfile} are not a usable "
                                f"certificate and key ({_ssl_reason(exc)}; an encrypted key needs "
                                "C2M_SSL_KEY_PASSWORD)") from None
        return context

    def faust_credentials(self) -> CredentialsT | None:
        """Faust's `broker_credentials` for these settings: the same protocol, SASL mechanism and
        user, and TLS verification its aiokafka clients need as the confluent-kafka ones get."""
        protocol = self.security_protocol
        if protocol == "PLAINTEXT":
            return None
        from faust import SASLCredentials, SSLCredentials

        context = self.ssl_context()
        if protocol == "SSL":
            return SSLCredentials(context)
        return SASLCredentials(username=self.security.get("sasl.username"),
                               password=self.security.get("sasl.password"),
                               ssl_context=context, mechanism=self.security.get("sasl.mechanism", "PLAIN"))


# librdkafka property -> environment variable. Passed through verbatim to confluent-kafka clients
# (protocol and mechanism upper-cased), and mapped to Faust's broker_credentials.
_SECURITY_VARS = {
    "security.protocol": "C2M_SECURITY_PROTOCOL",
    "sasl.mechanism": "C2M_SASL_MECHANISM",
    "sasl.username": "C2M_SASL_USERNAME",
    "sasl.password": "C2M_SASL_PASSWORD",
    "ssl.ca.location": "C2M_SSL_CAFILE",
    "ssl.certificate.location": "C2M_SSL_CERTFILE",
    "ssl.key.location": "C2M_SSL_KEYFILE",
    "ssl.key.password": "C2M_SSL_KEY_PASSWORD",
}
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
# What both clients speak: librdkafka and aiokafka (Faust) alike, with a username and password.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _security(env: dict[str, str]) -> dict[str, str]:
    """The C2M_* security variables as librdkafka properties, checked for what would otherwise
    fail late and obscurely: SASL or TLS settings the protocol ignores, half a client certificate,
    a mechanism Faust's client cannot speak. With SASL and no mechanism, PLAIN (librdkafka would
    default to GSSAPI, Faust to PLAIN: they must agree)."""
    security = {key: env[var] for key, var in _SECURITY_VARS.items() if env.get(var)}
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise UserError(f"C2M_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                        f"got {security['security.protocol']!r}")
    if "security.protocol" in security:
        security["security.protocol"] = protocol
    sasl = [var for key, var in _SECURITY_VARS.items() if key.startswith("sasl.") and key in security]
    tls = [var for key, var in _SECURITY_VARS.items() if key.startswith("ssl.") and key in security]
    if sasl and not protocol.startswith("SASL_"):
        raise UserError(f"{', '.join(sasl)} set but C2M_SECURITY_PROTOCOL is {protocol}: "
                        "set it to SASL_SSL (or SASL_PLAINTEXT)")
    if tls and protocol not in _TLS_PROTOCOLS:
        raise UserError(f"{', '.join(tls)} set but C2M_SECURITY_PROTOCOL is {protocol}: set it to SSL or SASL_SSL")
    if ("ssl.certificate.location" in security) != ("ssl.key.location" in security):
        raise UserError("C2M_SSL_CERTFILE and C2M_SSL_KEYFILE go together: a client certificate and its key")
    if protocol.startswith("SASL_"):
        mechanism = security.get("sasl.mechanism", "PLAIN").upper()
        if mechanism not in SASL_MECHANISMS:
            raise UserError(f"C2M_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, got {mechanism!r}")
        security["sasl.mechanism"] = mechanism
        if "sasl.username" not in security or "sasl.password" not in security:
            raise UserError(f"{protocol} needs C2M_SASL_USERNAME and C2M_SASL_PASSWORD")
    return security


def _readable(var: str, path: str) -> str:
    """`path` if it can be read; else one line naming the variable (OpenSSL's own errors do not)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{var}={path}: no such file")
    if not os.access(p, os.R_OK):
        raise UserError(f"{var}={path}: not readable by this user")
    return path


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason code in words: 'KEY_VALUES_MISMATCH' -> 'key values mismatch'."""
    reason = getattr(exc, "reason", None)
    return reason.lower().replace("_", " ") if reason else str(exc)
