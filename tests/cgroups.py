"""A test cgroup that exists in every controller hierarchy oomtrace reads (v1 or v2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

from tracer.stats.cgroups import Layout


@dataclass
class Cgroup:
    name: str  # the container name: /oomtrace-test-...
    dirs: dict[str, str]  # controller → directory

    @classmethod
    def create(cls, tag: str, layout: Layout | None = None, **files: str) -> Cgroup:
        """FILES: controller file name (dots as underscores) → value, written where it exists."""
        layout = layout or Layout.detect()
        name = f"/oomtrace-test-{tag}-{uuid.uuid4().hex[:6]}"
        dirs = {}
        for controller, (_, mount) in layout.controllers.items():
            d = os.path.join(mount, name.lstrip("/"))
            if d not in dirs.values():
                os.makedirs(d, exist_ok=True)
                _inherit_cpuset(d, mount)
            dirs[controller] = d
        cg = cls(name, dirs)
        for key, value in files.items():
            cg.write(key.replace("_", ".", 1) if "." not in key else key, value)
        return cg

    def write(self, filename: str, value: str) -> None:
        for d in set(self.dirs.values()):
            path = os.path.join(d, filename)
            if os.path.exists(path):
                with open(path, "w") as f:
                    f.write(value)
                return
        raise FileNotFoundError(filename)

    def add(self, pid: int) -> None:
        for d in set(self.dirs.values()):
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def spawn(self, code: str) -> subprocess.Popen:
        """A python child that joins this cgroup before running CODE (it waits for a byte on stdin)."""
        proc = subprocess.Popen([sys.executable, "-c", "import sys\nsys.stdin.read(1)\n" + code],
                                stdin=subprocess.PIPE, preexec_fn=_killable)
        self.add(proc.pid)
        proc.stdin.write(b"g")
        proc.stdin.flush()
        return proc

    def remove(self) -> None:
        for d in sorted(set(self.dirs.values()), key=len, reverse=True):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes still leaving
                    time.sleep(0.05)


def _inherit_cpuset(d: str, mount: str) -> None:
    """A new v1 cpuset cgroup has no CPUs or memory nodes, and takes no task until given some."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        path = os.path.join(d, name)
        if not os.path.exists(os.path.join(mount, name)):  # v2: an empty cpuset means the parent's
            continue
        if os.path.exists(path) and not open(path).read().strip():
            with open(path, "w") as f:
                f.write(open(os.path.join(mount, name)).read().strip())


def _killable() -> None:
    """A child of the test runner must not inherit the tracer's oom_score_adj of -1000."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("0")
