"""The drift signal and detectors: orders expected from carts hold while conversion holds; the
niche CUSUM is quiet on noise and fires on a halving; a group's alarm lowers its members' bar."""

from __future__ import annotations

import numpy as np

from models.drift import (
    GROUP_HOLD,
    MEMBER_THRESHOLD,
    THRESHOLD,
    Groups,
    alarms,
    expected_orders,
    llr_step,
)


def run(rate: np.ndarray, hours: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Hours until each niche's CUSUM alarms (or `hours`), with Poisson orders at `rate` times
    the expected 1 per hour."""
    rng = np.random.default_rng(seed)
    up = down = np.zeros(len(rate))
    first = np.full(len(rate), hours)
    for h in range(hours):
        up, down = llr_step(up, down, rng.poisson(rate).astype(float), np.ones(len(rate)))
        fired = alarms(up, down, THRESHOLD, THRESHOLD) != 0
        first = np.where(fired & (first == hours), h, first)
        up, down = np.where(fired, 0.0, up), np.where(fired, 0.0, down)
    return first, hours


def test_expected_orders_are_centred_while_conversion_holds() -> None:
    rng = np.random.default_rng(1)
    carts = rng.uniform(1, 20, size=20_000)
    orders = rng.poisson(0.4 * carts)
    expected = expected_orders(carts, orders_level=np.full(len(carts), 4.0), carts_level=np.full(len(carts), 10.0))
    assert abs(float((orders - expected).mean())) < 0.05


def test_the_cusum_is_quiet_on_noise_and_catches_a_halving() -> None:
    # a niche expecting an order an hour: a false alarm in two days is rare, a halving is mostly
    # caught within them
    quiet, _ = run(np.ones(400), 48)
    halved, _ = run(np.full(400, 0.5), 48, seed=1)
    assert float((quiet < 48).mean()) < 0.1
    assert float((halved < 48).mean()) > 0.6


def test_alarms_report_the_direction() -> None:
    assert alarms(np.array([9.0, 0.0, 0.0]), np.array([0.0, 9.0, 1.0]), 5.0, 5.0).tolist() == [1, -1, 0]


def test_a_group_alarm_lowers_its_members_threshold_in_its_direction_only() -> None:
    groups = Groups()
    members = np.array([[groups.id_of("category=dress"), groups.id_of("region=A")],
                        [groups.id_of("category=dress"), groups.id_of("region=B")],
                        [groups.id_of("category=top"), groups.id_of("region=C")]])
    orders = np.array([0.0, 0.0, 10.0])  # dresses stop selling: 20 orders expected, none came
    for b in range(3):
        up_at, down_at = groups.thresholds(b, members, orders, np.full(3, 10.0))
    assert down_at.tolist() == [MEMBER_THRESHOLD, MEMBER_THRESHOLD, THRESHOLD]
    assert up_at.tolist() == [THRESHOLD] * 3
    # the shift moved the dress group's recent conversion; a new dress starts from it
    assert groups.shift(3, members[:1])[0] < 0.5
    assert groups.shift(3, members[2:])[0] == 1.0
    # and the lowered bar expires
    for b in range(3, 3 + GROUP_HOLD):
        up_at, down_at = groups.thresholds(b, members, np.full(3, 10.0), np.full(3, 10.0))
    assert down_at.tolist() == [THRESHOLD] * 3


def test_a_group_ignores_a_shift_diluted_by_its_other_members() -> None:
    groups = Groups()
    members = np.array([[groups.id_of("region=A")]] * 6)
    rng = np.random.default_rng(2)
    rate = np.array([0.5, 1, 1, 1, 1, 1.0])  # one niche of six halves: the region drops 8%
    for b in range(500):
        groups.thresholds(b, members, rng.poisson(rate * 5).astype(float), np.full(6, 5.0))
    assert (groups.alarm_dir == 0).all()
