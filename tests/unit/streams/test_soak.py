"""`c2m soak` without a broker: the verdict on synthetic runs (flat, leaking, lagging, noisy but
bounded, stalled), and its helpers (slope, consumer lag, VmRSS)."""

from __future__ import annotations

import random

import pytest

from streams import soak
from streams.soak import Sample

MIB = 2**20
RATE = 900.0


def run(n: int = 61, rss: float = 200 * MIB, rss_per_s: float = 0.0, lag: float = 1_000.0, lag_per_s: float = 0.0,
        backlog: float = 500.0, backlog_per_s: float = 0.0, noise: float = 0.0, seed: int = 1) -> list[Sample]:
    """A synthetic soak: one sample every 10 s at RATE events/s, linear trends plus uniform noise
    (a share of the RSS, of the lag and of the backlog)."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        t = 10.0 * k
        sent = int(RATE * t)

        def jitter(x: float) -> float:
            return x * (1 + rng.uniform(-noise, noise))

        out.append(Sample(t, int(jitter(rss + rss_per_s * t)), int(jitter(lag + lag_per_s * t)), 3,
                          sent, sent - jitter(backlog + backlog_per_s * t)))
    return out


def test_slope_is_least_squares() -> None:
    assert soak.slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert soak.slope([0, 1, 2], [5, 5, 5]) == 0.0
    assert soak.slope([0, 1, 2, 3], [0, 1, 1, 0]) == pytest.approx(0.0)
    assert soak.slope([0, 10, 20], [0, 12, 18]) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        soak.slope([1], [1])
    with pytest.raises(ValueError):
        soak.slope([2, 2], [1, 3])


def test_consumer_lag_sums_high_minus_committed_and_counts_uncommitted_from_start() -> None:
    high = {("a", 0): 100, ("a", 1): 50, ("b", 0): 7}
    committed = {("a", 0): 90, ("a", 1): -1001, ("b", 0): 9}  # a/1 not committed yet; b/0 ahead of a stale high
    start = {("a", 1): 45}
    assert soak.consumer_lag(high, committed, start) == 10 + 5 + 0
    assert soak.consumer_lag(high, {}, {}) == 157  # nothing committed, no start: from the beginning
    assert soak.consumer_lag({}, committed, start) == 0


def test_vmrss_bytes() -> None:
    status = "Name:\tpython\nVmPeak:\t  900000 kB\nVmRSS:\t  204800 kB\nThreads:\t9\n"
    assert soak.vmrss_bytes(status) == 200 * MIB
    with pytest.raises(ValueError):
        soak.vmrss_bytes("Name:\tzombie\n")


def test_flat_run_passes() -> None:
    assert soak.verdict(run()) == (True, [])


def test_noisy_but_bounded_run_passes() -> None:
    """±3% jitter on RSS, ±50% on lag and backlog (Faust commits every few seconds): no trend."""
    for seed in range(20):
        ok, reasons = soak.verdict(run(noise=0.03, lag=2_000, seed=seed))
        assert ok, (seed, reasons)


def test_warm_up_growth_that_levels_off_passes() -> None:
    """Caches warming in the first half (RSS +60 MiB) then flat: the second half is what counts."""
    samples = [Sample(s.t, int(200 * MIB + min(s.t, 250) * 0.24 * MIB), s.lag, 0, s.sent, s.counted)
               for s in run()]
    assert soak.verdict(samples) == (True, [])


def test_growing_rss_fails() -> None:
    ok, reasons = soak.verdict(run(rss_per_s=0.05 * MIB))  # 180 MiB/h on 200 MiB
    assert not ok
    assert len(reasons) == 1 and reasons[0].startswith("RSS grows")


def test_rss_growth_under_the_bound_or_the_noise_floor_passes() -> None:
    assert soak.verdict(run(rss_per_s=0.005 * MIB))[0]  # 18 MiB/h on 200 MiB: 9%/h
    short = run(n=7, rss_per_s=0.05 * MIB)  # fast, but over 30 s the fitted rise is 1.5 MiB
    assert soak.verdict(short)[0]


def test_growing_consumer_lag_fails() -> None:
    ok, reasons = soak.verdict(run(lag_per_s=0.1 * RATE))  # the worker keeps up 90%
    assert not ok
    assert any(r.startswith("consumer lag grows") for r in reasons)
    assert any(r.startswith("consumer lag ends at") for r in reasons)  # 54,000 events: 60 s of input


def test_slowly_growing_lag_fails_on_its_trend_alone() -> None:
    ok, reasons = soak.verdict(run(lag_per_s=0.04 * RATE))  # ends at 22,600: under 30 s of input
    assert not ok
    assert [r.split(" grows")[0] for r in reasons] == ["consumer lag"]


def test_lag_rise_within_the_commit_saw_passes_on_a_short_run() -> None:
    """3% of the rate over a 60 s second half is a 1.8 s rise: less than Faust's commit saw."""
    assert soak.verdict(run(n=13, lag_per_s=0.03 * RATE, backlog_per_s=0.03 * RATE)) == (True, [])
    ok, reasons = soak.verdict(run(n=13, lag_per_s=0.1 * RATE))  # a 6 s rise: a trend even that short
    assert not ok and reasons[0].startswith("consumer lag grows")


def test_large_but_steady_lag_fails_on_its_final_size() -> None:
    ok, reasons = soak.verdict(run(lag=40 * RATE))
    assert not ok
    assert reasons == [f"consumer lag ends at {40 * RATE:,.0f} events, 40 s of input (bound 30 s)"]


def test_stalled_niche_stage_fails_with_when_and_how_much() -> None:
    """Ingest keeps committing (consumer lag flat) but nothing more is counted from t=300 s."""
    samples = run()
    frozen = samples[30].counted
    samples = [s if s.t < 300 else Sample(s.t, s.rss_bytes, s.lag, 40 + int(s.t), s.sent, frozen)
               for s in samples]
    ok, reasons = soak.verdict(samples)
    assert not ok
    assert any(r.startswith("backlog (published - counted) grows") for r in reasons)
    assert reasons[-1].startswith(f"the worker stopped counting at t=300 s: counted {frozen:,.0f}, consumer lag 1,000, "
                                  "niche-events lag 340")
    assert soak.stalled_at(run()) is None


def test_missing_metrics_are_skipped_not_fatal() -> None:
    samples = [s if k % 4 else Sample(s.t, s.rss_bytes, s.lag, 0, s.sent, None) for k, s in enumerate(run())]
    assert soak.verdict(samples) == (True, [])


def test_too_short_or_idle_runs_fail() -> None:
    ok, reasons = soak.verdict(run(n=soak.MIN_SAMPLES - 1))
    assert not ok and "samples" in reasons[0]
    idle = [Sample(s.t, s.rss_bytes, 0, 0, 0, 0.0) for s in run()]
    assert soak.verdict(idle) == (False, ["the load published nothing"])


def test_report_carries_samples_summary_and_verdict() -> None:
    result = soak.Soak(RATE, 2 * RATE, 600.0, "c2m-soak-test", run())
    report = result.report()
    assert report["verdict"] == {"ok": True, "reasons": []}
    assert len(report["samples"]) == 61 and report["samples"][0]["rss_bytes"] == 200 * MIB
    assert report["summary"]["rate_per_s"] == RATE
    assert report["summary"]["rss_mib"] == {"first": 200.0, "last": 200.0, "max": 200.0}
    assert result.lines()[-1] == "soak PASS"
    result.aborted = "the worker exited (code 1) at t=20 s: boom"
    assert result.judged() == (False, ["the worker exited (code 1) at t=20 s: boom"])
    assert result.lines()[-1].startswith("soak FAIL: the worker exited")
