"""Worker processes run by the demo, the benchmarks and the tests: start, wait until ready, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from streams.errors import UserError


class WorkerProcess:
    """One `c2m worker` in its own process group, logging to `<state_dir>/worker.log`."""

    def __init__(self, env: dict[str, str], state_dir: Path, loglevel: str = "info") -> None:
        self.env = {**env, "C2M_DATA_DIR": str(state_dir)}
        self.state_dir = state_dir
        self.log = state_dir / "worker.log"
        self.loglevel = loglevel
        self.proc: subprocess.Popen[bytes] | None = None
        host = env.get("C2M_API_HOST", "127.0.0.1")
        self.api = f"http://{host}:{env.get('C2M_API_PORT', '6066')}"

    def start(self) -> WorkerProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", self.loglevel],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def get(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(self.api + path, timeout=timeout) as resp:
            body = resp.read()
        return orjson.loads(body) if path != "/metrics" else body.decode()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Ready means the worker answers /healthz and owns at least one partition."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise UserError(f"the worker exited (code {code}): {self.last_error()}")
            try:
                if self.get("/healthz", timeout=1).get("partitions_assigned", 0) > 0:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise UserError(f"the worker was not ready within {timeout:.0f} s; see {self.log}")

    def last_error(self) -> str:
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        return (errors or lines or ["no output"])[-1][-300:]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group (a clean Faust shutdown), SIGKILL what is left after timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
