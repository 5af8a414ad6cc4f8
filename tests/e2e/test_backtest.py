"""`c2m simulate` a short default scenario to a file, then `c2m backtest --json` it: one JSON
object, every horizon reported, and the model ahead of every baseline at the short horizon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.e2e


def c2m(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=300)


def test_simulate_then_backtest(tmp_path: Path) -> None:
    events = tmp_path / "tmp.jsonl"
    made = c2m("simulate", "--scenario", "default", "--seed", "1", "--days", "4", "--out", str(events))
    assert made.returncode == 0, made.stderr[-2000:]
    assert (tmp_path / "tmp.truth.json").exists()

    done = c2m("backtest", "--events", str(events), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("\n") == 1
    result = orjson.loads(done.stdout)
    assert set(result["horizons"]) == {"6", "24", "72"}
    for figures in result["horizons"].values():
        assert set(figures["baselines"]) == {"last_value", "seasonal_naive", "moving_average"}
        assert "model_mae" in figures and "p90_coverage" in figures
    short = result["horizons"]["6"]
    assert short["n"] > 1000
    assert short["model_mae"] < min(short["baselines"].values())
    assert 0.8 <= short["p90_coverage"] <= 0.97
