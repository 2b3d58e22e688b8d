"""The flight recorder on the real kernel: a child whose memory grows step by step until its memcg
kills it, with the agent running in this process; an oom_report follows each kill with the
curve, the processes and the verdict. Then the same through `run -o msgpack | collect` and
`oomtrace report --db`, and a page-cache-heavy workload."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess

import pytest

from tests.cgroups import Cgroup
from tests.collecting import OOMTRACE, CollectorProcess, stored, wait_until
from tests.kernel import CollectingSink
from tracer.agent import Agent, AgentConfig
from tracer.events.engine import EngineConfig
from tracer.postmortem.analysis import analyse, main_curve
from tracer.postmortem.recorder import RecorderConfig

pytestmark = pytest.mark.root
MiB = 1 << 20
LIMIT = 64 * MiB
STEP, FINE = 5.0, 1.0  # the recorder's steps here: a shorter sweep than the default 10 s, the same fine step
# Forks a small sibling that sleeps (it outlives the kill: the processes list must show it), then
# touches 0.75 MiB every 0.25 s: 3 MiB/s, from ~10 MiB to the 64 MiB limit in ~18 s.
GROWER = """
import os, time
if os.fork() == 0:
    time.sleep(600)
    os._exit(0)
a = []
while True:
    a.append(b'x' * (768 << 10))
    time.sleep(0.25)
"""
# Reads FILE (not cached) 4 MiB at a time for ~6 s, filling the memcg with page cache, then grows
# anon at 4 MiB/s until killed: the cache is reclaimed to make room, then the limit is hit.
READER = """
import os, time
fd = os.open({path!r}, os.O_RDONLY)
end = time.monotonic() + 6
while time.monotonic() < end and os.read(fd, 4 << 20):
    time.sleep(0.1)
a = []
while True:
    a.append(b'x' * (1 << 20))
    time.sleep(0.25)
"""


@pytest.fixture(scope="module")
def agent(cache_dir):
    sink = CollectingSink()
    config = AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=1.0), identity=None,
                         recorder=RecorderConfig(step=STEP, fine_step=FINE))
    with Agent(config, [sink]) as agent:
        agent.start()
        sink.wait_for(lambda rs: agent.done or any(r["type"] == "start" for r in rs), 60)
        assert agent.failure is None and sink.of_type("start"), agent.failure
        agent.sink = sink
        yield agent


def _report_of(sink: CollectingSink, cg: Cgroup, timeout: float = 60) -> tuple[dict, dict]:
    def found(records: list[dict]) -> bool:
        kill = next((r for r in records if r["type"] == "oom_kill" and r["memcg"] == cg.path), None)
        return kill is not None and any(r["type"] == "oom_report" and r["kill_id"] == kill["id"] for r in records)

    records = sink.wait_for(found, timeout)
    kill = next(r for r in records if r["type"] == "oom_kill" and r["memcg"] == cg.path)
    report = next(r for r in records if r["type"] == "oom_report" and r["kill_id"] == kill["id"])
    return kill, report


def _end(cg: Cgroup, *procs: subprocess.Popen) -> None:
    """Kill what is left in CG (the sleeping sibling) and remove it."""
    for d in cg.unique_dirs():
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids = f.read().split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        p.wait(10)
    cg.remove()


def _before_kill(curve: dict, name: str) -> list:
    return [v for t, v in zip(curve["t"], curve[name]) if t <= 0]


def test_a_growing_child_gets_a_report_with_its_curve(agent):
    cg = Cgroup.memory("pm-grow", LIMIT)
    child = cg.spawn(GROWER)
    try:
        assert child.wait(60) == -9
        kill, report = _report_of(agent.sink, cg)
    finally:
        _end(cg, child)
    # It follows the kill within a second, linked by id, with the kill's identity and cgroups.
    assert report["id"] != kill["id"] and report["kill_id"] == kill["id"] and report["node"] == kill["node"]
    assert report["pid"] == child.pid and report["cgroup"] == report["memcg"] == cg.path
    assert 0 <= report["delay"] < 1.0 and report["time"] - kill["time"] < 1.0
    assert (report["_arrived_ns"] - kill["_arrived_ns"]) / 1e9 < 1.0
    assert report["limit"] == LIMIT and report["cgroup_version"] in (1, 2)
    (curve,) = report["curves"]  # the victim's cgroup is the memcg: one curve
    assert curve["cgroup"] == cg.path and sorted(curve["roles"]) == ["memcg", "victim"] and curve["final"]
    # Monotone up to the limit, ~18 s of it, anon dominating.
    usage, t = _before_kill(curve, "usage"), _before_kill(curve, "t")
    assert len(usage) >= 6, curve
    assert all(b >= a - MiB // 4 for a, b in zip(usage, usage[1:])), usage
    assert usage[-1] >= 0.8 * LIMIT and max(curve["usage"]) <= LIMIT
    assert t[0] <= -10, t
    anon = _before_kill(curve, "anon")
    assert anon[-1] >= 0.7 * usage[-1] and _before_kill(curve, "file")[-1] <= 0.2 * usage[-1]
    # Above 80 % of the limit (the last ~4 s), a sample every second; before, every STEP seconds
    # until the rate says the cgroup will be there within a step.
    # (the final point is taken at the report, whenever the kill came: not on the fine step)
    ticks = zip(t[:-1], usage[:-1]) if curve["final"] and t[-1] == curve["t"][-1] else zip(t, usage)
    hot = [x for x, u in ticks if u >= 0.8 * LIMIT]
    assert len(hot) >= 3, (t, usage)
    gaps = [b - a for a, b in zip(hot, hot[1:])]
    assert all(0.5 <= g <= FINE * 1.6 for g in gaps), gaps
    assert max(b - a for a, b in zip(t, t[1:])) <= STEP * 1.3
    assert curve["limit"][-1] == LIMIT and curve["growth_per_s"] > 1.5 * MiB
    # The processes at that moment: the sibling (and the victim, if it had not yet left).
    pids = {p["pid"]: p for p in report["processes"]}
    sibling = [p for p in pids.values() if p["pid"] != child.pid]
    assert len(sibling) == 1 and sibling[0]["comm"].startswith("python") and sibling[0]["cgroup"] == cg.path
    assert report["processes_total"] in (1, 2) and not report["processes_truncated"]
    # The verdict says it: anon grew to the limit.
    verdict = analyse(report).verdict
    assert verdict.startswith("anon grew ") and "hit the 64 MiB memcg limit" in verdict, (verdict, curve)
    assert "page cache was" in verdict
    recorder = agent.recorder
    assert recorder is not None and recorder.stats.slowest_report < 0.5 and recorder.stats.dropped_reports == 0


def test_a_page_cache_heavy_child(agent, tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        for _ in range(160):
            f.write(os.urandom(MiB))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # its pages must be charged to the child
    cg = Cgroup.memory("pm-cache", LIMIT)
    child = cg.spawn(READER.format(path=str(big)))
    try:
        assert child.wait(60) == -9
        _, report = _report_of(agent.sink, cg)
    finally:
        _end(cg, child)
    curve = main_curve(report)
    assert curve is not None
    assert max(curve["file"]) >= 0.5 * LIMIT, curve["file"]  # the curve shows the page cache
    analysis = analyse(report)
    assert analysis.grew == "anon" and analysis.file_max is not None and analysis.file_max >= 0.5 * LIMIT
    assert "page cache was" in analysis.verdict and "down from" in analysis.verdict, analysis.verdict


def test_run_pipe_collect_and_report_from_the_database(cache_dir, tmp_path):
    db = tmp_path / "pm.db"
    run = subprocess.Popen([*OOMTRACE, "run", "-o", "msgpack", "--cache-dir", str(cache_dir), "--node", "pm-node",
                            "--no-identity"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    collect = subprocess.Popen([*OOMTRACE, "collect", "--db", str(db)], stdin=run.stdout, stderr=subprocess.PIPE,
                               text=True)
    run.stdout.close()
    cg = Cgroup.memory("pm-pipe", LIMIT)
    try:
        wait_until(lambda: os.path.exists(db) and any(r[2] == "start" for r in stored(db)), timeout=60,
                   what="the start record in the database")
        child = cg.spawn(GROWER)
        assert child.wait(60) == -9
        wait_until(lambda: any(r[2] == "oom_report" and r[3] == cg.path for r in stored(db)), timeout=30,
                   what="the oom_report in the database")
    finally:
        _end(cg)
        run.send_signal(signal.SIGTERM)
        assert run.wait(20) == 0, run.stderr.read().decode()
        _, err = collect.communicate(timeout=20)
    assert collect.returncode == 0, err
    kill = next(r[4] for r in stored(db) if r[2] == "oom_kill" and r[3] == cg.path)
    text = _report(db, kill["id"])
    assert text.splitlines()[0].startswith("anon grew ") and "hit the 64 MiB memcg limit" in text
    assert f"kill id {kill['id']}" in text and "pm-node" in text
    listing = _report(db, "--cgroup", cg.path)
    assert kill["id"] in listing and "anon grew" in listing
    png = tmp_path / "kill.png"
    _report(db, "--last", "-o", "png", "--out", str(png))
    assert png_size(png.read_bytes()) == (1000, 600)


def test_run_forward_to_a_collector_carries_the_report(cache_dir, tmp_path):
    """--forward: the report travels like any record, and `report --db` finds it by the kill's id."""
    from tests.kernel import oom_once
    from tracer.forward.forwarder import ForwardConfig

    db = tmp_path / "fwd.db"
    collector = CollectorProcess(db, "tcp://127.0.0.1:0")
    forward = ForwardConfig(collector.address, node="pm-fwd", spool_dir=tmp_path / "spool", backoff_min=0.05)
    config = AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=1.0, node="pm-fwd"),
                         identity=None, forward=forward, recorder=RecorderConfig(step=STEP, fine_step=FINE))
    try:
        with Agent(config) as agent:
            agent.start()
            wait_until(lambda: agent.done or any(r[2] == "start" for r in stored(db)) if db.exists() else False,
                       timeout=60, what="the start record in the collector")
            cg, pid = oom_once("pm-fwd")
            cg.remove()
            wait_until(lambda: agent.done or any(r[2] == "oom_report" and r[3] == cg.path for r in stored(db)),
                       timeout=30, what="the oom_report in the collector")
            assert agent.failure is None, agent.failure
    finally:
        collector.stop()
    kill = next(r[4] for r in stored(db) if r[2] == "oom_kill" and r[3] == cg.path)
    report = json.loads(_report(db, kill["id"], "-o", "json"))["report"]
    assert report["kill_id"] == kill["id"] and report["pid"] == pid and report["node"] == "pm-fwd"
    assert report["curves"][0]["cgroup"] == cg.path and report["curves"][0]["usage"]


def _report(db, *args: str) -> str:
    done = subprocess.run([*OOMTRACE, "report", "--db", str(db), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and that IHDR comes first."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])
