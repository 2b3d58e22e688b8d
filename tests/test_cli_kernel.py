"""`oomtrace run` and `oomtrace doctor` as a user runs them: a real process, real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import msgpack
import pytest

from tests.kernel import oom_once
from tracer.events.records import SCHEMA_VERSION

pytestmark = pytest.mark.root
MiB = 1 << 20


def _oomtrace(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tracer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def _wait_start(proc: subprocess.Popen) -> bytes:
    """Read until the first line (the start record) arrives."""
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode()
    return line


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_json_then_signal(cache_dir, sig):
    proc = _oomtrace("run", "-o", "json", "--cache-dir", str(cache_dir), "--type", "oom_kill")
    start = json.loads(_wait_start(proc))
    assert start["type"] == "start" and start["schema"] == SCHEMA_VERSION
    cg, pid = oom_once("cli-json")
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    cg.remove()
    assert proc.returncode == 0, err.decode()
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["type"] for r in records} <= {"oom_kill", "lost", "error"}  # --type filters
    kills = [r for r in records if r["cgroup"] == cg.path]
    assert [k["pid"] for k in kills] == [pid]


def test_run_msgpack_stream_decodes(cache_dir):
    proc = _oomtrace("run", "-o", "msgpack", "--cache-dir", str(cache_dir), "--duration", "8")
    unpacker = msgpack.Unpacker()
    first = None
    while first is None:
        chunk = proc.stdout.read1(65536)
        assert chunk, proc.stderr.read().decode()
        unpacker.feed(chunk)
        first = next(iter(unpacker), None)
    assert first["type"] == "start"
    cg, pid = oom_once("cli-msgpack")
    cg.remove()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    unpacker.feed(out)
    records = list(unpacker)
    kills = [r for r in records if r["type"] == "oom_kill" and r["cgroup"] == cg.path]
    assert [k["pid"] for k in kills] == [pid]
    assert any(r["type"] == "cgroup_delete" and r["cgroup"] == cg.path for r in records)


def test_run_cgroup_prefix_filter(cache_dir):
    proc = _oomtrace("run", "-o", "json", "--cache-dir", str(cache_dir), "--cgroup", "/oomtrace-cli-keep")
    _wait_start(proc)
    keep, _ = oom_once("cli-keep")
    drop, _ = oom_once("cli-drop")
    keep.remove()
    drop.remove()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    cgroups = {json.loads(line).get("cgroup") for line in out.splitlines()}
    assert keep.path in cgroups and drop.path not in cgroups


def test_doctor_reports_this_kernel(cache_dir):
    done = subprocess.run([sys.executable, "-m", "tracer", "doctor", "--cache-dir", str(cache_dir)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    import os

    assert os.uname().release in out
    assert "mark_victim       yes" in out
    assert "tracepoint oom:mark_victim" in out
    kprobes = os.path.exists("/sys/bus/event_source/devices/kprobe/type")
    assert ("kprobes           yes" in out) == kprobes


def test_run_into_a_closed_pipe_stops_quietly(cache_dir):
    done = subprocess.run(f"{sys.executable} -m tracer run -o json --cache-dir {cache_dir} | head -c 10",
                          shell=True, capture_output=True, text=True, timeout=60)
    assert done.stdout == '{"type":"s'
    assert "Traceback" not in done.stderr and "Error" not in done.stderr
