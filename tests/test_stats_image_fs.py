"""Filesystems as kubelet asks for them, with the real runtimes (tests/runtimes.py): dockerd
and containerd, each keeping its data on a filesystem of its own (an ext4 image on a loop
device), so that the image filesystem found is told apart from the root's. CRI-O is not
installed here: its /info answer is served on a unix socket by the test."""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import runtimes as rt
from tracer.errors import OomtraceError
from tracer.stats import filesystems
from tracer.stats.filesystems import NoImageFilesystem, RuntimeDirs
from tracer.stats.manager import Manager, ManagerConfig

pytestmark = pytest.mark.root


@contextmanager
def loop_fs(mountpoint: Path, image: Path, mb: int = 160):
    """An ext4 filesystem of its own (a loop device) mounted at MOUNTPOINT."""
    rt.need("losetup", "mkfs.ext4")
    with open(image, "wb") as f:
        f.truncate(mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                            text=True).stdout.strip()
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", device, str(mountpoint)], check=True, capture_output=True)
        yield device
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        subprocess.run(["losetup", "-d", device], capture_output=True)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    with rt.runtime_base("ifs") as d:
        yield d


@pytest.fixture(scope="module")
def archive(base) -> Path:
    rt.need("tar")
    return rt.image_archive(base / "bb.tar")


@pytest.fixture(scope="module")
def docker(base, archive):
    rt.need("dockerd", "docker")
    runtime = rt.Docker(base / "docker")
    with loop_fs(base / "docker" / "data", base / "docker.img") as device:
        runtime.start(archive)
        yield runtime, device
        runtime.stop()


@pytest.fixture(scope="module")
def containerd(base, archive):
    rt.need("containerd", "ctr", "runc")
    runtime = rt.Containerd(base / "containerd")
    with loop_fs(runtime.root, base / "containerd.img") as device:
        runtime.start(archive)
        yield runtime, device
        runtime.stop()


def _by_hand(mountpoint: str) -> tuple[int, int, int, int, int]:
    st = os.statvfs(mountpoint)
    return (st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize,
            st.f_files, st.f_ffree)


def _figures(info) -> tuple[int, int, int, int | None, int | None]:
    return info.capacity, info.available, info.usage, info.inodes, info.inodes_free


def test_docker_images_filesystem(docker, base):
    runtime, device = docker
    data = str(base / "docker" / "data")
    m = Manager(ManagerConfig(network=False, runtimes=RuntimeDirs(docker_sockets=(str(runtime.socket),),
                                                                    crio_sockets=(), containerd_roots=())))
    (images,) = m.images_fs_info()
    assert (images.device, images.mountpoint, images.labels) == (device, data, ["docker-images"])
    assert _figures(images) == _by_hand(data)  # nothing writes there meanwhile
    assert m.container_fs_info().device == device
    assert m.get_dir_fs_info(data + "/image").labels == ["docker-images"]  # GetDirFsInfo: the device's labels
    # kubelet's root directory on that filesystem: the device's labels come with it
    m2 = Manager(ManagerConfig(network=False, kubelet_root=data + "/kubelet/not-made-yet",
                               runtimes=m.config.runtimes))
    root = m2.root_fs_info()
    assert (root.device, root.mountpoint, root.labels) == (device, data, ["docker-images"])
    # the default root directory, /var/lib/kubelet, is on / (or would be, once kubelet makes it)
    default = m.root_fs_info()
    assert default.mountpoint == filesystems.mount_of(filesystems.existing_ancestor("/var/lib/kubelet")).mountpoint
    assert "root" in default.labels or default.mountpoint != "/"


def test_containerd_images_filesystem(containerd):
    runtime, device = containerd
    snapshots = runtime.root / "io.containerd.snapshotter.v1.overlayfs"
    assert snapshots.is_dir()  # the image was unpacked there
    m = Manager(ManagerConfig(network=False, runtimes=RuntimeDirs(docker_sockets=(), crio_sockets=(),
                                                                    containerd_roots=(str(runtime.root),))))
    (images,) = m.images_fs_info()
    assert (images.device, images.mountpoint, images.labels) == (device, str(runtime.root), ["containerd-images"])
    assert _figures(images) == _by_hand(str(runtime.root))


def test_docker_comes_first(docker, containerd):
    (d, d_device), (c, _) = docker, containerd
    m = Manager(ManagerConfig(network=False, runtimes=RuntimeDirs(docker_sockets=(str(d.socket),), crio_sockets=(),
                                                                    containerd_roots=(str(c.root),))))
    assert m.images_fs_info()[0].device == d_device


def test_no_runtime_is_an_error_not_slash(tmp_path):
    m = Manager(ManagerConfig(network=False, runtimes=RuntimeDirs(
        docker_sockets=(str(tmp_path / "none.sock"),), crio_sockets=(), containerd_roots=(str(tmp_path / "no"),))))
    with pytest.raises(NoImageFilesystem, match="no container runtime found") as e:
        m.images_fs_info()
    assert isinstance(e.value, OomtraceError)
    with pytest.raises(NoImageFilesystem):
        m.container_fs_info()
    root = m.root_fs_info()  # still answers, with the root's label alone
    assert root.labels == (["root"] if root.mountpoint == "/" else [])


class _Info(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/info" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def crio_info(sock: Path, info: dict):
    """crio's GET /info (storage_root, storage_driver, storage_image), on a unix socket."""
    handler = type("Handler", (_Info,), {"body": json.dumps(info).encode()})

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self):  # http.server wants an address pair
            conn, _ = super().get_request()
            return conn, ("local", 0)

    sock.unlink(missing_ok=True)
    server = Server(str(sock), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_crio_images_and_containers_labels(docker, containerd, base):
    """cAdvisor's CRI-O rule: crio-images on storage_root's mount (a mount at storage_root, an
    ancestor, or <driver>-images); with a separate storage_image, crio-containers on storage_root."""
    (_, d_device), (c, c_device) = docker, containerd
    sock = base / "crio.sock"
    dirs = RuntimeDirs(docker_sockets=(), crio_sockets=(str(sock),), containerd_roots=())
    store = str(base / "docker" / "data" / "crio-store")
    with crio_info(sock, {"storage_root": store, "storage_driver": "overlay", "storage_image": ""}):
        (images,) = Manager(ManagerConfig(network=False, runtimes=dirs)).images_fs_info()
    assert (images.device, images.labels) == (d_device, ["crio-images"])
    split = {"storage_root": store, "storage_driver": "overlay", "storage_image": str(c.root / "crio-images")}
    with crio_info(sock, split):
        m = Manager(ManagerConfig(network=False, runtimes=dirs))
        (images,) = m.images_fs_info()
        containers = m.container_fs_info()
    assert (images.device, images.labels) == (c_device, ["crio-images"])
    assert (containers.device, containers.labels) == (d_device, ["crio-containers"])
