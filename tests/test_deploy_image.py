"""The container image, run the way deploy/kubernetes/agent.yaml runs it: the DaemonSet's
container spec (capabilities, mounts, env, args, probes, grace period) is turned into `docker
run` flags here, so what the manifest says is what is tested; two flags are this machine's, not
the manifest's (--network host: this dockerd has no bridge; --cgroupns=host: a v1 host). Against this host's kernel
and a real dockerd: the agent catches a real OOM kill of another Docker container, names it,
forwards it to a real collector; /metrics and /healthz answer; a restart is warm; SIGTERM
stops it within the grace period."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import trustme
import yaml

from tests.runtimes import IMAGE, OOM_CMD, Docker, cgroups_present, image_archive, need, remove_new_cgroups
from tests.serving import get

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[1]
NODE = "image-test-node"
# The image test's dockerd keeps its state here, so the image's layers are cached across runs.
STATE = Path(os.environ.get("OOMTRACE_IMAGE_CACHE", "/var/cache/oomtrace-image")) / "dockerd"


def _version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def agent_spec() -> tuple[dict, dict]:
    """(pod spec, the agent container) of the DaemonSet."""
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/agent.yaml").read_text()))
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "agent")


def docker_flags(pod: dict, container: dict, host_paths: dict[str, str], secrets: dict[str, Path]) -> list[str]:
    """The container spec as `docker run` flags. HOST_PATHS: a hostPath this test replaces (the
    test's own dockerd socket, a cache directory of its own); SECRETS: secret name → a directory
    holding its keys."""
    flags = ["--network", "host"]  # this dockerd has no bridge; the pod's port is the host's here
    if pod.get("hostPID"):
        flags.append("--pid=host")
    flags.append("--cgroupns=host")  # a pod on cgroup v1 shares the host's (v2: docs/deploy.md)
    # RuntimeDefault is what docker applies when told nothing: its default seccomp profile
    assert pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault"
    sc = container.get("securityContext", {})
    assert not sc.get("privileged"), "the agent must not need privileged"
    for cap in sc.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in sc.get("capabilities", {}).get("add", []):
        flags += ["--cap-add", cap]
    if sc.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for env in container.get("env", []):
        if env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            flags += ["-e", f"{env['name']}={NODE}"]
        else:
            flags += ["-e", f"{env['name']}={env['value']}"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            source = host_paths.get(volume["hostPath"]["path"], volume["hostPath"]["path"])
        else:
            source = str(secrets[volume["secret"]["secretName"]])
        flags += ["-v", f"{source}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
    return flags


def probe(container: dict, kind: str, port: int, timeout_scale: float = 1.0) -> float:
    """Poll KIND (startupProbe…) as a kubelet does (an HTTPS probe does not check the
    certificate); seconds until it passed."""
    spec = container[kind]
    assert spec["httpGet"]["port"] == "http"
    scheme = spec["httpGet"].get("scheme", "HTTP").lower()
    budget = spec.get("periodSeconds", 10) * spec.get("failureThreshold", 3) * timeout_scale
    t0 = time.monotonic()
    while time.monotonic() - t0 < budget:
        try:
            if get(f"{scheme}://127.0.0.1:{port}{spec['httpGet']['path']}", timeout=2,
                   context=ssl._create_unverified_context())[0] == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{kind} did not pass within {budget:.0f} s")


@pytest.fixture(scope="module")
def docker():
    need("dockerd", "docker", "mmdebstrap")
    before = cgroups_present()
    STATE.mkdir(parents=True, exist_ok=True)
    d = Docker(STATE)
    d.start(image_archive(STATE / "bb.tar"))
    try:
        yield d
    finally:
        d.stop()
        remove_new_cgroups(before)


@pytest.fixture(scope="module")
def image(docker):
    tag = f"oomtrace:{_version()}"
    env = dict(os.environ, DOCKER_HOST=f"unix://{docker.socket}", PYTHON=sys.executable)
    t0 = time.monotonic()
    done = subprocess.run([str(ROOT / "scripts/build-container-image.sh"), tag], env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    size = int(done.stdout.split()[-2])
    print(f"\nimage {tag}: {size / 1e6:.0f} MB, built in {time.monotonic() - t0:.0f} s")
    return tag


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    """A real collector where the manifest's --forward points (the Service name → 127.0.0.1)."""
    _, container = agent_spec()
    args = container["args"]
    target = args[args.index("--forward") + 1]  # tcp://HOST:PORT
    port = int(target.rsplit(":", 1)[1])
    work = tmp_path_factory.mktemp("collector")
    keys = work / "keys"
    keys.mkdir()
    (keys / "shared-key").write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    (keys / "http-token").write_text(uuid.uuid4().hex)
    ca = trustme.CA()  # the DaemonSet serves HTTPS: its certificate is in the keys Secret
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(keys / "http-tls.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    db = work / "oom.db"
    proc = subprocess.Popen([sys.executable, "-m", "tracer", "collect", "--db", str(db), "--listen",
                             f"tcp://127.0.0.1:{port}", "--shared-key-file", str(keys / "shared-key")],
                            stdout=subprocess.DEVNULL, stderr=open(work / "collector.log", "wb"), cwd=work)
    time.sleep(1.0)
    assert proc.poll() is None, (work / "collector.log").read_text()
    try:
        yield db, keys, target.split("//", 1)[1].rsplit(":", 1)[0]
    finally:
        proc.terminate()
        proc.wait(30)


def stored(db: Path, kind: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "tracer", "events", "--db", str(db), "-t", kind, "--node", NODE,
                           "--output", "json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def wait_stored(db: Path, kind: str, predicate, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in stored(db, kind) if predicate(r)]
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"no {kind} record stored within {timeout} s")


def test_the_image_runs_the_daemonsets_spec(docker, image, collector, tmp_path):
    db, keys, service = collector
    pod, container = agent_spec()
    assert container["image"] == image, "agent.yaml names the image this version builds"
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    cache = tmp_path / "cache"
    cache.mkdir()
    host_paths = {"/var/run/docker.sock": str(docker.socket), "/var/cache/oomtrace": str(cache),
                  "/var/lib/oomtrace": str(tmp_path / "spool")}
    if not Path("/run/containerd").exists():  # not on this host: an empty one, as a node without it
        host_paths["/run/containerd"] = str(tmp_path / "containerd")
    flags = docker_flags(pod, container, host_paths, {"oomtrace-keys": keys})
    grace = pod["terminationGracePeriodSeconds"]
    name = f"oomtrace-agent-{uuid.uuid4().hex[:6]}"

    def start() -> float:
        docker.cli("run", "-d", "--name", name, "--add-host", f"{service}:127.0.0.1", *flags, image,
                   *container["args"])
        return probe(container, "startupProbe", port)

    def stop() -> tuple[float, int]:
        t0 = time.monotonic()
        docker.cli("stop", "-t", str(grace), name, timeout=grace + 30)
        took = time.monotonic() - t0
        code = int(docker.cli("inspect", "-f", "{{.State.ExitCode}}", name).stdout)
        logs = docker.cli("logs", name, check=False)
        docker.cli("rm", name)
        assert code == 0, logs.stderr[-2000:]
        return took, code

    try:
        first = start()
        victim = f"victim-{uuid.uuid4().hex[:6]}"
        ran = docker.cli("run", "--name", victim, "--network", "none", "-m", "32m", "--memory-swap", "32m", IMAGE,
                         *OOM_CMD, check=False, timeout=120)
        assert ran.returncode == 137, ran
        kill = wait_stored(db, "oom_kill", lambda r: (r.get("container") or {}).get("name") == victim, 60)[0]
        assert kill["container"]["runtime"] == "docker" and kill["node"] == NODE
        token = (keys / "http-token").read_text().strip()
        tls = ssl.create_default_context(cafile=str(db.parent / "ca.pem"))  # a client that checks
        status, body, _ = get(f"https://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"},
                              context=tls)
        assert status == 200 and b"oomtrace_oom_kills_total" in body and b"machine_cpu_cores" in body
        assert get(f"https://127.0.0.1:{port}/metrics", context=tls)[0] == 401  # the token is needed
        assert get(f"https://127.0.0.1:{port}/healthz", context=tls)[:2] == (200, b"ok")
        probe(container, "readinessProbe", port)
        took, _ = stop()
        assert took < grace, f"stopped in {took:.1f} s, grace {grace} s"
        warm = start()  # the same cache volume: the header tree is not generated again
        deadline = time.monotonic() + 30
        while len(starts := stored(db, "start")) < 2 and time.monotonic() < deadline:  # the restart's, forwarded
            time.sleep(1)
        assert len(starts) >= 2, starts
        assert starts[0]["headers_generated_seconds"] is not None  # the first start made the tree
        assert starts[-1]["headers_generated_seconds"] is None, starts[-1]  # the restart found it
        print(f"\nstartup probe passed after {first:.1f} s cold, {warm:.1f} s warm; SIGTERM → exit in {took:.1f} s")
        stop()
    finally:
        docker.cli("rm", "-f", name, check=False)
        docker.cli("rm", "-f", *[c for c in docker.cli("ps", "-aq", check=False).stdout.split()], check=False)
