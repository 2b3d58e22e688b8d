"""`oomtrace run --http` as a user starts it: it serves while it runs, and a configuration that
cannot work is one clear line and exit status 1, before any probe is loaded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.collecting import free_port
from tests.serving import get

pytestmark = pytest.mark.root


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracer", "run", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_run_http_serves_until_stopped(cache_dir):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tracer", "run", "--http", f"127.0.0.1:{port}",
                             "--cache-dir", str(cache_dir), "--pressure-interval", "0", "-o", "json",
                             "--housekeeping-interval", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        start = json.loads(proc.stdout.readline())  # the engine is up once its start record is out
        assert start["type"] == "start"
        deadline = time.monotonic() + 20
        status = 0
        while status != 200 and time.monotonic() < deadline:
            try:
                status, body, _ = get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except OSError:
                time.sleep(0.2)
        assert (status, body) == (200, b"ok")
        status, body, _ = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b'container_memory_usage_bytes{container="",id="/"' in body
        assert b'oomtrace_probe_attached{probe="' in body
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read()
    with socket.socket() as s:  # no listener any more (SO_REUSEADDR: TIME_WAIT does not count, LISTEN does)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_beyond_loopback_without_credentials_is_refused():
    done = _run("--http", "0.0.0.0:0", "--duration", "1")
    assert done.returncode == 1
    assert "needs --http-htpasswd or --http-bearer-token-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_address_in_use_is_one_line(cache_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        done = _run("--http", f"127.0.0.1:{s.getsockname()[1]}", "--duration", "1", "--cache-dir", str(cache_dir))
    assert done.returncode == 1 and "Address already in use" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("flag", "message"), [
    (["--http", "nonsense"], "HOST:PORT expected"),
    (["--http", "127.0.0.1:1", "--enable-metrics", "tcp"], "does not collect tcp"),
    (["--http", "127.0.0.1:1", "--disable-metrics", "cpu,bogus"], "unknown metric group(s) bogus"),
])
def test_bad_flags(flag, message):
    done = _run(*flag)
    assert done.returncode == 2 and message in done.stderr
