"""cgroup hierarchies of the host, and the id -> path cache that outlives removed cgroups.

A cgroup's id (kernfs node id) is its directory's inode number, so the cache is filled by a
walk of each hierarchy and then kept current by the cgroup_mkdir/rmdir events.

Text from the kernel (cgroup names and paths, task names) is bytes, not always UTF-8: it
becomes a string by one rule, kernel_text(), wherever it comes from (a walk, an event, /proc).
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tracer.kernel.mountinfo import parse_mountinfo

DEFAULT_PROC = Path("/proc")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|\\)")


def kernel_text(raw: bytes) -> tuple[str, bool]:
    """The one rule for text from the kernel: (string, escaped).

    Valid UTF-8 is taken as it is (escaped False). Otherwise every byte that is not part of a
    valid UTF-8 sequence becomes the four characters \\xNN (lower-case hex) and a backslash
    becomes \\\\ (escaped True), so the string is valid UTF-8 for every sink (JSON, msgpack,
    a terminal) and unescape_kernel_text() gives the kernel's bytes back.
    """
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace"), True


def unescape_kernel_text(text: str, escaped: bool = True) -> bytes:
    """The kernel's bytes behind a string kernel_text() made."""
    if not escaped:
        return text.encode("utf-8")
    parts = []
    pos = 0
    for m in _ESCAPE.finditer(text):
        parts.append(text[pos:m.start()].encode("utf-8"))
        parts.append(bytes([int(m.group(1), 16)]) if m.group(1) else b"\\")
        pos = m.end()
    parts.append(text[pos:].encode("utf-8"))
    return b"".join(parts)


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
    try:  # a path that is not UTF-8 keeps its bytes (surrogate escapes), as os functions want
        lines = os.fsdecode((proc / "self" / "cgroup").read_bytes()).splitlines()
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
    try:  # one mount point that is not UTF-8 must not stop the reading of the others
        text = os.fsdecode((proc / "self" / "mountinfo").read_bytes())
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
    return {cgroup_id: path for cgroup_id, (path, _) in walk_entries(hierarchy).items()}


def walk_entries(hierarchy: Hierarchy) -> dict[int, tuple[str, bool]]:
    """id -> (path, escaped) of every cgroup in a hierarchy, the path made by kernel_text() from
    the directory names' bytes: the same string a cgroup_mkdir event gives.

    Directories are opened relative to their parent's descriptor, so a path longer than
    PATH_MAX (4,096 bytes: 17 levels of 255-byte names) is walked like any other.
    """
    if not hierarchy.mount:
        return {}
    top = b"" if hierarchy.root == "/" else os.fsencode(hierarchy.root.rstrip("/"))
    found: dict[int, tuple[str, bool]] = {}
    try:
        root = os.open(hierarchy.mount, _DIR_FLAGS)
    except OSError:
        return found
    stack: list[tuple[int, bytes, Iterator[tuple[bytes, int]]]] = []
    try:
        found[os.fstat(root).st_ino] = kernel_text(top or b"/")
        stack.append((root, top, iter(_subdirs(root))))
        while stack:
            fd, prefix, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                os.close(fd)
                continue
            name, ino = child
            path = prefix + b"/" + name
            found[ino] = kernel_text(path)
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:  # removed while we walked: it will show up as an rmdir event
                continue
            stack.append((sub, path, iter(_subdirs(sub))))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return found


def _subdirs(fd: int) -> list[tuple[bytes, int]]:
    """(name, inode) of the directories in the directory open as FD."""
    try:
        with os.scandir(fd) as it:
            return [(os.fsencode(e.name), e.inode()) for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


# Why a cgroup id has no path (the *_unknown fields of a record).
EVICTED = "evicted"  # known once, dropped by its hierarchy's bounded cache, and no longer on disk
NEVER_SEEN = "never seen"  # no walk or mkdir event gave this id, and a rescan did not find it
FORGOTTEN = "evicted or never seen"  # as NEVER_SEEN, but the cache forgot some ids it evicted
TRUNCATED = "truncated"  # only a path cut by the kernel was seen, and it is never cached


class _Lru:
    """One hierarchy's bounded id -> (path, escaped) map, and why ids it lost are gone."""

    __slots__ = ("limit", "paths", "gone", "evictions", "forgot")

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.paths: OrderedDict[int, tuple[str, bool]] = OrderedDict()
        self.gone: OrderedDict[int, str] = OrderedDict()  # id -> EVICTED or TRUNCATED, bounded too
        self.evictions = 0
        self.forgot = False

    def add(self, cgroup_id: int, entry: tuple[str, bool]) -> None:
        paths = self.paths
        paths[cgroup_id] = entry
        paths.move_to_end(cgroup_id)
        if self.gone:
            self.gone.pop(cgroup_id, None)
        while len(paths) > self.limit:
            old, _ = paths.popitem(last=False)
            self.evictions += 1
            self.mark(old, EVICTED)

    def mark(self, cgroup_id: int, why: str) -> None:
        self.gone[cgroup_id] = why
        self.gone.move_to_end(cgroup_id)
        while len(self.gone) > self.limit:
            self.gone.popitem(last=False)
            self.forgot = True


class CgroupPaths:
    """(hierarchy, id) -> path: one bounded LRU per hierarchy, so churn in one hierarchy (70,000
    cgroups in name=systemd) never evicts another's paths; removed cgroups stay until evicted.

    PRIMARY hierarchies (the memory controller's and the unified one: the paths of OOM kills)
    hold up to LIMIT paths each; every other hierarchy, whose events carry their own paths and
    need the cache only to rebuild long ones, up to OTHER_LIMIT (default LIMIT // 8). With no
    PRIMARY, every hierarchy holds LIMIT. Evictions are counted per hierarchy (evictions()).
    """

    def __init__(self, limit: int = 65536, primary: Iterable[int] | None = None,
                 other_limit: int | None = None) -> None:
        self.limit = limit
        self.primary = None if primary is None else frozenset(primary)
        self.other_limit = other_limit if other_limit is not None else max(1, limit // 8)
        self._caches: dict[int, _Lru] = {}

    def __len__(self) -> int:
        return sum(len(c.paths) for c in self._caches.values())

    def _cache(self, hierarchy: int) -> _Lru:
        cache = self._caches.get(hierarchy)
        if cache is None:
            primary = self.primary is None or hierarchy in self.primary
            cache = self._caches[hierarchy] = _Lru(self.limit if primary else self.other_limit)
        return cache

    def add(self, hierarchy: int, cgroup_id: int, path: str, escaped: bool = False) -> None:
        self._cache(hierarchy).add(cgroup_id, (path, escaped))

    def get(self, hierarchy: int, cgroup_id: int) -> str | None:
        entry = self.entry(hierarchy, cgroup_id)
        return entry[0] if entry is not None else None

    def entry(self, hierarchy: int, cgroup_id: int) -> tuple[str, bool] | None:
        """(path, escaped), or None; a hit becomes the most recently used."""
        cache = self._caches.get(hierarchy)
        if cache is None:
            return None
        entry = cache.paths.get(cgroup_id)
        if entry is not None:
            cache.paths.move_to_end(cgroup_id)
        return entry

    def truncated(self, hierarchy: int, cgroup_id: int) -> None:
        """Only a cut path was seen for this id: it is not cached (it may name other cgroups
        too), but a lookup can say why the path is unknown."""
        cache = self._cache(hierarchy)
        if cgroup_id not in cache.paths:
            cache.mark(cgroup_id, TRUNCATED)

    def why_unknown(self, hierarchy: int, cgroup_id: int) -> str:
        cache = self._caches.get(hierarchy)
        if cache is None:
            return NEVER_SEEN
        return cache.gone.get(cgroup_id) or (FORGOTTEN if cache.forgot else NEVER_SEEN)

    def evictions(self) -> dict[int, int]:
        """Paths each hierarchy's cache has evicted since it was made."""
        return {hid: c.evictions for hid, c in self._caches.items()}

    def fill(self, hierarchy: Hierarchy) -> int:
        """Add every cgroup of a hierarchy found by walking it; returns how many."""
        found = walk_entries(hierarchy)
        cache = self._cache(hierarchy.id)
        for cgroup_id, entry in found.items():
            cache.add(cgroup_id, entry)
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

    def seen(self, hierarchy: int, cgroup_id: int, path: str, escaped: bool = False) -> None:
        self.paths.add(hierarchy, cgroup_id, path, escaped)

    def path(self, hierarchy: int, cgroup_id: int) -> str | None:
        return self.lookup(hierarchy, cgroup_id)[0]

    def lookup(self, hierarchy: int, cgroup_id: int) -> tuple[str | None, bool, str | None]:
        """(path, escaped, None), or (None, False, why) when the path is unknown; id 0 (no
        cgroup) gives (None, False, None)."""
        if not cgroup_id:
            return None, False, None
        entry = self.paths.entry(hierarchy, cgroup_id)
        if entry is None and self._clock() - self._scanned.get(hierarchy, -1e9) > self.RESCAN_SECONDS:
            self._scan(hierarchy)
            entry = self.paths.entry(hierarchy, cgroup_id)
        if entry is None:
            return None, False, self.paths.why_unknown(hierarchy, cgroup_id)
        return entry[0], entry[1], None

    def name(self, hierarchy: int) -> str:
        h = self.hierarchies.get(hierarchy)
        return h.name if h else f"hierarchy-{hierarchy}"

    def _scan(self, hierarchy: int) -> int:
        self._scanned[hierarchy] = self._clock()
        h = self.hierarchies.get(hierarchy)
        return self.paths.fill(h) if h else 0
