"""The offline replay: its JSON shape, its user errors, the planner seam, and the CLI around it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from models.engine import Advance, DemandEngine
from streams import backtest, cli, scenarios, topology
from streams.config import Settings
from streams.errors import UserError
from streams.plan_replay import PlanReplay

SMALL = replace(scenarios.spec("default", days=4), products=8, consumers=2000, views_per_hour=500.0,
                shocks=(("dress", 60.0, 0.5),))


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backtest") / "events.jsonl"
    scenarios.write(path, SMALL, seed=1)
    return path


@pytest.fixture(scope="module")
def result(log: Path) -> dict[str, Any]:
    return backtest.replay(log)


def test_the_result_has_the_documented_shape(result: dict[str, Any]) -> None:
    assert set(result["horizons"]) == {"6", "24", "72"}
    for h in result["horizons"].values():
        assert set(h) >= {"model_mae", "baselines", "p90_coverage"}
        assert set(h["baselines"]) == {"last_value", "seasonal_naive", "moving_average"}
    short = result["horizons"]["6"]
    assert short["n"] > 0 and short["model_mae"] > 0 and 0 < short["p90_coverage"] <= 1
    assert all(v > 0 for v in short["baselines"].values())
    assert short["truth_intensity_mae"] > 0  # the scenario's truth sits beside the log
    assert result["horizons"]["72"]["n"] == 0  # four days leave no 72 h label after the warm-up
    assert result["horizons"]["72"]["model_mae"] is None
    assert result["warmup_hours"] == 72
    assert set(result["cold_start"]) == {"new_niches", "scored", "within_50pct", "median_ape", "forecast_over_actual"}
    assert {"events", "niches", "shocked_niches", "detected_within_48h"} <= set(result["drift"])
    replay = result["replay"]
    assert replay["events"] > 10_000 and replay["rejected"] == 0 and replay["late_events"] == 0
    assert replay["niche_updates"] > 0 and replay["update_us"] > 0
    assert "inventory" not in result  # no planner plugged in: no inventory figures
    orjson.dumps(result)  # plain JSON all the way down


def test_the_model_beats_the_baselines_at_the_short_horizon(result: dict[str, Any]) -> None:
    short = result["horizons"]["6"]
    assert short["model_mae"] < min(short["baselines"].values())


def test_a_planner_plugs_in_and_sees_every_row_and_bucket_close(log: Path) -> None:
    class Counting:
        def __init__(self) -> None:
            self.closes: list[int] = []
            self.rows = 0

        def on_rows(self, niche_key: str, niche: dict[str, str], rows: list[list[Any]]) -> None:
            assert niche_key and niche["category"]
            self.rows += len(rows)

        def on_close(self, bucket_end_ms: int, engine: DemandEngine, advance: Advance) -> None:
            assert bucket_end_ms % engine.config.bucket_ms == 0
            self.closes.append(bucket_end_ms)

        def summary(self) -> dict[str, Any]:
            return {"closes": len(self.closes)}

    hook = Counting()
    out = backtest.replay(log, hook=hook)
    assert out["inventory"] == {"closes": len(hook.closes)}
    assert hook.closes == sorted(hook.closes) and len(hook.closes) >= 4 * 24 - 2
    assert 0.9 * out["replay"]["events"] < hook.rows <= out["replay"]["events"]  # free-text searches have no niche


@pytest.fixture(scope="module")
def planned(log: Path) -> tuple[dict[str, Any], PlanReplay]:
    hook = PlanReplay(topology.load(Settings.from_env().topics_file).factories)
    return backtest.replay(log, hook=hook), hook


def test_the_planner_replay_reports_inventory_side_by_side(planned: tuple[dict[str, Any], PlanReplay]) -> None:
    result, hook = planned
    inv = result["inventory"]
    assert set(inv) == {"planner", "make_to_stock"}
    for fig in inv.values():
        assert set(fig) == {"produced", "sold", "unsold", "stockouts", "fill_rate"}
        assert fig["produced"] == fig["sold"] + fig["unsold"]  # the stock balances
        assert min(fig["produced"], fig["sold"], fig["unsold"], fig["stockouts"]) >= 0
        assert fig["fill_rate"] == round(fig["sold"] / (fig["sold"] + fig["stockouts"]), 4)
    assert inv["planner"]["produced"] > 0 and inv["make_to_stock"]["produced"] > 0
    # both sides sell against the same orders; filled group buys add what was made of them by the end
    orders = sum(q if t == "placed" else -q for n in hook.niches.values() for _, t, q in n.orders)
    filled = sum(g.joined for g in hook.groups.values() if g.status == "filled")
    for fig in inv.values():
        assert orders <= fig["sold"] + fig["stockouts"] <= orders + filled
    orjson.dumps(result)


def test_the_table_shows_inventory_beside_make_to_stock(planned: tuple[dict[str, Any], PlanReplay]) -> None:
    console = Console(width=120, record=True)
    backtest.render(planned[0], console)
    text = console.export_text()
    assert "planner" in text and "make-to-stock" in text and "fill rate" in text
    unsold = planned[0]["inventory"]["planner"]["unsold"]
    assert f"{unsold} (" in text


def test_invalid_records_are_rejected_not_fatal_and_other_topics_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = {"event_id": "e1", "type": "view", "ts": scenarios.START_MS, "sku": "S", "region": "CN-GD",
            "attrs": {"category": "top", "style": "basic", "color": "white", "size": "M"}}
    lines = [{"topic": "c2m.clickstream", "key": "u", "value": good},
             {"topic": "c2m.orders", "key": "o", "value": {"type": "placed", "ts": scenarios.START_MS}},
             {"topic": "c2m.catalog", "key": "S", "value": {"sku": "S"}}]
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n\n")
    out = backtest.replay(path)
    assert out["replay"]["events"] == 2
    assert out["replay"]["rejected"] == 1
    assert out["replay"]["other_topics"] == 1


@pytest.mark.parametrize(("content", "match"), [
    (b'{"topic": "c2m.orders", "value": {}}\nnot json\n', r"bad\.jsonl:2: not JSON"),
    (b'[1, 2]\n', r"bad\.jsonl:1: expected an object with \"topic\" and \"value\""),
    (b'{"topic": "c2m.catalog", "value": {}}\n', "no clickstream or order events"),
])
def test_a_bad_log_is_a_user_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        backtest.replay(path)


def test_a_missing_file_or_a_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="events file not found"):
        backtest.replay(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="is a directory"):
        backtest.replay(tmp_path)


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["c2m", *args])
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_json_prints_exactly_one_object(log: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, "backtest", "--events", str(log), "--json") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = orjson.loads(out)
    assert set(result) >= {"horizons", "cold_start", "drift", "replay", "inventory"}
    assert set(result["inventory"]) == {"planner", "make_to_stock"}


def test_cli_table_and_user_errors(log: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, "backtest", "--events", str(log)) == 0
    out = capsys.readouterr().out
    assert "6 h" in out and "P90" in out and "new niches" in out
    assert "make-to-stock" in out and "fill rate" in out  # the CLI plugs the planner in
    assert run_cli(monkeypatch, "backtest", "--events", str(log.with_name("missing.jsonl"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("c2m: error: events file not found") and err.count("\n") == 1


def test_cli_simulate_writes_a_day_scale_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(scenarios.SCENARIOS, "tiny", replace(SMALL, name="tiny", days=1))
    out = tmp_path / "tiny.jsonl"
    assert run_cli(monkeypatch, "simulate", "--scenario", "tiny", "--seed", "2", "--days", "1", "--out", str(out)) == 0
    assert "wrote" in capsys.readouterr().out
    assert out.exists() and scenarios.truth_path(out).exists()
    assert run_cli(monkeypatch, "simulate", "--scenario", "tiny") == 1
    assert "--out" in capsys.readouterr().err
    assert run_cli(monkeypatch, "simulate", "--scenario", "surge", "--days", "2", "--out", str(out)) == 1
    assert "--days applies" in capsys.readouterr().err
