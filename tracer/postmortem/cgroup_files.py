"""What the flight recorder reads of a memory cgroup and its processes: one sample (usage,
anon, file, shmem, swap, limit, memory.events), the limit alone (the cheap sweep), and the
processes with their rss. Reads go through tracer.stats' tolerant readers (one os.read per
file, None for a missing file, Vanished for a removed cgroup): nothing here opens a file object.

v1 (memory controller hierarchy): memory.usage_in_bytes and memory.stat, whose total_* cover
the subtree (as usage does) and whose hierarchical_memory_limit is the limit in force (the
lowest of the cgroup's and its ancestors'); v1 has no memory.events (memory.failcnt would
stand for "max", but one more read per sample is ~20 % of the sweep: left out).
v2: memory.current, memory.stat (anon, file, shmem), memory.swap.current, memory.events; the
limit in force is the lowest memory.max up the tree, which the sweep passes down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from tracer.kernel.cgroupfs import cgroup_dirs, kernel_text
from tracer.stats.cgroups._files import MAX, Vanished, read, read_int, read_kv

NO_LIMIT = 0  # how a sample says "no limit" (v1's 9223372036854771712, v2's "max")
_V1_UNLIMITED = 1 << 62  # v1 writes PAGE_COUNTER_MAX pages as bytes: anything this large is none
# Sample fields, in the order a ring keeps them (all int64): time in ms, then bytes and counters.
FIELDS = ("t_ms", "usage", "anon", "file", "shmem", "swap", "limit", "events_high", "events_max")
NO_COUNTER = -1  # events_high and events_max on v1: no memory.events there
_V1_STAT = (b"total_rss", b"total_cache", b"total_shmem", b"total_swap", b"hierarchical_memory_limit")
_V2_STAT = (b"anon", b"file", b"shmem")


@dataclass(frozen=True)
class MemoryFiles:
    """Where one hierarchy's memory files are: VERSION 1 or 2, mounted at MOUNT."""

    version: int
    mount: str

    def dir(self, path: str) -> str:
        rel = path.strip("/")
        return os.path.join(self.mount, rel) if rel else self.mount

    def own_limit(self, directory: str) -> int:
        """The cgroup's own limit (NO_LIMIT for none); raises Vanished if it is gone."""
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        value = read_int(os.path.join(directory, name))
        return _limit(value)

    def sample(self, directory: str, t_ms: int, limit: int) -> tuple[int, ...] | None:
        """One sample (FIELDS) of DIRECTORY, None when it is not a memory cgroup (any more).
        LIMIT is the limit in force the sweep found (v2: not in the cgroup's own files)."""
        try:
            if self.version == 1:
                return self._sample_v1(directory, t_ms)
            return self._sample_v2(directory, t_ms, limit)
        except Vanished:
            return None

    def _sample_v1(self, d: str, t_ms: int) -> tuple[int, ...] | None:
        usage = read_int(d + "/memory.usage_in_bytes")
        if usage is None:
            return None
        rss, cache, shmem, swap, limit = stat_fields(read(d + "/memory.stat") or b"", _V1_STAT)
        return (t_ms, usage, rss, cache, shmem, swap, _limit(limit), NO_COUNTER, NO_COUNTER)

    def _sample_v2(self, d: str, t_ms: int, limit: int) -> tuple[int, ...] | None:
        usage = read_int(d + "/memory.current")
        if usage is None:
            return None
        anon, file, shmem = stat_fields(read(d + "/memory.stat") or b"", _V2_STAT)
        events = read_kv(d + "/memory.events")
        return (t_ms, usage, anon, file, shmem,
                read_int(d + "/memory.swap.current") or 0, limit, events.get(b"high", 0), events.get(b"max", 0))

    def limits(self, ceiling: int) -> Iterator[tuple[str, str, int]]:
        """(directory, cgroup path, limit in force) of every cgroup below the root whose limit,
        own or an ancestor's, is below CEILING (the machine's memory: a larger limit is never hit
        first). One read per cgroup: the cheap sweep. A cgroup removed meanwhile is left out."""
        inherited: dict[str, int] = {self.mount: NO_LIMIT}
        for directory, path in cgroup_dirs(self.mount):
            if directory == self.mount:
                continue
            try:
                own = self.own_limit(directory)
            except Vanished:
                continue
            parent = inherited.get(os.path.dirname(directory), NO_LIMIT)
            limit = min((x for x in (own, parent) if x), default=NO_LIMIT)
            inherited[directory] = limit
            if limit and limit < ceiling:
                yield directory, path, limit


def stat_fields(data: bytes, keys: tuple[bytes, ...]) -> list[int]:
    """The values of KEYS in a memory.stat (0 for a key it lacks). Four or five keys of ~80 are
    wanted: finding them is 3× faster than read_kv's dict of every line (4 µs vs 12 µs a file,
    8 ms of a 1,000-cgroup sweep)."""
    data = b"\n" + data
    out = []
    for key in keys:
        at = data.find(b"\n" + key + b" ")
        if at < 0:
            out.append(0)
            continue
        start = at + len(key) + 2
        end = data.find(b"\n", start)
        try:
            out.append(int(data[start:end if end >= 0 else len(data)]))
        except ValueError:
            out.append(0)
    return out


def _limit(value: int | None) -> int:
    if value is None or value >= _V1_UNLIMITED or value == MAX:
        return NO_LIMIT
    return value


def machine_memory(meminfo: str = "/proc/meminfo") -> int:
    """MemTotal in bytes (0 if unreadable: then every limit counts)."""
    for line in (read(meminfo) or b"").splitlines():
        if line.startswith(b"MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Process:
    pid: int
    comm: str
    rss: int  # bytes: VmRSS
    anon: int  # RssAnon
    file: int  # RssFile
    shmem: int  # RssShmem
    cgroup: str  # its cgroup path in the memory hierarchy

    def to_record(self) -> dict:
        return {"pid": self.pid, "comm": self.comm, "rss": self.rss, "anon": self.anon, "file": self.file,
                "shmem": self.shmem, "cgroup": self.cgroup}


@dataclass(frozen=True)
class ProcessList:
    processes: tuple[Process, ...]  # the biggest by rss, largest first
    total: int  # pids found in the subtree (up to the read limit)
    truncated: bool  # more cgroups or pids than were read


def processes(files: MemoryFiles, path: str, keep: int = 50, max_pids: int = 2000,
              max_dirs: int = 256, proc: str = "/proc") -> ProcessList:
    """The processes in cgroup PATH and below, with their rss from PROC/PID/status; the KEEP
    biggest. Best effort and bounded: at most MAX_DIRS cgroups and MAX_PIDS processes are read
    (a process that exits meanwhile is skipped)."""
    pids: list[tuple[int, str]] = []
    truncated = False
    for n, (directory, sub) in enumerate(cgroup_dirs(files.dir(path), path)):
        if n >= max_dirs or len(pids) >= max_pids:
            truncated = True
            break
        try:
            data = read(os.path.join(directory, "cgroup.procs")) or b""
        except Vanished:
            continue
        pids.extend((int(pid), sub) for pid in data.split())
    if len(pids) > max_pids:
        pids, truncated = pids[:max_pids], True
    found = [p for p in (_process(pid, sub, proc) for pid, sub in pids) if p is not None]
    found.sort(key=lambda p: p.rss, reverse=True)
    return ProcessList(tuple(found[:keep]), len(pids), truncated)


_STATUS_KB = {b"VmRSS": "rss", b"RssAnon": "anon", b"RssFile": "file", b"RssShmem": "shmem"}


def _process(pid: int, cgroup: str, proc: str) -> Process | None:
    try:
        data = read(f"{proc}/{pid}/status")
    except Vanished:
        return None
    if not data:
        return None
    name = b""
    sizes = dict.fromkeys(_STATUS_KB.values(), 0)
    for line in data.splitlines():
        key, _, value = line.partition(b":")
        if key == b"Name":
            name = value.strip()
        elif key in _STATUS_KB:
            sizes[_STATUS_KB[key]] = int(value.split()[0]) * 1024
    comm, _ = kernel_text(name)  # a kernel thread or zombie has no Vm* lines: its rss is 0
    return Process(pid, comm, sizes["rss"], sizes["anon"], sizes["file"], sizes["shmem"], cgroup)
