"""Real-kernel helpers for the root tests: processes that get OOM-killed in test cgroups
(tests.cgroups.Cgroup), and an engine whose records collect in memory."""

from __future__ import annotations

import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tests.cgroups import Cgroup

# Allocates 1 MiB at a time, writing every page (run by Cgroup.spawn once go() sends its byte).
HOG = "a = []\nwhile True:\n    a.append(b'x' * (1 << 20))\n"


def spawn_hog(cg: Cgroup) -> subprocess.Popen:
    """A python process inside CG, waiting for go() to start allocating; .comm is its name."""
    hog = cg.spawn(HOG, start=False)
    hog.comm = Path(f"/proc/{hog.pid}/comm").read_text().strip()  # Popen returns after exec
    return hog


def oom_once(tag: str, limit: int = 16 << 20) -> tuple[Cgroup, int]:
    """A fresh memory cgroup (memory hierarchy only) whose one process is OOM-killed; returns
    it and the victim's pid."""
    cg = Cgroup.memory(tag, limit)
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
def running_engine(cache_dir: Path, pressure_interval: float, **config):
    """A started engine polling in a thread, its records collecting in engine.sink; CONFIG:
    more EngineConfig fields."""
    from tracer.events.engine import Engine, EngineConfig

    engine = Engine(CollectingSink(), EngineConfig(cache_dir=cache_dir, pressure_interval=pressure_interval, **config))
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
