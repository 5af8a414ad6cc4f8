"""Wire records of DESIGN §5: what parses, what is rejected and why, and the dead-letter shape."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.records import DAY_MS, Event, Rejection, dead_letter, parse_click, parse_order

NOW = 1_764_000_001_000

CLICK: dict[str, Any] = {
    "event_id": "e-1", "type": "view", "ts": 1764000000000, "user_id": "u-1", "session_id": "s-1",
    "sku": "SKU-1", "region": "CN-GD",
    "attrs": {"category": "dress", "style": "boho", "color": "sage", "size": "M"},
}
ORDER: dict[str, Any] = {
    "event_id": "e-2", "type": "placed", "ts": 1764000000500, "order_id": "o-1", "user_id": "u-1",
    "sku": "SKU-1", "quantity": 2, "unit_price": 19.9, "region": "CN-GD",
    "group_id": "g-7", "group_target": 50, "group_expires_ts": 1764086400000,
}


def enc(obj: Any) -> bytes:
    return orjson.dumps(obj)


def click(**changes: Any) -> Event | Rejection:
    return parse_click(enc({**CLICK, **changes}), NOW)


def order(**changes: Any) -> Event | Rejection:
    return parse_order(enc({**ORDER, **changes}), NOW)


def without(base: dict[str, Any], *names: str) -> bytes:
    return enc({k: v for k, v in base.items() if k not in names})


def reason(result: Event | Rejection) -> str:
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result.reason


# --- valid records ------------------------------------------------------------------------------


def test_design_click_example_parses() -> None:
    ev = parse_click(enc(CLICK), NOW)
    assert ev == Event(event_id="e-1", type="view", ts=1764000000000, region="CN-GD", sku="SKU-1",
                       attrs={"category": "dress", "style": "boho", "color": "sage", "size": "M"},
                       user_id="u-1")


def test_design_order_example_parses() -> None:
    ev = parse_order(enc(ORDER), NOW)
    assert ev == Event(event_id="e-2", type="placed", ts=1764000000500, region="CN-GD", sku="SKU-1",
                       attrs=None, user_id="u-1", quantity=2, order_id="o-1", group_id="g-7",
                       group_target=50, group_expires_ts=1764086400000)


@pytest.mark.parametrize("etype", ["view", "search", "add_to_cart", "remove_from_cart", "wishlist", "share"])
def test_every_click_type_is_accepted(etype: str) -> None:
    ev = click(type=etype)
    assert isinstance(ev, Event)
    assert ev.type == etype


@pytest.mark.parametrize("etype", ["placed", "cancelled", "group_join"])
def test_every_order_type_is_accepted(etype: str) -> None:
    ev = order(type=etype)
    assert isinstance(ev, Event)
    assert ev.type == etype


def test_unknown_extra_fields_are_ignored() -> None:
    ev = click(future_field={"nested": [1, 2]}, campaign="spring")
    assert ev == parse_click(enc(CLICK), NOW)
    ev2 = order(coupon="X", loyalty_points=3)
    assert ev2 == parse_order(enc(ORDER), NOW)


def test_search_with_query_and_no_sku_is_accepted() -> None:
    raw = enc({k: v for k, v in CLICK.items() if k not in ("sku", "attrs")} | {"type": "search", "query": "boho"})
    ev = parse_click(raw, NOW)
    assert isinstance(ev, Event)
    assert ev.sku is None
    assert ev.attrs is None


def test_click_without_sku_needs_to_be_a_search_with_query() -> None:
    assert "'sku'" in reason(parse_click(without(CLICK, "sku"), NOW))
    search_no_query = {k: v for k, v in CLICK.items() if k != "sku"} | {"type": "search"}
    assert "'sku'" in reason(parse_click(enc(search_no_query), NOW))


def test_optional_fields_may_be_absent() -> None:
    ev = parse_click(without(CLICK, "user_id", "session_id", "attrs"), NOW)
    assert isinstance(ev, Event)
    assert ev.user_id is None
    assert ev.attrs is None
    ev2 = parse_order(without(ORDER, "group_id", "group_target", "group_expires_ts", "unit_price", "user_id"), NOW)
    assert isinstance(ev2, Event)
    assert ev2.group_id is None
    assert ev2.group_target is None


def test_group_join_with_group_fields_is_accepted() -> None:
    ev = order(type="group_join")
    assert isinstance(ev, Event)
    assert (ev.group_id, ev.group_target, ev.group_expires_ts) == ("g-7", 50, 1764086400000)


def test_ts_up_to_a_day_ahead_is_accepted() -> None:
    assert isinstance(click(ts=NOW + DAY_MS), Event)


# --- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "type", "ts", "region", "sku"])
def test_click_missing_required_field_names_it(field: str) -> None:
    r = reason(parse_click(without(CLICK, field), NOW))
    assert f"'{field}'" in r
    assert "missing" in r


@pytest.mark.parametrize("field", ["event_id", "type", "ts", "region", "sku", "order_id", "quantity"])
def test_order_missing_required_field_names_it(field: str) -> None:
    r = reason(parse_order(without(ORDER, field), NOW))
    assert f"'{field}'" in r


@pytest.mark.parametrize(("field", "value"), [
    ("event_id", 12), ("region", ["CN-GD"]), ("sku", 1.5), ("ts", "1764000000000"), ("ts", 1.7e12),
    ("user_id", 7), ("attrs", "dress"), ("event_id", ""),
])
def test_click_wrong_type_names_the_field(field: str, value: Any) -> None:
    r = reason(click(**{field: value}))
    assert f"'{field}'" in r
    assert "expected" in r


@pytest.mark.parametrize(("field", "value"), [
    ("quantity", "2"), ("quantity", 2.0), ("order_id", 5), ("unit_price", "19.9"), ("group_target", "50"),
])
def test_order_wrong_type_names_the_field(field: str, value: Any) -> None:
    r = reason(order(**{field: value}))
    assert f"'{field}'" in r


def test_attrs_value_of_wrong_type_names_the_attribute() -> None:
    r = reason(click(attrs={"category": "dress", "size": 38}))
    assert "attrs.size" in r


@pytest.mark.parametrize("quantity", [0, -1, -100])
def test_non_positive_quantity_is_rejected(quantity: int) -> None:
    r = reason(order(quantity=quantity))
    assert "'quantity'" in r
    assert "positive" in r


def test_negative_unit_price_is_rejected() -> None:
    assert "'unit_price'" in reason(order(unit_price=-0.01))


@pytest.mark.parametrize("parse_base", [(parse_click, CLICK), (parse_order, ORDER)])
def test_unknown_type_is_rejected(parse_base: tuple[Any, dict[str, Any]]) -> None:
    parse, base = parse_base
    r = reason(parse(enc({**base, "type": "teleport"}), NOW))
    assert "'type'" in r
    assert "teleport" in r


def test_click_type_on_order_topic_is_rejected() -> None:
    assert "'type'" in reason(order(type="view"))


def test_ts_more_than_a_day_in_the_future_is_rejected() -> None:
    r = reason(click(ts=NOW + DAY_MS + 1))
    assert "'ts'" in r
    assert "future" in r
    assert "'ts'" in reason(order(ts=NOW + 2 * DAY_MS))


@pytest.mark.parametrize("ts", [0, -5])
def test_non_positive_ts_is_rejected(ts: int) -> None:
    assert "'ts'" in reason(click(ts=ts))


def test_oversize_record_is_rejected_with_sizes() -> None:
    raw = enc({**CLICK, "padding": "x" * 2000})
    r = reason(parse_click(raw, NOW, max_bytes=1000))
    assert "1000" in r
    assert str(len(raw)) in r
    assert isinstance(parse_click(raw, NOW, max_bytes=len(raw)), Event)
    assert isinstance(parse_order(enc({**ORDER, "padding": "x" * 2000}), NOW, max_bytes=500), Rejection)


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe\x00", b'{"event_id": "e-1",}'])
def test_not_json_is_rejected(raw: bytes) -> None:
    assert "JSON" in reason(parse_click(raw, NOW))
    assert "JSON" in reason(parse_order(raw, NOW))


@pytest.mark.parametrize(("raw", "kind"), [(b"[1, 2]", "list"), (b'"view"', "str"), (b"42", "int"),
                                          (b"null", "null")])
def test_json_that_is_not_an_object_is_rejected(raw: bytes, kind: str) -> None:
    r = reason(parse_click(raw, NOW))
    assert "object" in r
    assert kind in r


def test_null_record_value_is_rejected() -> None:
    assert "null" in reason(parse_click(None, NOW))
    assert "null" in reason(parse_order(None, NOW))


def test_null_field_counts_as_missing() -> None:
    r = reason(click(event_id=None))
    assert "'event_id'" in r


@pytest.mark.parametrize("field", ["ts", "quantity", "group_target"])
def test_bool_is_not_an_integer(field: str) -> None:
    r = reason(order(**{field: True}))
    assert f"'{field}'" in r
    assert "bool" in r


def test_bool_unit_price_is_rejected() -> None:
    assert "'unit_price'" in reason(order(unit_price=False))


@pytest.mark.parametrize("field", ["group_id", "group_target", "group_expires_ts"])
def test_group_join_without_group_field_is_rejected(field: str) -> None:
    raw = enc({k: v for k, v in ORDER.items() if k != field} | {"type": "group_join"})
    r = reason(parse_order(raw, NOW))
    assert f"'{field}'" in r


def test_group_target_must_be_positive() -> None:
    assert "'group_target'" in reason(order(type="group_join", group_target=0))


def test_overlong_id_is_rejected() -> None:
    assert "'event_id'" in reason(click(event_id="e" * 257))


def test_integer_beyond_64_bits_is_rejected() -> None:
    raw = enc({**ORDER}).replace(b'"quantity":2', b'"quantity":18446744073709551615')
    assert b"18446744073709551615" in raw
    assert "'quantity'" in reason(parse_order(raw, NOW))


# --- dead letters -------------------------------------------------------------------------------


def test_dead_letter_carries_reason_source_and_text_record() -> None:
    raw = b'{"type": "teleport"}'
    out = orjson.loads(dead_letter("field 'type': bad", "c2m.clickstream", 3, 1234, raw))
    assert out == {"reason": "field 'type': bad",
                   "source": {"topic": "c2m.clickstream", "partition": 3, "offset": 1234},
                   "record": '{"type": "teleport"}'}


def test_dead_letter_base64_when_not_utf8() -> None:
    raw = b"\xff\xfe\x00binary"
    out = orjson.loads(dead_letter("not valid JSON", "c2m.orders", 0, 7, raw))
    assert out["record"] == {"base64": base64.b64encode(raw).decode("ascii")}
    assert base64.b64decode(out["record"]["base64"]) == raw
    assert out["source"] == {"topic": "c2m.orders", "partition": 0, "offset": 7}


def test_dead_letter_of_a_null_record() -> None:
    out = orjson.loads(dead_letter("empty record (null value)", "c2m.orders", 1, 2, None))
    assert out["record"] is None
    assert set(out) == {"reason", "source", "record"}


def test_dead_letter_keeps_non_ascii_text() -> None:
    raw = '{"region": "华南"}'.encode()
    out = orjson.loads(dead_letter("x", "c2m.clickstream", 0, 0, raw))
    assert out["record"] == '{"region": "华南"}'


# --- never raise --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)

field_values = st.one_of(
    json_values,
    st.sampled_from(["view", "search", "placed", "group_join", "cancelled", "e-1", ""]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
_MISSING = object()


@st.composite
def record_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid click or order with a few fields replaced by arbitrary values or dropped."""
    base = dict(draw(st.sampled_from([CLICK, ORDER, {**ORDER, "type": "group_join"}])))
    names = sorted(set(base) | {"query", "attrs", "group_target"})
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        value = draw(st.one_of(st.just(_MISSING), field_values))
        if value is _MISSING:
            base.pop(name, None)
        else:
            base[name] = value
    return base


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    for parse in (parse_click, parse_order):
        assert isinstance(parse(raw, NOW), Event | Rejection)


@given(json_values)
@settings(max_examples=300)
def test_arbitrary_json_never_raises(value: Any) -> None:
    raw = orjson.dumps(value)
    for parse in (parse_click, parse_order):
        assert isinstance(parse(raw, NOW), Event | Rejection)


@given(record_like())
@settings(max_examples=300)
def test_record_shaped_json_never_raises(value: dict[str, Any]) -> None:
    raw = orjson.dumps(value)
    for parse in (parse_click, parse_order):
        result = parse(raw, NOW)
        assert isinstance(result, Event | Rejection)
        if isinstance(result, Event):
            assert isinstance(result.event_id, str)
            assert result.event_id
            assert isinstance(result.ts, int)
            assert 0 < result.ts <= NOW + DAY_MS
