"""The event engine: probes in, records out.

start() loads the probes and writes the start record; run() polls the perf buffer and the
reclaim totals until told to stop; close() detaches and flushes, after run() has returned
when run() is polling in another thread. The engine writes every record to its sink
unfiltered (filters wrap the sinks that want them: events.sinks.FilteredSink). It owns no
global state: everything hangs off the instance.
"""

from __future__ import annotations

import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tracer import __version__, defaults
from tracer.events.pressure import PressureTracker
from tracer.events.records import SCHEMA_VERSION, Clock, RecordBuilder, RecordStamper, escape_os_strings
from tracer.events.sinks import Sink
from tracer.kernel import bpf_source, cgroupfs, doctor, headers, host, probes


@dataclass(frozen=True)
class EngineConfig:
    cache_dir: Path = defaults.CACHE_DIR
    pressure_interval: float = defaults.PRESSURE_INTERVAL  # seconds; 0 turns the reclaim probes off
    page_cnt: int = 256  # perf buffer pages per CPU
    cgroup_cache_size: int = 65536  # paths per hierarchy for memory and unified; others get 1/8
    poll_ms: int = 100
    protect_from_oom: bool = True  # oom_score_adj -1000: the tracer must outlive the OOM
    node: str | None = None  # the node name in every record; None: the hostname


@dataclass
class EngineStats:
    events: int = 0
    records: int = 0
    lost: int = 0
    errors: int = 0


class Engine:
    def __init__(self, sink: Sink, config: EngineConfig | None = None,
                 sources: tuple[Callable[[], Iterable[dict]], ...] = ()) -> None:
        self.sink = sink
        self.sources = sources  # more records, taken on every loop (container stats)
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self._polling = threading.Lock()  # held by run(): close() waits for it, never frees under it
        self._stop = threading.Event()  # close() ends a run() still polling
        self._stamper = RecordStamper(self.config.node or socket.gethostname())
        self.probes: probes.Probes | None = None
        self._builder: RecordBuilder | None = None
        self._pressure: PressureTracker | None = None
        self._lost_pending = 0

    # --- start --------------------------------------------------------------------

    def start(self) -> dict:
        """Load and attach the probes; write and return the start record."""
        t0 = time.monotonic()
        doctor.require_privileges("run")  # one clear line, not a PermissionError deep inside
        if self.config.protect_from_oom:
            _set_oom_score_adj(-1000)
        facts = host.gather()
        source = headers.choose(self.config.cache_dir, facts.release)
        plan = probes.ProbePlan.from_host(facts, reclaim=self.config.pressure_interval > 0)
        self.probes = probes.load(plan, source)
        layout = bpf_source.layout()
        memory = cgroupfs.memory_hierarchy(facts.hierarchies)
        memory_id = memory.id if memory else 0
        # One bounded cache per hierarchy: churn elsewhere never evicts the memory paths.
        paths = cgroupfs.CgroupPaths(self.config.cgroup_cache_size, primary={memory_id, 0})
        resolver = cgroupfs.CgroupResolver(facts.hierarchies, paths)
        self._builder = RecordBuilder(layout, resolver, Clock.now(), memory_id)
        self._pressure = PressureTracker(resolver, memory_id, layout.names("OT_RECLAIM_"))
        self.probes.open_events(self._on_event, self._on_lost, self.config.page_cnt)
        # Walk after attaching: a cgroup made meanwhile is then seen by the walk or the probe.
        resolver.fill({memory_id, 0})
        record = {
            "type": "start",
            "time": round(time.time(), 6),
            "schema": SCHEMA_VERSION,
            "version": __version__,
            "node": self._stamper.node,
            "hostname": socket.gethostname(),
            "kernel": facts.release,
            "arch": platform.machine(),
            "headers": source.kind,
            "headers_path": source.path,
            "headers_generated_seconds": round(source.seconds, 3) if source.generated else None,
            "probes": list(self.probes.attached),
            "missing": dict(self.probes.missing),
            "notes": list(self.probes.notes),
            "memory_hierarchy": memory.name if memory else None,
            "cgroup_version": memory.version if memory else None,
            "startup_seconds": round(time.monotonic() - t0, 3),
        }
        self._emit(record)
        self.sink.flush()
        return record

    # --- run ----------------------------------------------------------------------

    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        """Poll until STOP is set, DURATION seconds pass or the sink's reader goes away."""
        with self._polling:
            if self.probes is None:
                raise RuntimeError("Engine.run() before start() or after close()")
            self._run(self.probes, stop, duration)

    def _run(self, loaded: probes.Probes, stop: threading.Event, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        interval = self.config.pressure_interval
        next_pressure = time.monotonic() + interval if interval > 0 else None
        while not (stop.is_set() or self._stop.is_set()):
            loaded.poll(self.config.poll_ms)
            self._flush_lost()
            for source in self.sources:
                for record in source():
                    self._emit(escape_os_strings(record))  # cgroup names read by os, not the kernel
            now = time.monotonic()
            if next_pressure is not None and now >= next_pressure:
                self.emit_pressure(interval)
                next_pressure = now + interval
            self.sink.flush()
            if (deadline is not None and now >= deadline) or not self.sink.alive():
                break
        loaded.poll(0)  # what is already buffered is not lost on stop
        self._flush_lost()
        self.sink.flush()

    def emit_pressure(self, interval: float) -> list[dict]:
        assert self.probes is not None and self._pressure is not None
        epoch = self.probes.bump_pressure_epoch() - 1
        records = self._pressure.records(self.probes.pressure(), epoch, interval, time.time())
        for rec in records:
            self._builder.put_path(rec, "cgroup", self._pressure.hierarchy, rec["cgroup_id"])
            self._emit(rec)
        return records

    def close(self) -> None:
        """Detach the probes and flush. A run() still polling in another thread is stopped and
        waited for first: its probes are never freed under it."""
        self._stop.set()
        with self._polling:
            if self.probes is not None:
                self.probes.close()
                self.probes = None
        self.sink.flush()

    # --- callbacks (hot path) -------------------------------------------------------

    def _on_event(self, cpu: int, data: int, size: int) -> None:
        self.stats.events += 1
        record = self._builder.decode(probes.read_event(data, size))
        if record["type"] == "error":
            self.stats.errors += 1
        self._emit(record)

    def _on_lost(self, count: int) -> None:
        self._lost_pending += count

    def _flush_lost(self) -> None:
        if self._lost_pending:
            count, self._lost_pending = self._lost_pending, 0
            self.stats.lost += count
            self._emit({"type": "lost", "time": round(time.time(), 6), "count": count,
                        "total": self.stats.lost})

    def _emit(self, record: dict) -> None:
        self.stats.records += 1
        self.sink.write(self._stamper.stamp(record))


def _set_oom_score_adj(value: int) -> None:
    try:
        Path("/proc/self/oom_score_adj").write_text(str(value))
    except OSError:
        pass  # not root: the tracer stays killable, which is all that is lost
