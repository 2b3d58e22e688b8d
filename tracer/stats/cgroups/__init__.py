"""The containers (cgroups) of this host: where they are, their spec, their stats.

One public facade over two private backends, _v1 and _v2, chosen per controller when the
Layout is made (a hybrid host has memory on v1 and nothing on v2, or anything in between).
A container's name is its cgroup path ("/" is the root). A cgroup removed while it is read
raises ContainerGone; a file a kernel does not have just leaves its fields at zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tracer.errors import NoSuchCgroup
from tracer.kernel import cgroupfs
from tracer.stats.cgroups import _v1, _v2
from tracer.stats.cgroups._files import MAX as UNLIMITED  # noqa: F401 - part of the facade
from tracer.stats.cgroups._files import Vanished, read
from tracer.stats.model import ContainerSpec, ContainerStats

# Controllers oomtrace reads, and the v2 controller that stands for each.
_V2_NAME = {"cpu": "cpu", "cpuacct": "cpu", "cpuset": "cpuset", "memory": "memory", "pids": "pids",
            "blkio": "io", "hugetlb": "hugetlb"}


class ContainerGone(NoSuchCgroup):
    """The container's cgroup does not exist (any more)."""


@dataclass(frozen=True)
class Layout:
    """Where each controller is mounted: controller → (cgroup version, mount directory)."""

    controllers: dict[str, tuple[int, str]]
    hugetlb_sizes: tuple[str, ...] = ()  # "2MB", "1GB": listed once, not per container per sweep

    def __post_init__(self) -> None:
        if not self.hugetlb_sizes and "hugetlb" in self.controllers:
            object.__setattr__(self, "hugetlb_sizes", _hugetlb_sizes(self.controllers["hugetlb"][1]))

    @classmethod
    def detect(cls, proc: Path = Path("/proc"), root: str = "") -> Layout:
        """The hierarchies PROC/self/cgroup and PROC/self/mountinfo show. ROOT, if given, is put
        before every mount point (as psutil's PROCFS_PATH): a tree of files captured from a host,
        with PROC usually ROOT/proc."""
        hierarchies = cgroupfs.read_hierarchies(proc)
        found: dict[str, tuple[int, str]] = {}
        for h in hierarchies.values():
            if h.mount and h.version == 1:
                for c in h.controllers:
                    if c in _V2_NAME:
                        found[c] = (1, root + h.mount)
        unified = hierarchies.get(0)
        if unified is not None and unified.mount:
            enabled = unified.controllers if not root else \
                (read(root + unified.mount + "/cgroup.controllers") or b"").decode().split()
            for c, v2 in _V2_NAME.items():
                if c not in found and v2 in enabled:
                    found[c] = (2, root + unified.mount)
        return cls(found)

    @classmethod
    def unified(cls, mount: str) -> Layout:
        """A pure cgroup v2 host (or a fixture tree of one) mounted at MOUNT."""
        enabled = (read(mount + "/cgroup.controllers") or b"").decode().split()
        return cls({c: (2, mount) for c, v2 in _V2_NAME.items() if v2 in enabled})

    def dirs(self, name: str) -> ContainerDirs:
        rel = name.strip("/")
        return ContainerDirs(name, {c: (v, os.path.join(m, rel) if rel else m)
                                    for c, (v, m) in self.controllers.items()}, self.hugetlb_sizes)

    def names(self) -> set[str]:
        """Every container (cgroup path) of every hierarchy oomtrace reads."""
        mounts = {m for _, m in self.controllers.values()}
        return {path for mount in mounts for _, path in cgroupfs.cgroup_dirs(mount)}


@dataclass(frozen=True)
class StatsOptions:
    per_cpu: bool = True  # cpuacct.usage_percpu (v1 only: v2 has no per-CPU figures)
    diskio: bool = True
    hugetlb: bool = True
    # Off by default, as in cAdvisor and kubelet (its memory_numa and cpuset metrics): two more
    # files per container, and six maps per sample (about 15 MB more for 1,000 containers' history).
    numa: bool = False  # memory.numa_stat
    cpuset: bool = False  # cpuset.memory_migrate (v1 only)


@dataclass
class ContainerDirs:
    """One container's directory per controller (the same on v2, one per hierarchy on v1)."""

    name: str
    by_controller: dict[str, tuple[int, str]]
    hugetlb_sizes: tuple[str, ...] = ()
    _present: dict[str, str] = field(default_factory=dict)

    def present(self) -> dict[str, str]:
        """controller → directory, for the controllers in which this cgroup exists."""
        if not self._present:
            self._present = {c: d for c, (_, d) in self.by_controller.items() if os.path.isdir(d)}
        return self._present

    def version(self, controller: str) -> int:
        return self.by_controller[controller][0]


def read_spec(dirs: ContainerDirs) -> ContainerSpec:
    present = dirs.present()
    if not present:
        raise ContainerGone(f"no cgroup {dirs.name}")
    spec = ContainerSpec(creation_time=creation_time(dirs),
                         has_network=dirs.name == "/",
                         has_filesystem=dirs.name == "/")
    try:
        if "cpu" in present or "cpuacct" in present:
            spec.has_cpu = True
            if dirs.version("cpu" if "cpu" in present else "cpuacct") == 2:
                spec.cpu = _v2.cpu_spec(present.get("cpu") or present["cpuacct"])
            else:
                spec.cpu = _v1.cpu_spec(present.get("cpu"), present.get("cpuset"))
        if "memory" in present:
            spec.has_memory = True
            spec.memory = (_v2 if dirs.version("memory") == 2 else _v1).memory_spec(present["memory"])
        if "pids" in present:
            spec.has_processes = True
            spec.processes = (_v2 if dirs.version("pids") == 2 else _v1).process_spec(present["pids"])
        spec.has_diskio = "blkio" in present
        spec.has_hugetlb = "hugetlb" in present
    except Vanished:
        raise ContainerGone(f"cgroup {dirs.name} was removed while its spec was read") from None
    return spec


def read_stats(dirs: ContainerDirs, now: float, device_name, options: StatsOptions | None = None) -> ContainerStats:
    """One sample. Raises ContainerGone if the cgroup vanished meanwhile."""
    present = dirs.present()
    if not present:
        raise ContainerGone(f"no cgroup {dirs.name}")
    options = options or StatsOptions()
    stats = ContainerStats(timestamp=now)
    try:
        cpu, cpuacct = present.get("cpu"), present.get("cpuacct")
        if cpu or cpuacct:
            if dirs.version("cpu" if cpu else "cpuacct") == 2:
                stats.cpu = _v2.cpu_stats(cpu or cpuacct or "")
            else:
                stats.cpu = _v1.cpu_stats(cpu, cpuacct, options.per_cpu)
        memory = present.get("memory")
        if memory:
            if dirs.version("memory") == 2:
                stats.memory = _v2.memory_stats(memory, root=dirs.name == "/", numa=options.numa)
            else:
                stats.memory = _v1.memory_stats(memory, numa=options.numa)
            stats.oom_events = stats.memory.events.oom_kill
        pids = present.get("pids")
        if pids:
            if dirs.version("pids") == 2:
                stats.processes = _v2.process_stats(pids)
            else:
                stats.processes = _v1.process_stats(pids, cpu or memory or pids)
        cpuset = present.get("cpuset")
        if cpuset and options.cpuset and dirs.version("cpuset") == 1:  # v2 has no memory_migrate
            stats.cpuset.memory_migrate = _v1.memory_migrate(cpuset)
        blkio = present.get("blkio")
        if blkio and options.diskio:
            backend = _v2 if dirs.version("blkio") == 2 else _v1
            stats.diskio = backend.diskio_stats(blkio, device_name)
        hugetlb = present.get("hugetlb")
        if hugetlb and options.hugetlb and dirs.hugetlb_sizes:
            backend = _v2 if dirs.version("hugetlb") == 2 else _v1
            stats.hugetlb = backend.hugetlb_stats(hugetlb, dirs.hugetlb_sizes)
    except Vanished:
        raise ContainerGone(f"cgroup {dirs.name} was removed while it was read") from None
    if not os.path.isdir(next(iter(present.values()))):  # removed before its files were opened
        raise ContainerGone(f"cgroup {dirs.name} was removed")
    return stats


def pids(dirs: ContainerDirs) -> list[int]:
    """The processes in the cgroup itself (cgroup.procs of its cpu directory, as cAdvisor reads
    them for its process metrics; else of any controller's)."""
    present = dirs.present()
    directory = present.get("cpu") or next(iter(present.values()), None)
    try:
        data = read(directory + "/cgroup.procs") if directory else None
    except Vanished:
        return []
    return [int(p) for p in (data or b"").split()]


def _hugetlb_sizes(mount: str, kernel: str = "/sys/kernel/mm/hugepages") -> tuple[str, ...]:
    """The page sizes the hugetlb controller has files for: the root lists them on v1, a v2 root
    has none, so the kernel's own list (hugepages-2048kB → 2MB) is the fallback."""
    try:
        names = os.listdir(mount)
        sizes = {n.split(".")[1] for n in names if n.startswith("hugetlb.") and n.count(".") >= 2}
        if not sizes:
            sizes = {_size_name(int(n[10:-2])) for n in os.listdir(kernel) if n.startswith("hugepages-")}
    except (OSError, ValueError):
        return ()
    return tuple(sorted(sizes))


def _size_name(kb: int) -> str:
    for unit, factor in (("GB", 1 << 20), ("MB", 1 << 10)):
        if kb >= factor:
            return f"{kb // factor}{unit}"
    return f"{kb}KB"


def boot_minute() -> float:
    """Boot time as cAdvisor takes it: now − uptime in whole seconds (sysinfo), truncated to
    the minute."""
    try:
        uptime = int(float((read("/proc/uptime") or b"0").split()[0]))
    except (ValueError, IndexError):
        return 0.0
    return float(int(time.time() - uptime) // 60 * 60)


def creation_time(dirs: ContainerDirs) -> float:
    """cAdvisor's rule (container/common/helpers.go getSpecInternal): the earliest mtime of the
    cgroup's directories and of their cgroup.clone_children (v1) / cgroup.events (v2), floored
    at boot_minute(); 0 when none could be read. kernfs stamps all three when their inode is
    first looked up, not at mkdir: the Manager prefers the cgroup_mkdir event's time."""
    times = []
    for c, d in dirs.present().items():
        marker = "cgroup.events" if dirs.version(c) == 2 else "cgroup.clone_children"
        for path in (d, os.path.join(d, marker)):
            try:
                times.append(os.stat(path).st_mtime)
            except OSError:
                continue
    return max(min(times), boot_minute()) if times else 0.0


class DeviceNames:
    """major:minor → /dev/NAME, from /sys/dev/block, cached (disks rarely come and go)."""

    def __init__(self, sys_root: str = "/sys") -> None:
        self.sys_root = sys_root
        self._names: dict[tuple[int, int], str] = {}

    def __call__(self, major: int, minor: int) -> str:
        key = (major, minor)
        name = self._names.get(key)
        if name is None:
            uevent = read(f"{self.sys_root}/dev/block/{major}:{minor}/uevent") or b""
            dev = next((line[8:] for line in uevent.splitlines() if line.startswith(b"DEVNAME=")), b"")
            name = self._names[key] = "/dev/" + dev.decode() if dev else ""
        return name
