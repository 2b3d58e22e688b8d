"""Helpers for the `run --http` tests: an agent serving on a free port, HTTP requests to it, and
a real Prometheus (Debian's 2.42) scraping it, started and stopped by pid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.collecting import free_port
from tracer.agent import Agent, AgentConfig
from tracer.events.engine import EngineConfig
from tracer.serve.config import HttpConfig


@contextmanager
def serving_agent(cache_dir: Path, http: HttpConfig | None = None, **config):
    """An in-process agent with --http on a free loopback port (sweeps every second)."""
    http = http or HttpConfig(port=free_port())
    config.setdefault("housekeeping_interval", 1.0)
    agent = Agent(AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=0), http=http,
                              identity=None, **config), [])
    try:
        agent.start()
        assert agent.http is not None
        yield agent
    finally:
        agent.close()
    assert agent.failure is None, agent.failure


def url(agent: Agent, path: str, scheme: str = "http") -> str:
    assert agent.http is not None
    return f"{scheme}://127.0.0.1:{agent.http.port}{path}"


def get(address: str, headers: dict | None = None, data: bytes | None = None, timeout: float = 10,
        context=None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(address, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def get_json(address: str, **kw) -> object:
    status, body, _ = get(address, **kw)
    assert status == 200, (address, status, body[:300])
    return json.loads(body)


class Prometheus:
    """Debian's prometheus with its own data directory and port, scraping TARGET every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            if os.environ.get("CI"):
                pytest.fail("prometheus is not installed: scripts/test.sh installs Debian's prometheus")
            pytest.skip("prometheus is not installed (scripts/test.sh installs it)")
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          "scrape_configs:\n  - job_name: oomtrace\n    static_configs:\n"
                          f"      - targets: ['{target}']\n")
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        self.wait(lambda: self.query("up") and self.query("up")[0]["value"][1] == "1", 30, "the first scrape")

    def query(self, promql: str) -> list:
        address = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            data = get_json(address, timeout=5)
        except (OSError, AssertionError):
            return []
        assert isinstance(data, dict) and data["status"] == "success", data
        return data["data"]["result"]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}")
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(f"prometheus: no {what} within {timeout} s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
