"""The flight recorder's reports without an OOM (a real cgroup and process, a kill record made
here), and `oomtrace report` on a saved stream and on a collector's database: text, JSON, PNG,
SVG, and every bad input (no samples yet, a cgroup gone, no reports, an unknown id)."""

from __future__ import annotations

import json
import subprocess
import time

import msgpack
import pytest
from click.testing import CliRunner

from tests.cgroups import Cgroup
from tests.collecting import OOMTRACE
from tests.test_postmortem_files import drained
from tests.test_postmortem_kernel import png_size
from tracer.cli.main import main
from tracer.postmortem.analysis import add_late_stalls, analyse
from tracer.postmortem.chart import render
from tracer.postmortem.recorder import FlightRecorder, RecorderConfig

pytestmark = pytest.mark.root
MiB = 1 << 20
LIMIT = 48 * MiB
HOLDER = "a = b'x' * (24 << 20)\nimport time\ntime.sleep(600)\n"  # 24 MiB of anon, then waits


def _kill(cg: Cgroup, pid: int, kid: str = "k0-0000000001") -> dict:
    return {"type": "oom_kill", "id": kid, "node": "n1", "time": round(time.time(), 6), "pid": pid, "comm": "python3",
            "cgroup": cg.path, "memcg": cg.path, "constraint": "memcg", "memcg_limit": LIMIT,
            "memcg_usage": LIMIT, "pod": {"namespace": "prod", "name": "api-5f", "uid": None, "container": "api"},
            "container": {"runtime": "containerd", "id": "c0ffee", "name": "api", "image": "localhost/api:1"}}


@pytest.fixture
def holder():
    """A cgroup with a limit and a process holding 24 MiB in it."""
    cg = Cgroup.memory("pm-hold", LIMIT)
    proc = cg.spawn(HOLDER)
    usage_file = cg.dir / ("memory.usage_in_bytes" if (cg.dir / "memory.usage_in_bytes").exists() else "memory.current")
    deadline, before = time.monotonic() + 20, -1
    while True:  # until it holds its 24 MiB and is done faulting pages in: the curve is flat
        usage = int(usage_file.read_text())
        if usage >= 24 * MiB and abs(usage - before) < MiB // 4:
            break
        assert time.monotonic() < deadline and proc.poll() is None, "the holder did not allocate"
        before = usage
        time.sleep(0.3)
    yield cg, proc
    proc.kill()
    proc.wait(10)
    cg.remove()


def test_only_cgroups_with_a_limit_in_force_get_a_ring(holder):
    cg, _ = holder
    free = Cgroup.memory("pm-free")
    below = cg.child("below")  # no limit of its own: its parent's is in force
    try:
        recorder = FlightRecorder(RecorderConfig())
        recorder.sweep()
        assert cg.path in recorder._rings and below.path in recorder._rings
        assert free.path not in recorder._rings
        ring = recorder._rings[cg.path]
        assert ring.limit == LIMIT and len(ring) == 1
        assert ring.last()[1] >= 20 * MiB  # usage
        assert recorder._rings[below.path].limit == LIMIT
    finally:
        below.remove()
        free.remove()


def test_a_kill_before_any_sweep_says_there_are_no_samples(holder):
    cg, proc = holder
    recorder = FlightRecorder(RecorderConfig())
    report = recorder.report(_kill(cg, proc.pid))
    (curve,) = report["curves"]
    assert len(curve["t"]) == 1 and curve["t"][0] > -0.002 and curve["final"]  # now; the sample is in whole ms
    assert any("no samples of" in n for n in report["notes"]), report["notes"]
    verdict = analyse(report).verdict
    assert verdict.startswith(f"no samples of {cg.path} were taken before the kill"), verdict
    assert "of the 48 MiB limit" in verdict
    assert [p["pid"] for p in report["processes"]] == [proc.pid]
    assert report["processes"][0]["rss"] >= 20 * MiB and report["processes"][0]["anon"] >= 20 * MiB


def test_a_cgroup_removed_before_the_report_keeps_its_samples(holder):
    cg, proc = holder
    recorder = FlightRecorder(RecorderConfig())
    for _ in range(3):
        recorder.sweep()
        time.sleep(0.2)
    proc.kill()
    proc.wait(10)
    cg.remove()
    report = recorder.report(_kill(cg, proc.pid))
    (curve,) = report["curves"]
    assert len(curve["t"]) == 3 and not curve["final"] and all(t <= 0 for t in curve["t"])
    assert any("was gone when the report was built" in n for n in report["notes"]), report["notes"]
    assert report["processes"] == [] and report["processes_total"] == 0
    assert "usage was steady" in analyse(report).verdict


def test_the_thread_reports_a_kill_with_its_reclaim_stalls(holder):
    """Through write() and drain(), as the agent wires it: the stalls of the cgroup and below."""
    cg, proc = holder
    recorder = FlightRecorder(RecorderConfig(step=0.2, fine_step=0.1))
    recorder.start()
    try:
        time.sleep(0.5)
        now = time.time()
        for path, stall in ((cg.path, 120), (cg.path + "/below", 60), ("/elsewhere", 999)):
            recorder.write({"type": "memory_pressure", "time": now - 0.2, "interval": 1.0, "cgroup": path,
                            "memcg_reclaims": 3, "direct_reclaims": 0, "stall_ns": stall * 1_000_000,
                            "max_stall_ns": stall * 500_000})
        recorder.write({"type": "cgroup_create", "cgroup": cg.path})  # ignored
        recorder.write(_kill(cg, proc.pid))
        reports = drained(recorder)
    finally:
        recorder.close()
    (report,) = reports
    assert report["delay"] < 0.5 and recorder.stats.reports == 1
    stalls = report["curves"][0]["stalls"]
    assert stalls["stall_ns"] == [180_000_000] and stalls["reclaims"] == [6] and stalls["interval"] == [1.0]
    assert len(report["curves"][0]["t"]) >= 3
    assert "reclaim stalled 180 ms in the last 10 s" in analyse(report).verdict
    assert report["pod"]["name"] == "api-5f" and report["container"]["image"] == "localhost/api:1"
    msgpack.unpackb(msgpack.packb(report))  # it travels as any record


@pytest.fixture
def saved(holder, tmp_path):
    """A `run -o json` stream with a start, two kills and one report (for the second), and a cut line."""
    cg, proc = holder
    recorder = FlightRecorder(RecorderConfig())
    recorder.sweep()
    lone, kill = _kill(cg, proc.pid, "k0-0000000001"), _kill(cg, proc.pid, "k0-0000000002")
    report = dict(recorder.report(kill), id="k0-0000000003", node="n1")
    # The interval the kill fell in ends after the report: its stalls come in a later record.
    pressure = {"type": "memory_pressure", "id": "k0-0000000004", "node": "n1", "time": kill["time"] + 2,
                "interval": 10.0, "cgroup": cg.path, "cgroup_id": 1, "memcg_reclaims": 4, "direct_reclaims": 0,
                "stall_ns": 250_000_000, "max_stall_ns": 100_000_000, "reclaimed_pages": 10}
    stream = tmp_path / "run.json"
    lines = [json.dumps(r) for r in ({"type": "start", "id": "k0-0000000000"}, lone, kill, report, pressure)]
    stream.write_text("\n".join(lines) + '\n{"type": "oom_re')
    shown = add_late_stalls(report, [pressure])  # what `oomtrace report` reads: the report and that interval
    assert "reclaim stalled 250 ms in the last 10 s" in analyse(shown).verdict
    assert "reclaim stalled" not in analyse(report).verdict and shown["curves"][0]["stalls"]["t"] == [2.0]
    return stream, kill, shown


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["report", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_report_from_a_saved_stream(saved, tmp_path):
    stream, kill, report = saved
    code, out = _cli("--input", str(stream), kill["id"])
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == analyse(report).verdict
    assert "OOMKilled prod/api-5f container api (image localhost/api:1)" in out and "kill id k0-0000000002" in out
    assert "PID" in out and str(kill["pid"]) in out
    code, out = _cli("--input", str(stream), "--last", "-o", "json")
    assert code == 0 and json.loads(out)["report"]["kill_id"] == kill["id"]
    assert json.loads(out)["verdict"] == analyse(report).verdict
    code, out = _cli("--input", str(stream), "--namespace", "prod")
    assert code == 0 and "k0-0000000002" in out and "prod/api-5f/api" in out
    svg = tmp_path / "r.svg"
    code, out = _cli("--input", str(stream), "--last", "-o", "svg", "--out", str(svg))
    assert code == 0 and svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (("k0-0000000001",), "the kill k0-0000000001 has no oom_report"),
    (("nope",), "no oom_report with id or kill id nope"),
    (("--pod", "other"), "no oom_report records in"),
    (("--last", "-o", "png"), "-o png writes a file: give --out FILE"),
])
def test_report_bad_input_on_a_stream(saved, args, message):
    stream, _, _ = saved
    code, out = _cli("--input", str(stream), *args)
    assert code != 0 and message in out and "Traceback" not in out, out


def test_report_on_a_collector_database(saved, tmp_path):
    stream, kill, report = saved
    db, empty = tmp_path / "c.db", tmp_path / "empty.db"
    records = [json.loads(line) for line in stream.read_text().splitlines()[:-1]]
    for path, batch in ((db, records), (empty, records[:2])):
        done = subprocess.run([*OOMTRACE, "collect", "--db", str(path), "--listen", "-"], timeout=60,
                              input=b"".join(msgpack.packb(r) for r in batch), capture_output=True)
        assert done.returncode == 0, done.stderr
    code, out = _cli("--db", str(db), kill["id"])
    assert code == 0 and out.splitlines()[0] == analyse(report).verdict, out
    code, out = _cli("--db", str(db), report["id"], "-o", "json")  # the report's own id works too
    assert code == 0 and json.loads(out)["report"]["id"] == report["id"]
    code, out = _cli("--db", str(db), "--pod", "api-5f", "--last", "-o", "png", "--out", str(tmp_path / "p.png"))
    assert code == 0 and png_size((tmp_path / "p.png").read_bytes()) == (1000, 600)
    for args, message in (((str(empty),), "no oom_report records in"),
                          ((str(db), "k0-0000000001"), "the kill k0-0000000001 has no oom_report"),
                          ((str(db), "nope"), "no record with id nope"),
                          ((str(db), "k0-0000000000"), "is a start record"),
                          ((str(db), "--pod", "other"), "no oom_report in")):
        code, out = _cli("--db", *args)
        assert code != 0 and message in out and "Traceback" not in out, (args, out)
    code, out = _cli("--db", str(stream))  # not a database
    assert code != 0 and "Traceback" not in out and str(stream) in out


def test_chart_of_a_report_without_samples_or_curves():
    bare = {"type": "oom_report", "kill_id": "x", "pid": 1, "comm": "a", "constraint": "global", "curves": []}
    assert analyse(bare).verdict.startswith("a global OOM (no memcg limit was hit): the kill names no cgroup")
    assert png_size(render(bare, "png")) == (1000, 600)


def test_run_text_and_events_table_show_the_verdict_not_the_samples(saved):
    """`run` (text) and `events --db` (table) print a report as its verdict: its curves are
    thousands of numbers, for `oomtrace report`."""
    from tracer.cli.tables import events_table
    from tracer.events.sinks import format_text

    _, _, report = saved
    verdict = analyse(report).verdict
    line = format_text(report)
    assert verdict in line and "curves=" not in line and "processes=" not in line and len(line) < 1000
    table = events_table([report])
    assert verdict in table and "curves" not in table and report["kill_id"] in table
