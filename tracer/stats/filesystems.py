"""Filesystems: what is mounted (mountinfo), how full (statvfs), how busy (/proc/diskstats),
and how much a directory holds (a walk, deduplicated by inode, run in its own thread).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tracer.kernel.mountinfo import Mount, parse_mountinfo
from tracer.stats.model import FsInfo, FsInfoV2, FsStats

_PSEUDO = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs", "securityfs",
           "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "nsfs", "rpc_pipefs",
           "selinuxfs", "efivarfs", "devtmpfs"}


def mounts(proc: Path = Path("/proc")) -> list[Mount]:
    try:
        return parse_mountinfo((proc / "self/mountinfo").read_text())
    except OSError:
        return []


def _device_mounts(proc: Path) -> list[tuple[Mount, os.statvfs_result]]:
    """The first mount of each block device, with its statvfs: one mountinfo read in all."""
    out: dict[str, tuple[Mount, os.statvfs_result]] = {}
    for m in mounts(proc):
        if m.fstype in _PSEUDO or not m.device.startswith("/dev/") or m.device in out:
            continue
        try:
            out[m.device] = (m, os.statvfs(m.mountpoint))
        except OSError:
            continue
    return list(out.values())


def machine_filesystems(proc: Path = Path("/proc")) -> list[FsInfo]:
    """Block-device filesystems, one per device (cAdvisor's MachineInfo.Filesystems)."""
    return [FsInfo(m.device, st.f_blocks * st.f_frsize, m.fstype, st.f_files, st.f_files > 0)
            for m, st in _device_mounts(proc)]


def mount_of(path: str, proc: Path = Path("/proc")) -> Mount | None:
    """The mount holding PATH: the longest mount point that is a prefix of it."""
    real = os.path.realpath(path)
    best = None
    for m in mounts(proc):
        point = m.mountpoint.rstrip("/") or "/"
        if (real == point or real.startswith(point.rstrip("/") + "/") or point == "/") and (
                best is None or len(point) >= len(best.mountpoint)):
            best = m
    return best


def fs_info(path: str, proc: Path = Path("/proc"), labels: tuple[str, ...] = ()) -> FsInfoV2:
    """statvfs of the filesystem holding PATH (cAdvisor's GetDirFsInfo); OSError if PATH is missing."""
    st = os.statvfs(path)
    m = mount_of(path, proc)
    return FsInfoV2(timestamp=time.time(), device=m.device if m else "", mountpoint=m.mountpoint if m else "",
                    capacity=st.f_blocks * st.f_frsize, available=st.f_bavail * st.f_frsize,
                    usage=(st.f_blocks - st.f_bfree) * st.f_frsize, labels=list(labels),
                    inodes=st.f_files or None, inodes_free=st.f_ffree if st.f_files else None)


def fs_stats(proc: Path = Path("/proc")) -> list[FsStats]:
    """The root container's Filesystem stats: capacity and /proc/diskstats counters per device."""
    disk = _diskstats(proc)
    out = []
    for m, st in _device_mounts(proc):
        io = disk.get((m.major, m.minor), [0] * 11)
        out.append(FsStats(device=m.device, type=m.fstype, limit=st.f_blocks * st.f_frsize,
                           usage=(st.f_blocks - st.f_bfree) * st.f_frsize, available=st.f_bavail * st.f_frsize,
                           has_inodes=st.f_files > 0, inodes=st.f_files, inodes_free=st.f_ffree,
                           reads_completed=io[0], reads_merged=io[1], sectors_read=io[2], read_time=io[3],
                           writes_completed=io[4], writes_merged=io[5], sectors_written=io[6], write_time=io[7],
                           io_in_progress=io[8], io_time=io[9], weighted_io_time=io[10]))
    return out


def _diskstats(proc: Path) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    try:
        text = (proc / "diskstats").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 14:
            out[(int(parts[0]), int(parts[1]))] = [int(x) for x in parts[3:14]]
    return out


@dataclass(frozen=True)
class DirUsage:
    path: str
    bytes: int  # allocated (st_blocks × 512), each inode counted once
    inodes: int
    seconds: float  # how long the walk took
    errors: int  # entries that vanished or could not be read during the walk


def dir_usage(path: str) -> DirUsage:
    """Walk PATH without crossing into other filesystems; hard links count once."""
    t0 = time.monotonic()
    seen: set[tuple[int, int]] = set()
    total = errors = 0
    try:
        root_dev = os.lstat(path).st_dev
    except OSError:
        raise FileNotFoundError(path) from None
    stack = [path]
    while stack:
        directory = stack.pop()
        try:
            it = os.scandir(directory)
        except OSError:
            errors += 1
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    errors += 1
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                    stack.append(entry.path)
    try:
        total += os.lstat(path).st_blocks * 512
    except OSError:
        errors += 1
    return DirUsage(path, total, len(seen) + 1, time.monotonic() - t0, errors)


class DirUsageWalker:
    """Directory usage computed in a thread of its own and cached: a slow walk never holds up
    a stats sweep (cAdvisor's fsHandler forked du on the hot path for years)."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._paths: dict[str, float] = {}  # path → when it was last walked
        self._results: dict[str, DirUsage] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="oomtrace-du", daemon=True)
        self._thread.start()

    def request(self, path: str) -> DirUsage | None:
        """The latest result for PATH (None until its first walk ends); PATH is walked from now on."""
        with self._lock:
            if path not in self._paths:
                self._paths[path] = 0.0
                self._wake.set()
            return self._results.get(path)

    def wait(self, path: str, timeout: float) -> DirUsage | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.request(path)
            if result is not None:
                return result
            time.sleep(0.01)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due = [p for p, t in self._paths.items() if time.monotonic() - t >= self.interval or not t]
            for path in due:
                try:
                    result = dir_usage(path)
                except FileNotFoundError:
                    with self._lock:  # gone: stop walking it
                        self._paths.pop(path, None)
                        self._results.pop(path, None)
                    continue
                with self._lock:
                    self._results[path] = result
                    self._paths[path] = time.monotonic()
            self._wake.wait(min(self.interval, 1.0))
            self._wake.clear()
