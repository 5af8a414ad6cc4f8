"""Wire records of DESIGN §5: strict validation with a precise reason, never an exception.

Pure: no Faust, no Kafka. Parsers take the raw bytes of one Kafka record and return either a
parsed record or a Rejection that says which field was wrong, what was expected and what came.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

CLICK_TYPES = frozenset({"view", "search", "add_to_cart", "remove_from_cart", "wishlist", "share"})
ORDER_TYPES = frozenset({"placed", "cancelled", "group_join"})
DAY_MS = 86_400_000
MAX_ID_LEN = 256


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


def _ts(obj: dict[str, Any], name: str, now_ms: int, required: bool = True) -> int | None:
    value = _int(obj, name, required)
    if value is None:
        return None
    if value <= 0:
        raise _Invalid(f"field '{name}': expected positive epoch milliseconds, got {value}")
    if name == "ts" and value > now_ms + DAY_MS:
        raise _Invalid(f"field '{name}': more than a day in the future")
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


def parse_click(raw: bytes | None, now_ms: int, max_bytes: int = 65536) -> Event | Rejection:
    try:
        obj = _load_object(raw, max_bytes)
        etype = _str(obj, "type")
        if etype not in CLICK_TYPES:
            raise _Invalid(f"field 'type': expected one of {sorted(CLICK_TYPES)}, got {etype!r}")
        needs_sku = not (etype == "search" and isinstance(obj.get("query"), str))
        return Event(
            event_id=_str(obj, "event_id"),  # type: ignore[arg-type]
            type=etype,
            ts=_ts(obj, "ts", now_ms),  # type: ignore[arg-type]
            region=_str(obj, "region"),  # type: ignore[arg-type]
            sku=_str(obj, "sku", required=needs_sku),
            attrs=_attrs(obj),
            user_id=_str(obj, "user_id", required=False),
        )
    except _Invalid as exc:
        return Rejection(str(exc))


def parse_order(raw: bytes | None, now_ms: int, max_bytes: int = 65536) -> Event | Rejection:
    try:
        obj = _load_object(raw, max_bytes)
        etype = _str(obj, "type")
        if etype not in ORDER_TYPES:
            raise _Invalid(f"field 'type': expected one of {sorted(ORDER_TYPES)}, got {etype!r}")
        quantity = _int(obj, "quantity")
        if quantity is None or quantity <= 0:
            raise _Invalid(f"field 'quantity': expected a positive integer, got {quantity}")
        price = obj.get("unit_price")
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float)
                                  or price < 0):
            raise _Invalid(f"field 'unit_price': expected a non-negative number, got {price!r}")
        is_group = etype == "group_join"
        group_target = _int(obj, "group_target", required=is_group)
        if group_target is not None and group_target <= 0:
            raise _Invalid(f"field 'group_target': expected a positive integer, got {group_target}")
        return Event(
            event_id=_str(obj, "event_id"),  # type: ignore[arg-type]
            type=etype,
            ts=_ts(obj, "ts", now_ms),  # type: ignore[arg-type]
            region=_str(obj, "region"),  # type: ignore[arg-type]
            sku=_str(obj, "sku"),
            attrs=_attrs(obj),
            user_id=_str(obj, "user_id", required=False),
            quantity=quantity,
            order_id=_str(obj, "order_id"),
            group_id=_str(obj, "group_id", required=is_group),
            group_target=group_target,
            group_expires_ts=_ts(obj, "group_expires_ts", now_ms, required=is_group),
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
