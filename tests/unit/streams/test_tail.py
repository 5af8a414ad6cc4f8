"""format_trigger: one readable line per trigger, valid Rich markup, tolerant of missing fields."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from streams.tail import format_trigger

TRIGGER: dict[str, Any] = {
    "trigger_id": "t-0123456789abcdef", "revision": 1, "action": "start", "kind": "forecast", "factory_id": "f-1",
    "niche": {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": "CN-GD"},
    "units": 200, "due_by_ts": 1764259200000, "emitted_ts": 1764000001000,
    "forecast": {"horizon_hours": 72, "p50": 180, "p90": 240, "model": "m", "cold_start": False},
    "evidence": {"views": 5400, "add_to_cart": 610, "orders": 95, "drift": False},
    "reason": "p90 demand over lead time exceeds open production by 240 units",
}


def plain(markup: str) -> str:
    return Text.from_markup(markup).plain  # raises MarkupError if the markup is broken


def test_design_trigger_mentions_factory_action_units_and_niche() -> None:
    text = plain(format_trigger(TRIGGER))
    assert "f-1" in text
    assert "START" in text
    assert "200 units" in text
    assert "dress/boho/sage/M/CN-GD" in text
    assert "t-0123456789abcdef" in text
    assert "r1" in text
    assert "p50 180" in text
    assert "p90 240" in text
    assert "72h" in text
    assert "exceeds open production" in text


def test_group_buy_trigger_shows_its_group() -> None:
    text = plain(format_trigger({**TRIGGER, "kind": "group_buy", "group_id": "g-7"}))
    assert "group g-7" in text
    assert "group_buy" in text
    assert "group" not in plain(format_trigger(TRIGGER)).split("(")[1].split(")")[0]


def test_cancel_action() -> None:
    assert "CANCEL" in plain(format_trigger({**TRIGGER, "action": "cancel"}))


def test_empty_trigger_is_tolerated() -> None:
    text = plain(format_trigger({}))
    assert "?" in text
    assert "units" in text


def test_missing_fields_are_tolerated() -> None:
    partial = {k: v for k, v in TRIGGER.items() if k not in ("niche", "forecast", "reason", "emitted_ts")}
    text = plain(format_trigger(partial))
    assert "f-1" in text
    assert "200 units" in text
    assert "p50 -" in text


def test_markup_in_values_is_escaped() -> None:
    trig = {**TRIGGER, "factory_id": "[bold]f-x", "reason": "see [red]here[/red]",
            "niche": {"category": "[dim]dress"}}
    text = plain(format_trigger(trig))
    assert "[bold]f-x" in text
    assert "[red]here[/red]" in text
    assert "[dim]dress" in text
