"""Shared pieces for confluent-kafka clients: quiet logging and a fast, one-line reachability check."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streams.config import Settings
from streams.errors import UserError

# How long to wait for the first metadata answer before calling the broker unreachable. A refused
# connection or an unresolvable host is detected much sooner (see _connect).
CONNECT_TIMEOUT = 10.0
_PROBE_SLICE = 0.5

# librdkafka errors (via error_cb) meaning "this will not get better by waiting a few seconds".
_FAST_FAIL = {
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError._RESOLVE,
    KafkaError.SASL_AUTHENTICATION_FAILED,
}

_AUTH_ERRORS = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
_OPENSSL_CODE = re.compile(r"error:[0-9A-Fa-f]+:[^:]*::")

# librdkafka logs every refused connection to stderr by default; the CLI reports it in one line.
_QUIET = logging.getLogger("c2m.librdkafka")
_QUIET.setLevel(logging.CRITICAL)
_QUIET.propagate = False




def quiet_logger() -> logging.Logger:
    return _QUIET


def admin_client(settings: Settings) -> tuple[AdminClient, list[KafkaError]]:
    """An AdminClient that keeps librdkafka quiet and records client-level errors for _connect."""
    errors: list[KafkaError] = []
    config: dict[str, Any] = {
        **settings.kafka_client_config(),
        "logger": _QUIET,
        "log.connection.close": False,
        "error_cb": errors.append,
    }
    return AdminClient(config), errors


def _metadata(admin: AdminClient, errors: list[KafkaError], bootstrap: str, budget: float) -> Any:
    """Cluster metadata, or a one-line UserError as soon as the broker is clearly unreachable.

    list_topics blocks for its whole timeout when nothing answers, so it is called in short
    slices; between slices poll() serves error_cb, which reports a refused connection, a DNS
    failure or a failed TLS/SASL handshake within milliseconds.
    """
    deadline = time.monotonic() + budget
    last: KafkaException | None = None
    while True:
        try:
            return admin.list_topics(timeout=max(0.05, min(_PROBE_SLICE, deadline - time.monotonic())))
        except KafkaException as exc:
            last = exc
        admin.poll(0)
        if any(e.code() in _FAST_FAIL for e in errors) or time.monotonic() >= deadline:
            raise UserError(_failure(bootstrap, errors, last)) from None


def _failure(bootstrap: str, errors: Sequence[KafkaError], last: KafkaException | None) -> str:
    """One line saying what to fix: the TLS settings, the SASL login, or where the broker is."""
    reason = _reason(errors, last)
    if any(e.code() in _AUTH_ERRORS for e in errors):
        return (f"the Kafka broker at {bootstrap} refused the SASL login ({reason}): check C2M_SASL_MECHANISM, "
                "C2M_SASL_USERNAME and C2M_SASL_PASSWORD, and that this is a SASL listener")
    if any(e.code() == KafkaError._SSL or "SSL" in e.str() for e in errors):
        return (f"TLS with the Kafka broker at {bootstrap} failed ({reason}): check C2M_SECURITY_PROTOCOL and "
                "C2M_SSL_CAFILE (the CA that signed the broker's certificate)")
    return (f"Kafka broker at {bootstrap} is unreachable ({reason}): start one with `c2m broker start` or set "
            "C2M_KAFKA_BOOTSTRAP (and C2M_SECURITY_PROTOCOL for a TLS or SASL listener)")


def _reason(errors: Sequence[KafkaError], last: KafkaException | None) -> str:
    """The most specific short cause: 'Connection refused' rather than '1/1 brokers are down',
    'certificate verify failed' rather than the transport error that followed it."""
    causes = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
    security = [e for e in causes if e.code() in _AUTH_ERRORS or e.code() == KafkaError._SSL]
    for err in reversed(security or causes):
        text = err.str()
        head, sep, tail = text.partition(": ")
        if sep and "/" in head:  # "127.0.0.1:9092/bootstrap: ..." names the connection, not the cause
            text = tail
        if "failed: " in text:
            text = text.split("failed: ", 1)[1]
        text = _OPENSSL_CODE.sub("", text)  # "error:0A000086:SSL routines::certificate verify failed"
        return text.split(" (after ", 1)[0].split(": broker certificate could not be verified", 1)[0]
    if last is not None and last.args:
        return str(last.args[0].str()) if isinstance(last.args[0], KafkaError) else str(last)
    return "no answer"



def connect(settings: Settings, timeout: float = CONNECT_TIMEOUT) -> tuple[AdminClient, Any]:
    """An AdminClient and the cluster metadata, or a one-line UserError when nothing answers."""
    admin, errors = admin_client(settings)
    return admin, _metadata(admin, errors, settings.bootstrap, timeout)


def ensure_reachable(settings: Settings, timeout: float = CONNECT_TIMEOUT) -> set[str]:
    """Fail fast with one line when the cluster does not answer; return the topic names it has."""
    return set(connect(settings, timeout)[1].topics)


def ensure_topics(settings: Settings, names: list[str]) -> None:
    """The worker subscribes to topics it does not create: say so before Faust waits forever."""
    missing = sorted(set(names) - ensure_reachable(settings))
    if missing:
        raise UserError(f"topics missing on {settings.bootstrap}: {', '.join(missing)}; "
                        "run `c2m topics apply` first")
