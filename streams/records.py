"""Wire records of DESIGN §5 and §7: strict validation with a precise reason, never an exception.

Pure: no Faust, no Kafka. Parsers take the raw bytes of one Kafka record and return either a
parsed record or a Rejection that says which field was wrong, what was expected and what came:
parse_click / parse_order -> Event, parse_catalog -> CatalogRecord, parse_factory_status ->
FactoryStatus, parse_trigger -> TriggerRecord. A null field counts as absent; unknown fields are
ignored (forward compatible). streams/schemas/*.schema.json describe the same contract.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import orjson

CLICK_TYPES = frozenset({"view", "search", "add_to_cart", "remove_from_cart", "wishlist", "share"})
ORDER_TYPES = frozenset({"placed", "cancelled", "group_join"})
STATUS_TYPES = frozenset({"accepted", "rejected", "in_production", "completed", "capacity"})
TRIGGER_ACTIONS = frozenset({"start", "reorder", "revise", "cancel"})
TRIGGER_KINDS = frozenset({"forecast", "group_buy"})
DAY_MS = 86_400_000
MAX_ID_LEN = 256
MAX_TEXT_LEN = 4096  # free text (a trigger's or a rejection's reason): longer than an id, still bounded
DEFAULT_MAX_BYTES = 65536
# A factory id names a Kafka topic (c2m.triggers.<factory_id>): only Kafka's topic characters.
FACTORY_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str


@dataclass(frozen=True, slots=True)
class Event:
    """A clickstream or order event, normalised to what the per-niche stages need."""

    event_id: str
    type: str
    ts: int
    region: str
    sku: str | None
    attrs: dict[str, str] | None
    user_id: str | None = None
    quantity: int = 0
    order_id: str | None = None
    group_id: str | None = None
    group_target: int | None = None
    group_expires_ts: int | None = None


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    """One product's attributes (c2m.catalog, compacted, key sku): the latest record per sku wins."""

    sku: str
    attrs: dict[str, str]
    ts: int


@dataclass(frozen=True, slots=True)
class FactoryStatus:
    """A factory's answer to a trigger revision, or (status "capacity") its current capacity.

    trigger_id, revision and units are set for every status but "capacity", which instead carries
    capacity_units_per_day and is about the factory as a whole.
    """

    factory_id: str
    status: str
    ts: int
    trigger_id: str | None = None
    revision: int | None = None
    units: int | None = None
    capacity_units_per_day: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Forecast:
    """The demand forecast a trigger was planned on: quantiles of demand over horizon_hours."""

    horizon_hours: int
    p50: float
    p90: float
    model: str
    cold_start: bool


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """A production trigger of DESIGN §7 as a factory reads it; (trigger_id, revision) is its identity."""

    trigger_id: str
    revision: int
    action: str
    kind: str
    factory_id: str
    niche: dict[str, str]
    units: int
    due_by_ts: int
    emitted_ts: int
    forecast: Forecast
    evidence: dict[str, Any]
    reason: str
    group_id: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        """The idempotency key: at-least-once delivery may repeat it, revisions only grow."""
        return (self.trigger_id, self.revision)

    def to_dict(self) -> dict[str, Any]:
        """The wire form (known fields only), e.g. to re-publish or log a trigger."""
        out: dict[str, Any] = {
            "trigger_id": self.trigger_id, "revision": self.revision, "action": self.action,
            "kind": self.kind, "factory_id": self.factory_id, "niche": dict(self.niche),
            "units": self.units, "due_by_ts": self.due_by_ts, "emitted_ts": self.emitted_ts,
            "forecast": {"horizon_hours": self.forecast.horizon_hours, "p50": self.forecast.p50,
                         "p90": self.forecast.p90, "model": self.forecast.model,
                         "cold_start": self.forecast.cold_start},
            "evidence": dict(self.evidence), "reason": self.reason,
        }
        if self.group_id is not None:
            out["group_id"] = self.group_id
        return out


def valid_factory_id(value: object) -> bool:
    """A factory id must be usable in a topic name: 1-200 of [A-Za-z0-9._-]."""
    return isinstance(value, str) and 0 < len(value) <= 200 and FACTORY_ID_CHARS.issuperset(value)


class _Invalid(Exception):
    """Internal: carries a rejection reason out of nested field checks."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _str(obj: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _Invalid(f"missing required field '{name}'")
        return None
    if not isinstance(value, str) or not value:
        raise _Invalid(f"field '{name}': expected non-empty string, got {_type_name(value)}")
    if len(value) > MAX_ID_LEN:
        raise _Invalid(f"field '{name}': longer than {MAX_ID_LEN} characters")
    return value


def _int(obj: dict[str, Any], name: str, required: bool = True) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _Invalid(f"missing required field '{name}'")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"field '{name}': expected integer, got {_type_name(value)}")
    if not -(2**63) <= value < 2**63:
        raise _Invalid(f"field '{name}': integer out of range")
    return value


def _ts(obj: dict[str, Any], name: str, now_ms: int, required: bool = True,
        not_future: bool | None = None) -> int | None:
    """Epoch ms; the record's own time (`ts`, unless told otherwise) at most a day ahead of now."""
    value = _int(obj, name, required)
    if value is None:
        return None
    if value <= 0:
        raise _Invalid(f"field '{name}': expected positive epoch milliseconds, got {value}")
    if (name == "ts" if not_future is None else not_future) and value > now_ms + DAY_MS:
        raise _Invalid(f"field '{name}': more than a day in the future")
    return value


def _count(obj: dict[str, Any], name: str, minimum: int, required: bool = True) -> int | None:
    """An integer of at least `minimum` (1: a positive count, 0: a non-negative one)."""
    value = _int(obj, name, required)
    if value is not None and value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise _Invalid(f"field '{name}': expected {what}, got {value}")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    """A required non-negative JSON number (int or float, never bool)."""
    value = obj.get(name)
    if value is None:
        raise _Invalid(f"missing required field '{name}'")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"field '{name}': expected a number, got {_type_name(value)}")
    if value < 0:
        raise _Invalid(f"field '{name}': expected a non-negative number, got {value!r}")
    return value


def _text(obj: dict[str, Any], name: str, required: bool = True) -> str | None:
    """Free text (a reason): non-empty, bounded by MAX_TEXT_LEN rather than MAX_ID_LEN."""
    value = obj.get(name)
    if value is None:
        if required:
            raise _Invalid(f"missing required field '{name}'")
        return None
    if not isinstance(value, str) or not value:
        raise _Invalid(f"field '{name}': expected non-empty string, got {_type_name(value)}")
    if len(value) > MAX_TEXT_LEN:
        raise _Invalid(f"field '{name}': longer than {MAX_TEXT_LEN} characters")
    return value


def _enum(obj: dict[str, Any], name: str, allowed: frozenset[str]) -> str:
    value = _str(obj, name)
    if value not in allowed:
        raise _Invalid(f"field '{name}': expected one of {sorted(allowed)}, got {value!r}")
    return value


def _factory_id(obj: dict[str, Any]) -> str:
    value = _str(obj, "factory_id")
    if not valid_factory_id(value):
        raise _Invalid(f"field 'factory_id': expected 1-200 of the characters [A-Za-z0-9._-], got {value!r}")
    return value  # type: ignore[return-value]


def _object(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        raise _Invalid(f"missing required field '{name}'")
    if not isinstance(value, dict):
        raise _Invalid(f"field '{name}': expected object, got {_type_name(value)}")
    return value


def _string_map(obj: dict[str, Any], name: str) -> dict[str, str]:
    """A required, non-empty object whose values are all strings (catalog attrs, trigger niche)."""
    value = _object(obj, name)
    if not value:
        raise _Invalid(f"field '{name}': expected at least one entry, got an empty object")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _Invalid(f"field '{name}.{key}': expected string, got {_type_name(item)}")
    return value


def _attrs(obj: dict[str, Any]) -> dict[str, str] | None:
    value = obj.get("attrs")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid(f"field 'attrs': expected object, got {_type_name(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _Invalid(f"field 'attrs.{key}': expected string, got {_type_name(item)}")
    return value


def _load_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if raw is None:
        raise _Invalid("empty record (null value)")
    if len(raw) > max_bytes:
        raise _Invalid(f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Invalid(f"not valid JSON: {exc.args[0] if exc.args else exc}") from None
    if not isinstance(obj, dict):
        raise _Invalid(f"expected a JSON object, got {_type_name(obj)}")
    return obj


_INT64 = 2**63


def _ok_id(value: Any) -> bool:
    """What _str accepts, for exact str values only (anything else takes the checked path)."""
    return type(value) is str and 0 < len(value) <= MAX_ID_LEN


_JUST_STR = frozenset({str})


def _ok_attrs(value: Any) -> bool:
    """What _attrs accepts, for exact dict and str types only (anything else takes the checked path)."""
    return value is None or (type(value) is dict and set(map(type, value.values())) <= _JUST_STR)


def _ok_count(value: Any) -> bool:
    """A positive integer that _int accepts."""
    return type(value) is int and 0 < value < _INT64


def _fast_click(obj: dict[str, Any], now_ms: int) -> tuple[Any, ...] | None:
    """_click_values for a record that passes every check (the usual one), without building the
    reasons; None when anything is off, and the checked path then says what."""
    etype, event_id, ts, region = obj.get("type"), obj.get("event_id"), obj.get("ts"), obj.get("region")
    sku, attrs, user_id = obj.get("sku"), obj.get("attrs"), obj.get("user_id")
    # _ok_id and _ok_count spelled out: this runs for every click
    if not (type(etype) is str and etype in CLICK_TYPES
            and type(event_id) is str and 0 < len(event_id) <= MAX_ID_LEN
            and type(ts) is int and 0 < ts < _INT64 and ts <= now_ms + DAY_MS
            and type(region) is str and 0 < len(region) <= MAX_ID_LEN
            and (user_id is None or (type(user_id) is str and 0 < len(user_id) <= MAX_ID_LEN))
            and (attrs is None or (type(attrs) is dict and set(map(type, attrs.values())) <= _JUST_STR))):
        return None
    if sku is None:
        if not (etype == "search" and isinstance(obj.get("query"), str)):
            return None
    elif not (type(sku) is str and 0 < len(sku) <= MAX_ID_LEN):
        return None
    return (event_id, etype, ts, region, sku, attrs, user_id)


def _fast_order(obj: dict[str, Any], now_ms: int) -> tuple[Any, ...] | None:
    """_order_values for a record that passes every check (see _fast_click)."""
    etype, event_id, ts, region = obj.get("type"), obj.get("event_id"), obj.get("ts"), obj.get("region")
    sku, attrs, user_id, quantity = obj.get("sku"), obj.get("attrs"), obj.get("user_id"), obj.get("quantity")
    order_id, price = obj.get("order_id"), obj.get("unit_price")
    if not (type(etype) is str and etype in ORDER_TYPES and _ok_id(event_id) and _ok_count(ts)
            and ts <= now_ms + DAY_MS and _ok_id(region) and _ok_id(sku) and (user_id is None or _ok_id(user_id))
            and _ok_attrs(attrs) and _ok_count(quantity) and _ok_id(order_id)):
        return None
    if price is not None and not ((type(price) is float and price >= 0 and math.isfinite(price))
                                  or (type(price) is int and 0 <= price < _INT64)):
        return None
    group_id, target, expires = obj.get("group_id"), obj.get("group_target"), obj.get("group_expires_ts")
    if etype == "group_join":
        if not (_ok_id(group_id) and _ok_count(target) and _ok_count(expires)):
            return None
    elif not ((group_id is None or _ok_id(group_id)) and (target is None or _ok_count(target))
              and (expires is None or _ok_count(expires))):
        return None
    return (event_id, etype, ts, region, sku, attrs, user_id, quantity, order_id, group_id, target, expires)


def _click_values(obj: dict[str, Any], now_ms: int) -> tuple[Any, ...]:
    """The checks of a clickstream event; returns Event's leading fields, in Event's order."""
    fast = _fast_click(obj, now_ms)
    return fast if fast is not None else _checked_click(obj, now_ms)


def _checked_click(obj: dict[str, Any], now_ms: int) -> tuple[Any, ...]:
    etype = _str(obj, "type")
    if etype not in CLICK_TYPES:
        raise _Invalid(f"field 'type': expected one of {sorted(CLICK_TYPES)}, got {etype!r}")
    needs_sku = not (etype == "search" and isinstance(obj.get("query"), str))
    return (
        _str(obj, "event_id"),
        etype,
        _ts(obj, "ts", now_ms),
        _str(obj, "region"),
        _str(obj, "sku", required=needs_sku),
        _attrs(obj),
        _str(obj, "user_id", required=False),
    )


def _order_values(obj: dict[str, Any], now_ms: int) -> tuple[Any, ...]:
    """The checks of an order event; returns Event's fields, in Event's order."""
    fast = _fast_order(obj, now_ms)
    return fast if fast is not None else _checked_order(obj, now_ms)


def _checked_order(obj: dict[str, Any], now_ms: int) -> tuple[Any, ...]:
    etype = _str(obj, "type")
    if etype not in ORDER_TYPES:
        raise _Invalid(f"field 'type': expected one of {sorted(ORDER_TYPES)}, got {etype!r}")
    quantity = _int(obj, "quantity")
    if quantity is None or quantity <= 0:
        raise _Invalid(f"field 'quantity': expected a positive integer, got {quantity}")
    price = obj.get("unit_price")
    # not finite: JSON cannot carry it (a parsed record never has one), but a dict being checked can
    if price is not None and (isinstance(price, bool) or not isinstance(price, int | float)
                              or price < 0 or not math.isfinite(price)):
        raise _Invalid(f"field 'unit_price': expected a non-negative number, got {price!r}")
    is_group = etype == "group_join"
    group_target = _int(obj, "group_target", required=is_group)
    if group_target is not None and group_target <= 0:
        raise _Invalid(f"field 'group_target': expected a positive integer, got {group_target}")
    return (
        _str(obj, "event_id"),
        etype,
        _ts(obj, "ts", now_ms),
        _str(obj, "region"),
        _str(obj, "sku"),
        _attrs(obj),
        _str(obj, "user_id", required=False),
        quantity,
        _str(obj, "order_id"),
        _str(obj, "group_id", required=is_group),
        group_target,
        _ts(obj, "group_expires_ts", now_ms, required=is_group),
    )


def parse_click(raw: bytes | None, now_ms: int, max_bytes: int = DEFAULT_MAX_BYTES) -> Event | Rejection:
    try:
        return Event(*_click_values(_load_object(raw, max_bytes), now_ms))
    except _Invalid as exc:
        return Rejection(str(exc))


def event_fields(raw: bytes | None, now_ms: int, max_bytes: int = DEFAULT_MAX_BYTES, *,
                 order: bool) -> tuple[Any, ...] | Rejection:
    """parse_order (order=True) or parse_click, as the Event's fields in Event's order (a click's
    leading seven; the rest are Event's defaults) rather than an Event: the same checks and
    reasons, without building a frozen dataclass per event on the ingest hot path."""
    try:
        obj = _load_object(raw, max_bytes)
        return _order_values(obj, now_ms) if order else _click_values(obj, now_ms)
    except _Invalid as exc:
        return Rejection(str(exc))


def parse_order(raw: bytes | None, now_ms: int, max_bytes: int = DEFAULT_MAX_BYTES) -> Event | Rejection:
    try:
        return Event(*_order_values(_load_object(raw, max_bytes), now_ms))
    except _Invalid as exc:
        return Rejection(str(exc))


def check_click(obj: dict[str, Any], now_ms: int) -> Rejection | None:
    """parse_click's field checks on a dict about to be sent (None: valid), without decoding bytes
    or building an Event: the producer SDK's hot path. The size limit is the caller's to check."""
    if not isinstance(obj, dict):
        return Rejection(f"expected a JSON object, got {_type_name(obj)}")
    try:
        _click_values(obj, now_ms)
    except _Invalid as exc:
        return Rejection(str(exc))
    return None


def check_order(obj: dict[str, Any], now_ms: int) -> Rejection | None:
    """parse_order's field checks on a dict about to be sent (None: valid); see check_click."""
    if not isinstance(obj, dict):
        return Rejection(f"expected a JSON object, got {_type_name(obj)}")
    try:
        _order_values(obj, now_ms)
    except _Invalid as exc:
        return Rejection(str(exc))
    return None


def size_rejection(raw: bytes, max_bytes: int) -> Rejection | None:
    """The size limit, worded as the parsers word it."""
    if len(raw) > max_bytes:
        return Rejection(f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    return None


def parse_catalog(raw: bytes | None, now_ms: int,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> CatalogRecord | Rejection:
    """A c2m.catalog record. attrs is required and non-empty: a product without attributes could
    never be placed in a niche, so an empty one is an upstream bug worth a dead letter."""
    try:
        obj = _load_object(raw, max_bytes)
        return CatalogRecord(
            sku=_str(obj, "sku"),  # type: ignore[arg-type]
            attrs=_string_map(obj, "attrs"),
            ts=_ts(obj, "ts", now_ms),  # type: ignore[arg-type]
        )
    except _Invalid as exc:
        return Rejection(str(exc))


def parse_factory_status(raw: bytes | None, now_ms: int,
                         max_bytes: int = DEFAULT_MAX_BYTES) -> FactoryStatus | Rejection:
    """A c2m.factory-status record: an answer about one trigger revision, or a capacity update.

    Every field that is present is checked; which are required depends on the status.
    """
    try:
        obj = _load_object(raw, max_bytes)
        status = _enum(obj, "status", STATUS_TYPES)
        about_trigger = status != "capacity"
        return FactoryStatus(
            factory_id=_factory_id(obj),
            status=status,
            ts=_ts(obj, "ts", now_ms),  # type: ignore[arg-type]
            trigger_id=_str(obj, "trigger_id", required=about_trigger),
            revision=_count(obj, "revision", 1, required=about_trigger),
            units=_count(obj, "units", 0, required=about_trigger),
            capacity_units_per_day=_count(obj, "capacity_units_per_day", 0, required=not about_trigger),
            reason=_text(obj, "reason", required=False),
        )
    except _Invalid as exc:
        return Rejection(str(exc))


def _forecast(obj: dict[str, Any]) -> Forecast:
    fc = _object(obj, "forecast")
    try:
        cold = fc.get("cold_start")
        if cold is None:
            raise _Invalid("missing required field 'cold_start'")
        if not isinstance(cold, bool):
            raise _Invalid(f"field 'cold_start': expected boolean, got {_type_name(cold)}")
        return Forecast(
            horizon_hours=_count(fc, "horizon_hours", 1),  # type: ignore[arg-type]
            p50=_number(fc, "p50"),
            p90=_number(fc, "p90"),
            model=_str(fc, "model"),  # type: ignore[arg-type]
            cold_start=cold,
        )
    except _Invalid as exc:  # name the nested field: 'forecast.p50', not 'p50'
        raise _Invalid(str(exc).replace("field '", "field 'forecast.", 1)) from None


def parse_trigger(raw: bytes | None, now_ms: int,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> TriggerRecord | Rejection:
    """A production trigger (c2m.triggers.<factory_id>). emitted_ts is the trigger's own time, so
    it gets the "at most a day in the future" check; due_by_ts is naturally in the future."""
    try:
        obj = _load_object(raw, max_bytes)
        kind = _enum(obj, "kind", TRIGGER_KINDS)
        return TriggerRecord(
            trigger_id=_str(obj, "trigger_id"),  # type: ignore[arg-type]
            revision=_count(obj, "revision", 1),  # type: ignore[arg-type]
            action=_enum(obj, "action", TRIGGER_ACTIONS),
            kind=kind,
            factory_id=_factory_id(obj),
            niche=_string_map(obj, "niche"),
            units=_count(obj, "units", 1),  # type: ignore[arg-type]
            due_by_ts=_ts(obj, "due_by_ts", now_ms),  # type: ignore[arg-type]
            emitted_ts=_ts(obj, "emitted_ts", now_ms, not_future=True),  # type: ignore[arg-type]
            forecast=_forecast(obj),
            evidence=_object(obj, "evidence"),
            reason=_text(obj, "reason"),  # type: ignore[arg-type]
            group_id=_str(obj, "group_id", required=kind == "group_buy"),
        )
    except _Invalid as exc:
        return Rejection(str(exc))


def dead_letter(reason: str, topic: str, partition: int, offset: int, raw: bytes | None) -> bytes:
    """The dead-letter record of DESIGN §5: the original as text when it is UTF-8, else base64."""
    record: Any
    if raw is None:
        record = None
    else:
        try:
            record = raw.decode("utf-8")
        except UnicodeDecodeError:
            record = {"base64": base64.b64encode(raw).decode("ascii")}
    return orjson.dumps({"reason": reason,
                         "source": {"topic": topic, "partition": partition, "offset": offset},
                         "record": record})
