"""The identity Resolver without real runtimes: cgroup paths, fake Docker APIs on unix sockets
(answering, missing, refusing, hanging, garbled), OCI bundles on disk, the bounded cache, and
that stamping a record never waits on a runtime."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from socketserver import UnixStreamServer

import pytest

from tracer.events.sinks import format_text
from tracer.identity import IdentitySink, Resolver, ResolverConfig
from tracer.identity.model import (
    DROPPED,
    GARBLED,
    NOT_CONTAINER,
    NOT_FOUND,
    PENDING,
    REFUSED,
    SOCKET_MISSING,
    TIMEOUT,
    ContainerIdentity,
    PodIdentity,
)
from tracer.identity.paths import PodTarget, Target, classify

CID = "7f1ab0" + "0" * 58
UID = "0b7e3a52-1c9d-4c1e-9a57-0123456789ab"
INSPECT = {"Id": CID, "Name": "/api", "Image": "sha256:" + "1" * 64,
           "Config": {"Image": "local/bb:1", "Labels": {"io.kubernetes.pod.name": "api-5f",
                                                        "io.kubernetes.pod.namespace": "prod",
                                                        "io.kubernetes.pod.uid": UID,
                                                        "io.kubernetes.container.name": "api", "team": "x"}}}


class _Collect:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass

    def alive(self) -> bool:
        return True


class FakeDocker:
    """A Docker API on a unix socket: BEHAVIOUR is "ok", "404" (then ok after N asks), "garbled"
    or "hang" (accepts, reads, never answers)."""

    def __init__(self, path: Path, behaviour: str = "ok", found_after: int = 0) -> None:
        self.path, self.behaviour, self.found_after = path, behaviour, found_after
        self.asked = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.asked += 1
                if fake.behaviour == "hang":
                    time.sleep(3)
                    return
                if fake.behaviour == "garbled":
                    body = b"{not json"
                elif fake.asked <= fake.found_after or not self.path.startswith(f"/containers/{CID}/"):
                    self.send_response(404)
                    self.end_headers()
                    return
                else:
                    body = json.dumps(INSPECT).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(UnixStreamServer, HTTPServer):
            def server_bind(self) -> None:
                UnixStreamServer.server_bind(self)
                self.server_name, self.server_port = "fake", 0

        from socketserver import ThreadingMixIn

        class Threaded(ThreadingMixIn, Server):
            daemon_threads = True  # a hanging handler must not hold close() up
            block_on_close = False

        self.server = Threaded(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sock_dir(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    return d


def _resolver(**kw) -> Resolver:
    kw.setdefault("walk", False)
    kw.setdefault("docker_sockets", ())
    kw.setdefault("podman_sockets", ())
    kw.setdefault("containerd_states", ())
    kw.setdefault("crio_roots", ())
    r = Resolver(ResolverConfig(**kw))
    r.start()
    return r


def _wait_settled(r: Resolver, path: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path in r._entries and path not in r._pending:
            return
        time.sleep(0.005)
    raise AssertionError(f"{path} not settled: {r.stats}")


# --- paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, want", [
    (f"/docker/{CID}", Target("docker", CID)),
    (f"/system.slice/docker-{CID}.scope", Target("docker", CID)),
    (f"/libpod_parent/libpod-{CID}", Target("podman", CID)),
    (f"/machine.slice/libpod-{CID}.scope", Target("podman", CID)),
    (f"/machine.slice/libpod-conmon-{CID}.scope", None),
    (f"/kubepods/burstable/pod{UID}/{CID}", Target("", CID, pod_uid=UID)),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope", Target("containerd", CID, pod_uid=UID)),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope",
     Target("crio", CID, pod_uid=UID)),
    (f"/kubepods/burstable/pod{UID}", PodTarget(UID)),
    ("/k8s.io/web", Target("containerd", "web", namespace="k8s.io", maybe=True)),
    ("/system.slice/cron.service", None),
    ("/", None),
    ("/docker", None),
])
def test_classify(path, want):
    assert classify(path) == want


# --- docker API ---------------------------------------------------------------------------------

def test_docker_names_container_image_labels_and_pod(sock_dir):
    fake = FakeDocker(sock_dir / "d.sock", found_after=2)  # the API learns of it a little late
    r = _resolver(docker_sockets=(str(sock_dir / "d.sock"),))
    try:
        path = f"/kubepods/besteffort/pod{UID}/{CID}"
        r.observe(path)
        _wait_settled(r, path)
        ident = r.lookup(path)
        assert ident is not None and ident.container is not None
        assert ident.container == ContainerIdentity("docker", CID, "api", "local/bb:1", "sha256:" + "1" * 64)
        assert ident.container.labels["team"] == "x"
        assert ident.pod == PodIdentity("api-5f", "prod", UID, "api")
        assert r.stats["retries"] == 2 and r.stats["resolved"] == 1
        pod_level = r.lookup(f"/kubepods/besteffort/pod{UID}")  # a pod-level limit names the pod
        assert pod_level is not None and pod_level.container is None
        assert pod_level.pod == PodIdentity("api-5f", "prod", UID, None)
        rec = ident.container.to_record()
        assert set(rec) == {"runtime", "id", "name", "image", "image_id", "labels"}
        assert set(ident.pod.to_record()) == {"name", "namespace", "uid", "container"}
    finally:
        r.close()
        fake.close()


@pytest.mark.parametrize("setup, reason", [("missing", SOCKET_MISSING), ("refused", REFUSED),
                                           ("hang", TIMEOUT), ("garbled", GARBLED), ("404", NOT_FOUND)])
def test_docker_failures_are_null_with_a_counted_reason(sock_dir, setup, reason):
    path = sock_dir / "d.sock"
    fake = listener = None
    if setup == "refused":  # a socket file nobody listens on
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        listener.close()
    elif setup in ("hang", "garbled"):
        fake = FakeDocker(path, setup)
    elif setup == "404":
        fake = FakeDocker(path, found_after=1000)
    r = _resolver(docker_sockets=(str(path),), timeout=0.2, retry_delays=(0.01, 0.01))
    try:
        cg = f"/docker/{CID}"
        r.observe(cg)
        assert r.why(cg) == PENDING
        _wait_settled(r, cg)
        assert r.lookup(cg) is None and r.why(cg) == reason
        assert r.stats[reason] == 1
    finally:
        r.close()
        if fake is not None:
            fake.close()


def test_a_hanging_runtime_never_delays_a_record(sock_dir):
    """The engine's side is a dict read: with the worker stuck on a socket that never answers,
    1,000 oom_kill records are stamped in well under a millisecond each."""
    fake = FakeDocker(sock_dir / "d.sock", "hang")
    r = _resolver(docker_sockets=(str(sock_dir / "d.sock"),), timeout=1.0)
    out = _Collect()
    sink = IdentitySink(out, r)
    try:
        worst = 0.0
        for i in range(1000):
            cid = f"{i:064x}"
            t0 = time.perf_counter()
            sink.write({"type": "cgroup_create", "cgroup": f"/docker/{cid}"})
            sink.write({"type": "oom_kill", "cgroup": f"/docker/{cid}", "memcg": f"/docker/{cid}", "pid": 1})
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 0.005, f"a write took {worst * 1000:.2f} ms"
        oom = [x for x in out.records if x["type"] == "oom_kill"]
        assert len(oom) == 1000
        assert oom[0]["container"] is None and oom[0]["container_unknown"] == PENDING
        assert oom[0]["memcg_container"] is None and oom[0]["memcg_pod"] is None
    finally:
        r.close(timeout=0.1)
        fake.close()


# --- OCI bundles ------------------------------------------------------------------------------

def _bundle(state: Path, ns: str, cid: str, annotations: dict | str) -> Path:
    d = state / "io.containerd.runtime.v2.task" / ns / cid
    d.mkdir(parents=True)
    text = annotations if isinstance(annotations, str) else json.dumps({"ociVersion": "1.0.2",
                                                                        "annotations": annotations})
    (d / "config.json").write_text(text)
    return d


def test_containerd_bundle_names_the_pod(tmp_path):
    state = tmp_path / "state"
    _bundle(state, "k8s.io", CID, {"io.kubernetes.cri.sandbox-name": "api-5f",
                                   "io.kubernetes.cri.sandbox-namespace": "prod",
                                   "io.kubernetes.cri.sandbox-uid": UID,
                                   "io.kubernetes.cri.container-name": "api",
                                   "io.kubernetes.cri.image-name": "docker.io/library/bb:1"})
    _bundle(state, "default", "web", {})
    r = _resolver(containerd_states=(str(state),))
    try:
        kube, plain = f"/kubepods/burstable/pod{UID}/{CID}", "/default/web"
        for p in (kube, plain, "/libpod_parent/conmon"):
            r.observe(p)
        for p in (kube, plain, "/libpod_parent/conmon"):
            _wait_settled(r, p)
        k = r.lookup(kube)
        assert k is not None and k.container is not None
        assert (k.container.runtime, k.container.name, k.container.image) == ("containerd", "api",
                                                                               "docker.io/library/bb:1")
        assert k.pod == PodIdentity("api-5f", "prod", UID, "api")
        p = r.lookup(plain)
        assert p is not None and p.container is not None and p.container.name == "web" and p.pod is None
        # a two-level cgroup that is no containerd task: not a container, and not said on records
        assert r.lookup("/libpod_parent/conmon") is None and r.why("/libpod_parent/conmon") is None
        assert r.stats[NOT_CONTAINER] == 1
    finally:
        r.close()


def test_garbled_config_json_is_null_with_a_counted_reason(tmp_path):
    state = tmp_path / "state"
    _bundle(state, "k8s.io", CID, '{"annotations": {"io.kubernetes.cri.sandbox-name": ')
    r = _resolver(containerd_states=(str(state),))
    try:
        path = f"/kubepods/pod{UID}/{CID}"
        r.observe(path)
        _wait_settled(r, path)
        assert r.lookup(path) is None and r.why(path) == GARBLED and r.stats[GARBLED] == 1
    finally:
        r.close()


# --- the cache ----------------------------------------------------------------------------------

def test_cache_is_bounded_deleted_entries_go_first_and_expire(tmp_path):
    state = tmp_path / "state"
    names = [f"c{i}" for i in range(6)]
    for n in names:
        _bundle(state, "ns", n, {})
    r = _resolver(containerd_states=(str(state),), cache_size=4, keep_deleted=0.3)
    try:
        for n in names[:4]:
            r.observe(f"/ns/{n}")
            _wait_settled(r, f"/ns/{n}")
        r.forget("/ns/c1")  # removed: kept, but the first to go when room is needed
        r.observe("/ns/c4")
        _wait_settled(r, "/ns/c4")
        assert r.lookup("/ns/c1") is None and r.lookup("/ns/c0") is not None and len(r) == 4
        assert r.stats["evicted"] == 1
        r.forget("/ns/c2")
        assert r.lookup("/ns/c2") is not None  # kept late, for the records after the removal
        time.sleep(1.5)  # keep_deleted passes; the worker expires it within a second
        assert r.lookup("/ns/c2") is None and r.stats["expired"] == 1
    finally:
        r.close()


def test_a_full_queue_drops_and_counts(sock_dir):
    fake = FakeDocker(sock_dir / "d.sock", "hang")
    r = _resolver(docker_sockets=(str(sock_dir / "d.sock"),), timeout=2.0, queue_size=2)
    try:
        paths = [f"/docker/{i:064x}" for i in range(6)]
        for p in paths:
            r.observe(p)
        assert r.stats[DROPPED] >= 2
        assert DROPPED in {r.why(p) for p in paths}
    finally:
        r.close(timeout=0.1)
        fake.close()


def test_the_walk_at_start_resolves_existing_containers(tmp_path):
    state = tmp_path / "state"
    _bundle(state, "k8s.io", "old", {"io.kubernetes.cri.container-name": "old"})
    root = tmp_path / "cg"
    (root / "k8s.io" / "old").mkdir(parents=True)
    (root / "system.slice" / "cron.service").mkdir(parents=True)
    r = Resolver(ResolverConfig(docker_sockets=(), podman_sockets=(), crio_roots=(),
                                containerd_states=(str(state),)), walk_root=lambda: (str(root), "/"))
    r.start()
    try:
        _wait_settled(r, "/k8s.io/old")
        ident = r.lookup("/k8s.io/old")
        assert ident is not None and ident.container is not None and ident.container.name == "old"
        assert r.stats["walked"] >= 1
    finally:
        r.close()


# --- records and text ----------------------------------------------------------------------------

def test_stamped_records_and_their_text(sock_dir):
    fake = FakeDocker(sock_dir / "d.sock")
    r = _resolver(docker_sockets=(str(sock_dir / "d.sock"),))
    out = _Collect()
    sink = IdentitySink(out, r)
    try:
        path = f"/docker/{CID}"
        sink.write({"type": "cgroup_create", "time": 1.0, "cgroup": path})
        _wait_settled(r, path)
        sink.write({"type": "oom_kill", "time": 2.0, "pid": 4201, "comm": "python3", "cgroup": path,
                    "memcg": path, "constraint": "memcg", "memcg_limit": 64 << 20})
        sink.write({"type": "cgroup_delete", "time": 3.0, "cgroup": path})
        sink.write({"type": "memory_pressure", "time": 4.0, "cgroup": path})  # after removal: still named
        sink.write({"type": "start", "time": 0.0})
        create, oom, delete, pressure, start = out.records
        assert create["container"] is None and create["container_unknown"] == PENDING
        assert oom["container"]["name"] == "api" and oom["memcg_container"]["id"] == CID
        assert oom["pod"] == {"name": "api-5f", "namespace": "prod", "uid": UID, "container": "api"}
        assert delete["container"]["name"] == pressure["container"]["name"] == "api"
        assert "container" not in start
        line = format_text(oom)
        assert "OOMKilled prod/api-5f container api (image local/bb:1): pid 4201 python3, memcg limit 64 MiB" in line
        assert "pid=4201" in line and "labels" not in line
        assert "container=api pod=prod/api-5f" in format_text(delete)
        json.dumps(oom)
    finally:
        r.close()
        fake.close()


def test_system_oom_text():
    line = format_text({"type": "oom_kill", "time": 1.0, "pid": 7, "comm": "java", "constraint": "global",
                        "memcg": None, "container": None, "pod": None})
    assert "System OOM encountered, victim process: java, pid: 7" in line


def test_doctor_runtimes_line(sock_dir, tmp_path):
    from tracer.identity.probe import runtimes, summary

    fake = FakeDocker(sock_dir / "d.sock", "hang")
    state = tmp_path / "state" / "io.containerd.runtime.v2.task"
    state.mkdir(parents=True)
    config = ResolverConfig(docker_sockets=(str(sock_dir / "d.sock"),), podman_sockets=(str(sock_dir / "no.sock"),),
                            containerd_states=(str(tmp_path / "state"),), crio_roots=(), timeout=0.2)
    try:
        got = dict(runtimes(config))
        assert got["docker"] == f"timeout ({sock_dir / 'd.sock'})"
        assert got["podman"] == f"socket missing ({sock_dir / 'no.sock'})"
        assert got["containerd"] == f"readable ({state})" and got["crio"] == "not configured"
        assert summary(config).startswith("docker timeout (")
    finally:
        fake.close()


def test_a_cgroup_made_again_after_removal_is_asked_again(tmp_path):
    """A reused path (ctr's /<namespace>/<name> for a new container of the same name) is resolved
    anew, and no longer expires as removed."""
    state = tmp_path / "state"
    d = _bundle(state, "ns", "web", {"io.kubernetes.cri.container-name": "old"})
    r = _resolver(containerd_states=(str(state),), keep_deleted=0.3)
    try:
        r.observe("/ns/web")
        _wait_settled(r, "/ns/web")
        r.forget("/ns/web")
        (d / "config.json").write_text(json.dumps({"annotations": {"io.kubernetes.cri.container-name": "new"}}))
        r.observe("/ns/web")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and r.lookup("/ns/web").container.name != "new":
            time.sleep(0.01)
        time.sleep(1.5)  # past keep_deleted: still there, the cgroup lives again
        ident = r.lookup("/ns/web")
        assert ident is not None and ident.container is not None and ident.container.name == "new"
        assert r.stats["resolved"] == 2 and r.stats["expired"] == 0
    finally:
        r.close()
