"""Which capabilities `oomtrace run` needs, proven on this kernel by running it with a reduced
bounding set (util-linux setpriv): on 5.8+ with perf_event_paranoid ≤ 2, CAP_BPF and
CAP_PERFMON suffice to load and attach every probe, without CAP_SYS_ADMIN (docs/deploy.md);
without them it stops with one clear line naming what is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def _run(bounding: str, cache_dir) -> subprocess.CompletedProcess:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    return subprocess.run(["setpriv", f"--bounding-set=-all,{bounding}", sys.executable, "-m", "tracer", "run",
                           "--duration", "2", "-o", "json", "--no-identity", "--no-recorder", "--cache-dir",
                           str(cache_dir)], capture_output=True, text=True, timeout=120)


def test_bpf_and_perfmon_are_enough(cache_dir):
    if tuple(int(x) for x in os.uname().release.split(".")[:2]) < (5, 8):
        pytest.skip("CAP_BPF and CAP_PERFMON came with Linux 5.8")
    paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
    if paranoid > 2:  # Debian's own kernels: 3, where perf_event_open wants CAP_SYS_ADMIN (docs/deploy.md)
        pytest.skip(f"perf_event_paranoid is {paranoid}: only CAP_SYS_ADMIN opens perf events here")
    done = _run("+bpf,+perfmon", cache_dir)
    assert done.returncode == 0, done.stderr
    start = json.loads(done.stdout.splitlines()[0])
    assert start["type"] == "start" and "raw tracepoint oom:mark_victim" in start["probes"]


def test_without_them_one_clear_line(cache_dir):
    done = _run("+sys_ptrace,+dac_read_search", cache_dir)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.strip().startswith("Error:"), done.stderr
    assert "lacks CAP_BPF, CAP_PERFMON" in done.stderr  # it names what is missing
