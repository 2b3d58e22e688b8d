"""The container manager: kubelet's cAdvisor Interface, fed by periodic sweeps of cgroup files.

Housekeeping (a thread of its own) sweeps every container each interval and keeps a bounded
history per container (default 2 minutes); requests are answered from that history unless
they ask for fresh figures (max_age 0). Discovery walks the hierarchies every minute, and at
once when the event engine reports a cgroup created or removed. A container whose cgroup
vanishes mid-read is dropped from the sweep, never an exception in the loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tracer import defaults
from tracer.stats import cgroups, filesystems, machine, processes
from tracer.stats.cgroups import ContainerDirs, ContainerGone, Layout, StatsOptions, naming
from tracer.stats.container_events import EventPolicy, EventStore, Watch, oom_events
from tracer.stats.conversion import spec_v2, stats_v2
from tracer.stats.interface import Interface
from tracer.stats.model import (
    ContainerInfo,
    ContainerInfoRequest,
    ContainerInfoV2,
    ContainerReference,
    ContainerSpec,
    ContainerStats,
    Event,
    EventRequest,
    FsInfoV2,
    MachineInfo,
    NetworkStats,
    ProcessStats,
    RequestOptions,
    VersionInfo,
)
from tracer.stats.network import NetworkReader
from tracer.stats.sharing import share_empty

log = logging.getLogger("oomtrace.manager")
_CREATED_MAX = 10_000  # cgroup_mkdir times kept for cgroups not discovered yet
_LATEST, _OPTIONS, _ROOTS = ContainerInfoRequest(), RequestOptions(), machine.Roots()  # immutable defaults


@dataclass(frozen=True)
class ManagerConfig:
    housekeeping_interval: float = defaults.HOUSEKEEPING_INTERVAL
    history_seconds: float = 120.0  # cAdvisor's storage_duration
    discovery_interval: float = 60.0  # cAdvisor's global housekeeping
    discovery_coalesce: float = 0.1  # after an engine cgroup event, wait this long for the rest of a burst
    machine_info_interval: float = 300.0
    stats: StatsOptions = StatsOptions()
    network: bool = True
    events: EventPolicy = field(default_factory=EventPolicy)
    kubelet_root: str = "/var/lib/kubelet"  # root_fs_info(): the filesystem of kubelet's --root-dir
    runtimes: filesystems.RuntimeDirs = filesystems.RuntimeDirs()  # where images_fs_info() asks
    # fd_count and socket_count of ProcessStats: a walk of /proc/<pid>/fd (cAdvisor's `process`
    # metrics, off by default there too), bounded per container per sweep; 0 when off.
    process_counts: bool = False
    process_count_limits: processes.FdLimits = processes.FdLimits()


@dataclass
class _Container:
    name: str
    dirs: ContainerDirs
    identity: naming.Identity
    spec: ContainerSpec
    history: deque
    named: bool = False  # the runtime's names are in (a lookup may come up empty at first)
    cgroup_time: float = 0.0  # the cgroup_mkdir event's time, else cAdvisor's rule (cgroups.creation_time)
    runtime: str = ""  # the runtime that knows the container, once named
    created: float = 0.0  # the runtime's creation and start times, when it gives them
    started: float = 0.0
    removed: bool = False  # the engine saw its rmdir: a cgroup_mkdir of the same name is a new container

    def set_times(self) -> None:
        """creation_time and start_time as cAdvisor master's handlers set them: Docker and
        podman give the runtime's Created and StartedAt; containerd its CreatedAt, and the
        cgroup's time as the start; anything else the cgroup's time and no start."""
        by_runtime = self.runtime in ("docker", "podman", "containerd")
        self.spec.creation_time = (self.created if by_runtime else 0.0) or self.cgroup_time
        self.spec.start_time = (self.started if self.runtime in ("docker", "podman")
                                else self.cgroup_time if self.runtime == "containerd" else 0.0)

    def reference(self) -> ContainerReference:
        return ContainerReference(self.identity.container_id, self.name, list(self.identity.aliases),
                                  self.identity.namespace)


@dataclass(frozen=True)
class SweepReport:
    containers: int
    gone: tuple[str, ...]
    seconds: float


class Manager(Interface):
    """The Interface (stats.interface) over periodic sweeps of cgroup files."""

    def __init__(self, config: ManagerConfig | None = None, layout: Layout | None = None,
                 roots: machine.Roots = _ROOTS, workloads: Callable[[str], Any] | None = None) -> None:
        """WORKLOADS(name) says what a runtime knows of the container in cgroup NAME (an object
        with .container: runtime, id, name, image, labels; and .pod: name, namespace, uid,
        container), or None: tracer.identity's Resolver.lookup, a dict read. It fills specs
        the way cAdvisor's runtime handlers do (labels, image, aliases [name, id])."""
        self.config = config or ManagerConfig()
        self._workloads = workloads
        self.layout = layout or Layout.detect(roots.proc)
        self.roots = roots
        self.events = EventStore(self.config.events)
        self._containers: dict[str, _Container] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._devices = cgroups.DeviceNames(str(roots.sys))
        self._network = NetworkReader(str(roots.proc)) if self.config.network else None
        self._machine: MachineInfo | None = None
        self._machine_at = 0.0
        self._engine_events = False
        self._created: dict[str, float] = {}  # name → cgroup_mkdir time, until discovery adds it
        self.fd_counts = processes.FdCounts()  # process_counts: all counted and skipped, over all sweeps
        self._listeners: list = []
        self._history_len = max(2, int(self.config.history_seconds / self.config.housekeeping_interval) + 1)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Discover, take a first sample of every container, then keep house in a thread."""
        self.discover(emit=False)
        self.sweep()
        if background:
            self._thread = threading.Thread(target=self._housekeeping, name="oomtrace-housekeeping", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._network is not None:
            self._network.close()

    def on_sweep(self, listener) -> None:
        """LISTENER(now, {name: (previous, latest)}) after every sweep (run --stats uses it)."""
        self._listeners.append(listener)

    def _housekeeping(self) -> None:
        """Sweep every interval; discover every discovery_interval, and soon after the engine
        reports cgroups made or removed (a burst is coalesced into one walk), without moving
        the sweeps: a new container is in the next sweep."""
        next_sweep = time.monotonic() + self.config.housekeeping_interval
        next_discovery = time.monotonic() + self.config.discovery_interval
        while not self._stop.is_set():
            hinted = self._wake.wait(max(0.0, min(next_sweep, next_discovery) - time.monotonic()))
            if hinted:
                self._stop.wait(self.config.discovery_coalesce)
                self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            try:
                if hinted or now >= next_discovery:
                    self.discover()
                    next_discovery = now + self.config.discovery_interval
                if now >= next_sweep:
                    self.sweep()
                    next_sweep = max(next_sweep + self.config.housekeeping_interval, now)
            except Exception:
                log.exception("housekeeping failed; trying again next interval")

    # --- discovery and sweeps --------------------------------------------------------------

    def discover(self, emit: bool = True) -> tuple[list[str], list[str]]:
        """Walk the hierarchies; returns (added, removed) names."""
        found = self.layout.names()
        with self._lock:
            known = set(self._containers)
            added = sorted(found - known)
            removed = sorted(known - found)
            for name in added:
                self._add(name)
            for name in removed:
                self._containers.pop(name, None)
        now = time.time()
        if emit and not self._engine_events:
            for name in added:
                spec = self._containers.get(name)
                self.events.add(Event(name, spec.spec.creation_time if spec else now, "containerCreation"))
            for name in removed:
                self.events.add(Event(name, now, "containerDeletion"))
        return added, removed

    def _add(self, name: str) -> _Container | None:
        dirs = self.layout.dirs(name)
        try:
            spec = cgroups.read_spec(dirs)
        except ContainerGone:
            return None
        identity = naming.identify(name)
        spec.labels = dict(identity.labels)
        c = _Container(name, dirs, identity, spec, deque(maxlen=self._history_len))
        c.cgroup_time = self._created.pop(name, 0.0) or spec.creation_time
        c.set_times()
        self._name(c)
        self._containers[name] = c
        return c

    def _name(self, c: _Container) -> None:
        """The runtime's names for C, once known: labels (the runtime's over the path's),
        image, aliases [name, id] and the runtime as namespace, as cAdvisor's handlers give
        them; a pod's kubelet labels (io.kubernetes.*) when the runtime's labels lack them
        (containerd and CRI-O keep them in annotations), which kubelet's stats need."""
        if c.named or self._workloads is None:
            return
        workload = self._workloads(c.name)
        container = getattr(workload, "container", None)
        pod = getattr(workload, "pod", None)
        if container is None and pod is None:
            return
        labels = dict(c.identity.labels)
        if container is not None:
            labels.update(container.labels)
            c.spec.image = container.image or ""
            aliases = tuple(a for a in (container.name, container.id) if a)
            c.identity = replace(c.identity, aliases=aliases or c.identity.aliases,
                                 namespace=container.runtime or c.identity.namespace)
            c.runtime = container.runtime or ""
            # Wall seconds, where the runtime's identity carries them (Docker's Created and
            # State.StartedAt, containerd's CreatedAt); without them the cgroup's time stands.
            c.created = float(getattr(container, "created", None) or 0.0)
            c.started = float(getattr(container, "started", None) or 0.0)
            c.set_times()
        if pod is not None:
            for key, value in (("io.kubernetes.pod.name", pod.name), ("io.kubernetes.pod.namespace", pod.namespace),
                               ("io.kubernetes.pod.uid", pod.uid), ("io.kubernetes.container.name", pod.container)):
                if value and key not in labels:
                    labels[key] = value
        c.spec.labels = labels
        c.named = True

    def sweep(self, names: list[str] | None = None) -> SweepReport:
        """Sample every container (or NAMES) now; vanished ones are dropped."""
        t0 = time.monotonic()
        now = time.time()
        with self._lock:
            targets = [self._containers[n] for n in (names or list(self._containers)) if n in self._containers]
            for c in targets:
                self._name(c)  # names learned since the container was found
        gone = []
        changes = {}
        for c in targets:
            try:
                stats = cgroups.read_stats(c.dirs, now, self._devices, self.config.stats)
            except ContainerGone:
                gone.append(c.name)
                continue
            self._add_network(c, stats)
            if self.config.process_counts and stats.processes is not None:
                self._count_fds(c, stats.processes)
            if c.name == "/":
                stats.filesystem = filesystems.fs_stats(self.roots.proc)
            share_empty(stats)
            previous = c.history[-1] if c.history else None
            c.history.append(stats)
            changes[c.name] = (previous, stats)
        if self._network is not None and names is None:
            self._network.end_sweep()
        if gone:
            with self._lock:
                for name in gone:
                    self._containers.pop(name, None)
            if not self._engine_events:
                for name in gone:
                    self.events.add(Event(name, now, "containerDeletion"))
        for listener in self._listeners:
            listener(now, changes)
        return SweepReport(len(targets) - len(gone), tuple(gone), time.monotonic() - t0)

    def _count_fds(self, c: _Container, stats: ProcessStats) -> None:
        counts = processes.count(cgroups.pids(c.dirs), self.config.process_count_limits, str(self.roots.proc))
        stats.fd_count, stats.socket_count = counts.fds, counts.sockets
        with self._lock:
            self.fd_counts.add(counts)

    def _add_network(self, c: _Container, stats: ContainerStats) -> None:
        if self._network is None:
            return
        pid = _first_pid(c.dirs) if c.name != "/" else None
        interfaces = self._network.host() if c.name == "/" else self._network.container(pid) if pid else None
        if interfaces is None:
            return
        c.spec.has_network = True
        stats.network = NetworkStats(first=interfaces[0] if interfaces else NetworkStats().first,
                                     interfaces=interfaces)

    # --- events from the engine --------------------------------------------------------------

    def on_record(self, record: dict) -> None:
        """An event engine record → cAdvisor events. Once the engine reports cgroups, their
        creation and deletion events come from it (at once, with the kernel's time), not from
        discovery, which then only keeps the container list current."""
        kind = record.get("type")
        stamp = float(record.get("time") or time.time())
        if kind == "oom_kill":
            for event in oom_events(record, stamp):
                self.events.add(event)
        elif kind in ("cgroup_create", "cgroup_delete"):
            self._engine_events = True
            event_type = "containerCreation" if kind == "cgroup_create" else "containerDeletion"
            self.events.add(Event(record.get("cgroup") or "/", stamp, event_type))
            if self._reads_hierarchy(record):
                self._cgroup_seen(record["cgroup"], stamp, kind == "cgroup_create")
            self._wake.set()

    def _reads_hierarchy(self, record: dict) -> bool:
        """Whether RECORD is of a whole cgroup path in a hierarchy oomtrace reads (cAdvisor's
        rule looks at those directories only)."""
        hierarchy = record.get("hierarchy") or ""
        if not record.get("cgroup") or record.get("cgroup_truncated"):
            return False
        if hierarchy == "unified":
            return any(v == 2 for v, _ in self.layout.controllers.values())
        return any(self.layout.controllers.get(c, (0, ""))[0] == 1 for c in hierarchy.split(","))

    def _cgroup_seen(self, name: str, stamp: float, made: bool) -> None:
        """The engine's mkdir time is the cgroup's creation time (kernfs stamps the files
        cAdvisor's rule reads when they are first looked up: seconds late). On v1 the earliest
        hierarchy's counts. A cgroup made again after its rmdir is a new container."""
        with self._lock:
            c = self._containers.get(name)
            if not made:
                self._created.pop(name, None)
                if c is not None:
                    c.removed = True
                return
            if c is not None and c.removed:
                self._containers.pop(name)  # discovery adds the new one, with a fresh spec
                c = None
            if c is not None:
                if stamp < c.cgroup_time or not c.cgroup_time:
                    c.cgroup_time = stamp
                    c.set_times()
                return
            known = self._created.get(name)
            self._created[name] = stamp if known is None else min(known, stamp)
            while len(self._created) > _CREATED_MAX:  # cgroups never discovered (made and removed unseen)
                self._created.pop(next(iter(self._created)))

    # --- the Interface -----------------------------------------------------------------------

    def container_info(self, name: str, request: ContainerInfoRequest = _LATEST) -> ContainerInfo:
        return self._infos([self._get(name).name], request)[0]

    def subcontainer_info(self, name: str, request: ContainerInfoRequest = _LATEST
                          ) -> list[ContainerInfo]:
        """NAME and everything below it."""
        return self._infos(self._below(name), request)

    def get_requested_containers_info(self, name: str, options: RequestOptions = _OPTIONS
                                      ) -> dict[str, ContainerInfo]:
        names = self._requested(name, options)
        infos = self._infos(names, ContainerInfoRequest(num_stats=options.count))
        return {i.reference.name: i for i in infos}

    def _infos(self, names: list[str], request: ContainerInfoRequest) -> list[ContainerInfo]:
        """ContainerInfo of each of NAMES still known, children found in one pass over all
        containers (not one pass per container: /metrics asks for all of them every sweep)."""
        with self._lock:
            wanted = {n: self._containers[n] for n in names if n in self._containers}
            children: dict[str, list[ContainerReference]] = {n: [] for n in wanted}
            for o in self._containers.values():
                parent = _parent(o.name)
                if parent in children and o.name != parent:
                    children[parent].append(o.reference())
        return [ContainerInfo(c.reference(), children[n], c.spec, _select(list(c.history), request))
                for n, c in wanted.items()]

    def container_info_v2(self, name: str, options: RequestOptions = _OPTIONS) -> dict[str, ContainerInfoV2]:
        out = {}
        for n in self._requested(name, options):
            c = self._containers.get(n)
            if c is None:
                continue
            history = list(c.history)
            count = len(history) if options.count < 0 else options.count
            pairs = zip([None, *history[:-1]], history, strict=True)
            stats = [stats_v2(c.spec, prev, cur) for prev, cur in pairs][-count:]
            out[n] = ContainerInfoV2(spec_v2(c.spec, list(c.identity.aliases), c.identity.namespace),
                                     stats if count else [])
        return out

    def docker_container(self, container_id: str, request: ContainerInfoRequest = _LATEST
                         ) -> ContainerInfo:
        """By the Docker container's name or its id (or an id prefix), as cAdvisor's docker
        handler answers."""
        with self._lock:
            match = [c for c in self._containers.values() if c.identity.namespace == "docker"
                     and container_id and (c.identity.container_id.startswith(container_id)
                                           or container_id in c.identity.aliases)]
        if len(match) != 1:
            raise ContainerGone(f"{'no' if not match else 'more than one'} docker container {container_id!r}")
        return self.container_info(match[0].name, request)

    def machine_info(self) -> MachineInfo:
        if self._machine is None or time.monotonic() - self._machine_at > self.config.machine_info_interval:
            self._machine = machine.machine_info(self.roots, network=self.config.network)
            self._machine_at = time.monotonic()
        return self._machine

    def version_info(self) -> VersionInfo:
        return machine.version_info(self.roots)

    def root_fs_info(self) -> FsInfoV2:
        """kubelet's RootFsInfo: GetDirFsInfo of its root directory. kubelet makes that directory
        at start (MkdirAll), so where it does not exist (no kubelet here) the filesystem is the
        one it would be made on: that of its nearest existing ancestor."""
        return self._fs_info(filesystems.existing_ancestor(self.config.kubelet_root))

    def images_fs_info(self) -> list[FsInfoV2]:
        """The one image filesystem of the runtime found (cAdvisor's docker-images, crio-images;
        containerd-images for containerd); NoImageFilesystem when there is none."""
        image_fs = filesystems.image_filesystem(self.config.runtimes, self.roots.proc)
        return [self._fs_info(image_fs.mount.mountpoint, image_fs)]

    def container_fs_info(self) -> FsInfoV2:
        """The filesystem of the runtime's writable layers: its image filesystem, but CRI-O's
        containers' where it keeps images in a store of their own; NoImageFilesystem without one."""
        image_fs = filesystems.image_filesystem(self.config.runtimes, self.roots.proc)
        return self._fs_info((image_fs.containers or image_fs.mount).mountpoint, image_fs)

    def _fs_info(self, path: str, image_fs: filesystems.ImageFs | None = None) -> FsInfoV2:
        """fs_info of PATH with the labels of its device, as cAdvisor's GetLabelsForDevice: root
        for the device of /, the runtime's for the image (and CRI-O's containers') device.
        IMAGE_FS: the runtime's, if already found; else looked for (none found: no label)."""
        info = filesystems.fs_info(path, self.roots.proc)
        if image_fs is None:
            try:
                image_fs = filesystems.image_filesystem(self.config.runtimes, self.roots.proc)
            except filesystems.NoImageFilesystem:
                pass
        labelled = [(filesystems.ROOT, filesystems.mount_of("/", self.roots.proc))]
        if image_fs is not None:
            labelled.append((image_fs.label, image_fs.mount))
            if image_fs.containers is not None:
                labelled.append((filesystems.CRIO_CONTAINERS, image_fs.containers))
        info.labels = sorted({label for label, m in labelled if m is not None and m.device == info.device})
        return info

    def get_dir_fs_info(self, path: str) -> FsInfoV2:
        """FsInfo of the filesystem holding PATH, with its device's labels (cAdvisor's
        GetDirFsInfo); OSError if PATH is missing."""
        return self._fs_info(path)

    def watch_events(self, request: EventRequest, queue_size: int = 1000) -> Watch:
        return self.events.watch(request, queue_size)

    def get_events(self, request: EventRequest) -> list[Event]:
        return self.events.get(request)

    def stop_watch(self, watch: Watch) -> None:
        self.events.stop_watch(watch)

    def memory_limit(self, name: str) -> int:
        """The container's memory limit in bytes; 0 when it has none."""
        c = self._containers.get(name)
        limit = c.spec.memory.limit if c is not None else 0
        return 0 if limit >= cgroups.UNLIMITED else limit

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._containers)

    # --- helpers ------------------------------------------------------------------------------

    def _get(self, name: str) -> _Container:
        with self._lock:
            c = self._containers.get(name)
        if c is None:
            raise ContainerGone(f"unknown container {name!r}")
        return c

    def _below(self, name: str) -> list[str]:
        prefix = name.rstrip("/") + "/"
        with self._lock:
            return sorted(n for n in self._containers if n == name or n.startswith(prefix) or name == "/")

    def _requested(self, name: str, options: RequestOptions) -> list[str]:
        if options.id_type not in ("name", "docker"):  # cAdvisor: "invalid request type"
            raise ValueError(f"invalid request type {options.id_type!r}")
        if options.id_type == "docker":
            name = self.docker_container(name).reference.name
        self._get(name)
        names = self._below(name) if options.recursive else [name]
        if options.max_age is not None:  # 0: collect now; else only if the latest sample is older
            stale = [n for n in names if self._age(n) > options.max_age]
            if stale:
                self.sweep(stale)
        return names

    def _age(self, name: str) -> float:
        c = self._containers.get(name)
        return time.time() - c.history[-1].timestamp if c is not None and c.history else float("inf")


def _parent(name: str) -> str:
    return "/" if name.count("/") <= 1 else name.rsplit("/", 1)[0]


def _first_pid(dirs: ContainerDirs) -> int | None:
    for d in dirs.present().values():
        data = cgroups.read(os.path.join(d, "cgroup.procs"))
        if data:
            return int(data.split(b"\n", 1)[0])
    return None


def _select(history: list[ContainerStats], request: ContainerInfoRequest) -> list[ContainerStats]:
    found = [s for s in history if (request.start is None or s.timestamp >= request.start)
             and (request.end is None or s.timestamp <= request.end)]
    if request.num_stats >= 0:
        found = found[-request.num_stats:] if request.num_stats else []
    return found
