"""`c2m soak` without a broker: the verdict on synthetic runs (flat, leaking, lagging, noisy but
bounded, stalled, stores filling or shrinking), and its helpers (slope, consumer lag, VmRSS, the
store gauge)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from streams import soak
from streams.soak import Sample

MIB = 2**20
RATE = 900.0
BOUND = 32 * MIB  # the stores' configured bound


def run(n: int = 61, rss: float = 200 * MIB, rss_per_s: float = 0.0, lag: float = 1_000.0, lag_per_s: float = 0.0,
        backlog: float = 500.0, backlog_per_s: float = 0.0, noise: float = 0.0, seed: int = 1,
        store: float | None = 30 * MIB) -> list[Sample]:
    """A synthetic soak: one sample every 10 s at RATE events/s, linear trends plus uniform noise
    (a share of the RSS, of the lag and of the backlog); the stores hold a steady `store` of the RSS."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        t = 10.0 * k
        sent = int(RATE * t)

        def jitter(x: float) -> float:
            return x * (1 + rng.uniform(-noise, noise))

        out.append(Sample(t, int(jitter(rss + rss_per_s * t)), int(jitter(lag + lag_per_s * t)), 3,
                          sent, sent - jitter(backlog + backlog_per_s * t), None if store is None else int(store)))
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


def test_store_memory_bytes_sums_the_gauge_over_its_kinds() -> None:
    text = ("# HELP c2m_store_memory_bytes Native memory\n# TYPE c2m_store_memory_bytes gauge\n"
            'c2m_store_memory_bytes{kind="memtables"} 1.19808e+07\n'
            'c2m_store_memory_bytes{kind="table_readers"} 0.0\n'
            'c2m_store_memory_bytes{kind="block_cache"} 81913.0\n'
            'c2m_events_total{topic="c2m.orders",type="placed",outcome="ok"} 5.0\n')
    assert soak.store_memory_bytes(text) == 11_980_800 + 81_913
    assert soak.store_memory_bytes('c2m_events_total{topic="x"} 5.0\n') is None  # gauge not set yet


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
    ok, reasons = soak.verdict(run(rss_per_s=0.05 * MIB, store=None))  # 180 MiB/h on 200 MiB
    assert not ok
    assert len(reasons) == 1 and reasons[0].startswith("RSS grows")


def test_rss_bound_is_twenty_percent_an_hour() -> None:
    """A 20-minute run, so both rises are above the noise floor: +25%/h of the mean fails, +15%/h passes,
    judged on RSS and on RSS outside the stores alike."""
    for bound, name in ((None, "RSS"), (BOUND, "RSS outside the stores")):
        failing = soak.verdict(run(n=121, rss_per_s=0.0148 * MIB), bound)
        assert not failing[0] and failing[1][0].startswith(f"{name} grows 53 MiB/h"), (name, failing)
        assert soak.verdict(run(n=121, rss_per_s=0.0087 * MIB), bound) == (True, []), name


def test_rss_growth_under_the_bound_or_the_noise_floor_passes() -> None:
    assert soak.verdict(run(rss_per_s=0.005 * MIB))[0]  # 18 MiB/h on 200 MiB: 9%/h
    short = run(n=7, rss_per_s=0.05 * MIB)  # fast, but over 30 s the fitted rise is 1.5 MiB
    assert soak.verdict(short)[0]


def with_stores(samples: list[Sample], store_at: Callable[[float], float],
                rss_at: Callable[[float], float]) -> list[Sample]:
    """The same run with the stores' memory and the RSS as functions of t."""
    return [Sample(s.t, int(rss_at(s.t)), s.lag, s.internal_lag, s.sent, s.counted, int(store_at(s.t)))
            for s in samples]


def test_stores_filling_to_their_bound_pass() -> None:
    """The shared cache fills from 2 to 32 MiB over the whole run, half of it in the second half:
    RSS grows 90 MiB/h there, but all of it is the stores, within their bound."""
    def store(t: float) -> float:
        return (2 + t * 0.05) * MIB

    samples = with_stores(run(), store, lambda t: 170 * MIB + store(t))
    assert soak.verdict(samples, BOUND) == (True, [])
    assert soak.Soak(RATE, None, 600.0, "c2m-soak-test", samples, store_memory_mb=32).judged() == (True, [])
    ok, reasons = soak.verdict(samples)  # no bound known: the same growth is judged as RSS
    assert not ok and [r.split(" grows")[0] for r in reasons] == ["RSS"]


def test_stores_past_their_bound_fail() -> None:
    def store(t: float) -> float:
        return (2 + t * 0.1) * MIB  # 62 MiB at the end

    ok, reasons = soak.verdict(with_stores(run(), store, lambda t: 170 * MIB + store(t)), BOUND)
    assert not ok
    assert reasons == ["the stores hold 62.0 MiB at t=600 s, past their 32 MiB bound (+25% allowed)"]
    at_the_slack = with_stores(run(), lambda t: 40 * MIB, lambda t: 210 * MIB)
    assert soak.verdict(at_the_slack, BOUND) == (True, [])


def test_a_leak_outside_the_stores_fails_even_while_they_shrink() -> None:
    """RSS flat, but only because the stores gave back what a leak took: 30 -> 6 MiB of stores,
    140 -> 164 MiB outside them over the run."""
    def store(t: float) -> float:
        return (30 - t * 0.04) * MIB

    ok, reasons = soak.verdict(with_stores(run(), store, lambda t: 170 * MIB), BOUND)
    assert not ok
    assert len(reasons) == 1 and reasons[0].startswith("RSS outside the stores grows")


def test_a_leak_beside_full_stores_fails_as_outside_them() -> None:
    ok, reasons = soak.verdict(run(rss_per_s=0.05 * MIB), BOUND)
    assert not ok
    assert len(reasons) == 1 and reasons[0].startswith("RSS outside the stores grows 180 MiB/h")


def test_unknown_store_memory_judges_rss_whole() -> None:
    assert soak.verdict(run(store=None), BOUND) == (True, [])
    ok, reasons = soak.verdict(run(store=None, rss_per_s=0.05 * MIB), BOUND)
    assert not ok and [r.split(" grows")[0] for r in reasons] == ["RSS"]


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
    assert report["summary"]["store_mib"] == {"first": 30.0, "last": 30.0, "max": 30.0}
    assert report["summary"]["outside_stores_mib"] == {"first": 170.0, "last": 170.0, "max": 170.0}
    assert report["summary"]["outside_stores_mib_per_hour_second_half"] == 0.0
    assert report["store_memory_mb"] == soak.STORE_MEMORY_MB
    assert any(line.startswith("stores MiB first 30.0") for line in result.lines())
    assert result.lines()[-1] == "soak PASS"
    result.aborted = "the worker exited (code 1) at t=20 s: boom"
    assert result.judged() == (False, ["the worker exited (code 1) at t=20 s: boom"])
    assert result.lines()[-1].startswith("soak FAIL: the worker exited")
