#!/usr/bin/env python3
"""What counting fd_count and socket_count costs a stats sweep, beside the same sweep without.

Makes N real cgroups (as root), each with P processes that hold F files and S sockets, then
times the manager's sweep of them in CPU seconds (best of several, interleaved so that noise
hits both alike): with ManagerConfig.process_counts off (the default, the baseline) and on
(a listing of /proc/<pid>/fd per process, a readlink per descriptor, as cAdvisor's process
metrics).

    sudo .venv/bin/python scripts/bench_process_counts.py [--containers 50] [--procs 4] [--files 64] [--sockets 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cgroups import Cgroup  # noqa: E402
from tracer.stats.cgroups import Layout  # noqa: E402
from tracer.stats.manager import Manager, ManagerConfig  # noqa: E402

TAG = "bench-fds"
# Opens the files and socket pairs, forks PROCS-1 children that inherit them (copy-on-write:
# cheap), and everyone sleeps.
HOLDER = ("import os, socket, time\nfiles = [open('/dev/null') for _ in range({files})]\n"
          "pairs = [socket.socketpair() for _ in range({pairs})]\n"
          "for _ in range({procs} - 1):\n    if os.fork() == 0:\n        break\ntime.sleep(3600)\n")


def sweep_cpu(manager: Manager, names: list[str]) -> float:
    t0 = time.process_time()
    manager.sweep(names)
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--procs", type=int, default=4, help="processes per container")
    parser.add_argument("--files", type=int, default=64, help="files each process holds")
    parser.add_argument("--sockets", type=int, default=8, help="sockets each process holds (socket pairs: even)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_process_counts.py: run as root (it makes cgroups)")
    layout = Layout.detect()
    for cg in Cgroup.leftovers(TAG, layout):
        cg.remove()
    parent = Cgroup.create(TAG, layout)
    holders = []
    try:
        code = HOLDER.format(files=args.files, pairs=args.sockets // 2, procs=args.procs)
        children = [parent.child(f"c{i:03d}") for i in range(args.containers)]
        holders = [c.spawn(code) for c in children]
        wait_for(children, args.procs)
        run(layout, [c.name for c in children], args.repeat)
    finally:
        kill_all(parent)
        for h in holders:
            h.wait()
        parent.remove()


def wait_for(children: list[Cgroup], procs: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(Path(c.dirs["memory"], "cgroup.procs").read_text().split()) == procs for c in children):
            time.sleep(0.5)  # the last forks have opened nothing new, but let them settle
            return
        time.sleep(0.1)
    sys.exit("the holder processes did not all start")


def kill_all(parent: Cgroup) -> None:
    for d, _, _ in os.walk(parent.dirs["memory"]):
        for pid in Path(d, "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
    time.sleep(0.2)


def run(layout: Layout, names: list[str], repeat: int) -> None:
    off = Manager(ManagerConfig(network=False), layout=layout)
    on = Manager(ManagerConfig(network=False, process_counts=True), layout=layout)
    for m in (off, on):
        m.discover(emit=False)
    off_times, on_times = [], []
    for _ in range(repeat):
        off_times.append(sweep_cpu(off, names))
        on_times.append(sweep_cpu(on, names))
    n = len(names)
    latest = [on.container_info(name).stats[-1].processes for name in names]
    fds = sum(p.fd_count for p in latest if p)
    sockets = sum(p.socket_count for p in latest if p)
    pids = sum(p.process_count for p in latest if p)
    best_off, best_on = min(off_times), min(on_times)
    print(f"{n} containers, {pids} processes, {fds:,} descriptors ({sockets:,} sockets) per sweep; "
          f"skipped: {on.fd_counts.skipped_pids} pids, {on.fd_counts.skipped_fds} fds")
    print(f"\n{'':40}{'ms per sweep':>14}{'µs per container':>18}")
    print(f"{'sweep, process_counts off (baseline)':40}{best_off * 1e3:>14.1f}{best_off / n * 1e6:>18.1f}")
    print(f"{'sweep, process_counts on':40}{best_on * 1e3:>14.1f}{best_on / n * 1e6:>18.1f}")
    extra = best_on - best_off
    print(f"{'the counting':40}{extra * 1e3:>14.1f}{extra / n * 1e6:>18.1f}"
          f"   = {extra / max(fds, 1) * 1e6:.2f} µs per descriptor, {best_on / best_off:.2f}× the baseline")
    print(f"\n(best of {repeat}, CPU time of this process, interleaved)")


if __name__ == "__main__":
    main()
