"""The flight recorder: the last minutes of every memory cgroup that has a limit, kept in memory,
and an `oom_report` record for every `oom_kill`.

    sweep (every `step` s): walk the memory hierarchy, one read per cgroup (its limit); the
        cgroups with a limit in force (own or an ancestor's, below the machine's memory) get a
        ring and a sample (3 reads on v1, 4 on v2); the others cost that one read
    fine (every `fine_step` s): a sample of the rings that are hot: at or above `fine_above` of
        their limit, or heading there within one step at their last rate (at most `max_fine`,
        the nearest their limit first)
    write(oom_kill): wakes the thread, which takes a last sample of the victim's cgroup and of
        the OOMing memcg, reads their processes from /proc and queues the report
    write(memory_pressure): the reclaim stalls the BPF side summed, kept beside the rings
    drain(): the engine takes the reports on its loop (as it takes container_stats)

A ring is a flat array('q') of FIELDS per sample (72 bytes a sample) trimmed to `minutes`;
a cgroup at the base step costs ~2 KB for 5 minutes, one sampled every second ~22 KB. The
thread owns every ring: write() only queues (bounded, drops counted), so the engine's thread
never waits on a cgroup file.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from tracer import defaults
from tracer.kernel.cgroupfs import kernel_text, unescape_kernel_text
from tracer.postmortem.analysis import growth
from tracer.postmortem.cgroup_files import FIELDS, NO_COUNTER, MemoryFiles, machine_memory, processes

_N = len(FIELDS)
_USAGE, _LIMIT = FIELDS.index("usage"), FIELDS.index("limit")


@dataclass(frozen=True)
class RecorderConfig:
    minutes: float = 5.0  # history kept per cgroup
    step: float = defaults.HOUSEKEEPING_INTERVAL  # the sweep: every cgroup with a limit
    fine_step: float = 1.0  # the hot cgroups
    fine_above: float = 0.8  # hot: usage at or above this share of the limit (or heading there)
    max_cgroups: int = 4096  # rings kept; more are counted (stats.untracked), not sampled
    max_fine: int = 64  # rings sampled at the fine step at once
    max_processes: int = 50  # per report, the biggest by rss
    max_pending: int = 1024  # records waiting for the thread, reports waiting for the engine

    @property
    def horizon(self) -> float:
        return self.minutes * 60.0


@dataclass
class RecorderStats:
    sweeps: int = 0
    samples: int = 0
    tracked: int = 0  # rings at the last sweep
    untracked: int = 0  # cgroups with a limit past max_cgroups at the last sweep
    reports: int = 0
    dropped_inputs: int = 0  # oom_kill/memory_pressure records the full queue refused
    dropped_reports: int = 0  # reports the engine did not take in time (queue full, or at close)
    cpu_seconds: float = 0.0  # the recorder thread's own CPU time
    slowest_report: float = 0.0  # seconds to build one report
    errors: int = 0  # sweeps, ticks or reports that raised (the thread carries on)
    last_error: str | None = None


class Ring:
    """One cgroup's recent samples, oldest first, as a flat int64 array (FIELDS per sample)."""

    __slots__ = ("path", "directory", "limit", "data", "swept", "hot", "ratio")

    def __init__(self, path: str, directory: str, limit: int) -> None:
        self.path = path
        self.directory = directory
        self.limit = limit  # in force, from the sweep
        self.data = array("q")
        self.swept = 0  # the sweep that last saw the cgroup
        self.hot = False
        self.ratio = 0.0

    def __len__(self) -> int:
        return len(self.data) // _N

    def append(self, sample: tuple[int, ...], oldest_ms: int, max_samples: int) -> None:
        self.data.extend(sample)
        drop = 0
        while drop < len(self) - 1 and self.data[drop * _N] < oldest_ms:
            drop += 1
        drop = max(drop, len(self) - max_samples)
        if drop > 0:
            del self.data[:drop * _N]

    def last(self, back: int = 0) -> tuple[int, ...] | None:
        n = len(self)
        if back >= n:
            return None
        i = (n - 1 - back) * _N
        return tuple(self.data[i:i + _N])

    def columns(self, since_ms: int) -> list[list[int]]:
        """Per field, the values of the samples at or after SINCE_MS."""
        data = self.data
        start = 0
        while start < len(data) and data[start] < since_ms:
            start += _N
        return [list(data[start + f::_N]) for f in range(_N)]


class FlightRecorder:
    """start() → (write() of the engine's records, drain() by the engine) → close()."""

    def __init__(self, config: RecorderConfig | None = None, files: MemoryFiles | None = None) -> None:
        self.config = config or RecorderConfig()
        self.files = files if files is not None else _detect()
        self.stats = RecorderStats()
        self._rings: dict[str, Ring] = {}
        self._stalls: dict[str, deque[tuple[int, int, int, int, int]]] = {}
        self._inputs: queue.Queue[dict] = queue.Queue(self.config.max_pending)
        self._reports: queue.Queue[dict] = queue.Queue(self.config.max_pending)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ceiling = machine_memory() or (1 << 62)
        self._max_samples = int(math.ceil(self.config.horizon / self.config.fine_step)) + 8

    # --- the engine's side -----------------------------------------------------------------

    def write(self, record: dict) -> None:
        """A Sink: oom_kill and memory_pressure records are queued for the thread; never blocks."""
        kind = record.get("type")
        if kind not in ("oom_kill", "memory_pressure") or self.files is None:
            return
        try:
            self._inputs.put_nowait(record)
        except queue.Full:
            self.stats.dropped_inputs += 1
            return
        if kind == "oom_kill":
            self._wake.set()

    def flush(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def drain(self) -> Iterator[dict]:
        """The reports made since the last call (an engine source)."""
        while True:
            try:
                yield self._reports.get_nowait()
            except queue.Empty:
                return

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.files is None or self._thread is not None:
            return  # no memory controller: nothing to record, kills pass through unreported
        self._thread = threading.Thread(target=self._run, name="oomtrace-recorder", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread; reports the engine has not taken are counted as dropped."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.stats.dropped_reports += self._reports.qsize()

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        cpu0 = time.thread_time()
        config = self.config
        next_sweep = next_fine = time.monotonic()
        while not self._stop.is_set():
            self._guarded(self._take_inputs)
            now = time.monotonic()
            if now >= next_sweep:
                self._guarded(self.sweep)
                next_sweep, next_fine = now + config.step, now + config.fine_step
            elif now >= next_fine:
                self._guarded(self.sample_hot)
                next_fine = now + config.fine_step
            self.stats.cpu_seconds = time.thread_time() - cpu0
            self._wake.wait(max(0.0, min(next_sweep, next_fine) - time.monotonic()))
            self._wake.clear()

    def _guarded(self, action) -> None:
        """ACTION, counted rather than fatal when it raises: a file the kernel words in a way
        not foreseen must not end the recorder (and every later report)."""
        try:
            action()
        except Exception as e:  # noqa: BLE001 - counted in stats; the thread goes on
            self._failed(e)

    def _failed(self, e: Exception) -> str:
        self.stats.errors += 1
        self.stats.last_error = f"{type(e).__name__}: {e}"
        return self.stats.last_error

    def _take_inputs(self) -> None:
        while True:
            try:
                record = self._inputs.get_nowait()
            except queue.Empty:
                return
            if record["type"] == "oom_kill":
                self._on_kill(record)
            else:
                self._on_pressure(record)

    def sweep(self) -> None:
        """Every cgroup with a limit in force gets a ring and a sample; rings of cgroups gone
        (or whose limit was lifted) since the previous sweep are dropped."""
        self.stats.sweeps += 1
        sweep, untracked = self.stats.sweeps, 0
        assert self.files is not None
        for directory, path, limit in self.files.limits(self._ceiling):
            key = _text(path)
            ring = self._rings.get(key)
            if ring is None:
                if len(self._rings) >= self.config.max_cgroups:
                    untracked += 1
                    continue
                ring = self._rings[key] = Ring(key, directory, limit)
            ring.limit, ring.swept = limit, sweep
            self._sample(ring, _now_ms())
        for key in [k for k, r in self._rings.items() if r.swept != sweep]:
            del self._rings[key]
        self.stats.tracked, self.stats.untracked = len(self._rings), untracked
        self._trim_stalls()

    def sample_hot(self) -> None:
        hot = [r for r in self._rings.values() if r.hot]
        if len(hot) > self.config.max_fine:
            hot = sorted(hot, key=lambda r: r.ratio, reverse=True)[:self.config.max_fine]
        now = _now_ms()
        for ring in hot:
            self._sample(ring, now)

    def _sample(self, ring: Ring, t_ms: int) -> tuple[int, ...] | None:
        assert self.files is not None
        sample = self.files.sample(ring.directory, t_ms, ring.limit)
        if sample is None:
            ring.hot = False
            return None
        self.stats.samples += 1
        previous = ring.last()
        ring.append(sample, t_ms - int(self.config.horizon * 1000), self._max_samples)
        self._heat(ring, sample, previous)
        return sample

    def _heat(self, ring: Ring, sample: tuple[int, ...], previous: tuple[int, ...] | None) -> None:
        """Hot: at or above fine_above of the limit, or getting there within one step at the rate
        since the previous sample (a cgroup at 50 % growing 5 %/s is sampled finely before 80 %)."""
        limit, usage = sample[_LIMIT], sample[_USAGE]
        if not limit:
            ring.hot, ring.ratio = False, 0.0
            return
        ahead = float(usage)
        if previous is not None and sample[0] > previous[0]:
            rate = (usage - previous[_USAGE]) / (sample[0] - previous[0])  # bytes per ms
            ahead += max(0.0, rate) * self.config.step * 1000
        ring.ratio = usage / limit
        ring.hot = ahead >= self.config.fine_above * limit

    # --- pressure --------------------------------------------------------------------------

    def _on_pressure(self, record: dict) -> None:
        path = record.get("cgroup")
        if not isinstance(path, str):
            return
        stalls = self._stalls.get(path)
        if stalls is None:
            if len(self._stalls) >= self.config.max_cgroups:
                self.stats.dropped_inputs += 1
                return
            stalls = self._stalls[path] = deque(maxlen=self._max_samples)
        reclaims = sum(v for k, v in record.items() if k.endswith("_reclaims") and isinstance(v, int))
        stalls.append((int(record.get("time", 0) * 1000), int(record.get("interval", 0) * 1000),
                       int(record.get("stall_ns") or 0), int(record.get("max_stall_ns") or 0), reclaims))

    def _trim_stalls(self) -> None:
        oldest = _now_ms() - int(self.config.horizon * 1000)
        for path in list(self._stalls):
            stalls = self._stalls[path]
            while stalls and stalls[0][0] < oldest:
                stalls.popleft()
            if not stalls:
                del self._stalls[path]

    def _stall_columns(self, path: str, since_ms: int) -> dict[str, list]:
        """The reclaim stalls of PATH and the cgroups below it, summed per interval."""
        by_time: dict[tuple[int, int], list[int]] = {}
        below = path.rstrip("/") + "/"
        for key, stalls in self._stalls.items():
            if key != path and not key.startswith(below):
                continue
            for t_ms, interval, stall, longest, reclaims in stalls:
                if t_ms >= since_ms:
                    row = by_time.setdefault((t_ms, interval), [0, 0, 0])
                    row[0] += stall
                    row[1] = max(row[1], longest)
                    row[2] += reclaims
        keys = sorted(by_time)
        return {"t_ms": [k[0] for k in keys], "interval": [k[1] / 1000 for k in keys],
                "stall_ns": [by_time[k][0] for k in keys], "max_stall_ns": [by_time[k][1] for k in keys],
                "reclaims": [by_time[k][2] for k in keys]}

    # --- reports ---------------------------------------------------------------------------

    def _on_kill(self, kill: dict) -> None:
        t0 = time.monotonic()
        try:
            report = self.report(kill)
        except Exception as e:  # noqa: BLE001 - the kill still gets a report that says why it is empty
            report = {"type": "oom_report", "kill_id": kill.get("id"), "kill_time": kill.get("time"), "curves": [],
                      "notes": [f"the report could not be built: {self._failed(e)}"], "time": round(time.time(), 6)}
        self.stats.slowest_report = max(self.stats.slowest_report, time.monotonic() - t0)
        try:
            self._reports.put_nowait(report)
            self.stats.reports += 1
        except queue.Full:
            self.stats.dropped_reports += 1

    def report(self, kill: dict) -> dict:
        """The oom_report of KILL: its cgroups' curves up to a last sample taken now, their
        processes, and the kill's identity. docs/records.md describes every field."""
        assert self.files is not None
        kill_time = float(kill.get("time") or time.time())
        escaped = set(kill.get("escaped") or ())
        victim, memcg = kill.get("cgroup"), kill.get("memcg")
        roles: dict[str, list[str]] = {}
        for path, role in ((memcg, "memcg"), (victim, "victim")):
            if isinstance(path, str):
                roles.setdefault(path, []).append(role)
        notes: list[str] = []
        curves = [self._curve(path, role, kill_time, ("memcg" if "memcg" in role else "cgroup") in escaped, notes)
                  for path, role in roles.items()]
        rec: dict = {"type": "oom_report", "kill_id": kill.get("id"), "kill_time": kill_time}
        for key in _FROM_KILL:
            if key in kill:
                rec[key] = kill[key]
        rec.update(cgroup_version=self.files.version, limit=kill.get("memcg_limit") or _last_limit(curves),
                   usage_at_kill=kill.get("memcg_usage"), step=self.config.step, fine_step=self.config.fine_step,
                   fine_above=self.config.fine_above, curves=curves)
        top = memcg if isinstance(memcg, str) else victim
        if isinstance(top, str):
            self._put_processes(rec, top, "memcg" in escaped if top == memcg else "cgroup" in escaped, notes)
        else:
            notes.append("the kill names no cgroup: no curve and no processes")
        rec["notes"] = notes
        rec["time"] = round(time.time(), 6)
        rec["delay"] = round(rec["time"] - kill_time, 3)
        return rec

    def _curve(self, path: str, roles: list[str], kill_time: float, escaped: bool, notes: list[str]) -> dict:
        files = self.files
        assert files is not None
        ring = self._rings.get(path)
        directory = ring.directory if ring is not None else files.dir(_os_path(path, escaped))
        now = _now_ms()
        last = self._sample(ring, now) if ring is not None else files.sample(directory, now, 0)
        since = int((kill_time - self.config.horizon) * 1000)
        if ring is not None:
            columns = ring.columns(since)
        else:
            columns = [[v] for v in last] if last is not None else [[] for _ in FIELDS]
        if last is None:
            notes.append(f"{path} was gone when the report was built: no sample at the kill")
        if ring is None or len(columns[0]) <= (last is not None):
            notes.append(f"no samples of {path} before the kill: the recorder had not swept it yet "
                         f"(made less than {self.config.step:g} s before, or no limit in force)")
        kill_ms = kill_time * 1000
        curve: dict = {"cgroup": path, "roles": roles, "final": last is not None,
                       "t": [round((t - kill_ms) / 1000, 3) for t in columns[0]]}
        for name, values in zip(FIELDS[1:], columns[1:]):
            curve[name] = None if name.startswith("events_") and values and values[0] == NO_COUNTER else values
        curve["growth_per_s"], curve["growth_window"] = growth(curve["t"], curve["usage"], 60.0, last is not None)
        stalls = self._stall_columns(path, since)
        curve["stalls"] = {"t": [round((t - kill_ms) / 1000, 3) for t in stalls.pop("t_ms")], **stalls}
        return curve

    def _put_processes(self, rec: dict, path: str, escaped: bool, notes: list[str]) -> None:
        assert self.files is not None
        found = processes(self.files, _os_path(path, escaped), self.config.max_processes)
        rec["processes_cgroup"] = path
        rec["processes"] = [dict(p.to_record(), cgroup=_below(path, escaped, p.cgroup)) for p in found.processes]
        rec["processes_total"] = found.total
        rec["processes_truncated"] = found.truncated
        if not found.total and not os.path.isdir(self.files.dir(_os_path(path, escaped))):
            notes.append(f"{path} was gone when its processes were read")


# What an oom_report copies from its kill: the victim, the cgroups and the workload's identity.
_FROM_KILL = ("pid", "comm", "cgroup", "memcg", "constraint", "container", "pod", "memcg_container", "memcg_pod",
              "container_unknown", "memcg_container_unknown", "cgroup_unknown", "memcg_unknown", "escaped")


def _last_limit(curves: list[dict]) -> int | None:
    for curve in curves:
        if curve["limit"]:
            return curve["limit"][-1] or None
    return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _text(os_path: str) -> str:
    """A path os gave (surrogate escapes for bytes that are not UTF-8) under the records' rule."""
    return kernel_text(os.fsencode(os_path))[0]


def _os_path(path: str, escaped: bool) -> str:
    """A record's path as os wants it: undo the records' escaping when the record says so."""
    return os.fsdecode(unescape_kernel_text(path, escaped)) if escaped else path


def _below(path: str, escaped: bool, os_path: str) -> str:
    """A process's cgroup (found below PATH by a walk) in the records' form."""
    top = _os_path(path, escaped)
    return path + _text(os_path[len(top):]) if os_path.startswith(top) else _text(os_path)


def _detect() -> MemoryFiles | None:
    from tracer.stats.cgroups import Layout

    memory = Layout.detect().controllers.get("memory")
    return MemoryFiles(*memory) if memory is not None else None

