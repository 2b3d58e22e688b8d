#!/usr/bin/env python3
"""The flight recorder's cost with 1,000 memory cgroups, beside the floor of the same run; the
OOM kill → oom_report delay; and the time of `oomtrace report -o png`.

Makes 1,000 memory cgroups with a limit under one parent (as root, on this machine's real
cgroupfs), HOT of them holding a sleeping process just under their limit (sampled every
second), and then:

  cost    CPU of one sweep (every cgroup: its limit, and a sample) and of one fine tick (the
          hot ones), best of REPEAT, and so CPU per second at the default steps (10 s, 1 s);
          beside the floor: a walk of the hierarchy plus os.open/os.read/os.close of exactly
          the files that sweep and that tick opened (recorded from them), per second the same
          way. Then a real run of the thread for --seconds, its own CPU time per second.
  memory  what the rings hold after 5 minutes of history (30 sweeps; 300 samples for the hot
          ones), measured with tracemalloc.
  delay   --kills real OOM kills (16 MiB memcgs) with the agent running: kill → report made
          (the record's delay) and kill → report at the sink, p50/p99/max.
  chart   render() of one of those reports as PNG, in process (best of 5), and the whole
          `oomtrace report --input … -o png` command (a new Python, imports included).

Targets (issue 14): ≤ 1 % of one core and ≤ 20 MB for 1,000 cgroups.

    sudo .venv/bin/python scripts/bench_recorder.py [--cgroups 1000] [--hot 64] [--seconds 30] [--kills 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_stats import read_all, recorded  # noqa: E402
from tests.cgroups import MEMORY, Cgroup  # noqa: E402
from tracer.kernel.cgroupfs import cgroup_dirs  # noqa: E402
from tracer.postmortem.recorder import FlightRecorder, RecorderConfig  # noqa: E402
from tracer.stats.cgroups import Layout  # noqa: E402

TAG = "bench-recorder"
MiB = 1 << 20


def make_cgroups(layout: Layout, n: int, hot: int) -> tuple[Cgroup, list[subprocess.Popen]]:
    """N children with a 256 MiB limit; HOT of them with a `sleep` just under a limit of their own."""
    v1 = layout.controllers["memory"][0] == 1
    limit_file = "memory.limit_in_bytes" if v1 else "memory.max"
    usage_file = "memory.usage_in_bytes" if v1 else "memory.current"
    parent = Cgroup.create(TAG, layout, controllers=MEMORY)
    sleepers: list[subprocess.Popen] = []
    try:
        children = [parent.child(f"c{i:04d}") for i in range(n)]
        for i, cg in enumerate(children):
            cg.write(limit_file, str(256 * MiB))
            if i < hot:
                procs = os.path.join(cg.dirs["memory"], "cgroup.procs")
                sleepers.append(subprocess.Popen(["sleep", "3600"], preexec_fn=lambda p=procs: _join(p)))
        time.sleep(0.3)
        for cg in children[:hot]:
            usage = int((cg.dir / usage_file).read_text())
            cg.write(limit_file, str((usage + (32 << 10)) // 4096 * 4096 + 4096))  # ≥ 80 % of it: hot
    except BaseException:
        stop(parent, sleepers)
        raise
    return parent, sleepers


def _join(procs: str) -> None:
    with open(procs, "w") as f:
        f.write(str(os.getpid()))


def stop(parent: Cgroup, sleepers: list[subprocess.Popen]) -> None:
    for p in sleepers:
        p.kill()
        p.wait()
    parent.remove(timeout=30)


def cpu(action, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        action()
        best = min(best, time.thread_time() - t0)
    return best


def floor(paths: list[str], mount: str | None) -> None:
    if mount is not None:
        for _ in cgroup_dirs(mount):
            pass
    read_all(paths)


def bench_cost(recorder: FlightRecorder, mount: str, repeat: int) -> dict:
    recorder.sweep()  # the rings exist: what follows is the steady state
    sweep_files, tick_files = recorded(recorder.sweep), recorded(recorder.sample_hot)
    config = recorder.config
    sweep, tick = cpu(recorder.sweep, repeat), cpu(recorder.sample_hot, repeat)
    sweep_floor = cpu(lambda: floor(sweep_files, mount), repeat)
    tick_floor = cpu(lambda: floor(tick_files, None), repeat)
    ticks = 1 / config.fine_step - 1 / config.step  # a sweep replaces that second's tick
    return {"tracked": recorder.stats.tracked, "hot": sum(r.hot for r in recorder._rings.values()),
            "sweep_files": len(sweep_files), "tick_files": len(tick_files),
            "sweep_ms": sweep * 1e3, "sweep_floor_ms": sweep_floor * 1e3,
            "tick_ms": tick * 1e3, "tick_floor_ms": tick_floor * 1e3,
            "cpu_per_s": sweep / config.step + tick * ticks,
            "floor_cpu_per_s": sweep_floor / config.step + tick_floor * ticks}


def bench_memory(config: RecorderConfig) -> dict:
    """Rings holding 5 minutes: 30 sweeps at 10 s, and 300 samples for the hot ones."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    recorder = FlightRecorder(config)
    sweeps = int(config.horizon / config.step)
    for _ in range(sweeps):
        recorder.sweep()
    for _ in range(int(config.horizon / config.fine_step) - sweeps):
        recorder.sample_hot()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    samples = sum(len(r) for r in recorder._rings.values())
    return {"bytes": size, "rings": len(recorder._rings), "samples": samples}


def bench_real(config: RecorderConfig, seconds: float) -> dict:
    """The thread itself for SECONDS, counted from just after its first sweep (which makes the
    rings) so that the window holds SECONDS / step sweeps, as the steady state does."""
    recorder = FlightRecorder(config)
    recorder.start()
    time.sleep(1.0)
    cpu0, samples0, t0 = recorder.stats.cpu_seconds, recorder.stats.samples, time.monotonic()
    time.sleep(seconds)
    cpu1, samples1, elapsed = recorder.stats.cpu_seconds, recorder.stats.samples, time.monotonic() - t0
    recorder.close()
    return {"seconds": elapsed, "cpu_per_s": (cpu1 - cpu0) / elapsed, "samples": samples1 - samples0}


def bench_delay(kills: int, cache_dir: Path) -> list[dict]:
    """Real OOM kills with the agent (engine + recorder) in this process; the reports."""
    from tests.kernel import CollectingSink, oom_once
    from tracer.agent import Agent, AgentConfig
    from tracer.events.engine import EngineConfig

    sink = CollectingSink()
    config = AgentConfig(engine=EngineConfig(cache_dir=cache_dir), identity=None, recorder=RecorderConfig())
    with Agent(config, [sink]) as agent:
        agent.start()
        sink.wait_for(lambda rs: agent.done or any(r["type"] == "start" for r in rs), 120)
        if agent.failure is not None:
            raise agent.failure
        paths = []
        for i in range(kills):
            cg, _ = oom_once(f"bench-rec{i}")
            paths.append(cg.path)
            cg.remove()
        sink.wait_for(lambda rs: sum(r["type"] == "oom_report" and r["cgroup"] in paths for r in rs) >= kills, 30)
    kill_at = {r["id"]: r for r in sink.records if r["type"] == "oom_kill"}
    reports = [r for r in sink.records if r["type"] == "oom_report" and r["cgroup"] in paths]
    for r in reports:
        r["sink_delay"] = (r["_arrived_ns"] - kill_at[r["kill_id"]]["_arrived_ns"]) / 1e9
        r["kernel_delay"] = r["time"] - kill_at[r["kill_id"]]["time"]
    return reports


def bench_chart(report: dict) -> dict:
    from tracer.postmortem.chart import render

    render(report, "png")  # the first draw loads matplotlib and its fonts
    best = min(_timed(lambda: render(report, "png")) for _ in range(5))
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "run.json"
        stream.write_text(json.dumps(report) + "\n")
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "tracer", "report", "--input", str(stream), "--last", "-o", "png",
                        "--out", str(Path(tmp) / "r.png")], check=True, capture_output=True, cwd=ROOT)
        command = time.monotonic() - t0
    return {"render_ms": best * 1e3, "command_s": command}


def _timed(action) -> float:
    t0 = time.perf_counter()
    action()
    return time.perf_counter() - t0


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cgroups", type=int, default=1000)
    ap.add_argument("--hot", type=int, default=64, help="cgroups near their limit (sampled every second)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0, help="the real run of the thread")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--cache-dir", type=Path, default=Path("/var/cache/oomtrace"))
    args = ap.parse_args()
    layout = Layout.detect()
    for cg in Cgroup.leftovers(TAG, layout):
        cg.remove(timeout=30)
    config = RecorderConfig()
    mount = layout.controllers["memory"][1]
    parent, sleepers = make_cgroups(layout, args.cgroups, args.hot)
    try:
        cost = bench_cost(FlightRecorder(config), mount, args.repeat)
        memory = bench_memory(config)
        real = bench_real(config, args.seconds)
    finally:
        stop(parent, sleepers)
    print(f"cgroups with a limit tracked: {cost['tracked']} ({cost['hot']} hot), memory hierarchy "
          f"v{layout.controllers['memory'][0]}")
    print(f"sweep      {cost['sweep_ms']:7.1f} ms CPU ({cost['sweep_files']} files)   "
          f"floor {cost['sweep_floor_ms']:7.1f} ms   ×{cost['sweep_ms'] / cost['sweep_floor_ms']:.2f}")
    print(f"fine tick  {cost['tick_ms']:7.2f} ms CPU ({cost['tick_files']} files)   "
          f"floor {cost['tick_floor_ms']:7.2f} ms   ×{cost['tick_ms'] / max(cost['tick_floor_ms'], 1e-9):.2f}")
    print(f"CPU per second at {config.step:g} s / {config.fine_step:g} s: {100 * cost['cpu_per_s']:.2f} % of a core"
          f"   floor {100 * cost['floor_cpu_per_s']:.2f} %   (target ≤ 1 %)")
    print(f"real run {real['seconds']:.0f} s: {100 * real['cpu_per_s']:.2f} % of a core, {real['samples']} samples")
    print(f"memory for {config.minutes:g} minutes: {memory['bytes'] / MiB:.1f} MiB in {memory['rings']} rings, "
          f"{memory['samples']} samples ({memory['bytes'] / max(memory['samples'], 1):.0f} B a sample)"
          "   (target ≤ 20 MB)")
    if args.kills:
        reports = bench_delay(args.kills, args.cache_dir)
        made = [r["kernel_delay"] for r in reports]
        sunk = [r["sink_delay"] for r in reports]
        print(f"kill → report made ({len(made)} kills): p50 {1e3 * statistics.median(made):.1f} ms, "
              f"p99 {1e3 * _pct(made, 0.99):.1f} ms, max {1e3 * max(made):.1f} ms")
        print(f"kill record → report at the sink: p50 {1e3 * statistics.median(sunk):.1f} ms, "
              f"p99 {1e3 * _pct(sunk, 0.99):.1f} ms, max {1e3 * max(sunk):.1f} ms   (target ≤ 1 s)")
        chart = bench_chart(reports[-1])
        print(f"report -o png: render {chart['render_ms']:.0f} ms in process; the command {chart['command_s']:.2f} s "
              "(a new Python, matplotlib imported)")


if __name__ == "__main__":
    main()
