"""Factory SDK: read production triggers from c2m.triggers.<factory_id>, answer on c2m.factory-status.

Delivery is at least once end to end (DESIGN §7, §9):
- a trigger's offset is committed only after the caller has handled it, i.e. when the caller asks
  for the next trigger, calls commit(), or closes the client normally; if the process dies (or
  an exception leaves the `with` block) first, the trigger is delivered again after a restart;
- within a process, (trigger_id, revision) is delivered once: a repeated revision (duplicate) and
  a revision lower than one already seen for that trigger (stale) are skipped (RevisionFilter);
- a record that is not a valid trigger, or a trigger meant for another factory, is logged and
  skipped: a factory's loop never crashes on bad input.

Status methods (accept, reject, in_production, complete, capacity) validate the record with
streams.records, send it with an idempotent producer and, by default, wait until the broker has
it (PublishError if not), so "accept() returned" means the planner can see the acceptance.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.config import Settings
from streams.publisher import RecordSender
from streams.records import (
    Rejection,
    TriggerRecord,
    parse_factory_status,
    parse_trigger,
    valid_factory_id,
)
from streams.topology import trigger_topic

STATUS_TOPIC = "c2m.factory-status"

log = logging.getLogger("c2m.factory")

# Status answers are few and each is waited for: send at once rather than batch.
STATUS_PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 0, "compression.type": "lz4"}
SKIP_PAST_DEADLINE = 1000


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # this exact (trigger_id, revision) was already delivered
    STALE = "stale"  # a higher revision of this trigger was already delivered


class RevisionFilter:
    """Highest revision delivered per trigger_id, so each (trigger_id, revision) passes once and
    revisions only grow. Bounded: the least recently seen trigger ids are forgotten past `max_ids`.
    """

    def __init__(self, max_ids: int = 100_000, seen: Mapping[str, int] | None = None) -> None:
        """`seen` seeds the filter, e.g. with the revisions a factory's MES already holds."""
        if max_ids <= 0:
            raise ValueError("max_ids must be positive")
        self.max_ids = max_ids
        self._highest: OrderedDict[str, int] = OrderedDict()
        for trigger_id, revision in (seen or {}).items():
            self.admit(trigger_id, revision)

    def check(self, trigger_id: str, revision: int) -> Verdict:
        """What admit() would say, without recording anything."""
        highest = self._highest.get(trigger_id)
        if highest is None or revision > highest:
            return Verdict.NEW
        return Verdict.DUPLICATE if revision == highest else Verdict.STALE

    def admit(self, trigger_id: str, revision: int) -> Verdict:
        """Record (trigger_id, revision) if it is new; return the verdict either way."""
        verdict = self.check(trigger_id, revision)
        if verdict is Verdict.NEW:
            self._highest[trigger_id] = revision
            self._highest.move_to_end(trigger_id)
            while len(self._highest) > self.max_ids:
                self._highest.popitem(last=False)
        return verdict

    def highest(self, trigger_id: str) -> int | None:
        return self._highest.get(trigger_id)

    def __len__(self) -> int:
        return len(self._highest)


def status_record(factory_id: str, status: str, ts: int, trigger: TriggerRecord | None = None,
                  units: int | None = None, reason: str | None = None,
                  capacity_units_per_day: int | None = None) -> dict[str, Any]:
    """The factory-status record of DESIGN §5 (pure; validated by the caller before sending)."""
    record: dict[str, Any] = {"factory_id": factory_id, "status": status, "ts": ts}
    if trigger is not None:
        record.update(trigger_id=trigger.trigger_id, revision=trigger.revision,
                      units=trigger.units if units is None else units)
    if capacity_units_per_day is not None:
        record["capacity_units_per_day"] = capacity_units_per_day
    if reason is not None:
        record["reason"] = reason
    return record


class FactoryClient:
    """One factory's side of c2m: iterate its triggers, answer with statuses.

        with FactoryClient("f-gz-dress") as client:
            for trigger in client:            # blocks; commits each trigger when you take the next
                client.accept(trigger)
    """

    def __init__(self, factory_id: str, settings: Settings | None = None, group_id: str | None = None, *,
                 consumer_config: Mapping[str, Any] | None = None,
                 producer_config: Mapping[str, Any] | None = None,
                 revisions: RevisionFilter | None = None, status_topic: str = STATUS_TOPIC) -> None:
        """`group_id` defaults to "factory-<factory_id>" (several instances share the topic's
        partitions); `revisions` lets a factory seed dedupe with what it already holds."""
        if not valid_factory_id(factory_id):
            raise ValueError(f"factory_id must be 1-200 of [A-Za-z0-9._-] (it names a topic), got {factory_id!r}")
        self.factory_id = factory_id
        self.settings = settings or Settings.from_env()
        self.topic = trigger_topic(factory_id)
        self.status_topic = status_topic
        self.group_id = group_id or f"factory-{factory_id}"
        self.revisions = revisions or RevisionFilter()
        self._consumer = Consumer({
            **self.settings.kafka_client_config(),
            "group.id": self.group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "logger": logging.getLogger("c2m.librdkafka"),
            **(consumer_config or {}),
        })
        self._consumer.subscribe([self.topic])
        self._sender = RecordSender(self.settings, producer_config, defaults=STATUS_PRODUCER_DEFAULTS)
        self._pending: Message | None = None  # handed to the caller, not yet known to be handled
        self._done: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to commit
        self._missing_topic_logged = False
        self._closed = False

    # -- reading triggers ------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> TriggerRecord | None:
        """The next new trigger, or None when none arrived within `timeout` seconds.

        Calling poll marks the trigger it returned last as handled (its offset is committed).
        """
        if self._closed:
            raise RuntimeError("factory client is closed")
        self._mark_handled()
        self._commit()
        deadline = time.monotonic() + timeout
        late = 0  # records skipped after the deadline: bounded, so a flood of junk cannot stall the caller
        while late < SKIP_PAST_DEADLINE:
            msg = self._consumer.poll(max(0.0, deadline - time.monotonic()))
            if msg is None:
                break
            if msg.error():
                self._consumer_error(msg.error())
            else:
                trigger = self._admit(msg)
                if trigger is not None:
                    self._commit()  # records skipped before this one; this one is the caller's now
                    self._pending = msg
                    return trigger
                self._done[(msg.topic(), msg.partition())] = msg.offset() + 1
            if time.monotonic() >= deadline:
                late += 1
        self._commit()  # offsets of skipped records
        return None

    def triggers(self, idle_timeout: float | None = None, poll_interval: float = 1.0) -> Iterator[TriggerRecord]:
        """Yield new triggers until close(), or until none arrived for `idle_timeout` seconds."""
        idle_since = time.monotonic()
        while not self._closed:
            trigger = self.poll(poll_interval)
            if trigger is None:
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    return
                continue
            yield trigger
            idle_since = time.monotonic()

    def __iter__(self) -> Iterator[TriggerRecord]:
        return self.triggers()

    def commit(self) -> None:
        """Mark the trigger returned last as handled now (rather than at the next poll)."""
        self._mark_handled()
        self._commit()

    def _admit(self, msg: Message) -> TriggerRecord | None:
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        parsed = parse_trigger(msg.value(), int(time.time() * 1000), self.settings.max_record_bytes)
        if isinstance(parsed, Rejection):
            log.warning("skipping invalid trigger at %s: %s", where, parsed.reason)
            return None
        if parsed.factory_id != self.factory_id:
            log.warning("skipping trigger %s r%d at %s: it is for factory %s, not %s", parsed.trigger_id,
                        parsed.revision, where, parsed.factory_id, self.factory_id)
            return None
        verdict = self.revisions.admit(parsed.trigger_id, parsed.revision)
        if verdict is not Verdict.NEW:
            log.info("skipping %s trigger %s r%d at %s (highest seen r%s)", verdict.value, parsed.trigger_id,
                     parsed.revision, where, self.revisions.highest(parsed.trigger_id))
            return None
        return parsed

    def _mark_handled(self) -> None:
        if self._pending is not None:
            msg, self._pending = self._pending, None
            self._done[(msg.topic(), msg.partition())] = msg.offset() + 1

    def _commit(self) -> None:
        if not self._done:
            return
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in self._done.items()]
        self._done.clear()
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. partitions moved to another instance: it re-delivers them
            log.warning("commit failed (those triggers may be delivered again): %s", exc)

    def _consumer_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaException(err)
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            if not self._missing_topic_logged:
                self._missing_topic_logged = True
                log.warning("topic %s does not exist yet; waiting for it (c2m topics apply creates it)", self.topic)
            return
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer: %s", err.str())

    # -- answering -------------------------------------------------------------------------------

    def accept(self, trigger: TriggerRecord, units: int | None = None, *, wait: bool = True) -> None:
        """Accept a trigger revision (for `units`, default all the trigger asks for)."""
        self._status("accepted", trigger, units, None, wait)

    def reject(self, trigger: TriggerRecord, reason: str, *, wait: bool = True) -> None:
        """Decline a trigger revision; its units return to the planner's capacity."""
        self._status("rejected", trigger, None, reason, wait)

    def in_production(self, trigger: TriggerRecord, units: int | None = None, *, wait: bool = True) -> None:
        self._status("in_production", trigger, units, None, wait)

    def complete(self, trigger: TriggerRecord, units: int | None = None, *, wait: bool = True) -> None:
        """Report the batch made: `units` actually produced (default what the trigger asked for)."""
        self._status("completed", trigger, units, None, wait)

    def capacity(self, units_per_day: int, *, wait: bool = True) -> None:
        """Tell the planner this factory's current capacity (keyed by factory_id)."""
        record = status_record(self.factory_id, "capacity", _now_ms(), capacity_units_per_day=units_per_day)
        self._send(record, self.factory_id, wait)

    def _status(self, status: str, trigger: TriggerRecord, units: int | None, reason: str | None,
                wait: bool) -> None:
        record = status_record(self.factory_id, status, _now_ms(), trigger, units, reason)
        self._send(record, trigger.trigger_id, wait)

    def _send(self, record: dict[str, Any], key: str, wait: bool) -> None:
        raw = orjson.dumps(record)
        parsed = parse_factory_status(raw, record["ts"], self.settings.max_record_bytes)
        if isinstance(parsed, Rejection):
            raise ValueError(f"invalid factory status: {parsed.reason}")
        self._sender.send(self.status_topic, key.encode(), raw)
        if wait:
            self._sender.flush()
        else:
            self._sender.producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for statuses sent with wait=False; PublishError lists any that failed."""
        self._sender.flush(timeout)

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, commit: bool = True) -> None:
        """Leave the group. With `commit`, the trigger returned last counts as handled; statuses are flushed."""
        if self._closed:
            return
        self._closed = True
        try:
            if commit:
                self._mark_handled()
            self._commit()
        finally:
            self._consumer.close()
            self._sender.close()

    def __enter__(self) -> FactoryClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # an exception while handling a trigger means it was not handled: leave it uncommitted
        self.close(commit=exc_type is None)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


__all__ = ["STATUS_TOPIC", "FactoryClient", "RevisionFilter", "Verdict", "status_record"]
