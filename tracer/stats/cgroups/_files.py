"""Small tolerant readers of cgroup and /proc files: one os.read each, no file objects.

A file that does not exist gives None (that controller or kernel lacks it); a cgroup removed
while it is read raises Vanished, which the sweep turns into "drop this container".
"""

from __future__ import annotations

import errno
import os

from tracer.stats.model import MemoryStats, PSIData, PSIStats

MAX = 2**64 - 1  # what "max" means, as in cAdvisor (MaxUint64)
_GONE = (errno.ENODEV, errno.ESRCH, errno.ENOENT)


class Vanished(Exception):
    """The cgroup (or process) went away while being read."""


def read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 65536)
        if len(data) == 65536:  # rare: memory.stat of a huge NUMA box, io.stat of many disks
            while chunk := os.read(fd, 65536):
                data += chunk
        return data
    except OSError as e:
        if e.errno in _GONE:
            raise Vanished(path) from None
        return None
    finally:
        os.close(fd)


def read_int(path: str) -> int | None:
    data = read(path)
    if not data:
        return None
    data = data.strip()
    if data == b"max":
        return MAX
    try:
        return int(data)
    except ValueError:
        return None


def read_kv(path: str) -> dict[bytes, int]:
    """'key value' lines (memory.stat, cpu.stat, memory.events) → {key: value}."""
    data = read(path)
    if not data:
        return {}
    parts = data.split()
    try:
        return dict(zip(parts[::2], map(int, parts[1::2]), strict=False))
    except ValueError:  # a line with something else than a number: parse line by line
        out = {}
        for line in data.splitlines():
            key, _, value = line.partition(b" ")
            if value.strip().lstrip(b"-").isdigit():
                out[key] = int(value)
        return out


def read_psi(path: str) -> PSIStats | None:
    """cpu/memory/io.pressure: 'some avg10=.. avg60=.. avg300=.. total=..' and 'full ...'."""
    data = read(path)
    if not data:
        return None
    stats = PSIStats()
    for line in data.splitlines():
        kind, *pairs = line.split()
        values = dict(p.split(b"=", 1) for p in pairs if b"=" in p)
        psi = PSIData(int(values.get(b"total", 0)), float(values.get(b"avg10", 0)),
                      float(values.get(b"avg60", 0)), float(values.get(b"avg300", 0)))
        if kind == b"some":
            stats.some = psi
        elif kind == b"full":
            stats.full = psi
    return stats


# memory.stat keys cAdvisor master copies as they are named, from either version (v1 has only
# the workingset_refault ones, since 5.9, and then the cgroup's own, not total_): MemoryStats
# has a field of each name.
MEMORY_STAT_AS_IS = ("file_dirty", "file_writeback", "pgscan", "pgsteal", "workingset_refault_file",
                     "workingset_refault_anon")


def copy_as_is(st: dict[bytes, int], memory: MemoryStats) -> MemoryStats:
    """MEMORY: with the MEMORY_STAT_AS_IS figures of a parsed memory.stat."""
    for key in MEMORY_STAT_AS_IS:
        setattr(memory, key, st.get(key.encode(), 0))
    return memory


def per_node(tokens: list[bytes]) -> dict[int, int]:
    """memory.numa_stat's "N0=123 N1=45" → {0: 123, 1: 45}."""
    out = {}
    for token in tokens:
        node, _, value = token.partition(b"=")
        if node[:1] == b"N" and node[1:].isdigit() and value.isdigit():
            out[int(node[1:])] = int(value)
    return out


def count_lines(path: str) -> int | None:
    data = read(path)
    return None if data is None else data.count(b"\n")
