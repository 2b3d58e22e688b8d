"""The one test cgroup helper: /oomtrace-<tag>-<6 hex> in every controller hierarchy oomtrace
reads (v1 or v2), or in the memory hierarchy alone for the event-engine tests.

    cg = Cgroup.create("mem", memory_limit_in_bytes=str(256 << 20), pids_max="50")
    cg = Cgroup.memory("one", 24 << 20)          # memory hierarchy only; limit on v1 or v2
    proc = cg.spawn(code)                         # a python child inside it from its first instruction
    ctr = cg.child("ctr")                         # /oomtrace-one-…/ctr in the same hierarchies
    cg.remove()                                   # children first, retrying while processes leave

Every test cgroup's name starts with PREFIX, so a leftover is easy to find:
    find /sys/fs/cgroup -maxdepth 3 -name 'oomtrace-*'
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tracer.stats.cgroups import Layout

PREFIX = "/oomtrace-"
MEMORY = ("memory",)
# Cgroups this process made and has not removed yet (by name): what tests/conftest.py removes,
# and reports, when the session ends.
LIVE: dict[str, Cgroup] = {}


@dataclass
class Cgroup:
    name: str  # the container name, relative to every hierarchy's root: /oomtrace-<tag>-<hex>[/child]
    dirs: dict[str, str]  # controller → directory

    @classmethod
    def create(cls, tag: str, layout: Layout | None = None, *, controllers: Iterable[str] | None = None,
               **files: str) -> Cgroup:
        """A new cgroup in the hierarchy of each of CONTROLLERS (default: all in LAYOUT).

        FILES: controller file name → value, written where the file exists. A keyword's first
        underscore stands for the dot (memory_limit_in_bytes, cpu_cfs_quota_us, pids_max);
        a name with dots can be passed as **{"blkio.throttle.read_bps_device": "254:0 1"}.
        """
        layout = layout or Layout.detect()
        wanted = set(controllers) if controllers is not None else set(layout.controllers)
        missing = wanted - set(layout.controllers)
        assert not missing, f"no hierarchy for {sorted(missing)}: {layout}"
        name = f"{PREFIX}{tag}-{uuid.uuid4().hex[:6]}"
        cg = cls(name, {c: os.path.join(mount, name.lstrip("/"))
                        for c, (_, mount) in layout.controllers.items() if c in wanted})
        LIVE[name] = cg
        try:
            cg._make()
            for key, value in files.items():
                cg.write(key if "." in key else key.replace("_", ".", 1), value)
        except BaseException:
            cg.remove()
            raise
        return cg

    @classmethod
    def memory(cls, tag: str, limit: int | None = None, layout: Layout | None = None) -> Cgroup:
        """A cgroup in the memory hierarchy only, with LIMIT bytes as memory.limit_in_bytes (v1)
        or memory.max (v2); None leaves the default (no limit)."""
        layout = layout or Layout.detect()
        cg = cls.create(tag, layout, controllers=MEMORY)
        if limit is not None:
            v1 = layout.controllers["memory"][0] == 1
            cg.write("memory.limit_in_bytes" if v1 else "memory.max", str(limit))
        return cg

    def child(self, name: str) -> Cgroup:
        """A sub-cgroup NAME in the same hierarchies (no limits of its own)."""
        sub = Cgroup(f"{self.name}/{name}", {c: os.path.join(d, name) for c, d in self.dirs.items()})
        sub._make()
        return sub

    @property
    def path(self) -> str:
        """The name, as the engine's records call it (cgroup, memcg)."""
        return self.name

    @property
    def dir(self) -> Path:
        """The cgroup's directory in the memory hierarchy."""
        return Path(self.dirs["memory"])

    @property
    def id(self) -> int:
        """The memory cgroup's id: its directory's inode (kernfs node id)."""
        return os.stat(self.dirs["memory"]).st_ino

    def unique_dirs(self) -> list[str]:
        """One directory per hierarchy (on v2, or cpu,cpuacct mounted together, controllers share one)."""
        return list(dict.fromkeys(self.dirs.values()))

    def write(self, filename: str, value: str) -> None:
        """Write VALUE to FILENAME in the first of the cgroup's directories that has it."""
        for d in self.unique_dirs():
            path = os.path.join(d, filename)
            if os.path.exists(path):
                with open(path, "w") as f:
                    f.write(value)
                return
        raise FileNotFoundError(f"{filename} in no directory of {self.name}")

    def add(self, pid: int) -> None:
        """Move process PID into this cgroup in every hierarchy."""
        for d in self._join_order():
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def spawn(self, code: str, *, start: bool = True) -> subprocess.Popen:
        """A python child that is in this cgroup (and has oom_score_adj 0) before its first
        instruction. It runs CODE once a byte arrives on its stdin: at once, or with START
        false when the test sends it (tests.kernel.go)."""
        procs = [os.path.join(d, "cgroup.procs") for d in self._join_order()]

        def join() -> None:  # in the child, between fork and exec
            for path in procs:
                with open(path, "w") as f:
                    f.write(str(os.getpid()))
            _killable()

        proc = subprocess.Popen([sys.executable, "-c", "import sys\nsys.stdin.read(1)\n" + code],
                                stdin=subprocess.PIPE, preexec_fn=join)
        if start:
            proc.stdin.write(b"g")
            proc.stdin.flush()
        return proc

    def remove(self, timeout: float = 5.0) -> None:
        """rmdir this cgroup (and any sub-cgroups, deepest first) in every hierarchy, retrying
        while its processes exit. Raises OSError if it is still busy after TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        for top in self.unique_dirs():
            for d in sorted(_subtree(top), key=lambda p: p.count("/"), reverse=True):
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:  # processes still leaving
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
        LIVE.pop(self.name, None)

    @classmethod
    def leftovers(cls, tag: str, layout: Layout | None = None) -> list[Cgroup]:
        """Cgroups of an earlier run that made /oomtrace-TAG-… and did not remove them."""
        layout = layout or Layout.detect()
        found: dict[str, dict[str, str]] = {}
        for c, (_, mount) in layout.controllers.items():
            try:
                entries = os.listdir(mount)
            except OSError:
                continue
            for entry in entries:
                if entry.startswith(f"{PREFIX.lstrip('/')}{tag}-") and os.path.isdir(os.path.join(mount, entry)):
                    found.setdefault("/" + entry, {})[c] = os.path.join(mount, entry)
        return [cls(name, dirs) for name, dirs in sorted(found.items())]

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.unique_dirs())

    def _make(self) -> None:
        for d in self.unique_dirs():
            os.mkdir(d)
            _inherit_cpuset(d)

    def _join_order(self) -> list[str]:
        """cpuset first, so that no instruction runs outside the cgroup's CPUs once it counts."""
        cpuset = self.dirs.get("cpuset")
        return sorted(self.unique_dirs(), key=lambda d: d != cpuset)


def _subtree(top: str) -> list[str]:
    return [directory for directory, _, _ in os.walk(top)]


def _inherit_cpuset(d: str) -> None:
    """A new v1 cpuset cgroup has no CPUs or memory nodes, and takes no task until given its parent's."""
    parent = os.path.dirname(d)
    for name in ("cpuset.cpus", "cpuset.mems"):
        path = os.path.join(d, name)
        try:
            with open(os.path.join(parent, name)) as f:
                value = f.read().strip()
            with open(path) as f:
                own = f.read().strip()
        except FileNotFoundError:  # not a cpuset hierarchy (or the v2 root, which has no cpuset.cpus)
            continue
        if value and not own:  # v2: an empty cpuset already means the parent's
            with open(path, "w") as f:
                f.write(value)


def _killable() -> None:
    """A child of the test runner must not inherit the tracer's oom_score_adj of -1000."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("0")
