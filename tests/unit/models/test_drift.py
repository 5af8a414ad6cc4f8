"""The drift signal and detector: centred while conversion holds, an alarm when it shifts."""

from __future__ import annotations

import random

import numpy as np

from models.drift import THRESHOLD, Cusum, conversion_residual


def test_the_conversion_residual_is_centred_while_conversion_holds() -> None:
    rng = np.random.default_rng(1)
    carts = rng.uniform(1, 20, size=20_000)
    units = rng.poisson(0.4 * carts)
    z = conversion_residual(units, carts, units_level=np.full(len(carts), 4.0), carts_level=np.full(len(carts), 10.0))
    assert abs(float(z.mean())) < 0.05
    assert 0.4 < float(z.std()) < 1.0  # scaled for several units per order; single units are calmer


def test_cusum_stays_quiet_on_noise_and_fires_on_a_shift() -> None:
    rng = random.Random(0)
    det = Cusum()
    # residuals of a niche whose conversion holds have a s.d. of about 0.9; the mean run between
    # false alarms is then about 1000 buckets (six weeks of hours): none in these 500
    assert not any(det.update(rng.gauss(0, 0.9)) for _ in range(500))
    steps = next(i for i in range(1, 200) if det.update(rng.gauss(-1.0, 1)))
    assert steps < 4 * THRESHOLD  # expected about THRESHOLD / (shift - slack) = 13 steps
    assert det.up == det.down == 0.0  # restarted after the alarm: the new level is the norm


def test_cusum_reports_the_direction() -> None:
    det = Cusum()
    ups = [det.update(2.0) for _ in range(20)]
    assert 1 in ups and -1 not in ups
