"""Workload identity from the real runtimes: dockerd, containerd (ctr) and rootful podman, each
started by these tests with its own state (tests/runtimes.py). A container with a memory limit
is OOM-killed while the agent runs; its oom_kill record names the container, its image and
labels, and with the kubelet's labels or CRI's annotations the pod and its namespace. A --rm
container that dies at once keeps its name."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import runtimes as rt
from tests.kernel import CollectingSink
from tracer.agent import Agent, AgentConfig
from tracer.events.engine import EngineConfig
from tracer.events.sinks import format_text
from tracer.identity import ResolverConfig

pytestmark = pytest.mark.root

POD_LABELS = {"io.kubernetes.pod.name": "api-5f", "io.kubernetes.pod.namespace": "prod",
              "io.kubernetes.pod.uid": "0b7e3a52-1c9d-4c1e-9a57-0123456789ab",
              "io.kubernetes.container.name": "api", "team": "payments"}
LIMIT = ["-m", "32m", "--memory-swap", "32m"]


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    with rt.runtime_base("rt") as d:
        yield d


@pytest.fixture(scope="module")
def archive(base) -> Path:
    rt.need("tar")
    return rt.image_archive(base / "bb.tar")


def _runtime(kind, base: Path, archive: Path, *programs: str):
    """A runtime of KIND (tests/runtimes.py) in its own directory under BASE, for a module."""
    rt.need(*programs)
    runtime = kind(base / kind.__name__.lower())
    runtime.start(archive)
    yield runtime
    runtime.stop()
    rt.unmount_below(runtime.base)


@pytest.fixture(scope="module")
def docker(base, archive):
    yield from _runtime(rt.Docker, base, archive, "dockerd", "docker")


@pytest.fixture(scope="module")
def containerd(base, archive):
    yield from _runtime(rt.Containerd, base, archive, "containerd", "ctr", "runc")


@pytest.fixture(scope="module")
def podman(base, archive):
    yield from _runtime(rt.Podman, base, archive, "podman", "conmon", "runc")


@pytest.fixture(scope="module")
def agent(base, cache_dir):
    """The agent, its Resolver pointed at the runtimes' own sockets and state (they need not be
    up yet: a socket that appears later is simply found)."""
    sink = CollectingSink()
    identity = ResolverConfig(docker_sockets=(str(base / "docker" / "docker.sock"),),
                              podman_sockets=(str(base / "podman" / "podman.sock"),),
                              containerd_states=(str(base / "containerd" / "state"),), crio_roots=())
    config = AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=0), identity=identity)
    with Agent(config, [sink]) as a:
        a.start()
        sink.wait_for(lambda rs: a.done or any(r["type"] == "start" for r in rs), 120)
        assert a.failure is None and sink.of_type("start"), a.failure
        a.sink = sink
        yield a
    assert a.failure is None


def _oom_in(agent, pred, what: str, timeout: float = 20.0) -> dict:
    sink = agent.sink
    sink.wait_for(lambda rs: any(r["type"] == "oom_kill" and pred(r) for r in rs), timeout)
    found = [r for r in sink.of_type("oom_kill") if pred(r)]
    seen = [(r["cgroup"], r.get("container")) for r in sink.of_type("oom_kill")]
    assert found, f"no oom_kill for {what}; oom_kills: {seen}"
    rec = found[0]
    # written at once: never held back for a runtime (the poll loop's 100 ms is the budget)
    assert rec["_arrived_ns"] - rec["ktime_ns"] < 500e6
    return rec


def _check_pod(rec: dict) -> None:
    """The pod, in the record and in its text line (as kubelet's event reads)."""
    assert rec["pod"] == {"name": "api-5f", "namespace": "prod", "uid": POD_LABELS["io.kubernetes.pod.uid"],
                          "container": "api"}
    line = format_text(rec)
    assert f"OOMKilled prod/api-5f container api (image {rt.IMAGE}): pid {rec['pid']} tail, memcg limit 32 MiB" \
        in line, line


def _labels(labels: dict) -> list[str]:
    return [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]


# --- docker -------------------------------------------------------------------------------------

def test_docker_oom_kill_names_container_image_labels_and_pod(agent, docker, archive):
    name = f"api-{uuid.uuid4().hex[:6]}"
    done = docker.cli("run", "--name", name, "--network", "none", *LIMIT, *_labels(POD_LABELS), rt.IMAGE,
                      *rt.OOM_CMD, check=False, timeout=120)
    cid = docker.cli("inspect", "-f", "{{.Id}}", name).stdout.strip()
    docker.cli("rm", "-f", name, check=False)
    assert done.returncode == 137, done.stderr
    rec = _oom_in(agent, lambda r: r["cgroup"] == f"/docker/{cid}", name)
    c = rec["container"]
    assert (c["runtime"], c["id"], c["name"], c["image"], c["image_id"]) == ("docker", cid, name, rt.IMAGE,
                                                                            rt.image_id(archive))
    assert c["labels"]["team"] == "payments"
    _check_pod(rec)
    assert rec["memcg_container"]["id"] == cid  # v1 and v2 alike: the container's own memcg hit its limit


def test_collector_finds_the_kill_by_pod_after_the_container_is_gone(agent, docker, tmp_path):
    """The docker kill above, its container removed: sent as the agent sends it (msgpack) into
    `oomtrace collect`, and found by `oomtrace events --db --pod`."""
    import json
    import subprocess
    import sys

    import msgpack

    recs = [r for r in agent.sink.of_type("oom_kill") if (r.get("pod") or {}).get("name") == "api-5f"
            and r["cgroup"].startswith("/docker/")]
    assert recs, "runs after test_docker_oom_kill_names_container_image_labels_and_pod"
    rec = {k: v for k, v in recs[0].items() if not k.startswith("_")}
    assert docker.cli("ps", "-aq", "--filter", f"id={rec['container']['id']}").stdout.strip() == ""  # gone
    db = tmp_path / "oom.db"
    fed = subprocess.run([sys.executable, "-m", "tracer", "collect", "--db", str(db), "--listen", "-"],
                         input=msgpack.packb(rec), capture_output=True, timeout=60)
    assert fed.returncode == 0, fed.stderr
    found = subprocess.run([sys.executable, "-m", "tracer", "events", "--db", str(db), "--pod", "api-5f",
                            "--namespace", "prod", "--output", "json"], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    rows = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    rows = rows[0] if len(rows) == 1 and isinstance(rows[0], list) else rows
    assert [r["id"] for r in rows] == [rec["id"]]
    assert rows[0]["container"]["name"] == rec["container"]["name"]


def test_docker_rm_container_that_dies_at_once_keeps_its_name(agent, docker):
    name = f"quick-{uuid.uuid4().hex[:6]}"
    done = docker.cli("run", "--rm", "--name", name, "--network", "none", *LIMIT, rt.IMAGE, *rt.OOM_CMD,
                      check=False, timeout=120)
    assert done.returncode == 137, done.stderr
    rec = _oom_in(agent, lambda r: r["cgroup"].startswith("/docker/") and (r["container"] or {}).get("name") == name,
                  name)
    assert rec["container"]["image"] == rt.IMAGE and rec["pod"] is None
    gone = agent.sink.wait_for(lambda rs: any(r["type"] == "cgroup_delete" and r["cgroup"] == rec["cgroup"]
                                              for r in rs), 10)
    deletes = [r for r in gone if r["type"] == "cgroup_delete" and r["cgroup"] == rec["cgroup"]]
    assert deletes and all((r["container"] or {}).get("name") == name for r in deletes)


# --- containerd ----------------------------------------------------------------------------------

def _annotations(pairs: dict) -> list[str]:
    return [a for k, v in pairs.items() for a in ("--annotation", f"{k}={v}")]


def _remove_cgroup(path: str) -> None:
    """ctr --cgroup leaves the parents it made (kubelet would own them): remove them, deepest first."""
    parts = [p for p in path.split("/") if p]
    for mount in Path("/sys/fs/cgroup").iterdir():
        for depth in range(len(parts), 0, -1):
            try:
                os.rmdir(mount.joinpath(*parts[:depth]))
            except OSError:
                pass


def test_containerd_oom_kill_names_the_pod_from_cri_annotations(agent, containerd):
    uid = POD_LABELS["io.kubernetes.pod.uid"]
    cid = uuid.uuid4().hex * 2  # kubelet's cgroupfs layout: /kubepods/<qos>/pod<uid>/<64-hex id>
    cgroup = f"/kubepods/burstable/pod{uid}/{cid}"
    cri = {"io.kubernetes.cri.sandbox-name": "api-5f", "io.kubernetes.cri.sandbox-namespace": "prod",
           "io.kubernetes.cri.sandbox-uid": uid, "io.kubernetes.cri.container-name": "api",
           "io.kubernetes.cri.image-name": rt.IMAGE, "team": "payments"}
    try:
        done = containerd.ctr("run", "--rm", "--memory-limit", str(32 << 20), "--cgroup", cgroup,
                              *_annotations(cri), rt.IMAGE, cid, *rt.OOM_CMD, check=False, timeout=120)
        assert done.returncode == 137, done.stderr
        rec = _oom_in(agent, lambda r: r["cgroup"] == cgroup, cgroup)
    finally:
        _remove_cgroup(cgroup)
    c = rec["container"]
    assert (c["runtime"], c["id"], c["name"], c["image"]) == ("containerd", cid, "api", rt.IMAGE)
    assert c["labels"]["team"] == "payments"
    _check_pod(rec)


def test_containerd_pod_level_limit_names_the_pod(agent, containerd):
    """The limit is on the pod's cgroup, as kubelet sets it: the OOMing memcg is the pod's, and
    memcg_pod names the pod (from its container, seen when it was made)."""
    uid = str(uuid.uuid4())
    cid = uuid.uuid4().hex * 2
    pod_cgroup = f"/kubepods/burstable/pod{uid}"
    memory = Path("/sys/fs/cgroup/memory")
    if not (memory / "memory.limit_in_bytes").exists():
        pytest.skip("needs the v1 memory hierarchy at /sys/fs/cgroup/memory (this machine's layout)")
    pod_dir = memory / pod_cgroup.lstrip("/")
    cri = {"io.kubernetes.cri.sandbox-name": "batch-7c", "io.kubernetes.cri.sandbox-namespace": "jobs",
           "io.kubernetes.cri.sandbox-uid": uid, "io.kubernetes.cri.container-name": "worker",
           "io.kubernetes.cri.image-name": rt.IMAGE}
    try:
        pod_dir.mkdir(parents=True)
        (pod_dir / "memory.limit_in_bytes").write_text(str(32 << 20))
        done = containerd.ctr("run", "--rm", "--cgroup", f"{pod_cgroup}/{cid}", *_annotations(cri), rt.IMAGE, cid,
                              *rt.OOM_CMD, check=False, timeout=120)
        assert done.returncode == 137, done.stderr
        rec = _oom_in(agent, lambda r: r["cgroup"] == f"{pod_cgroup}/{cid}", cid)
    finally:
        _remove_cgroup(f"{pod_cgroup}/{cid}")
    assert rec["memcg"] == pod_cgroup
    assert rec["memcg_container"] is None and "memcg_container_unknown" not in rec
    assert rec["memcg_pod"] == {"name": "batch-7c", "namespace": "jobs", "uid": uid, "container": None}
    assert rec["container"]["name"] == "worker" and rec["pod"]["container"] == "worker"


def test_containerd_rm_container_that_dies_at_once_keeps_its_name(agent, containerd):
    name = f"quick-{uuid.uuid4().hex[:6]}"
    done = containerd.ctr("run", "--rm", "--memory-limit", str(32 << 20), rt.IMAGE, name, *rt.OOM_CMD,
                          check=False, timeout=120)
    assert done.returncode == 137, done.stderr
    rec = _oom_in(agent, lambda r: r["cgroup"] == f"/k8s.io/{name}", name)
    assert rec["container"]["name"] == name and rec["container"]["runtime"] == "containerd"
    assert rec["pod"] is None


# --- podman --------------------------------------------------------------------------------------

def test_podman_oom_kill_names_container_image_labels_and_pod(agent, podman, archive):
    name = f"api-{uuid.uuid4().hex[:6]}"
    done = podman.cli("run", "--name", name, "--network", "none", *rt.PODMAN_ULIMITS, *LIMIT, *_labels(POD_LABELS),
                      rt.IMAGE, *rt.OOM_CMD, check=False, timeout=120)
    cid = podman.cli("inspect", "-f", "{{.Id}}", name).stdout.strip()
    podman.cli("rm", "-f", name, check=False)
    assert done.returncode == 137, done.stderr
    rec = _oom_in(agent, lambda r: r["cgroup"].endswith(f"libpod-{cid}"), name)
    c = rec["container"]
    assert (c["runtime"], c["id"], c["name"], c["image"], c["image_id"]) == ("podman", cid, name, rt.IMAGE,
                                                                            rt.image_id(archive))
    assert c["labels"]["team"] == "payments"
    _check_pod(rec)


def test_podman_rm_container_that_dies_at_once_keeps_its_name(agent, podman):
    name = f"quick-{uuid.uuid4().hex[:6]}"
    done = podman.cli("run", "--rm", "--name", name, "--network", "none", *rt.PODMAN_ULIMITS, *LIMIT, rt.IMAGE,
                      *rt.OOM_CMD, check=False, timeout=120)
    assert done.returncode == 137, done.stderr
    rec = _oom_in(agent, lambda r: (r["container"] or {}).get("name") == name, name)
    assert rec["container"]["runtime"] == "podman" and "libpod-" in rec["cgroup"]


def test_doctor_says_which_runtimes_it_can_read(agent, docker, containerd, podman):
    from tracer.identity.probe import runtimes

    assert agent.resolver is not None
    got = dict(runtimes(agent.resolver.config))
    assert got["docker"] == f"readable ({docker.socket})" and got["podman"] == f"readable ({podman.socket})"
    assert got["containerd"].startswith("readable (")


def test_resolver_dropped_nothing(agent):
    assert agent.resolver is not None and agent.resolver.stats["dropped"] == 0


# --- the Interface: specs named as cAdvisor's runtime handlers name them -------------------------

def test_containers_and_stats_show_name_pod_image_and_labels(docker, containerd):
    import json

    from click.testing import CliRunner

    from tracer.cli import main
    from tracer.identity import Resolver
    from tracer.stats.manager import Manager, ManagerConfig

    name = f"web-{uuid.uuid4().hex[:6]}"
    cid = docker.cli("run", "-d", "--name", name, "--network", "none", "-m", "64m", *_labels(POD_LABELS), rt.IMAGE,
                     "sleep", "300").stdout.strip()
    ctr_name = f"side-{uuid.uuid4().hex[:6]}"
    cri = {"io.kubernetes.cri.sandbox-name": "db-0", "io.kubernetes.cri.sandbox-namespace": "data",
           "io.kubernetes.cri.sandbox-uid": "u-db", "io.kubernetes.cri.container-name": "db",
           "io.kubernetes.cri.image-name": rt.IMAGE}
    containerd.ctr("run", "-d", *[a for k, v in cri.items() for a in ("--annotation", f"{k}={v}")], rt.IMAGE,
                   ctr_name, "sleep", "300")
    sockets = ["--docker-socket", str(docker.socket), "--containerd-state", str(containerd.base / "state")]
    try:
        out = CliRunner().invoke(main, ["containers", "/docker", *sockets, "--output", "json"])
        assert out.exit_code == 0, out.output
        spec = json.loads(out.output)[f"/docker/{cid}"]["spec"]
        assert spec["image"] == rt.IMAGE and spec["aliases"] == [name, cid] and spec["namespace"] == "docker"
        assert {k: spec["labels"][k] for k in POD_LABELS} == POD_LABELS  # kubelet: a pod-managed container
        table = CliRunner().invoke(main, ["containers", "/docker", *sockets]).output
        assert "prod/api-5f/api" in table and rt.IMAGE in table, table
        text = CliRunner().invoke(main, ["stats", f"/docker/{cid}", *sockets]).output
        assert f"image        {rt.IMAGE}" in text and "workload     prod/api-5f/api" in text, text
        # containerd keeps the pod in annotations: the spec gets kubelet's labels from them
        out = CliRunner().invoke(main, ["containers", "/k8s.io", *sockets, "--output", "json"])
        spec = json.loads(out.output)[f"/k8s.io/{ctr_name}"]["spec"]
        assert spec["labels"]["io.kubernetes.pod.name"] == "db-0" and spec["image"] == rt.IMAGE
        # docker_container: by name or id, as cAdvisor's docker handler answers
        resolver = Resolver(ResolverConfig(docker_sockets=(str(docker.socket),), podman_sockets=(),
                                           containerd_states=(), crio_roots=()))
        resolver.start()
        manager = Manager(ManagerConfig(network=False), workloads=resolver.lookup)
        try:
            manager.start(background=False)
            assert resolver.wait_walked(10)
            manager.sweep()
            assert manager.docker_container(name).reference.name == f"/docker/{cid}"
            assert manager.docker_container(cid[:12]).reference.aliases == [name, cid]
            # the runtime's creation and start time in the spec, as cAdvisor master's docker handler
            spec = manager.container_info(f"/docker/{cid}").spec
            inspected = json.loads(docker.cli("inspect", cid).stdout)[0]
            assert abs(spec.start_time - _unix(inspected["State"]["StartedAt"])) < 1e-3
            assert abs(spec.creation_time - _unix(inspected["Created"])) < 1e-3
            assert spec.creation_time <= spec.start_time <= time.time()
        finally:
            manager.stop()
            resolver.close()
    finally:
        docker.cli("rm", "-f", name, check=False)
        containerd.ctr("task", "kill", "-s", "KILL", ctr_name, check=False)
        time.sleep(0.5)
        containerd.ctr("task", "delete", ctr_name, check=False)
        containerd.ctr("container", "delete", ctr_name, check=False)


def _unix(rfc3339: str) -> float:
    """Docker's time (nanoseconds, Z) in Unix seconds, by hand: what the resolver must get."""
    import datetime

    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    stamp = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp() + (int(fraction[:9]) / 10 ** len(fraction[:9]) if fraction else 0.0)
