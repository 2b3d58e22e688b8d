"""cgroup hierarchies of the host, and the id -> path cache that outlives removed cgroups.

A cgroup's id (kernfs node id) is its directory's inode number, so the cache is filled by a
walk of each hierarchy and then kept current by the cgroup_mkdir/rmdir events.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tracer.kernel.mountinfo import parse_mountinfo

DEFAULT_PROC = Path("/proc")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy. id 0 is cgroup v2, 1..N are v1 hierarchies."""

    id: int
    controllers: tuple[str, ...]
    mount: str | None  # where it is mounted, None when it is not
    root: str = "/"  # the hierarchy path the mount shows (not "/" inside containers)

    @property
    def version(self) -> int:
        return 2 if self.id == 0 else 1

    @property
    def name(self) -> str:
        return "unified" if self.id == 0 else ",".join(self.controllers)


def read_hierarchies(proc: Path = DEFAULT_PROC) -> dict[int, Hierarchy]:
    """Hierarchies from /proc/self/cgroup (ids, controllers) and mountinfo (where they are).

    v1 hierarchies list their controllers (and name=X for named ones like name=systemd);
    the v2 hierarchy (id 0) lists the controllers its root's cgroup.controllers enables.
    """
    ids: dict[int, list[str]] = {}
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hid, _, rest = line.partition(":")
        ctrls, _, _ = rest.partition(":")
        if hid.isdigit():
            ids[int(hid)] = [c for c in ctrls.split(",") if c]
    mounts = _cgroup_mounts(proc)
    out = {}
    for hid, ctrls in ids.items():
        mount, root = mounts.get("cgroup2" if hid == 0 else frozenset(ctrls), (None, "/"))
        if hid == 0 and mount:
            ctrls = _v2_controllers(mount)
        out[hid] = Hierarchy(hid, tuple(sorted(ctrls)), mount, root)
    return out


def _cgroup_mounts(proc: Path) -> dict[object, tuple[str, str]]:
    """cgroup mounts keyed by "cgroup2" or by the frozenset of v1 controllers they carry."""
    mounts: dict[object, tuple[str, str]] = {}
    try:
        text = (proc / "self" / "mountinfo").read_text()
    except OSError:
        return mounts
    for m in parse_mountinfo(text):
        if m.fstype == "cgroup2":
            mounts.setdefault("cgroup2", (m.mountpoint, m.root))
        elif m.fstype == "cgroup":
            opts = {o for o in m.super_options if o not in ("rw", "ro")}
            mounts.setdefault(frozenset(opts), (m.mountpoint, m.root))
    return mounts


def memory_hierarchy(hierarchies: dict[int, Hierarchy]) -> Hierarchy | None:
    """The hierarchy that carries the memory controller."""
    for h in hierarchies.values():
        if "memory" in h.controllers:
            return h
    return None


def _v2_controllers(mount: str) -> list[str]:
    try:
        return Path(mount, "cgroup.controllers").read_text().split()
    except OSError:
        return []


def cgroup_dirs(mount: str, top: str = "/") -> Iterator[tuple[str, str]]:
    """(directory, cgroup path) of every cgroup below MOUNT, whose own path is TOP. A cgroup
    removed during the walk is simply not descended into."""
    stack = [(mount, top)]
    while stack:
        directory, path = stack.pop()
        yield directory, path
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, path.rstrip("/") + "/" + entry.name))
        except OSError:
            continue


def walk(hierarchy: Hierarchy) -> dict[int, str]:
    """id -> path (relative to the hierarchy root, starting with /) of every cgroup in it."""
    if not hierarchy.mount:
        return {}
    prefix = "" if hierarchy.root == "/" else hierarchy.root.rstrip("/")
    found: dict[int, str] = {}
    for directory, path in cgroup_dirs(hierarchy.mount, prefix or "/"):
        try:
            found[os.stat(directory).st_ino] = path
        except OSError:  # removed while we walked: it will show up as an rmdir event
            continue
    return found


class CgroupPaths:
    """Bounded (hierarchy, id) -> path map; removed cgroups stay until evicted (LRU)."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._paths: OrderedDict[tuple[int, int], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, hierarchy: int, cgroup_id: int, path: str) -> None:
        key = (hierarchy, cgroup_id)
        self._paths[key] = path
        self._paths.move_to_end(key)
        while len(self._paths) > self.limit:
            self._paths.popitem(last=False)

    def get(self, hierarchy: int, cgroup_id: int) -> str | None:
        key = (hierarchy, cgroup_id)
        path = self._paths.get(key)
        if path is not None:
            self._paths.move_to_end(key)
        return path

    def fill(self, hierarchy: Hierarchy) -> int:
        """Add every cgroup of a hierarchy found by walking it; returns how many."""
        found = walk(hierarchy)
        for cgroup_id, path in found.items():
            self.add(hierarchy.id, cgroup_id, path)
        return len(found)


class CgroupResolver:
    """Turns (hierarchy, cgroup id) into a path, rescanning a hierarchy once on a miss."""

    RESCAN_SECONDS = 1.0

    def __init__(self, hierarchies: dict[int, Hierarchy], paths: CgroupPaths,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hierarchies = hierarchies
        self.paths = paths
        self._clock = clock
        self._scanned: dict[int, float] = {}

    def fill(self, hierarchy_ids: Iterable[int]) -> int:
        return sum(self._scan(hid) for hid in hierarchy_ids)

    def seen(self, hierarchy: int, cgroup_id: int, path: str) -> None:
        self.paths.add(hierarchy, cgroup_id, path)

    def path(self, hierarchy: int, cgroup_id: int) -> str | None:
        if not cgroup_id:
            return None
        found = self.paths.get(hierarchy, cgroup_id)
        if found is None and self._clock() - self._scanned.get(hierarchy, -1e9) > self.RESCAN_SECONDS:
            self._scan(hierarchy)
            found = self.paths.get(hierarchy, cgroup_id)
        return found

    def name(self, hierarchy: int) -> str:
        h = self.hierarchies.get(hierarchy)
        return h.name if h else f"hierarchy-{hierarchy}"

    def _scan(self, hierarchy: int) -> int:
        self._scanned[hierarchy] = self._clock()
        h = self.hierarchies.get(hierarchy)
        return self.paths.fill(h) if h else 0
