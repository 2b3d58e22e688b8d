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

from tracer.errors import OomtraceError
from tracer.kernel.mountinfo import Mount, parse_mountinfo
from tracer.stats.model import FsInfo, FsInfoV2, FsStats

# cAdvisor's labels (fs/fs.go), and oomtrace's for containerd, which cAdvisor does not label
# (kubelet asks containerd over CRI, which answers its snapshotter's directory).
ROOT, DOCKER_IMAGES, CRIO_IMAGES, CRIO_CONTAINERS = "root", "docker-images", "crio-images", "crio-containers"
CONTAINERD_IMAGES = "containerd-images"
_DOCKER_DRIVER_DIRS = ("devicemapper", "btrfs", "aufs", "overlay", "overlay2", "zfs")  # cAdvisor's list
_SNAPSHOTTERS = ("overlayfs", "native", "btrfs", "zfs", "devmapper", "erofs")  # containerd's, overlayfs its default


class NoImageFilesystem(OomtraceError):
    """No container runtime's image filesystem was found (kubelet reports the same as an error)."""


@dataclass(frozen=True)
class RuntimeDirs:
    """Where to ask the runtimes where their images are."""

    docker_sockets: tuple[str, ...] = ("/var/run/docker.sock",)
    crio_sockets: tuple[str, ...] = ("/var/run/crio/crio.sock",)
    containerd_roots: tuple[str, ...] = ("/var/lib/containerd",)
    timeout: float = 1.0  # seconds per socket step


@dataclass(frozen=True)
class ImageFs:
    label: str  # DOCKER_IMAGES, CRIO_IMAGES or CONTAINERD_IMAGES
    runtime_dir: str  # the runtime's root (Docker's DockerRootDir, CRI-O's storage root, containerd's root)
    mount: Mount  # the filesystem labelled
    containers: Mount | None = None  # CRI-O with a separate image store: its containers' filesystem

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
    return _holding(path, mounts(proc))


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


# --- the runtimes' image filesystems ------------------------------------------------------------

def image_filesystem(dirs: RuntimeDirs, proc: Path = Path("/proc")) -> ImageFs:
    """The image filesystem of the first runtime found: Docker (dockerd answers its socket),
    CRI-O (crio answers its socket), containerd (its root directory). Raises NoImageFilesystem."""
    found = mounts(proc)
    for find in (_docker, _crio, _containerd):
        fs = find(dirs, found)
        if fs is not None:
            return fs
    raise NoImageFilesystem("no container runtime found: no dockerd on " + ", ".join(dirs.docker_sockets)
                            + ", no crio on " + ", ".join(dirs.crio_sockets) + ", no containerd root in "
                            + ", ".join(dirs.containerd_roots))


def _ask(sockets: tuple[str, ...], url: str, timeout: float) -> dict | None:
    """The JSON object a runtime's API answers on the first socket that answers, else None."""
    from tracer.identity._docker import get_json
    from tracer.identity.model import Unresolved

    for sock in sockets:
        try:
            body = get_json(sock, url, timeout)
        except Unresolved:
            continue
        if isinstance(body, dict):
            return body
    return None


def _docker(dirs: RuntimeDirs, found: list[Mount]) -> ImageFs | None:
    """cAdvisor's docker-images: of the mount points "/", DockerRootDir, its ancestors and its
    driver directories, the longest that is mounted (docker info gives the root and driver)."""
    info = _ask(dirs.docker_sockets, "/info", dirs.timeout)
    if info is None or not info.get("Driver") or not info.get("DockerRootDir"):
        return None
    root = str(info["DockerRootDir"])
    mount = _longest_of(_with_ancestors(root, [os.path.join(root, d) for d in _DOCKER_DRIVER_DIRS]), found)
    return ImageFs(DOCKER_IMAGES, root, mount) if mount else None


def _crio(dirs: RuntimeDirs, found: list[Mount]) -> ImageFs | None:
    """cAdvisor's crio-images (and crio-containers when CRI-O keeps images in a store of their
    own): the same rule over storage_root and storage_image from crio's /info."""
    info = _ask(dirs.crio_sockets, "/info", dirs.timeout)
    if info is None or not info.get("storage_root"):
        return None
    root, driver, store = str(info["storage_root"]), str(info.get("storage_driver") or ""), info.get("storage_image")
    if not store:
        mount = _longest_of(_with_ancestors(root, [os.path.join(root, driver + "-images")]), found)
        return ImageFs(CRIO_IMAGES, root, mount) if mount else None
    images = _longest_of(_with_ancestors(str(store), [os.path.join(str(store), driver + "-images")]), found)
    containers = _longest_of(_with_ancestors(root, [os.path.join(root, driver + "-containers")]), found)
    return ImageFs(CRIO_IMAGES, root, images, containers) if images else None


def _containerd(dirs: RuntimeDirs, found: list[Mount]) -> ImageFs | None:
    """containerd's snapshotter directory (what its CRI ImageFsInfo names, and kubelet then
    asks cAdvisor's GetDirFsInfo about): the filesystem holding it."""
    for root in dirs.containerd_roots:
        if not os.path.isdir(root):
            continue
        path = next((p for p in (os.path.join(root, f"io.containerd.snapshotter.v1.{s}") for s in _SNAPSHOTTERS)
                     if os.path.isdir(p)), root)
        mount = _holding(path, found)
        if mount is not None:
            return ImageFs(CONTAINERD_IMAGES, root, mount)
    return None


def _with_ancestors(root: str, extra: list[str]) -> set[str]:
    """"/", ROOT and every directory above it, and EXTRA: where cAdvisor looks for a mount."""
    out = {"/", *extra}
    path = os.path.normpath(root)
    while path not in ("/", "."):
        out.add(path)
        path = os.path.dirname(path)
    return out


def _longest_of(candidates: set[str], found: list[Mount]) -> Mount | None:
    """The mount whose mount point is one of CANDIDATES, the longest (cAdvisor's
    updateContainerImagesPath); the last mounted where several share it."""
    best = None
    for m in found:
        if m.mountpoint in candidates and (best is None or len(m.mountpoint) >= len(best.mountpoint)):
            best = m
    return best


def _holding(path: str, found: list[Mount]) -> Mount | None:
    real = os.path.realpath(path)
    best = None
    for m in found:
        point = m.mountpoint.rstrip("/") or "/"
        if (real == point or real.startswith(point.rstrip("/") + "/") or point == "/") and (
                best is None or len(point) >= len(best.mountpoint)):
            best = m
    return best


def existing_ancestor(path: str) -> str:
    """PATH, or the nearest directory above it that exists: the filesystem a directory made
    there (kubelet makes its root directory at start, MkdirAll) would be on."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path
