"""`c2m demo`'s live view, pure parts: /metrics text and triggers in, a rich renderable out."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from streams.demo import DemoView, Snapshot, parse_metrics, plain_status, render, sparkline

METRICS = """\
# HELP c2m_events_total Input events by topic, type and outcome (ok, invalid, duplicate)
# TYPE c2m_events_total counter
c2m_events_total{outcome="ok",topic="c2m.clickstream",type="view"} 900.0
c2m_events_total{outcome="duplicate",topic="c2m.clickstream",type="view"} 60.0
c2m_events_total{outcome="ok",topic="c2m.orders",type="placed"} 40.0
# HELP c2m_niches_active Niches with state on this worker
# TYPE c2m_niches_active gauge
c2m_niches_active 8.0
# TYPE c2m_triggers_total counter
c2m_triggers_total{action="start",factory="f-gz-dress",kind="forecast"} 2.0
c2m_triggers_total{action="start",factory="f-nt-denim",kind="forecast"} 1.0
# TYPE c2m_trigger_units_total counter
c2m_trigger_units_total{factory="f-gz-dress"} 350.0
c2m_trigger_units_total{factory="f-nt-denim"} 150.0
# TYPE c2m_factory_open_units gauge
c2m_factory_open_units{factory="f-gz-dress"} 350.0
c2m_factory_open_units{factory="f-nt-denim"} 150.0
# TYPE faust_messages_received counter
c2m_messages_received_total 1000.0
"""

TRIGGERS: list[dict[str, Any]] = [
    {"trigger_id": "t-1", "revision": 1, "action": "start", "kind": "forecast", "factory_id": "f-gz-dress",
     "niche": {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": "CN-GD"},
     "units": 200, "emitted_ts": 1764000001000, "reason": "recent demand signal 188 over threshold"},
    {"trigger_id": "t-2", "revision": 1, "action": "start", "kind": "forecast", "factory_id": "f-nt-denim",
     "niche": {"category": "jeans", "style": "wide-leg", "color": "indigo", "size": "L", "region": "CN-ZJ"},
     "units": 150, "emitted_ts": 1764000009000, "reason": "recent demand signal 151 over threshold"},
]
FACTORIES = ["f-gz-dress", "f-fs-knit", "f-nt-denim", "f-hz-tops"]


def text_of(renderable: Any, width: int = 140) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def bump(text: str, events: float) -> str:
    """The same exposition with the view counter raised by `events`."""
    return text.replace('type="view"} 900.0', f'type="view"}} {900.0 + events}')


def test_parse_metrics_sums_by_factory_and_ignores_the_rest() -> None:
    snap = parse_metrics(METRICS)
    assert snap.events == 1000 and snap.events_ok == 940
    assert snap.niches_active == 8
    assert snap.triggers == {"f-gz-dress": 2, "f-nt-denim": 1}
    assert snap.units == {"f-gz-dress": 350, "f-nt-denim": 150}
    assert snap.open_units == {"f-gz-dress": 350, "f-nt-denim": 150}


def test_unreadable_metrics_read_as_empty() -> None:
    assert parse_metrics('c2m_events_total{outcome="ok" 3\n') == Snapshot()


def test_events_per_second_from_counter_deltas() -> None:
    view = DemoView(FACTORIES)
    view.observe(METRICS, 100.0)
    assert view.rate() is None or view.rate() == 0
    view.observe(bump(METRICS, 100), 100.5)
    view.observe(bump(METRICS, 400), 101.0)
    assert view.rate() == 400.0  # (1400 - 1000) events over one second
    view.observe(bump(METRICS, 1400), 103.0)  # samples older than the 2 s window drop out
    assert view.rate() == (1400 - 400) / 2.0


def test_a_restarted_worker_does_not_make_negative_rates() -> None:
    view = DemoView(FACTORIES)
    view.observe(bump(METRICS, 5000), 10.0)
    view.observe(METRICS, 10.5)
    assert all(r >= 0 for r in view.rates)


def test_render_shows_rate_niches_factories_and_latest_triggers() -> None:
    view = DemoView(FACTORIES, started=0.0)
    view.observe(METRICS, 1.0)
    view.observe(bump(METRICS, 250), 2.0)
    out = text_of(render(view, TRIGGERS, now=65.0))
    assert "c2m demo · 01:05" in out
    assert "events/s 250" in out
    assert "active niches 8" in out
    assert "triggers 3" in out
    assert "units asked 500" in out
    for fid in FACTORIES:
        assert fid in out, fid
    gz = next(line for line in out.splitlines() if "f-gz-dress" in line and "█" in line)
    assert "350" in gz
    assert "worker up" in out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "jeans/wide-leg/indigo/L/CN-ZJ" in line)
    second = next(i for i, line in enumerate(lines) if "dress/boho/sage/M/CN-GD" in line)
    assert first < second, "newest trigger first"
    assert "START" in lines[first] and "f-nt-denim" in lines[first] and "150" in lines[first]
    assert "recent demand signal 151" in lines[first]
    for header in ("time", "factory", "action", "units", "niche", "reason"):
        assert header in out


def test_render_before_any_scrape_uses_the_triggers_seen() -> None:
    view = DemoView(FACTORIES, started=0.0)
    view.observe(None, 1.0)
    out = text_of(render(view, TRIGGERS, now=1.0))
    assert "worker not answering" in out
    assert "events/s -" in out
    gz = next(line for line in out.splitlines() if "f-gz-dress" in line and "█" in line)
    assert "200" in gz  # open units fall back to what the triggers seen asked


def test_render_with_nothing_yet_and_hostile_values() -> None:
    out = text_of(render(DemoView(FACTORIES, started=0.0), [], now=0.0))
    assert "waiting for the first trigger" in out
    hostile = [{"factory_id": "[bold]f-x", "units": "lots", "reason": "[red]see[/red]", "niche": {"c": "[dim]x"}}]
    out = text_of(render(DemoView(FACTORIES, started=0.0), hostile, now=0.0))
    assert "[bold]f-x" in out and "[red]see[/red]" in out and "[dim]x" in out and "lots" in out


def test_narrow_terminal_still_renders() -> None:
    view = DemoView(FACTORIES, started=0.0)
    view.observe(METRICS, 1.0)
    out = text_of(render(view, TRIGGERS, now=2.0), width=80)
    assert "f-nt-denim" in out and "START" in out


def test_plain_status_line() -> None:
    view = DemoView((), started=0.0)
    view.observe(METRICS, 0.0)
    view.observe(bump(METRICS, 2000), 10.0)
    line = plain_status(view, TRIGGERS, now=10.0)
    assert line == ("t+10s events/s 200 · niches 8 · triggers 2 · open units: f-gz-dress 350, f-nt-denim 150")


def test_sparkline_scales_to_its_peak() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert len(sparkline(range(100), width=30)) == 30
