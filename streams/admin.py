"""`c2m topics apply`: make the cluster match topics.yaml, additively.

The rules live in `diff`, a pure function tested without a broker: create what is missing, grow
partitions that are too few, set config keys whose value drifted. Nothing is ever deleted or
shrunk (Kafka cannot shrink partitions, and deleting data is never a reconciliation step), topics
not named in topics.yaml are ignored, and config keys topics.yaml does not mention are left alone.

Replication factor is only used when a topic is created. Changing it on an existing topic means a
partition reassignment (which brokers hold which replicas), an operator decision that `apply`
deliberately does not take: a differing replication factor on an existing topic is not reported.

`apply` describes the cluster with confluent-kafka's AdminClient, computes the diff and executes
it (or, with dry_run, asks the broker to validate it without changing anything).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from streams.config import Settings
from streams.errors import UserError
from streams.kafka import CONNECT_TIMEOUT, connect
from streams.topology import TopicSpec, Topology

RACE_RETRIES = 5
CREATE = "create"
GROW = "grow"
CONFIG = "config"

@dataclass(frozen=True)
class Change:
    """One thing `apply` does (or, in a dry run, would do) to one topic; `detail` is for people."""

    action: str  # "create" | "grow" | "config"
    topic: str
    detail: str


@dataclass(frozen=True)
class ExistingTopic:
    """What the cluster has now for one topic: its partition count and current config values."""

    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def diff(desired: Sequence[TopicSpec], existing: Mapping[str, ExistingTopic]) -> list[Change]:
    """The changes that make `existing` match `desired`, in topics.yaml order; [] when it matches.

    Additive only: fewer partitions than desired is a grow, more is left as is; only config keys
    named in topics.yaml are compared; topics in `existing` but not in `desired` are ignored.
    """
    changes: list[Change] = []
    for spec in desired:
        current = existing.get(spec.name)
        if current is None:
            changes.append(Change(CREATE, spec.name, _create_detail(spec)))
            continue
        if current.partitions < spec.partitions:
            changes.append(Change(GROW, spec.name, f"partitions {current.partitions} -> {spec.partitions}"))
        for key, (old, new) in config_drift(spec, current).items():
            shown = "(unset)" if old is None else old
            changes.append(Change(CONFIG, spec.name, f"{key} {shown} -> {new}"))
    return changes


def config_drift(spec: TopicSpec, current: ExistingTopic) -> dict[str, tuple[str | None, str]]:
    """Desired config keys whose current value differs: key -> (current or None, desired)."""
    return {
        key: (current.config.get(key), value)
        for key, value in spec.config.items()
        if current.config.get(key) != value
    }


def _create_detail(spec: TopicSpec) -> str:
    parts = [f"{spec.partitions} partitions", f"rf {spec.replication_factor}"]
    parts += [f"{key}={value}" for key, value in spec.config.items()]
    return ", ".join(parts)


def render(changes: Sequence[Change], dry_run: bool, total: int | None = None) -> str:
    """Plain text for the CLI: a header, then one line per change; `total` = topics in topics.yaml."""
    count = f" ({total} topics)" if total is not None else ""
    prefix = "dry run, nothing was changed: " if dry_run else ""
    if not changes:
        return f"{prefix}topics are up to date{count}"
    noun = "change" if len(changes) == 1 else "changes"
    header = (f"{prefix}{len(changes)} {noun} would be applied" if dry_run
              else f"applied {len(changes)} {noun}")
    lines = [f"{header}:"]
    lines += [f"  {c.action} {c.topic} ({c.detail})" for c in changes]
    return "\n".join(lines)


def apply(settings: Settings, topology: Topology, dry_run: bool = False,
          timeout: float = 30.0) -> list[Change]:
    """Make the cluster match `topology.topics` and return what changed.

    With dry_run nothing is changed, but every change is sent with validate_only so the broker
    still rejects bad config names or values. A topic that another applier created between our
    describe and our create is not an error and not reported as our change.
    """
    return apply_specs(settings, topology.topics, dry_run, timeout)


def apply_specs(settings: Settings, desired: Sequence[TopicSpec], dry_run: bool = False,
                timeout: float = 30.0) -> list[Change]:
    """`apply` for any list of topics (the worker uses it for its own internal topics)."""
    admin, metadata = connect(settings, min(timeout, CONNECT_TIMEOUT))
    done, raced = _apply_once(admin, metadata, settings, desired, dry_run, timeout)
    for _ in range(RACE_RETRIES):
        if not raced:
            break
        # Another applier created these first, or metadata lagged our own create: judge them again
        # against what exists now, so a needed grow or config change is not silently skipped.
        time.sleep(0.2)
        metadata = admin.list_topics(timeout=min(timeout, CONNECT_TIMEOUT))
        again, raced = _apply_once(admin, metadata, settings, [s for s in desired if s.name in raced],
                                   dry_run, timeout)
        done += again
    return done


def _apply_once(admin: AdminClient, metadata: Any, settings: Settings, desired: Sequence[TopicSpec],
                dry_run: bool, timeout: float) -> tuple[list[Change], set[str]]:
    brokers = len(metadata.brokers)
    present = {
        name: len(t.partitions)
        for name, t in metadata.topics.items()
        if t.error is None or t.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART
    }
    specs = {spec.name: spec for spec in desired}

    existing = _describe(admin, [name for name in specs if name in present], present, timeout)
    changes = diff(list(specs.values()), existing)

    for change in changes:
        spec = specs[change.topic]
        if change.action == CREATE and spec.replication_factor > brokers:
            raise UserError(
                f"topic {spec.name}: replication_factor {spec.replication_factor} is larger than "
                f"the {brokers} broker(s) at {settings.bootstrap}; lower it in topics.yaml")

    raced = _execute(admin, changes, specs, existing, dry_run, timeout)
    return [c for c in changes if not (c.action == CREATE and c.topic in raced)], set(raced)


def _describe(admin: AdminClient, names: Sequence[str], partitions: Mapping[str, int],
              timeout: float) -> dict[str, ExistingTopic]:
    """Partition counts (from metadata) and current config values of the topics that exist."""
    if not names:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names],
                                     request_timeout=timeout)
    existing: dict[str, ExistingTopic] = {}
    failures: list[str] = []
    for resource, future in futures.items():
        try:
            entries = future.result()
        except KafkaException as exc:
            failures.append(f"{resource.name}: {_broker_message(exc)}")
            continue
        config = {key: entry.value for key, entry in entries.items() if entry.value is not None}
        existing[resource.name] = ExistingTopic(partitions[resource.name], config)
    if failures:
        raise UserError("cannot read topic configs: " + "; ".join(failures))
    return existing


def _execute(admin: AdminClient, changes: Sequence[Change], specs: Mapping[str, TopicSpec],
             existing: Mapping[str, ExistingTopic], validate_only: bool, timeout: float) -> set[str]:
    """Send every change, wait on every future; return the topics someone else created first."""
    creates = [specs[c.topic] for c in changes if c.action == CREATE]
    grows = [specs[c.topic] for c in changes if c.action == GROW]
    configured = list(dict.fromkeys(c.topic for c in changes if c.action == CONFIG))

    pending: list[tuple[str, str, Future[Any]]] = []
    if creates:
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                        config=dict(s.config)) for s in creates]
        futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout,
                                      validate_only=validate_only)
        pending += [("create", name, f) for name, f in futures.items()]
    if grows:
        futures = admin.create_partitions([NewPartitions(s.name, s.partitions) for s in grows],
                                          operation_timeout=timeout, request_timeout=timeout,
                                          validate_only=validate_only)
        pending += [("grow", name, f) for name, f in futures.items()]
    if configured:
        resources = [
            ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, (_, value) in config_drift(specs[name], existing[name]).items()
            ])
            for name in configured
        ]
        futures = admin.incremental_alter_configs(resources, request_timeout=timeout,
                                                  validate_only=validate_only)
        pending += [("configure", r.name, f) for r, f in futures.items()]

    raced: set[str] = set()
    failures: list[str] = []
    for verb, name, future in pending:
        try:
            future.result()
        except KafkaException as exc:
            code = _code(exc)
            if verb == "create" and code == KafkaError.TOPIC_ALREADY_EXISTS:
                raced.add(name)
            elif code == KafkaError.INVALID_REPLICATION_FACTOR:
                failures.append(f"topic {name}: replication_factor {specs[name].replication_factor} "
                                f"cannot be met ({_broker_message(exc)})")
            else:
                failures.append(f"cannot {verb} topic {name}: {_broker_message(exc)}")
    if failures:
        raise UserError("; ".join(failures))
    return raced


def _code(exc: KafkaException) -> int | None:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def _broker_message(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


__all__ = ["Change", "ExistingTopic", "apply", "config_drift", "diff", "render"]
