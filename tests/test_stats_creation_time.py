"""spec.creation_time on this machine's real cgroups: the cgroup_mkdir event's time when the
engine saw the mkdir, else cAdvisor's rule (the earliest mtime of the cgroup's directories and
their cgroup.clone_children / cgroup.events, floored at boot, truncated to the minute)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.cgroups import PREFIX, Cgroup
from tests.kernel import CollectingSink
from tracer.stats import cgroups
from tracer.stats.cgroups import Layout
from tracer.stats.manager import Manager, ManagerConfig

pytestmark = pytest.mark.root


class _ToManager(CollectingSink):
    """The engine's records to the Manager as tracer/agent.py passes them: at once, in order."""

    def __init__(self, manager: Manager) -> None:
        super().__init__()
        self.manager = manager

    def write(self, record: dict) -> None:
        super().write(record)
        self.manager.on_record(record)


@pytest.fixture(scope="module")
def fed(cache_dir):
    """A Manager without housekeeping (nothing looks a new cgroup up before the test does) fed
    by a running engine."""
    from tracer.events.engine import Engine, EngineConfig

    manager = Manager(ManagerConfig(network=False))
    manager.start(background=False)
    sink = _ToManager(manager)
    engine = Engine(sink, EngineConfig(cache_dir=cache_dir, pressure_interval=0))
    engine.start()
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    yield manager, sink
    stop.set()
    thread.join(10)
    engine.close()
    manager.stop()


def _markers(d: str) -> list[str]:
    """The cgroup's marker file (none in a v2 root, which has no cgroup.events)."""
    return [p for p in (os.path.join(d, "cgroup.clone_children"), os.path.join(d, "cgroup.events"))
            if os.path.exists(p)]


def _hand_rule(cg: Cgroup, layout: Layout) -> float:
    """cAdvisor's rule computed here from the files, without oomtrace's code."""
    times = []
    for d in cg.unique_dirs():
        for path in (d, *_markers(d)):
            times.append(os.stat(path).st_mtime)
    uptime = int(float(Path("/proc/uptime").read_text().split()[0]))
    return max(min(times), float(int(time.time() - uptime) // 60 * 60))


def test_a_cgroup_made_while_the_engine_runs_gets_the_mkdir_time(fed):
    manager, sink = fed
    layout = manager.layout
    before = time.time()
    cg = Cgroup.create("born", layout)
    after = time.time()
    try:
        sink.wait_for(lambda rs: sum(r["type"] == "cgroup_create" and r["cgroup"] == cg.name for r in rs)
                      >= len(cg.unique_dirs()))
        # cAdvisor's rule gives the first lookup, which anything on the machine may do at any
        # time: here made 100 s late, so that the engine's time must be what is taken.
        late = after + 100
        for d in cg.unique_dirs():
            for path in (d, *_markers(d)):
                os.utime(path, (late, late))
        assert cgroups.creation_time(layout.dirs(cg.name)) == late
        manager.discover()
        spec = manager.container_info(cg.name).spec
        assert before - 0.1 <= spec.creation_time <= after + 0.1, (before, spec.creation_time, after)
        assert spec.start_time == 0  # a plain cgroup: no runtime, no start time (cAdvisor master)
        assert manager._created.get(cg.name) is None  # taken by discovery, not kept
    finally:
        cg.remove()


def test_a_cgroup_made_again_is_a_new_container(fed):
    manager, sink = fed
    cg = Cgroup.create("again", manager.layout)
    try:
        sink.wait_for(lambda rs: any(r["type"] == "cgroup_create" and r["cgroup"] == cg.name for r in rs))
        manager.discover()
        first = manager.container_info(cg.name).spec.creation_time
        cg.remove()
        sink.wait_for(lambda rs: any(r["type"] == "cgroup_delete" and r["cgroup"] == cg.name for r in rs))
        time.sleep(0.3)
        before = time.time()
        for d in cg.unique_dirs():
            os.mkdir(d)
        sink.wait_for(lambda rs: sum(r["type"] == "cgroup_create" and r["cgroup"] == cg.name for r in rs)
                      >= 2 * len(cg.unique_dirs()))
        manager.discover()
        second = manager.container_info(cg.name).spec.creation_time
        assert first < before - 0.2 and before - 0.1 <= second <= time.time()
    finally:
        cg.remove()


def test_a_cgroup_made_before_start_gets_cadvisors_rule():
    layout = Layout.detect()
    cg = Cgroup.create("before", layout)
    try:
        time.sleep(1.2)
        m = Manager(ManagerConfig(network=False), layout=layout)
        m.start(background=False)
        got = m.container_info(cg.name).spec.creation_time
        m.stop()
        assert got == _hand_rule(cg, layout)
        assert got > 0
    finally:
        cg.remove()


def test_the_rule_takes_the_earliest_time_and_floors_it_at_boot():
    """kernfs keeps times set on a cgroup's files (setattr): older ones stand in for an old cgroup."""
    layout = Layout.detect()
    cg = Cgroup.create("old", layout)
    try:
        dirs = cg.unique_dirs()
        boot = float(int(time.time() - int(float(Path("/proc/uptime").read_text().split()[0]))) // 60 * 60)
        marker = _markers(dirs[-1])[0]
        os.utime(marker, (boot + 90, boot + 90))
        assert cgroups.creation_time(layout.dirs(cg.name)) == boot + 90 == _hand_rule(cg, layout)
        os.utime(dirs[0], (1000, 1000))  # before boot: floored at boot, to the minute
        assert cgroups.creation_time(layout.dirs(cg.name)) == boot == _hand_rule(cg, layout)
    finally:
        cg.remove()


def test_the_root_follows_the_same_rule():
    layout = Layout.detect()
    root = Cgroup("/", {c: m for c, (_, m) in layout.controllers.items()})
    m = Manager(ManagerConfig(network=False), layout=layout)
    m.start(background=False)
    try:
        assert m.container_info("/").spec.creation_time == _hand_rule(root, layout)
    finally:
        m.stop()


def test_records_of_other_hierarchies_or_cut_paths_are_not_taken():
    m = Manager(ManagerConfig(network=False))
    name = PREFIX + "never-made"
    m.on_record({"type": "cgroup_create", "time": 5.0, "cgroup": name, "hierarchy": "name=systemd"})
    m.on_record({"type": "cgroup_create", "time": 6.0, "cgroup": name, "hierarchy": "memory",
                 "cgroup_truncated": True})
    assert name not in m._created
    m.on_record({"type": "cgroup_create", "time": 7.0, "cgroup": name, "hierarchy": "memory"})
    m.on_record({"type": "cgroup_create", "time": 6.5, "cgroup": name, "hierarchy": "pids"})
    assert m._created[name] == 6.5  # the earliest of its hierarchies
    m.on_record({"type": "cgroup_delete", "time": 8.0, "cgroup": name, "hierarchy": "memory"})
    assert name not in m._created


def _workload(runtime: str, **times: float):
    container = SimpleNamespace(runtime=runtime, id="c" * 64, name="web", image="img:1", labels={}, **times)
    return lambda name: SimpleNamespace(container=container, pod=None)


def test_runtime_times_as_cadvisor_masters_handlers():
    """Docker (and podman): the runtime's Created and StartedAt; containerd: its CreatedAt and
    the cgroup's time as the start. The identity gives them as `created`/`started` (wall
    seconds) where it has them; without them the cgroup's time stands."""
    layout = Layout.detect()
    cg = Cgroup.create("runtime", layout)
    try:
        cgroup_time = _hand_rule(cg, layout)
        for runtime, times, want in (
                ("docker", {"created": 100.0, "started": 200.0}, (100.0, 200.0)),
                ("docker", {}, (cgroup_time, 0.0)),
                ("containerd", {"created": 100.0}, (100.0, cgroup_time)),
                ("containerd", {}, (cgroup_time, cgroup_time)),
                ("crio", {"created": 100.0}, (cgroup_time, 0.0))):  # cAdvisor's CRI-O handler: the cgroup's
            m = Manager(ManagerConfig(network=False), layout=layout, workloads=_workload(runtime, **times))
            m.discover(emit=False)
            spec = m.container_info(cg.name).spec
            assert (spec.creation_time, spec.start_time) == want, (runtime, times)
    finally:
        cg.remove()
