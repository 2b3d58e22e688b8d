from __future__ import annotations

import os
from pathlib import Path

from tracer.kernel import cgroupfs

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _proc(tmp_path: Path, self_cgroup: str, mountinfo: str) -> Path:
    (tmp_path / "self").mkdir(parents=True)
    (tmp_path / "self" / "cgroup").write_text(self_cgroup)
    (tmp_path / "self" / "mountinfo").write_text(mountinfo)
    return tmp_path


HYBRID_MOUNTINFO = """\
30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 /docker/abc /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
"""


def test_hybrid_hierarchies(tmp_path):
    proc = _proc(tmp_path, "9:name=systemd:/\n4:memory:/x\n3:cpu,cpuacct:/\n2:pids:/\n0::/\n", HYBRID_MOUNTINFO)
    hs = cgroupfs.read_hierarchies(proc)
    assert hs[4] == cgroupfs.Hierarchy(4, ("memory",), "/sys/fs/cgroup/memory", "/")
    assert hs[3].name == "cpu,cpuacct" and hs[3].mount == "/sys/fs/cgroup/cpu,cpuacct"
    assert hs[2].root == "/docker/abc"
    assert hs[9].mount is None  # xattr is a mount option, not a controller: a named hierarchy
    assert hs[0].version == 2 and hs[0].mount == "/sys/fs/cgroup/unified"
    assert cgroupfs.memory_hierarchy(hs).id == 4


def test_cgroup_v2_fixture_from_debian12(tmp_path):
    root = FIXTURES / "cgroup-v2-debian12-6.1"
    mountinfo = (root / "proc/self/mountinfo").read_text()
    proc = _proc(tmp_path, "0::/kubepods.slice\n", mountinfo)
    hs = cgroupfs.read_hierarchies(proc)
    assert list(hs) == [0] and hs[0].mount == "/sys/fs/cgroup"


def test_cgroup_v1_fixture_from_this_host():
    """Separate cpu and cpuacct hierarchies, a named systemd one, hugetlb alone on v2."""
    hs = cgroupfs.read_hierarchies(FIXTURES / "cgroup-v1-6.18" / "proc")
    v1 = {h.name: (h.id, h.mount) for h in hs.values() if h.version == 1}
    assert v1 == {"cpu": (1, "/sys/fs/cgroup/cpu"), "cpuacct": (2, "/sys/fs/cgroup/cpuacct"),
                  "cpuset": (3, "/sys/fs/cgroup/cpuset"), "memory": (4, "/sys/fs/cgroup/memory"),
                  "devices": (5, "/sys/fs/cgroup/devices"), "freezer": (6, "/sys/fs/cgroup/freezer"),
                  "blkio": (7, "/sys/fs/cgroup/blkio"), "pids": (8, "/sys/fs/cgroup/pids"),
                  "name=systemd": (9, "/sys/fs/cgroup/systemd")}
    assert hs[0].mount == "/sys/fs/cgroup/unified"
    assert cgroupfs.memory_hierarchy(hs).id == 4


def test_walk_maps_inodes_to_paths_and_respects_a_mount_root(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "file").write_text("")
    h = cgroupfs.Hierarchy(4, ("memory",), str(tmp_path), "/docker/abc")
    found = cgroupfs.walk(h)
    assert found == {os.stat(tmp_path).st_ino: "/docker/abc",
                     os.stat(tmp_path / "a").st_ino: "/docker/abc/a",
                     os.stat(tmp_path / "a" / "b").st_ino: "/docker/abc/a/b"}


def test_paths_cache_is_bounded_lru():
    paths = cgroupfs.CgroupPaths(limit=2)
    paths.add(4, 1, "/a")
    paths.add(4, 2, "/b")
    assert paths.get(4, 1) == "/a"  # touch: /b is now the oldest
    paths.add(4, 3, "/c")
    assert len(paths) == 2 and paths.get(4, 2) is None and paths.get(4, 1) == "/a"


def test_resolver_rescans_once_on_a_miss(tmp_path):
    h = cgroupfs.Hierarchy(4, ("memory",), str(tmp_path))
    now = [0.0]
    r = cgroupfs.CgroupResolver({4: h}, cgroupfs.CgroupPaths(), clock=lambda: now[0])
    r.fill([4])
    (tmp_path / "late").mkdir()
    ino = os.stat(tmp_path / "late").st_ino
    now[0] = 10.0
    assert r.path(4, ino) == "/late"  # found by the rescan
    assert r.path(4, 999999999) is None
    assert r.path(4, 0) is None and r.name(77) == "hierarchy-77"
