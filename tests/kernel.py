"""Real-kernel helpers for the root tests: memory cgroups and processes that get OOM-killed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracer.kernel import cgroupfs

# Allocates 1 MiB at a time, writing every page, once a byte arrives on stdin.
HOG = "import sys\nsys.stdin.read(1)\na = []\nwhile True:\n    a.append(b'x' * (1 << 20))\n"


def memory_root() -> Path:
    h = cgroupfs.memory_hierarchy(cgroupfs.read_hierarchies())
    assert h is not None and h.mount, "no memory controller mounted"
    return Path(h.mount)


@dataclass
class MemCgroup:
    path: str  # relative to the memory hierarchy, starting with /
    dir: Path

    @classmethod
    def create(cls, name: str, limit: int) -> MemCgroup:
        root = memory_root()
        d = root / name
        d.mkdir()
        limit_file = d / "memory.limit_in_bytes"
        (limit_file if limit_file.exists() else d / "memory.max").write_text(str(limit))
        return cls("/" + name, d)

    @property
    def id(self) -> int:
        return os.stat(self.dir).st_ino

    def remove(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.dir.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def spawn_hog(cg: MemCgroup) -> subprocess.Popen:
    """A python process inside CG, waiting for go() to start allocating."""
    procs = cg.dir / "cgroup.procs"
    hog = subprocess.Popen(
        [sys.executable, "-c", HOG], stdin=subprocess.PIPE,
        preexec_fn=lambda: (procs.write_text(str(os.getpid())), Path("/proc/self/oom_score_adj").write_text("0")),
    )
    hog.comm = Path(f"/proc/{hog.pid}/comm").read_text().strip()  # Popen returns after exec
    return hog


def oom_once(tag: str, limit: int = 16 << 20) -> tuple[MemCgroup, int]:
    """A fresh memory cgroup whose one process is OOM-killed; returns it and the victim's pid."""
    cg = MemCgroup.create(f"oomtrace-{tag}-{uuid.uuid4().hex[:6]}", limit)
    hog = spawn_hog(cg)
    go([hog])
    assert hog.wait(30) == -9
    return cg, hog.pid


def go(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.stdin.write(b"g")
        p.stdin.flush()


class CollectingSink:
    """A sink that keeps records in memory and lets a test wait for them."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self._cond = threading.Condition()

    def write(self, record: dict) -> None:
        record = dict(record, _arrived_ns=time.monotonic_ns())
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def flush(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def of_type(self, kind: str) -> list[dict]:
        with self._cond:
            return [r for r in self.records if r["type"] == kind]

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict]:
        """Wait until predicate(records) is true; return the records."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.records):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.records)


@contextmanager
def running_engine(cache_dir: Path, pressure_interval: float):
    """A started engine polling in a thread, its records collecting in engine.sink."""
    from tracer.events.engine import Engine, EngineConfig

    engine = Engine(CollectingSink(), EngineConfig(cache_dir=cache_dir, pressure_interval=pressure_interval))
    engine.start()
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        stop.set()
        thread.join(10)
        engine.close()
