"""Producer SDK for upstream apps: publish clickstream, order and catalog records in the public
contract (DESIGN §4, §5) with confluent-kafka.

Every record is validated with streams.records *before* it is sent, so an app finds out about a
bad record at the call site (ValueError with the reason) rather than in c2m.dead-letter; an
invalid record is never sent. Events built by the methods are checked as dicts (check_click /
check_order: the parsers' own checks, without decoding bytes or building an Event) plus the size
limit on the encoded bytes; prepared records (event()) and catalog records go through the parsers.

The producer is idempotent (enable.idempotence, acks=all): retries never duplicate or reorder a
record within a partition.

Delivery errors are reported two ways: `on_error` (optional) is called from poll/flush for each
failed record, and `flush()` (and so `close()` and leaving a `with` block) raises PublishError
listing every failure since the previous flush, plus how many records were still undelivered
when the flush timed out. Successful deliveries produce no callbacks at all
(delivery.report.only.error), which is what keeps the hot path cheap.

    python -m streams.publisher --bench 1000000     # events/s against C2M_KAFKA_BOOTSTRAP
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.config import Settings
from streams.records import (
    CLICK_TYPES,
    ORDER_TYPES,
    Event,
    Rejection,
    check_click,
    check_order,
    parse_catalog,
    parse_click,
    parse_order,
    size_rejection,
)

CLICKSTREAM_TOPIC = "c2m.clickstream"
ORDERS_TOPIC = "c2m.orders"
CATALOG_TOPIC = "c2m.catalog"

log = logging.getLogger("c2m.publisher")

# Throughput defaults: big lz4 batches with a short linger. Anything here can be overridden.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "delivery.report.only.error": True,
}
# Not overridable: the SDK's promise is no duplicates and no loss on a broker failover.
PRODUCER_FIXED: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}
POLL_EVERY = 4096  # serve delivery callbacks every few thousand records, not per record


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """One record the broker did not take (after the producer's own retries)."""

    topic: str
    key: bytes | None
    error: str


class PublishError(Exception):
    """Records were not delivered: `failures` failed outright, `undelivered` were still queued when
    the flush timed out (they stay queued and may still be delivered later)."""

    def __init__(self, failures: list[DeliveryFailure], undelivered: int = 0) -> None:
        self.failures = failures
        self.undelivered = undelivered
        parts = []
        if failures:
            shown = "; ".join(f"{f.topic} key={f.key!r}: {f.error}" for f in failures[:5])
            more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
            parts.append(f"{len(failures)} record(s) failed: {shown}{more}")
        if undelivered:
            parts.append(f"{undelivered} record(s) still undelivered at the flush timeout")
        super().__init__("; ".join(parts) or "publish failed")


class RecordSender:
    """An idempotent confluent-kafka Producer that collects delivery failures for flush() to raise.

    Shared by Publisher and FactoryClient; validation is the caller's job.
    """

    def __init__(self, settings: Settings, config: Mapping[str, Any] | None = None,
                 defaults: Mapping[str, Any] | None = None,
                 on_error: Callable[[DeliveryFailure], None] | None = None) -> None:
        self._failures: list[DeliveryFailure] = []
        self._on_error = on_error
        self._fatal: KafkaError | None = None
        self._unpolled = 0
        self.config: dict[str, Any] = {
            **(PRODUCER_DEFAULTS if defaults is None else defaults),
            **settings.kafka_client_config(),
            "logger": logging.getLogger("c2m.librdkafka"),
            "error_cb": self._client_error,
            "on_delivery": self._delivered,
            **(config or {}),
            **PRODUCER_FIXED,
        }
        self.producer = Producer(self.config)
        self.closed = False

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        failure = DeliveryFailure(msg.topic() or "?", msg.key(), err.str())
        self._failures.append(failure)
        if self._on_error is not None:
            self._on_error(failure)

    def _client_error(self, err: KafkaError) -> None:
        """Client-level errors (broker down, auth): logged; a fatal one stops the sender."""
        if err.fatal():
            self._fatal = err
            log.error("fatal producer error: %s", err.str())
        else:
            log.warning("producer: %s", err.str())

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Queue one record; waits (serving callbacks) while the local queue is full."""
        if self.closed:
            raise RuntimeError("publisher is closed")
        if self._fatal is not None:
            raise PublishError([DeliveryFailure(topic, key, f"fatal producer error: {self._fatal.str()}")])
        while True:
            try:
                self.producer.produce(topic, value, key)
                break
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.05)
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self.producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every queued record; raise PublishError for failures since the last flush."""
        remaining = self.producer.flush(timeout)
        self._unpolled = 0
        failures, self._failures = self._failures, []
        if self._fatal is not None and not failures:
            failures = [DeliveryFailure("?", None, f"fatal producer error: {self._fatal.str()}")]
        if failures or remaining:
            raise PublishError(failures, remaining)

    def pending(self) -> int:
        """Records queued or in flight."""
        return len(self.producer)

    def close(self, timeout: float = 30.0) -> None:
        if self.closed:
            return
        self.closed = True
        self.flush(timeout)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# Event ids come from a private generator seeded from os.urandom: ten times cheaper than
# uuid.uuid4() (one syscall per id), unaffected by an app calling random.seed(), thread-safe
# (getrandbits holds the GIL) and reseeded in a forked child so two processes never share a stream.
_ID_RNG = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ID_RNG.seed)


def new_event_id() -> str:
    """A random (version 4) UUID in hex, without the cost of a uuid.UUID object."""
    n = _ID_RNG.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    return f"{n:032x}"


class Publisher:
    """Publish consumer events and catalog updates to c2m.* topics, validated and keyed per DESIGN §4.

    Keys: clickstream by user_id (a user's events stay in order), else sku, else event_id;
    orders by order_id (an order's placed/cancelled stay in order); catalog by sku (compaction).
    Every event method returns the event_id it sent (generated as uuid4 hex when not given);
    ts defaults to now in epoch milliseconds.

    Use as a context manager, or call close(): both flush, and raise PublishError on failures.
    """

    def __init__(self, settings: Settings | None = None, *, config: Mapping[str, Any] | None = None,
                 on_error: Callable[[DeliveryFailure], None] | None = None, max_bytes: int | None = None,
                 topics: Mapping[str, str] | None = None) -> None:
        """`config`: librdkafka overrides (idempotence and acks=all stay on); `topics`: rename
        "clickstream"/"orders"/"catalog" topics (tests, benchmarks); `max_bytes`: record size
        limit, default the worker's (C2M_MAX_RECORD_BYTES)."""
        self.settings = settings or Settings.from_env()
        self.max_bytes = self.settings.max_record_bytes if max_bytes is None else max_bytes
        names = {"clickstream": CLICKSTREAM_TOPIC, "orders": ORDERS_TOPIC, "catalog": CATALOG_TOPIC}
        unknown = set(topics or {}) - set(names)
        if unknown:
            raise ValueError(f"unknown topic role(s) {sorted(unknown)}; known: {sorted(names)}")
        names.update(topics or {})
        self.clickstream_topic = names["clickstream"]
        self.orders_topic = names["orders"]
        self.catalog_topic = names["catalog"]
        self._sender = RecordSender(self.settings, config, on_error=on_error)

    # -- clickstream ---------------------------------------------------------------------------

    def view(self, sku: str, *, region: str, user_id: str | None = None, session_id: str | None = None,
             attrs: Mapping[str, str] | None = None, event_id: str | None = None, ts: int | None = None,
             extra: Mapping[str, Any] | None = None) -> str:
        """A product page view."""
        return self._click("view", sku, region, user_id, session_id, attrs, event_id, ts, extra)

    def search(self, *, region: str, query: str | None = None, sku: str | None = None,
               user_id: str | None = None, session_id: str | None = None,
               attrs: Mapping[str, str] | None = None, event_id: str | None = None, ts: int | None = None,
               extra: Mapping[str, Any] | None = None) -> str:
        """A search: by free-text `query`, or one that landed on a product (`sku`)."""
        more = dict(extra or {})
        if query is not None:
            more["query"] = query
        return self._click("search", sku, region, user_id, session_id, attrs, event_id, ts, more)

    def add_to_cart(self, sku: str, *, region: str, user_id: str | None = None, session_id: str | None = None,
                    attrs: Mapping[str, str] | None = None, event_id: str | None = None, ts: int | None = None,
                    extra: Mapping[str, Any] | None = None) -> str:
        return self._click("add_to_cart", sku, region, user_id, session_id, attrs, event_id, ts, extra)

    def remove_from_cart(self, sku: str, *, region: str, user_id: str | None = None,
                         session_id: str | None = None, attrs: Mapping[str, str] | None = None,
                         event_id: str | None = None, ts: int | None = None,
                         extra: Mapping[str, Any] | None = None) -> str:
        return self._click("remove_from_cart", sku, region, user_id, session_id, attrs, event_id, ts, extra)

    def wishlist(self, sku: str, *, region: str, user_id: str | None = None, session_id: str | None = None,
                 attrs: Mapping[str, str] | None = None, event_id: str | None = None, ts: int | None = None,
                 extra: Mapping[str, Any] | None = None) -> str:
        return self._click("wishlist", sku, region, user_id, session_id, attrs, event_id, ts, extra)

    def share(self, sku: str, *, region: str, user_id: str | None = None, session_id: str | None = None,
              attrs: Mapping[str, str] | None = None, event_id: str | None = None, ts: int | None = None,
              extra: Mapping[str, Any] | None = None) -> str:
        return self._click("share", sku, region, user_id, session_id, attrs, event_id, ts, extra)

    # -- orders --------------------------------------------------------------------------------

    def order(self, order_id: str, sku: str, quantity: int, *, region: str,
              type: Literal["placed", "cancelled"] = "placed", user_id: str | None = None,
              unit_price: float | None = None, attrs: Mapping[str, str] | None = None,
              group_id: str | None = None, group_target: int | None = None,
              group_expires_ts: int | None = None, event_id: str | None = None, ts: int | None = None,
              extra: Mapping[str, Any] | None = None) -> str:
        """An order placed (or cancelled): `quantity` units of `sku`."""
        if type not in ("placed", "cancelled"):
            raise ValueError(f"order type must be 'placed' or 'cancelled', got {type!r} (use group_join)")
        return self._order(type, order_id, sku, quantity, region, user_id, unit_price, attrs, group_id,
                           group_target, group_expires_ts, event_id, ts, extra)

    def group_join(self, order_id: str, sku: str, quantity: int, *, region: str, group_id: str,
                   group_target: int, group_expires_ts: int, user_id: str | None = None,
                   unit_price: float | None = None, attrs: Mapping[str, str] | None = None,
                   event_id: str | None = None, ts: int | None = None,
                   extra: Mapping[str, Any] | None = None) -> str:
        """A consumer joins group order `group_id`, which fills at `group_target` units or expires."""
        return self._order("group_join", order_id, sku, quantity, region, user_id, unit_price, attrs, group_id,
                           group_target, group_expires_ts, event_id, ts, extra)

    # -- catalog -------------------------------------------------------------------------------

    def catalog(self, sku: str, attrs: Mapping[str, str], *, ts: int | None = None,
                extra: Mapping[str, Any] | None = None) -> None:
        """Create or update a product (c2m.catalog is compacted on sku: the latest record wins)."""
        now = now_ms()
        record: dict[str, Any] = {**(extra or {}), "sku": sku, "attrs": dict(attrs), "ts": now if ts is None else ts}
        raw = orjson.dumps(record)
        parsed = parse_catalog(raw, now, self.max_bytes)
        if isinstance(parsed, Rejection):
            raise ValueError(f"invalid catalog record: {parsed.reason}")
        self._sender.send(self.catalog_topic, parsed.sku.encode(), raw)

    # -- any prepared record ---------------------------------------------------------------------

    def event(self, record: Mapping[str, Any]) -> str:
        """Publish a complete clickstream or order record (routed by its `type`); returns its event_id."""
        now = now_ms()
        raw = _dumps(dict(record))
        etype = record.get("type")
        if etype in ORDER_TYPES:
            parsed = parse_order(raw, now, self.max_bytes)
            topic = self.orders_topic
        else:
            parsed = parse_click(raw, now, self.max_bytes)
            topic = self.clickstream_topic
        if isinstance(parsed, Rejection):
            raise ValueError(f"invalid {'order' if etype in ORDER_TYPES else 'clickstream'} event: {parsed.reason}")
        self._sender.send(topic, _key(parsed), raw)
        return parsed.event_id

    # -- lifecycle -----------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (on_error) now; the SDK also does so every few thousand records."""
        self._sender.producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every record is delivered; raise PublishError listing failures since the last flush."""
        self._sender.flush(timeout)

    def pending(self) -> int:
        """Records queued or in flight."""
        return self._sender.pending()

    def close(self, timeout: float = 30.0) -> None:
        """Flush (raising PublishError on failures) and refuse further records."""
        self._sender.close(timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an exception is already on its way out: do not replace it with a PublishError
            self.close()
        except PublishError as failure:
            log.error("while closing after %s: %s", exc_type.__name__, failure)

    # -- internals -----------------------------------------------------------------------------

    def _click(self, etype: str, sku: str | None, region: str, user_id: str | None, session_id: str | None,
               attrs: Mapping[str, str] | None, event_id: str | None, ts: int | None,
               extra: Mapping[str, Any] | None) -> str:
        now = now_ms()
        record: dict[str, Any] = {"event_id": event_id or new_event_id(), "type": etype,
                                  "ts": now if ts is None else ts, "region": region}
        if sku is not None:
            record["sku"] = sku
        if user_id is not None:
            record["user_id"] = user_id
        if session_id is not None:
            record["session_id"] = session_id
        if attrs is not None:
            record["attrs"] = attrs if type(attrs) is dict else dict(attrs)
        if extra:
            record = _merge(record, extra)
        problem = check_click(record, now)
        raw = _dumps(record)
        if problem is None and len(raw) > self.max_bytes:
            problem = size_rejection(raw, self.max_bytes)
        if problem is not None:
            raise ValueError(f"invalid clickstream event: {problem.reason}")
        self._sender.send(self.clickstream_topic, (user_id or sku or record["event_id"]).encode(), raw)
        return record["event_id"]  # type: ignore[no-any-return]

    def _order(self, etype: str, order_id: str, sku: str, quantity: int, region: str, user_id: str | None,
               unit_price: float | None, attrs: Mapping[str, str] | None, group_id: str | None,
               group_target: int | None, group_expires_ts: int | None, event_id: str | None, ts: int | None,
               extra: Mapping[str, Any] | None) -> str:
        now = now_ms()
        record: dict[str, Any] = {"event_id": event_id or new_event_id(), "type": etype,
                                  "ts": now if ts is None else ts, "order_id": order_id, "sku": sku,
                                  "quantity": quantity, "region": region}
        optional = {"user_id": user_id, "unit_price": unit_price, "group_id": group_id,
                    "group_target": group_target, "group_expires_ts": group_expires_ts,
                    "attrs": None if attrs is None else dict(attrs)}
        record.update({k: v for k, v in optional.items() if v is not None})
        if extra:
            record = _merge(record, extra)
        problem = check_order(record, now)
        raw = _dumps(record)
        if problem is None:
            problem = size_rejection(raw, self.max_bytes)
        if problem is not None:
            raise ValueError(f"invalid order event: {problem.reason}")
        self._sender.send(self.orders_topic, order_id.encode(), raw)
        return record["event_id"]  # type: ignore[no-any-return]


def _merge(record: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Extra fields ride along (readers ignore unknown fields) but may not replace contract fields."""
    clash = sorted(set(extra) & set(record))
    if clash:
        raise ValueError(f"extra fields {clash} would replace contract fields; pass them as arguments")
    return {**record, **extra}


def _dumps(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError as exc:  # e.g. a datetime or a set in extra: not part of any JSON contract
        raise ValueError(f"record is not JSON-serialisable: {exc}") from None


def _key(event: Event) -> bytes:
    if event.type in CLICK_TYPES:
        return (event.user_id or event.sku or event.event_id).encode()
    return (event.order_id or event.event_id).encode()


# -- benchmark -----------------------------------------------------------------------------------

BENCH_TOPIC = "c2m.bench.clickstream"


def bench(settings: Settings, n: int, topic: str = BENCH_TOPIC, partitions: int = 6,
          config: Mapping[str, Any] | None = None) -> float:
    """Publish `n` validated view events to `topic` (created if missing) and return events/s.

    The clock runs from the first call to the end of the final flush, so the figure counts
    records acknowledged by the broker, not just queued. A separate topic by default, so a
    running worker is not flooded with benchmark clicks.
    """
    from confluent_kafka.admin import NewTopic

    from streams.kafka import connect

    admin, metadata = connect(settings)
    if topic not in metadata.topics:
        # short retention: benchmark records are worthless a few minutes later
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                                config={"retention.ms": "600000"})])
        for future in futures.values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    skus = [f"SKU-{i}" for i in range(1000)]
    users = [f"u-{i}" for i in range(10_000)]
    attrs = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}
    with Publisher(settings, config=config, topics={"clickstream": topic}) as pub:
        pub.view(skus[0], region="CN-GD", user_id=users[0], attrs=attrs)  # connect before the clock starts
        pub.flush()
        view = pub.view
        start = time.perf_counter()
        for i in range(n):
            view(skus[i % 1000], region="CN-GD", user_id=users[i % 10_000], session_id="s-1", attrs=attrs)
        pub.flush(120)
        elapsed = time.perf_counter() - start
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.publisher",
                                     description="Producer SDK benchmark: publish N view events, print events/s.")
    parser.add_argument("--bench", type=int, metavar="N", required=True, help="number of view events")
    parser.add_argument("--topic", default=BENCH_TOPIC, help=f"target topic (default {BENCH_TOPIC})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="librdkafka override, e.g. --set linger.ms=50 (repeatable)")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = Settings.from_env()
    rate = bench(settings, args.bench, args.topic, config=overrides)
    print(f"published {args.bench} view events to {args.topic} at {settings.bootstrap}: {rate:,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["CATALOG_TOPIC", "CLICKSTREAM_TOPIC", "ORDERS_TOPIC", "DeliveryFailure", "PublishError", "Publisher",
           "RecordSender", "bench", "new_event_id"]
