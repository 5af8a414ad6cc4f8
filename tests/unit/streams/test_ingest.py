"""The pure ingest step: raw records in, one message per niche, dead letters and exact counters out."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from streams.ingest import CLICKSTREAM, ORDERS, RawRecord, ingest, source_topic
from streams.topology import NICHE_ATTRIBUTES

NOW = 1_764_000_010_000
BANDS = {"XXL": "XL+"}
BOHO = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}
DENIM = {"category": "jeans", "style": "wide-leg", "color": "indigo", "size": "XXL"}
CATALOG = {"SKU-BOHO": BOHO, "SKU-DENIM": DENIM}
BOHO_KEY = "dress|boho|sage|M|CN-GD"
DENIM_KEY = "jeans|wide-leg|indigo|XL+|CN-ZJ"


def click(event_id: str, etype: str = "view", sku: str | None = "SKU-BOHO", region: str = "CN-GD",
          ts: int = 1_764_000_000_000, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": event_id, "type": etype, "ts": ts, "region": region, **extra}
    if sku is not None:
        out["sku"] = sku
    return out


def order(event_id: str, etype: str = "placed", quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": etype, "ts": 1_764_000_000_500, "order_id": f"o-{event_id}",
            "sku": "SKU-BOHO", "quantity": quantity, "region": "CN-GD", **extra}


def records(*items: tuple[str, Any]) -> list[RawRecord]:
    out = []
    for offset, (topic, value) in enumerate(items):
        raw = value if isinstance(value, bytes | None) else orjson.dumps(value)
        out.append(RawRecord(topic, 2, 100 + offset, raw))
    return out


def run(*items: tuple[str, Any], catalog: dict[str, dict[str, str]] | None = None):  # type: ignore[no-untyped-def]
    return ingest(records(*items), NOW, NICHE_ATTRIBUTES, BANDS, CATALOG if catalog is None else catalog, 65536)


def test_events_are_grouped_into_one_message_per_niche() -> None:
    out = run(
        (CLICKSTREAM, click("e-1")),
        (CLICKSTREAM, click("e-2", "add_to_cart", sku="SKU-DENIM", region="CN-ZJ")),
        (CLICKSTREAM, click("e-3", "add_to_cart")),
        (ORDERS, order("e-4", quantity=3)),
    )
    assert set(out.niche_messages) == {BOHO_KEY, DENIM_KEY}
    boho = orjson.loads(out.niche_messages[BOHO_KEY])
    assert boho == {
        "niche": {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": "CN-GD"},
        "events": [["e-1", "view", 1_764_000_000_000, 0], ["e-3", "add_to_cart", 1_764_000_000_000, 0],
                   ["e-4", "placed", 1_764_000_000_500, 3]],
        "src": [[f"{CLICKSTREAM}/2", 100], [f"{CLICKSTREAM}/2", 102], [f"{ORDERS}/2", 103]],
    }
    denim = orjson.loads(out.niche_messages[DENIM_KEY])
    assert denim["niche"]["size"] == "XL+"
    assert denim["events"] == [["e-2", "add_to_cart", 1_764_000_000_000, 0]]
    assert out.dead_letters == []
    assert sorted(out.event_ts) == [1_764_000_000_000] * 3 + [1_764_000_000_500]


def test_group_join_rows_carry_the_group() -> None:
    out = run((ORDERS, order("e-9", "group_join", quantity=2, group_id="g-7", group_target=50,
                             group_expires_ts=1_764_086_400_000)))
    rows = orjson.loads(out.niche_messages[BOHO_KEY])["events"]
    assert rows == [["e-9", "group_join", 1_764_000_000_500, 2, "g-7", 50, 1_764_086_400_000]]


def test_invalid_records_become_dead_letters_with_their_offsets() -> None:
    out = run(
        (CLICKSTREAM, click("e-1")),
        (CLICKSTREAM, b"not json"),
        (ORDERS, order("e-3", quantity=0)),
        (CLICKSTREAM, None),
    )
    assert list(out.niche_messages) == [BOHO_KEY]
    assert [topic for topic, _ in out.dead_letters] == [CLICKSTREAM, ORDERS, CLICKSTREAM]
    letters = [orjson.loads(value) for _, value in out.dead_letters]
    assert [dl["source"] for dl in letters] == [
        {"topic": CLICKSTREAM, "partition": 2, "offset": 101},
        {"topic": ORDERS, "partition": 2, "offset": 102},
        {"topic": CLICKSTREAM, "partition": 2, "offset": 103},
    ]
    assert letters[0]["record"] == "not json"
    assert "JSON" in letters[0]["reason"]
    assert "'quantity'" in letters[1]["reason"]
    assert letters[2]["record"] is None


def test_catalog_attrs_are_used_when_the_event_has_none() -> None:
    out = run((CLICKSTREAM, click("e-1", sku="SKU-DENIM", region="CN-ZJ")))
    assert list(out.niche_messages) == [DENIM_KEY]


def test_event_attrs_win_over_the_catalog() -> None:
    out = run((CLICKSTREAM, click("e-1", attrs={"color": "rust"})))
    assert list(out.niche_messages) == ["dress|boho|rust|M|CN-GD"]
    niche = orjson.loads(out.niche_messages["dress|boho|rust|M|CN-GD"])["niche"]
    assert niche["color"] == "rust"
    assert niche["style"] == "boho"


def test_event_attrs_alone_suffice_for_an_sku_not_in_the_catalog() -> None:
    out = run((CLICKSTREAM, click("e-1", sku="SKU-NEW", attrs={**BOHO, "color": "teal"})))
    assert list(out.niche_messages) == ["dress|boho|teal|M|CN-GD"]
    assert out.dead_letters == []


def test_unknown_sku_without_attrs_is_a_dead_letter() -> None:
    out = run((CLICKSTREAM, click("e-1", sku="SKU-GHOST")))
    assert out.niche_messages == {}
    (topic, value), = out.dead_letters
    assert topic == CLICKSTREAM
    letter = orjson.loads(value)
    assert "unknown sku" in letter["reason"]
    assert "SKU-GHOST" in letter["reason"]
    assert out.outcomes == Counter({(CLICKSTREAM, "view", "invalid"): 1})


def test_attrs_missing_a_niche_attribute_is_a_dead_letter_naming_it() -> None:
    out = run((CLICKSTREAM, click("e-1", sku="SKU-NEW", attrs={"category": "dress", "style": "boho", "size": "M"})))
    assert out.niche_messages == {}
    (_, value), = out.dead_letters
    assert "attrs.color" in orjson.loads(value)["reason"]


def test_search_by_query_is_counted_but_not_attributed() -> None:
    out = run((CLICKSTREAM, click("e-1", "search", sku=None, query="boho dress")))
    assert out.niche_messages == {}
    assert out.dead_letters == []
    assert out.outcomes == Counter({(CLICKSTREAM, "search", "ok"): 1})


def test_outcome_counters_are_exact() -> None:
    out = run(
        (CLICKSTREAM, click("e-1")),
        (CLICKSTREAM, click("e-2")),
        (CLICKSTREAM, click("e-3", "add_to_cart")),
        (CLICKSTREAM, click("e-4", "search", sku=None, query="q")),
        (CLICKSTREAM, click("e-5", sku="SKU-GHOST")),
        (CLICKSTREAM, b"{oops"),
        (ORDERS, order("e-6", quantity=2)),
        (ORDERS, order("e-7", "cancelled")),
        (ORDERS, order("e-8", "teleport")),
    )
    # valid niche events are counted "ok" by the niche stage after dedupe, not here
    assert out.outcomes == Counter({
        (CLICKSTREAM, "search", "ok"): 1,
        (CLICKSTREAM, "view", "invalid"): 1,
        (CLICKSTREAM, "unknown", "invalid"): 1,
        (ORDERS, "unknown", "invalid"): 1,
    })
    assert len(out.dead_letters) == 3
    assert sum(len(orjson.loads(m)["events"]) for m in out.niche_messages.values()) == 5


def test_order_records_are_parsed_as_orders_and_clicks_as_clicks() -> None:
    # an order type on the clickstream topic (and vice versa) is invalid for that topic
    out = run((CLICKSTREAM, order("e-1")), (ORDERS, click("e-2")))
    assert out.niche_messages == {}
    assert len(out.dead_letters) == 2


def test_oversize_record_is_a_dead_letter() -> None:
    big = click("e-1", padding="x" * 500)
    out = ingest(records((CLICKSTREAM, big)), NOW, NICHE_ATTRIBUTES, BANDS, CATALOG, 200)
    assert out.niche_messages == {}
    (_, value), = out.dead_letters
    assert "limit" in orjson.loads(value)["reason"]


def test_source_topic_follows_the_event_type() -> None:
    assert [source_topic(t) for t in ("view", "share", "placed", "cancelled", "group_join")] == [
        CLICKSTREAM, CLICKSTREAM, ORDERS, ORDERS, ORDERS]


def test_empty_batch() -> None:
    out = run()
    assert out.niche_messages == {}
    assert out.dead_letters == []
    assert not out.outcomes


def test_rows_are_compact_events_and_event_fields_are_what_the_parsers_parse() -> None:
    from streams.ingest import _row, compact
    from streams.records import Event, Rejection, event_fields, parse_click, parse_order
    group = order("e-9", "group_join", quantity=2, group_id="g-7", group_target=50, group_expires_ts=1_764_086_400_000)
    for value, is_order in ((click("e-1"), False), (click("e-2", "search", sku=None, query="boho"), False),
                            (order("e-3"), True), (group, True), ({**order("e-4"), "quantity": 0}, True),
                            (click("e-5", "nope"), False)):
        raw = orjson.dumps(value)
        fields = event_fields(raw, NOW, order=is_order)
        parsed = (parse_order if is_order else parse_click)(raw, NOW)
        if isinstance(parsed, Rejection):
            assert fields == parsed
            continue
        assert not isinstance(fields, Rejection)
        assert Event(*fields) == parsed
        assert _row(fields) == compact(parsed)


class CountingCatalog(dict[str, dict[str, str]]):
    """The catalog as a Faust table would serve it, counting the lookups."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lookups: Counter[str] = Counter()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.lookups[key] += 1
        return super().get(key, default)


def test_the_catalog_is_asked_once_per_sku_in_a_batch() -> None:
    catalog = CountingCatalog(CATALOG)
    out = run(*[(CLICKSTREAM, click(f"e-{i}", sku="SKU-DENIM", region="CN-ZJ")) for i in range(5)],
              *[(CLICKSTREAM, click(f"u-{i}", sku="SKU-GONE")) for i in range(3)], catalog=catalog)
    assert catalog.lookups == {"SKU-DENIM": 1, "SKU-GONE": 1}
    assert len(orjson.loads(out.niche_messages[DENIM_KEY])["events"]) == 5
    assert len(out.dead_letters) == 3  # an unknown SKU without attrs: every one of its events
    run((CLICKSTREAM, click("e-9", sku="SKU-DENIM", region="CN-ZJ")), catalog=catalog)
    assert catalog.lookups["SKU-DENIM"] == 2  # the next batch asks again: the catalog may have changed
