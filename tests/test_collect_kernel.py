"""A real OOM kill, kept centrally: `oomtrace run -o msgpack | oomtrace collect` and
`oomtrace run --forward` into a collector, then `oomtrace events`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.collecting import OOMTRACE, CollectorProcess, stored, wait_until
from tests.kernel import oom_once

pytestmark = pytest.mark.root
MiB = 1 << 20


def _events(db, *args) -> list[dict]:
    done = subprocess.run([*OOMTRACE, "events", "--db", str(db), "--output", "json", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_pipe_from_run_into_collect_keeps_the_oom_kill(cache_dir, tmp_path):
    db = tmp_path / "pipe.db"
    run = subprocess.Popen([*OOMTRACE, "run", "-o", "msgpack", "--cache-dir", str(cache_dir), "--node", "pipe-node"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    collect = subprocess.Popen([*OOMTRACE, "collect", "--db", str(db)], stdin=run.stdout, stderr=subprocess.PIPE,
                               text=True)
    run.stdout.close()  # the collector owns the read end now
    try:
        wait_until(lambda: os.path.exists(db) and any(r[2] == "start" for r in stored(db)), timeout=60,
                   what="the start record in the database")
        cg, pid = oom_once("collect-pipe")
        wait_until(lambda: any(r[2] == "oom_kill" and r[3] == cg.path for r in stored(db)), timeout=30,
                   what="the oom_kill in the database")
        cg.remove()
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(20) == 0, run.stderr.read().decode()
        _, err = collect.communicate(timeout=20)
    assert collect.returncode == 0, err
    (kill,) = _events(db, "--type", "oom_kill", "--cgroup", cg.path)
    assert kill["pid"] == pid and kill["node"] == "pipe-node" and kill["memcg"] == cg.path
    assert kill["memcg_limit"] == 16 * MiB


def test_run_forward_to_a_collector_and_spool_while_it_is_down(cache_dir, tmp_path):
    db = tmp_path / "fwd.db"
    collector = CollectorProcess(db, "tcp://127.0.0.1:0")
    listen = str(collector.address)
    run = subprocess.Popen([*OOMTRACE, "run", "--forward", listen, "--cache-dir", str(cache_dir), "--node", "fwd-node",
                            "--spool-dir", str(tmp_path / "spool"), "--type", "oom_kill"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(r[2] == "start" for r in stored(db)), timeout=60, what="the start record")
        first, pid1 = oom_once("collect-up")
        wait_until(lambda: any(r[3] == first.path for r in stored(db)), timeout=30, what="the first kill")
        collector.kill()  # the collector goes away; the agent spools
        second, pid2 = oom_once("collect-down")
        time.sleep(1.0)
        wait_until(lambda: list((tmp_path / "spool").glob("*.fwd")), timeout=30, what="a spooled chunk")
        collector = CollectorProcess(db, listen)
        wait_until(lambda: any(r[3] == second.path for r in stored(db)), timeout=60, what="the spooled kill")
        first.remove()
        second.remove()
    finally:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=30)
        collector.stop()
    assert run.returncode == 0, err
    assert out == ""  # --forward without -o: nothing on stdout
    kills = _events(db, "--type", "oom_kill", "--node", "fwd-node")
    assert [(k["cgroup"], k["pid"]) for k in kills if k["cgroup"] in (first.path, second.path)] == [
        (first.path, pid1), (second.path, pid2)]
    status = _events(db, "--type", "forward_status")
    assert status and status[-1]["reconnects"] >= 1
