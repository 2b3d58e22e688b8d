#!/usr/bin/env python3
"""One stats sweep over 1,000 real cgroups, beside the floor measured in the same run.

Makes 1,000 cgroups in every hierarchy oomtrace reads (as root, on this machine's real
cgroupfs), then times the manager's sweep (the stats cAdvisor collects by default: CPU,
memory, processes, disk io, hugetlb) in CPU seconds, best of several, beside the floor:
os.open/os.read/os.close of exactly the files that sweep read, recorded from the sweep itself.
Then the resident memory of the event engine plus the manager holding 2 minutes of history
(13 samples at kubelet's 10 s) for every container. Target: sweep ≤ 1.5× the floor;
RSS ≤ 120 MB. --numa also reads memory.numa_stat and cpuset.memory_migrate (off by default).

    sudo .venv/bin/python scripts/bench_stats.py [--containers 1000] [--repeat 7] [--numa]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cgroups import Cgroup  # noqa: E402
from tracer.stats.cgroups import Layout, StatsOptions  # noqa: E402
from tracer.stats.manager import Manager, ManagerConfig  # noqa: E402

TAG = "bench-stats"  # the cgroups are /oomtrace-bench-stats-<hex>/cNNNN (tests.cgroups.Cgroup)


def make_cgroups(layout: Layout, n: int) -> tuple[Cgroup, list[str]]:
    parent = Cgroup.create(TAG, layout)
    try:
        names = [parent.child(f"c{i:04d}").name for i in range(n)]
    except BaseException:
        parent.remove()
        raise
    return parent, names


def remove_leftovers(layout: Layout) -> None:
    """An earlier run that was killed may have left its cgroups."""
    for cg in Cgroup.leftovers(TAG, layout):
        cg.remove()


def recorded(action) -> list[str]:
    """The files ACTION opens, in order, recorded by wrapping os.open while it runs (the floor
    of scripts/bench_stats.py and scripts/bench_recorder.py reads exactly these)."""
    seen: list[str] = []
    original = os.open

    def recording(path, flags, *rest, **kw):
        seen.append(path)
        return original(path, flags, *rest, **kw)

    os.open = recording
    try:
        action()
    finally:
        os.open = original
    return seen


def read_all(paths: list[str]) -> None:
    """The floor: open, read and close each of PATHS, nothing else (a file gone is skipped)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.read(fd, 65536)
        except OSError:
            pass
        finally:
            os.close(fd)


def floor(paths: list[str]) -> float:
    t0 = time.process_time()
    read_all(paths)
    return time.process_time() - t0


def sweep_cpu(manager: Manager, names: list[str]) -> float:
    t0 = time.process_time()
    manager.sweep(names)
    return time.process_time() - t0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--numa", action="store_true", help="the measured manager reads numa_stat and memory_migrate")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_stats.py: run as root (it makes cgroups and loads the event engine)")
    layout = Layout.detect()
    remove_leftovers(layout)
    parent, names = make_cgroups(layout, args.containers)
    try:
        run(layout, parent, names, args.repeat, StatsOptions(numa=args.numa, cpuset=args.numa))
    finally:
        parent.remove()


def run(layout: Layout, parent: Cgroup, names: list[str], repeat: int, options: StatsOptions) -> None:
    rss_before_engine = rss_mb()
    engine, stop = start_engine()
    rss_engine = rss_mb()
    manager = Manager(ManagerConfig(network=False, stats=options), layout=layout)
    manager.start(background=False)
    ours = [n for n in manager.names() if n.startswith(parent.name + "/")]
    assert len(ours) == len(names), f"discovered {len(ours)} of {len(names)} cgroups"
    paths = recorded(lambda: manager.sweep(ours))
    gc.collect()
    sweeps, floors = [], []
    for _ in range(repeat):  # interleaved: noise hits both alike; best of each
        sweeps.append(sweep_cpu(manager, ours))
        floors.append(floor(paths))
    best, base = min(sweeps), min(floors)
    n = len(ours)
    print(f"{n:,} cgroups on {', '.join(sorted({f'v{v}' for v, _ in layout.controllers.values()}))}; "
          f"controllers {', '.join(sorted(layout.controllers))}; {len(paths) / n:.1f} files per container")
    print(f"\n{'':34}{'ms per sweep':>14}{'µs per container':>18}")
    print(f"{'oomtrace sweep (CPU, best of ' + str(repeat) + ')':34}{best * 1e3:>14.1f}{best / n * 1e6:>18.1f}")
    print(f"{'floor: os.read of the same files':34}{base * 1e3:>14.1f}{base / n * 1e6:>18.1f}")
    print(f"{'ratio':34}{best / base:>14.2f}   target ≤ 1.50 (cAdvisor reports ≈ 1 ms per container)")
    for _ in range(12):  # 13 samples in all: 2 minutes of history at 10 s
        manager.sweep(ours)
    gc.collect()
    rss = rss_mb()
    print(f"\nRSS: python + imports {rss_before_engine:.0f} MB; with the event engine "
          f"{rss_engine:.0f} MB; plus {n:,} containers × 13 samples of history {rss:.0f} MB   target ≤ 120 MB")
    stop.set()
    engine.close()


def start_engine():
    from tests.kernel import CollectingSink
    from tracer.events.engine import Engine, EngineConfig

    engine = Engine(CollectingSink(), EngineConfig(cache_dir=Path(tempfile.gettempdir()) / "oomtrace-bench-cache"))
    engine.start()
    stop = threading.Event()
    threading.Thread(target=engine.run, args=(stop,), daemon=True).start()
    return engine, stop


if __name__ == "__main__":
    main()
