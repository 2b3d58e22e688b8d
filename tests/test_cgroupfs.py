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


def test_kernel_text_is_utf8_or_escaped_and_always_reversible():
    import random

    import msgpack

    assert cgroupfs.kernel_text(b"/a/\xc3\xa9\\x") == ("/a/é\\x", False)
    assert cgroupfs.kernel_text(b"/a\xff\\") == ("/a\\xff\\\\", True)
    assert cgroupfs.kernel_text(b"\xed\xa0\x80") == ("\\xed\\xa0\\x80", True)  # a surrogate is not UTF-8
    rng = random.Random(7)
    for _ in range(2000):
        raw = bytes(rng.choice(b"ab/\\x\xff\xc3\xa9\xe2\x82\xac\xed\xa0\x80") for _ in range(rng.randrange(12)))
        text, escaped = cgroupfs.kernel_text(raw)
        assert cgroupfs.unescape_kernel_text(text, escaped) == raw
        text.encode("utf-8")  # strict: every sink takes it
        msgpack.packb(text)


def test_walk_gives_the_events_strings_and_walks_past_path_max(tmp_path):
    odd = tmp_path / os.fsdecode(b"odd\xff\\")
    odd.mkdir()
    fd = os.open(tmp_path, os.O_RDONLY)
    names = [b"%02d" % i + b"n" * 253 for i in range(20)]  # 20 x 256 bytes: past PATH_MAX
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = sub
        deepest = os.fstat(fd).st_ino
    finally:
        os.close(fd)
    h = cgroupfs.Hierarchy(4, ("memory",), str(tmp_path))
    found = cgroupfs.walk_entries(h)
    assert found[os.stat(odd).st_ino] == ("/odd\\xff\\\\", True)
    whole = b"/" + b"/".join(names)
    assert len(whole) > 4096 and found[deepest] == (whole.decode(), False)
    assert cgroupfs.walk(h)[os.stat(odd).st_ino] == "/odd\\xff\\\\"
    fd = os.open(tmp_path, os.O_RDONLY)  # tidy up: pytest cannot remove paths this long
    try:
        fds = [fd]
        for name in names[:-1]:
            fds.append(os.open(name, os.O_RDONLY, dir_fd=fds[-1]))
        for name in reversed(names):
            os.rmdir(name, dir_fd=fds[-1])
            if len(fds) > 1:
                os.close(fds.pop())
    finally:
        for f in fds:
            os.close(f)


def test_one_bounded_cache_per_hierarchy_with_evictions_counted():
    paths = cgroupfs.CgroupPaths(limit=4, primary={4, 0})  # other hierarchies: 4 // 8 -> 1 path
    paths.add(4, 1, "/kept")
    paths.add(0, 1, "/kept-v2")
    for i in range(1000):
        paths.add(9, 100 + i, f"/s{i}")
    assert paths.get(4, 1) == "/kept" and paths.get(0, 1) == "/kept-v2"
    assert paths.evictions() == {4: 0, 0: 0, 9: 999} and len(paths) == 3
    assert paths.why_unknown(9, 1098) == "evicted"  # the latest eviction is remembered
    assert paths.why_unknown(9, 100) == "evicted or never seen"  # as many as the cache holds, no more
    assert paths.why_unknown(7, 5) == paths.why_unknown(4, 5) == "never seen"
    for i in range(5):
        paths.add(4, 10 + i, f"/m{i}")
    assert paths.get(4, 1) is None and paths.why_unknown(4, 1) == "evicted"
    assert paths.entry(4, 14) == ("/m4", False) and paths.evictions()[4] == 2
    # Forgetting what it evicted: it says it cannot tell.
    for i in range(100):
        paths.add(4, 1000 + i, f"/x{i}")
    assert paths.why_unknown(4, 55555) == "evicted or never seen"
    paths.add(4, 1, "/back", escaped=True)
    assert paths.entry(4, 1) == ("/back", True)


def test_resolver_lookup_says_why_and_rescans_before_giving_up(tmp_path):
    h = cgroupfs.Hierarchy(4, ("memory",), str(tmp_path))
    now = [0.0]
    r = cgroupfs.CgroupResolver({4: h}, cgroupfs.CgroupPaths(limit=8), clock=lambda: now[0])
    r.fill([4])
    assert r.lookup(4, 0) == (None, False, None)
    (tmp_path / os.fsdecode(b"x\xff")).mkdir()
    ino = os.stat(tmp_path / os.fsdecode(b"x\xff")).st_ino
    assert r.lookup(4, ino) == (None, False, "never seen")  # rescanned less than a second ago
    now[0] = 5.0
    assert r.lookup(4, ino) == ("/x\\xff", True, None)


def test_a_mount_point_that_is_not_utf8_does_not_stop_reading_hierarchies(tmp_path):
    proc = tmp_path
    (proc / "self").mkdir()
    (proc / "self" / "cgroup").write_text("4:memory:/\n0::/\n")
    (proc / "self" / "mountinfo").write_bytes(
        HYBRID_MOUNTINFO.encode() + b"50 24 0:40 / /mnt/\xff rw - ext4 /dev/sdb rw\n")
    hs = cgroupfs.read_hierarchies(proc)
    assert hs[4].mount == "/sys/fs/cgroup/memory" and hs[0].mount == "/sys/fs/cgroup/unified"
