"""The HTML dashboard at / of a running worker, rendered by a real browser (Debian's headless Chromium).

A surge on a niche of our own makes a start trigger; the page, polling the worker's JSON API like an
operator's browser does, must show that niche and that trigger. A screenshot is kept for people.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from streams.topology import Topology, trigger_topic
from streams.workers import WorkerProcess
from tests.helpers import unavailable
from tests.integration.kafka_io import collect, produce
from tests.integration.test_pipeline import funnel

pytestmark = pytest.mark.integration

SCREENSHOT_COPY = Path("/tmp/c2m-dashboard.png")
# Quiet, offline, deterministic: nothing a profile, an update check or QUIC could add to the run.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
# Virtual time runs the page's timers fast and waits for its fetches, so a budget of a few polling
# rounds costs about a second of wall time.
BUDGET_MS = 10_000


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        unavailable("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return found


def browse(binary: str, profile: Path, url: str, *args: str, timeout: float = 45) -> str:
    """Run one headless Chromium on `url`; returns stdout. Kills its whole process group on timeout."""
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             f"--virtual-time-budget={BUDGET_MS}", *args, url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish on {url} within {timeout:.0f} s")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err[-1500:]}"
    return out


def test_dashboard_renders_live_niches_and_triggers(worker: WorkerProcess, topo: Topology,
                                                     tmp_path: Path) -> None:
    binary = chromium()
    region = f"DASH-{uuid.uuid4().hex[:6]}"
    attrs = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}
    bootstrap = worker.env["C2M_KAFKA_BOOTSTRAP"]
    # a few quiet niches beside it (too little demand to trigger), so the page has something to rank
    quiet = [(f"DASH-{uuid.uuid4().hex[:6]}", {"category": c, "style": st, "color": co, "size": sz}, n)
             for c, st, co, sz, n in (("top", "basic", "white", "M", 18), ("jeans", "wide-leg", "indigo", "L", 12),
                                      ("skirt", "pleated", "navy", "S", 7))]
    produce(bootstrap, funnel(region, attrs, 150) + [r for q in quiet for r in funnel(*q)])
    # The niche table is this worker's own state: wait until it holds our niche.
    key = "|".join([*attrs.values(), region])
    deadline = time.monotonic() + 45
    while key not in {n["niche"] for n in worker.get("/api/niches?limit=1000", timeout=5)["niches"]}:
        assert time.monotonic() < deadline, f"{key} not in the worker's /api/niches within 45 s"
        time.sleep(0.5)
    # Its trigger, as the factory's topic holds it (any worker on a shared broker publishes the same,
    # deterministic trigger id).
    dress = [trigger_topic(f.id) for f in topo.factories if f.makes("dress")]
    mine = collect(bootstrap, dress, keep=lambda t: (t.get("niche") or {}).get("region") == region,
                   until=bool, timeout=20)
    if not mine:
        gauges = [ln for ln in worker.get("/metrics").splitlines() if ln.startswith("c2m_factory_open_units{")]
        pytest.fail(f"no trigger for {region} on {dress}; the worker's open units: {gauges} (a worker that "
                    "replayed a long-lived shared broker from the earliest offset may have no capacity left)")
    trigger_id = mine[0]["trigger_id"]

    # "/" is ours, not Faust's {"status": "OK"} production index that mounts there too.
    with urllib.request.urlopen(worker.api + "/", timeout=5) as resp:
        assert resp.headers.get_content_type() == "text/html"
        assert b"<title>c2m" in resp.read()

    started = time.monotonic()
    # every niche and plenty of triggers: the session worker shares a noisy broker with other tests
    dom = browse(binary, tmp_path / "profile-dom", f"{worker.api}/?niches=1000&triggers=50", "--dump-dom")
    assert "Latest triggers per factory" in dom
    assert f'<tr data-niche="{key}">' in dom, "the niche is not in the rendered niche table"
    assert f'<span class="region">{region}</span>' in dom
    assert trigger_id in dom, f"trigger {trigger_id} is not on the rendered page"
    for quiet_region, _, _ in quiet:
        assert f'<span class="region">{quiet_region}</span>' in dom
    assert '<span id="dot" class="dot ok">' in dom, "the page could not reach every endpoint of the worker"

    shot = tmp_path / "dashboard.png"
    browse(binary, tmp_path / "profile-shot", f"{worker.api}/", f"--screenshot={shot}", "--window-size=1400,1000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    shutil.copyfile(shot, SCREENSHOT_COPY)
    assert time.monotonic() - started < 40, "rendering the dashboard took too long"
