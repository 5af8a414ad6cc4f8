"""Baselines and the scoreboard: the numbers the backtest compares the model with."""

from __future__ import annotations

import numpy as np
import pytest

from models.engine import Scored
from models.evaluation import (
    Scoreboard,
    cold_start_summary,
    history_needed,
    last_value,
    moving_average,
    seasonal_naive,
)

HOUR = 3_600_000


def test_last_value_is_the_last_horizon_of_history() -> None:
    hist = np.array([[1, 2, 3, 4, 5]], dtype=float)
    assert last_value(hist, 2).tolist() == [9.0]


def test_seasonal_naive_repeats_the_last_season() -> None:
    hist = np.arange(8, dtype=float)[None, :]  # season 4: the last season is 4, 5, 6, 7
    assert seasonal_naive(hist, 2, 4).tolist() == [4.0 + 5.0]
    assert seasonal_naive(hist, 6, 4).tolist() == [4 + 5 + 6 + 7 + 4 + 5.0]


def test_moving_average_scales_the_mean_bucket() -> None:
    hist = np.array([[9, 9, 1, 2, 3]], dtype=float)
    assert moving_average(hist, 4, 3).tolist() == [8.0]


def test_history_needed_covers_every_baseline() -> None:
    assert history_needed(6, 24, 24) == 24
    assert history_needed(72, 24, 24) == 72
    assert history_needed(30, 24, 12) == 48


def scored(issued: int, keys: list[str], p50: list[float], p90: list[float], h: int = 2) -> Scored:
    n = len(keys)
    return Scored(h, issued, keys, np.zeros(n), np.array(p50), np.array(p90), np.zeros(n, dtype=bool))


def test_scoreboard_scores_model_and_baselines_on_the_same_points() -> None:
    board = Scoreboard(HOUR, horizons=(2,), ahead_buckets=1, season=2, window=2)
    assert board.warmup == 2
    start = 100
    for b in range(start, start + 8):
        board.observe("a", [["o", "placed", b * HOUR + 5, b - start]], open_bucket=b)  # units 0, 1, 2, ...
        board.closed(b)
    # issued at start+5 (units 5), scored on start+6 and start+7: actual 6 + 7 = 13
    board.add(scored(start + 5, ["a"], [12.0], [14.0]))
    board.add(scored(start + 1, ["a"], [0.0], [0.0]))  # inside the warm-up: not counted
    out = board.result()["horizons"]["2"]
    assert out["n"] == 1
    assert out["model_mae"] == pytest.approx(1.0)
    assert out["p90_coverage"] == 1.0
    assert out["baselines"] == {"last_value": 13 - 9, "seasonal_naive": 13 - 9, "moving_average": 13 - 9}


def test_scoreboard_buckets_late_and_early_rows_like_the_engine() -> None:
    board = Scoreboard(HOUR, horizons=(1,), ahead_buckets=1)
    board.observe("a", [["late", "placed", 5 * HOUR, 2], ["early", "placed", 50 * HOUR, 3]], open_bucket=10)
    row = board._row["a"]
    assert board._units[row, 10 % board.ring] == 2
    assert board._units[row, 11 % board.ring] == 3


def test_truth_puts_the_error_in_scale() -> None:
    board = Scoreboard(HOUR, horizons=(2,), ahead_buckets=1, season=2, window=2)
    for b in range(0, 8):
        board.observe("a", [["o", "placed", b * HOUR + 5, 1]], open_bucket=b)
        board.closed(b)
    board.know_truth({"a": np.full(8, 1.5)}, start_bucket=0)
    board.add(scored(4, ["a"], [2.0], [3.0]))
    assert board.result()["horizons"]["2"]["truth_intensity_mae"] == pytest.approx(1.0)


def test_cold_start_summary() -> None:
    out = cold_start_summary({"a": (10.0, 12.0), "b": (30.0, 10.0), "c": (1.0, 2.0)})
    assert out == {"new_niches": 3, "scored": 2, "within_50pct": 0.5, "median_ape": pytest.approx(1.0833, abs=1e-4),
                   "forecast_over_actual": pytest.approx(41 / 24, abs=1e-4)}
    assert cold_start_summary({})["median_ape"] is None
