"""Quantiles: P90 >= P50 >= 0 whatever the model and the calibration say; calibration converges
to the asked coverage; horizons without a trained model borrow a shorter one's forecast."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.engine import HOUR_MS, DemandEngine, EngineConfig, _issued
from models.forecaster import N_BANDS, Calibrator, PooledForecaster, quantiles

finite = st.floats(min_value=-20, max_value=20, allow_nan=False)


@given(raw=arrays(np.float64, st.integers(1, 30), elements=finite),
       table=arrays(np.float32, (2, N_BANDS, 2), elements=st.floats(-5, 5, width=32)),
       cold=st.booleans())
def test_p90_is_never_below_p50_and_neither_below_zero(raw: np.ndarray, table: np.ndarray, cold: bool) -> None:
    p50, p90 = quantiles(raw, np.full(len(raw), cold), table)
    assert (p50 >= 0).all()
    assert (p90 >= p50).all()


@given(raw=arrays(np.float64, (5, 3), elements=finite),
       tables=arrays(np.float32, (3, 2, N_BANDS, 2), elements=st.floats(-5, 5, width=32)))
def test_issued_forecasts_grow_with_the_horizon(raw: np.ndarray, tables: np.ndarray) -> None:
    p50, p90 = _issued(raw, np.zeros(5, dtype=bool), tables)
    assert (np.diff(p50, axis=1) >= 0).all()
    assert (np.diff(p90, axis=1) >= 0).all()
    assert (p90 >= p50).all()


@settings(max_examples=15, deadline=None)
@given(counts=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40), st.integers(0, 30)),
                       min_size=10, max_size=40),
       hours=st.floats(0.1, 200))
def test_engine_forecasts_keep_their_quantiles_in_order(counts: list[tuple[int, int, int]], hours: float) -> None:
    engine = DemandEngine(EngineConfig(horizons=(2, 4), min_learned=1))
    start = 1_764_000_000_000 // HOUR_MS * HOUR_MS
    for b, (views, carts, units) in enumerate(counts):
        t0 = start + b * HOUR_MS
        rows = ([[f"v{b}-{i}", "view", t0 + i, 0] for i in range(views)]
                + [[f"c{b}-{i}", "add_to_cart", t0 + i, 0] for i in range(carts)]
                + [[f"o{b}-{i}", "placed", t0 + i, 2] for i in range(units)])
        if rows:
            engine.observe("n", {"category": "top"}, rows)
        engine.advance(t0 + HOUR_MS)
        fc = engine.forecast("n", hours)
        if fc is not None:
            assert fc.p90 >= fc.p50 >= 0


def test_calibration_reaches_the_asked_coverage() -> None:
    rng = random.Random(3)
    cal = Calibrator(window=600)
    for _ in range(250):  # a bucket's residuals at a time, as the engine feeds them
        raws = np.array([rng.uniform(0, 4) for _ in range(20)])
        cal.update_many(raws, np.zeros(20, dtype=bool), np.array([rng.gauss(0.3, 0.5) for _ in range(20)]))
    table = cal.table()
    raw = np.array([rng.uniform(0, 4) for _ in range(4000)])
    actual = np.expm1(raw + np.array([rng.gauss(0.3, 0.5) for _ in range(4000)]))
    p50, p90 = quantiles(raw, np.zeros(len(raw), dtype=bool), table)
    assert 0.87 <= float((actual <= p90).mean()) <= 0.93
    assert 0.45 <= float((actual <= p50).mean()) <= 0.55
    # a group with no residuals yet falls back to the default spread, not to the other group's;
    # new niches always take their median from the established ones
    assert table[1, 0, 1] - table[1, 0, 0] == pytest.approx(0.7)
    assert table[1, 0, 0] == table[0, 0, 0]


def test_an_untrained_horizon_scales_the_last_trained_one() -> None:
    fc = PooledForecaster((6, 24), learning_rate=0.01, window=100, min_learned=3)
    x = {"views_1": 0.5}
    for _ in range(3):
        fc.learn(0, x, 0.2)
    short, long = fc.predict(x, [1.0, 2.0])
    assert long == np.log1p(np.expm1(short) * 4)
    fresh = PooledForecaster((6, 24), learning_rate=0.01, window=100, min_learned=3)
    assert fresh.predict(x, [1.0, 2.0]) == [1.0, 2.0]  # nothing learned: the offsets alone


def test_calibration_follows_residuals_that_widen() -> None:
    rng = np.random.default_rng(4)
    cal = Calibrator(window=300)
    for scale in (0.3, 0.9):  # the errors triple
        for _ in range(60):
            raw = rng.uniform(1.0, 1.2, size=40)
            cal.update_many(raw, np.zeros(40, dtype=bool), rng.normal(0.0, scale, size=40))
        spread = float(cal.table()[0, 4, 1] - cal.table()[0, 4, 0])
        assert abs(spread - 1.2816 * scale) < 0.25 * scale


def test_horizons_beyond_the_learned_ones_are_their_offset_alone() -> None:
    fc = PooledForecaster((6, 24, 72), learning_rate=0.01, window=100, min_learned=1, learned_upto=24)
    assert [fc.learns(k) for k in range(3)] == [True, True, False]
    x = {"views_1": 0.5}
    for _ in range(5):
        fc.learn(0, x, 0.3)
        fc.learn(1, x, 0.3)
    out = fc.predict(x, [1.0, 2.0, 3.0])
    assert out[2] == 3.0 and out[0] != 1.0
