"""Wire records of DESIGN §5: what parses, what is rejected and why, and the dead-letter shape."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.records import (
    DAY_MS,
    CatalogRecord,
    Event,
    FactoryStatus,
    Forecast,
    Rejection,
    TriggerRecord,
    check_click,
    check_order,
    dead_letter,
    parse_catalog,
    parse_click,
    parse_factory_status,
    parse_order,
    parse_trigger,
    size_rejection,
    valid_factory_id,
)
from tests.contract_examples import CAPACITY, CATALOG, STATUS, TRIGGER

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


# --- catalog, factory status and trigger records ------------------------------------------------


def catalog(**changes: Any) -> CatalogRecord | Rejection:
    return parse_catalog(enc({**CATALOG, **changes}), NOW)


def status(base: dict[str, Any] = STATUS, **changes: Any) -> FactoryStatus | Rejection:
    return parse_factory_status(enc({**base, **changes}), NOW)


def trigger(**changes: Any) -> TriggerRecord | Rejection:
    return parse_trigger(enc({**TRIGGER, **changes}), NOW)


def test_design_catalog_example_parses() -> None:
    assert parse_catalog(enc(CATALOG), NOW) == CatalogRecord(sku="SKU-1", attrs=CATALOG["attrs"], ts=1764000000000)


@pytest.mark.parametrize("field", ["sku", "attrs", "ts"])
def test_catalog_missing_field_is_named(field: str) -> None:
    r = reason(parse_catalog(without(CATALOG, field), NOW))
    assert f"'{field}'" in r
    assert "missing" in r


@pytest.mark.parametrize(("field", "value", "named"), [
    ("sku", 1, "'sku'"), ("sku", "", "'sku'"), ("attrs", "dress", "'attrs'"), ("attrs", {}, "'attrs'"),
    ("attrs", {"category": "dress", "size": 38}, "'attrs.size'"), ("ts", "1764000000000", "'ts'"),
    ("ts", 0, "'ts'"), ("ts", NOW + DAY_MS + 1, "'ts'"),
])
def test_catalog_bad_field_is_named(field: str, value: Any, named: str) -> None:
    assert named in reason(catalog(**{field: value}))


def test_catalog_size_limit_is_configurable() -> None:
    raw = enc({**CATALOG, "padding": "x" * 2000})
    assert "1000-byte limit" in reason(parse_catalog(raw, NOW, max_bytes=1000))
    assert isinstance(parse_catalog(raw, NOW), CatalogRecord)


def test_catalog_null_value_is_rejected() -> None:
    assert "null" in reason(parse_catalog(None, NOW))


def test_design_status_example_parses() -> None:
    assert parse_factory_status(enc(STATUS), NOW) == FactoryStatus(
        factory_id="f-1", status="accepted", ts=1764000100000, trigger_id="t-1", revision=2, units=300)


@pytest.mark.parametrize("value", ["accepted", "rejected", "in_production", "completed"])
def test_every_trigger_status_is_accepted(value: str) -> None:
    st_ = status(status=value, reason="why not")
    assert isinstance(st_, FactoryStatus)
    assert st_.status == value
    assert st_.reason == "why not"


def test_capacity_status_needs_no_trigger_fields() -> None:
    assert parse_factory_status(enc(CAPACITY), NOW) == FactoryStatus(
        factory_id="f-1", status="capacity", ts=1764000100000, capacity_units_per_day=4000)


def test_capacity_status_needs_capacity_units_per_day() -> None:
    assert "'capacity_units_per_day'" in reason(parse_factory_status(without(CAPACITY, "capacity_units_per_day"), NOW))
    assert "'capacity_units_per_day'" in reason(status(CAPACITY, capacity_units_per_day=-1))


@pytest.mark.parametrize("field", ["factory_id", "trigger_id", "revision", "status", "units", "ts"])
def test_status_missing_field_is_named(field: str) -> None:
    r = reason(parse_factory_status(without(STATUS, field), NOW))
    assert f"'{field}'" in r


@pytest.mark.parametrize(("field", "value"), [
    ("status", "shipped"), ("revision", 0), ("revision", "2"), ("units", -1), ("units", 1.5), ("ts", NOW + 2 * DAY_MS),
    ("factory_id", "f 1"), ("factory_id", "f/1"), ("factory_id", "f" * 201), ("trigger_id", ""), ("reason", ""),
    ("reason", "x" * 4097), ("capacity_units_per_day", -5), ("revision", True),
])
def test_status_bad_field_is_named(field: str, value: Any) -> None:
    assert f"'{field}'" in reason(status(**{field: value}))


def test_status_units_may_be_zero() -> None:
    assert isinstance(status(status="completed", units=0), FactoryStatus)


def test_design_trigger_example_parses() -> None:
    trig = parse_trigger(enc(TRIGGER), NOW)
    assert isinstance(trig, TriggerRecord)
    assert trig.key == ("t-1", 1)
    assert trig.forecast == Forecast(horizon_hours=72, p50=180, p90=240, model="rule-v1", cold_start=False)
    assert trig.niche["region"] == "CN-GD"
    assert trig.evidence["views"] == 5400
    assert trig.group_id is None
    assert trig.to_dict() == TRIGGER


def test_group_buy_trigger_carries_its_group() -> None:
    trig = trigger(kind="group_buy", group_id="g-7")
    assert isinstance(trig, TriggerRecord)
    assert trig.group_id == "g-7"
    assert trig.to_dict()["group_id"] == "g-7"
    assert "'group_id'" in reason(trigger(kind="group_buy"))


@pytest.mark.parametrize("action", ["start", "reorder", "revise", "cancel"])
def test_every_trigger_action_is_accepted(action: str) -> None:
    assert isinstance(trigger(action=action), TriggerRecord)


def test_trigger_extra_fields_are_ignored() -> None:
    assert trigger(priority="high", forecast={**TRIGGER["forecast"], "p10": 100}) == parse_trigger(enc(TRIGGER), NOW)


@pytest.mark.parametrize("field", sorted(TRIGGER))
def test_trigger_missing_field_is_named(field: str) -> None:
    r = reason(parse_trigger(without(TRIGGER, field), NOW))
    assert f"'{field}'" in r
    assert "missing" in r


@pytest.mark.parametrize(("field", "value", "named"), [
    ("action", "pause", "'action'"), ("kind", "hunch", "'kind'"), ("revision", 0, "'revision'"),
    ("units", 0, "'units'"), ("units", -200, "'units'"), ("units", 2.5, "'units'"), ("units", "200", "'units'"),
    ("factory_id", "f:1", "'factory_id'"), ("niche", {}, "'niche'"), ("niche", {"size": 38}, "'niche.size'"),
    ("due_by_ts", -1, "'due_by_ts'"), ("emitted_ts", NOW + DAY_MS + 1, "'emitted_ts'"),
    ("forecast", [], "'forecast'"), ("evidence", "lots", "'evidence'"), ("reason", 7, "'reason'"),
    ("group_id", 7, "'group_id'"), ("trigger_id", "t" * 257, "'trigger_id'"),
])
def test_trigger_bad_field_is_named(field: str, value: Any, named: str) -> None:
    assert named in reason(trigger(**{field: value}))


@pytest.mark.parametrize(("field", "value"), [
    ("horizon_hours", 0), ("horizon_hours", 1.5), ("p50", -1), ("p90", "240"), ("model", ""), ("cold_start", "no"),
    ("cold_start", None), ("p50", True),
])
def test_trigger_bad_forecast_field_is_named_with_its_path(field: str, value: Any) -> None:
    assert f"'forecast.{field}'" in reason(trigger(forecast={**TRIGGER["forecast"], field: value}))


def test_trigger_due_by_may_be_far_ahead() -> None:
    assert isinstance(trigger(due_by_ts=NOW + 30 * DAY_MS), TriggerRecord)


def test_trigger_forecast_quantiles_may_be_floats() -> None:
    trig = trigger(forecast={**TRIGGER["forecast"], "p50": 180.5, "p90": 240.25})
    assert isinstance(trig, TriggerRecord)
    assert trig.forecast.p90 == 240.25


@pytest.mark.parametrize(("value", "ok"), [("f-gz-dress", True), ("F_1.a", True), ("", False), ("f 1", False),
                                           ("f\n", False), ("工厂", False), (None, False), ("f" * 200, True)])
def test_valid_factory_id(value: Any, ok: bool) -> None:
    assert valid_factory_id(value) is ok


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_new_parsers_never_raise_on_bytes(raw: bytes) -> None:
    for parse in (parse_catalog, parse_factory_status, parse_trigger):
        assert not isinstance(parse(raw, NOW), Exception)


@st.composite
def contract_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid catalog/status/trigger record with a few fields, nested ones included, replaced or dropped."""
    base = {k: (dict(v) if isinstance(v, dict) else v)
            for k, v in draw(st.sampled_from([CATALOG, STATUS, CAPACITY, TRIGGER])).items()}
    for _ in range(draw(st.integers(0, 3))):
        target = base
        nested = [k for k, v in base.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = base[draw(st.sampled_from(nested))]
        names = sorted(target) or ["x"]
        name = draw(st.sampled_from(names))
        value = draw(st.one_of(st.just(_MISSING), field_values))
        if value is _MISSING:
            target.pop(name, None)
        else:
            target[name] = value
    return base


@given(contract_like())
@settings(max_examples=300)
def test_contract_shaped_json_never_raises(value: dict[str, Any]) -> None:
    raw = orjson.dumps(value)
    for parse in (parse_catalog, parse_factory_status, parse_trigger):
        result = parse(raw, NOW)
        assert isinstance(result, CatalogRecord | FactoryStatus | TriggerRecord | Rejection)


# --- check_click / check_order: the parsers' checks on a dict, for the producer SDK ------------------


@given(record_like())
@settings(max_examples=400)
def test_dict_checks_agree_with_the_parsers(value: dict[str, Any]) -> None:
    raw = orjson.dumps(value)
    for parse, check in ((parse_click, check_click), (parse_order, check_order)):
        parsed = parse(raw, NOW, max_bytes=2**40)
        problem = check(value, NOW)
        if isinstance(parsed, Rejection):
            assert problem == parsed
        else:
            assert problem is None


def test_dict_checks_reject_what_json_cannot_carry() -> None:
    assert "'unit_price'" in reason(check_order({**ORDER, "unit_price": float("nan")}, NOW))  # type: ignore[arg-type]
    assert "'unit_price'" in reason(check_order({**ORDER, "unit_price": float("inf")}, NOW))  # type: ignore[arg-type]
    assert "object" in reason(check_click([CLICK], NOW))  # type: ignore[arg-type]
    assert check_click(CLICK, NOW) is None


def test_size_rejection_words_the_limit_as_the_parsers_do() -> None:
    raw = enc({**CLICK, "padding": "x" * 2000})
    assert size_rejection(raw, 1000) == parse_click(raw, NOW, max_bytes=1000)
    assert size_rejection(raw, len(raw)) is None


# -- the fast path of the event parsers: exactly what the checked path accepts ------------------

NOW_FAST = 1_764_000_000_000


def _field_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.sampled_from(["", "x", "view", "search", "placed", "group_join", "cancelled",
                                                   "share", "a" * 256, "a" * 257]),
        st.integers(min_value=-2, max_value=3), st.sampled_from([NOW_FAST, NOW_FAST + 86_400_000,
                                                                 NOW_FAST + 86_400_001, 2**63 - 1, 2**63, -(2**63)]),
        st.floats(allow_nan=True, allow_infinity=True), st.just({}),
        st.dictionaries(st.sampled_from(["category", "size"]), st.one_of(st.text(max_size=3), st.integers()),
                        max_size=2),
        st.lists(st.integers(), max_size=1))


def _event_dicts(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={name: _field_values() for name in names})


VALID_CLICK = {"event_id": "e", "type": "view", "ts": NOW_FAST, "region": "r", "sku": "s"}
VALID_ORDER = {"event_id": "e", "type": "group_join", "ts": NOW_FAST, "region": "r", "sku": "s", "order_id": "o",
               "quantity": 2, "group_id": "g", "group_target": 5, "group_expires_ts": NOW_FAST, "unit_price": 1.5}


@settings(max_examples=400)
@given(_event_dicts(["event_id", "type", "ts", "region", "sku", "attrs", "user_id", "query"]),
       st.sampled_from([{}, VALID_CLICK]))
def test_the_fast_click_path_agrees_with_the_checked_one(fields: dict[str, Any], base: dict[str, Any]) -> None:
    from streams.records import _checked_click, _fast_click, _Invalid
    obj = {**base, **fields}
    fast = _fast_click(obj, NOW_FAST)
    try:
        checked: tuple[Any, ...] | str = _checked_click(obj, NOW_FAST)
    except _Invalid as exc:
        checked = str(exc)
    assert fast is None or fast == checked


@settings(max_examples=400)
@given(_event_dicts(["event_id", "type", "ts", "region", "sku", "attrs", "user_id", "quantity", "order_id",
                     "unit_price", "group_id", "group_target", "group_expires_ts"]),
       st.sampled_from([{}, VALID_ORDER, {**VALID_ORDER, "type": "placed"}]))
def test_the_fast_order_path_agrees_with_the_checked_one(fields: dict[str, Any], base: dict[str, Any]) -> None:
    from streams.records import _checked_order, _fast_order, _Invalid
    obj = {**base, **fields}
    fast = _fast_order(obj, NOW_FAST)
    try:
        checked: tuple[Any, ...] | str = _checked_order(obj, NOW_FAST)
    except _Invalid as exc:
        checked = str(exc)
    except OverflowError:
        checked = "overflow"
    assert fast is None or fast == checked


def test_the_fast_paths_take_the_usual_events() -> None:
    from streams.records import _fast_click, _fast_order
    assert _fast_click(VALID_CLICK, NOW_FAST) is not None
    assert _fast_order(VALID_ORDER, NOW_FAST) is not None
