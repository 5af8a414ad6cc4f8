"""The demand engine inside the worker (issue 4): buckets close on the stream, forecasts are scored
(c2m_forecast_mae, c2m_forecast_p90_coverage), and the model state survives the loss of the
worker's disk: a new worker on an empty state directory recovers it from the changelogged table."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.workers import WorkerProcess
from tests.integration.conftest import wait_until_live, worker_env
from tests.integration.kafka_io import produce

pytestmark = pytest.mark.integration

ATTRS = {"category": "top", "style": "basic", "color": "white", "size": "M"}


def events(region: str, i: int) -> list[tuple[str, bytes | None, bytes]]:
    now = int(time.time() * 1000)
    base = {"ts": now, "user_id": "u", "sku": "SKU-M", "region": region, "attrs": ATTRS}
    out: list[tuple[str, bytes | None, bytes]] = [
        ("c2m.clickstream", None, orjson.dumps({**base, "event_id": f"{region}-{i}-v{k}", "type": "view",
                                                "session_id": "s"})) for k in range(8)]
    out.append(("c2m.orders", None, orjson.dumps({**base, "event_id": f"{region}-{i}-o", "type": "placed",
                                                  "order_id": f"{region}-{i}", "quantity": 1, "unit_price": 5.0})))
    return out


def niche(worker: WorkerProcess, region: str) -> dict[str, Any] | None:
    found = [n for n in worker.get("/api/niches?limit=1000")["niches"] if n["attrs"].get("region") == region]
    return found[0] if found else None


def test_the_worker_scores_its_forecasts_and_recovers_its_models_on_an_empty_disk(topics: str,
                                                                                  tmp_path: Path) -> None:
    env = worker_env(topics, C2M_AUTO_OFFSET_RESET="latest", C2M_BUCKET_SECONDS="1", C2M_CHECKPOINT_SECONDS="2",
                     C2M_PLAN_TICK_SECONDS="0.5")
    region = f"MD-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(env, tmp_path / "a").start()
    try:
        worker.wait_ready(timeout=120)
        wait_until_live(worker, topics)
        for i in range(40):  # 40 one-second buckets of a steady niche: past warm-up, forecasts scored
            produce(topics, events(region, i))
            time.sleep(1)
        text = worker.get("/metrics")
        assert 'c2m_forecast_mae{horizon="6"}' in text and "c2m_forecast_p90_coverage " in text
        before = niche(worker, region)
        assert before is not None and before["forecast"]["cold_start"] is False, (before, worker.last_error())
        assert before["forecast"]["model"].startswith("river")
        time.sleep(4)  # past a checkpoint
        assert worker.get("/healthz")["models"]["niche_updates"] > 0
    finally:
        worker.kill()
    shutil.rmtree(tmp_path / "a" / f"{env['C2M_APP_ID']}-data")  # the disk is lost; its log is kept
    again = WorkerProcess(env, tmp_path / "b").start()
    try:
        again.wait_ready(timeout=120)
        produce(topics, events(region, 99))  # one more event: the niche's first batch on the new worker
        deadline = time.monotonic() + 60
        after = None
        while time.monotonic() < deadline and (after is None or after["counts"]["view"] < 328):
            time.sleep(1)
            after = niche(again, region)
        assert after is not None and after["counts"]["view"] == 328, after
        assert again.get("/healthz")["models"]["restored"] is True
        assert after["forecast"]["cold_start"] is False, "the niche's model state came back from the changelog"
    finally:
        again.stop()
