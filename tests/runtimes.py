"""Real container runtimes for the identity tests: dockerd, standalone containerd (driven with
ctr) and rootful podman (its Docker-compatible API service), each with its own state under a
temporary directory, started once per session and stopped by pid.

No registry is reachable: the one image, localhost/bb:1, is a docker-archive built here from
Debian's busybox-static (bin/busybox and a few links), loaded into each runtime.

In CI (CI=true) a runtime that is missing or does not start fails the tests; elsewhere the
tests skip and say exactly why.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IMAGE = "localhost/bb:1"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "head", "tail", "sleep", "cat", "true")
OOM_CMD = ["sh", "-c", "head -c 200m /dev/zero | tail"]  # tail holds it all: killed at the limit
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# podman's default rlimits exceed this machine's hard limits (runc: "error setting rlimit type 7")
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def unavailable(why: str) -> None:
    """Fail in CI, where every runtime must be there; skip elsewhere, saying why."""
    if IN_CI:
        pytest.fail(f"CI=true but {why}", pytrace=False)
    pytest.skip(why)


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (scripts/test.sh installs docker.io containerd podman "
                    "busybox-static)")
    if not BUSYBOX.is_file():
        unavailable("/bin/busybox not found (apt-get install busybox-static)")
    if os.geteuid() != 0:
        unavailable("the runtimes need root")


def image_archive(path: Path) -> Path:
    """A docker-archive (docker/podman load, ctr import) of a busybox-static root: one layer."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-11-28T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-11-28T00:00:00Z", "created_by": "tests/runtimes.py"}],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [IMAGE], "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in ((config_name, config), ("layer/layer.tar", layer_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def image_id(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    return "sha256:" + manifest[0]["Config"].removesuffix(".json")


def http_ready(sock: Path, path: str = "/_ping") -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            return s.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


@dataclass
class Daemon:
    """A runtime daemon started in a session of its own; stopped by its pid (SIGTERM, then
    SIGKILL to its process group), never by name."""

    name: str
    base: Path
    argv: list[str]
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.base / f"{self.name}.log"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.base,
                                         start_new_session=True)

    def wait_until(self, ready, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        unavailable(f"{self.name} did not start within {timeout:.0f} s: {tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the daemon's
            proc.wait(10)


def run(argv: list[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done


class Docker:
    """dockerd with its own data root, exec root, socket and pidfile; no iptables, no bridge.
    It starts a containerd of its own under its exec root and stops it on SIGTERM."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "docker.sock"
        self.daemon = Daemon("dockerd", base, [
            "dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
            "-H", f"unix://{self.socket}", "--pidfile", str(base / "docker.pid"),
            "--iptables=false", "--ip6tables=false", "--bridge=none", "--config-file", str(base / "daemon.json"),
        ])

    def start(self, archive: Path) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "daemon.json").write_text("{}")
        self.daemon.start()
        self.daemon.wait_until(lambda: http_ready(self.socket), 60)
        self.cli("load", "-i", str(archive))

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(["docker", "-H", f"unix://{self.socket}", *args], timeout=timeout, check=check)

    def stop(self) -> None:
        if self.daemon.proc is not None:
            ids = self.cli("ps", "-aq", check=False).stdout.split()
            if ids:
                self.cli("rm", "-f", *ids, check=False)
        self.daemon.stop()


class Containerd:
    """A standalone containerd (own root, state, socket and config; no CRI plugin), driven with ctr."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "containerd.sock"
        self.root, self.state = base / "root", base / "state"
        config = base / "config.toml"
        self.daemon = Daemon("containerd", base, ["containerd", "--config", str(config)])
        self._config = config

    def start(self, archive: Path) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._config.write_text(
            "version = 2\n"
            f'root = "{self.root}"\nstate = "{self.state}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n')
        self.daemon.start()
        self.daemon.wait_until(lambda: self.socket.exists() and self.ctr("version", check=False).returncode == 0)
        self.ctr("images", "import", "--no-unpack", str(archive), check=False)  # warm: content only
        self.ctr("images", "import", str(archive))

    def ctr(self, *args: str, check: bool = True, timeout: float = 60,
            namespace: str = "k8s.io") -> subprocess.CompletedProcess:
        return run(["ctr", "-a", str(self.socket), "-n", namespace, *args], timeout=timeout, check=check)

    def stop(self) -> None:
        if self.daemon.proc is not None:
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "KILL", task, check=False)
            for c in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "delete", "-f", c, check=False)
                self.ctr("containers", "delete", c, check=False)
        self.daemon.stop()


class Podman:
    """Rootful podman with its own root, runroot and tmpdir (cgroupfs: no systemd here), and its
    Docker-compatible API served on a socket of its own (`podman system service`)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "podman.sock"
        self.globals = ["--root", str(base / "root"), "--runroot", str(base / "run"), "--tmpdir", str(base / "tmp"),
                        "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]
        self.daemon = Daemon("podman-service", base, ["podman", *self.globals, "system", "service", "--time=0",
                                                      f"unix://{self.socket}"])

    def start(self, archive: Path) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.cli("load", "-i", str(archive))
        self.daemon.start()
        self.daemon.wait_until(lambda: http_ready(self.socket))

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        # In BASE: conmon, which podman starts, writes a file named `oom` into its working
        # directory when a container is OOM-killed (it once appeared in the repository).
        return run(["podman", *self.globals, *args], timeout=timeout, check=check, cwd=self.base)

    def stop(self) -> None:
        if self.daemon.proc is not None:
            self.cli("rm", "-af", "-t", "0", check=False)
        self.daemon.stop()


RUNTIME_CGROUPS = ("docker", "k8s.io", "default", "libpod_parent", "kubepods")  # what the runtimes make


def cgroups_present() -> set[Path]:
    return {h / name for h in Path("/sys/fs/cgroup").iterdir() for name in RUNTIME_CGROUPS if (h / name).is_dir()}


def remove_new_cgroups(before: set[Path]) -> None:
    """The runtimes' parent cgroups made during the tests (/docker, /libpod_parent/conmon, …),
    empty once their containers are gone: removed deepest first (rmdir fails on a busy one)."""
    for top in cgroups_present() - before:
        for d, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


def unmount_below(base: Path) -> None:
    """What a runtime left mounted below BASE (overlay, shm, its storage root), deepest first."""
    prefix = str(base).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(base):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@contextlib.contextmanager
def runtime_base(tag: str) -> Iterator[Path]:
    """A directory for runtimes' state, short (unix socket paths stay under 108 bytes); on the
    way out what they mounted below it is unmounted, the parent cgroups they made are removed,
    and the directory too."""
    d = Path(f"/tmp/oomtrace-{tag}-{os.getpid()}")
    d.mkdir(exist_ok=True)
    before = cgroups_present()
    try:
        yield d
    finally:
        unmount_below(d)
        remove_new_cgroups(before)
        shutil.rmtree(d, ignore_errors=True)
