"""`c2m demo --duration 90`: every surging niche gets a trigger on a factory that makes its category,
read back by a consumer that is not part of the worker; nothing the demo started outlives it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams import simulator, topology
from streams.config import REPO_ROOT
from tests.helpers import free_port
from tests.integration.kafka_io import collect

pytestmark = pytest.mark.e2e


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (the demo's private cache dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_demo_triggers_every_surging_niche_on_a_capable_factory(bootstrap: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "C2M_KAFKA_BOOTSTRAP": bootstrap, "C2M_API_PORT": str(free_port()),
           "C2M_CACHE_DIR": str(cache)}
    started_ms = int(time.time() * 1000)
    done = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--duration", "90"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "triggers:" in done.stdout
    completed = re.search(r"batches completed: (\d+)", done.stdout)
    assert completed and int(completed.group(1)) >= 1, "the example factories finished no batch: " + done.stdout[-2000:]

    topo = topology.load(REPO_ROOT / "topics.yaml")
    surging = simulator.surging("surge")
    wanted = {(n.category, n.style, n.color, n.size, n.region) for n in surging}
    got = collect(bootstrap, [topology.trigger_topic(f.id) for f in topo.factories],
                  keep=lambda t: t.get("emitted_ts", 0) >= started_ms,
                  until=lambda kept: wanted <= {tuple(t["niche"].values()) for t in kept}, timeout=30)
    for spec in surging:
        mine = [t for t in got if tuple(t["niche"].values()) == (spec.category, spec.style, spec.color,
                                                                  spec.size, spec.region)]
        assert mine, f"no trigger for surging niche {spec}"
        for trig in mine:
            assert topo.factory(trig["factory_id"]).makes(spec.category)
            assert trig["_topic"] == topology.trigger_topic(trig["factory_id"])
    assert _processes_with(str(cache)) == [], "the demo left processes behind"
