#!/usr/bin/env python3
"""Workload-identity benchmark: each figure beside a baseline measured in the same run.

Run as root from the project's venv, with Debian's docker.io installed (scripts/test.sh does):
    sudo .venv/bin/python scripts/bench_identity.py [--kills 40] [--containers 30]

1. OOM kill → record: the kernel's mark_victim time to the record reaching the agent's sink,
   for `docker run --rm -m 32m` containers OOM-killed while the agent runs, with the resolver
   on and off (alternating rounds); baseline: a bare BCC raw-tracepoint → perf buffer → Python
   loop seeing plain cgroup OOM kills. Also: how many kills carried the container's name.
2. The resolver's cost per container start: one runtime round trip (GET /containers/ID/json
   and the identity made from it), beside GET /_ping on the same socket.
3. Memory of the resolver's cache for 1,000 containers (six labels each, and their pods),
   measured with tracemalloc; baseline: the same 1,000 cgroup paths in a plain dict.

A dockerd of its own is started (tests/runtimes.py: own data root and socket) and stopped by pid.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_events import bare_latency, pct

from tests import runtimes as rt
from tests.kernel import CollectingSink
from tracer.agent import Agent, AgentConfig
from tracer.events.engine import EngineConfig
from tracer.identity import Resolver, ResolverConfig, _docker
from tracer.identity.model import ContainerIdentity, Identity, PodIdentity
from tracer.identity.resolver import _Entry
from tracer.kernel import headers

LIMIT = ["--network", "none", "-m", "32m", "--memory-swap", "32m"]


def kill_latency(cache: Path, docker: rt.Docker, kills: int, identity: bool) -> tuple[list[float], int]:
    """(latencies in ms, kills whose record named the container) for KILLS docker OOM kills."""
    sink = CollectingSink()
    resolver = ResolverConfig(docker_sockets=(str(docker.socket),), podman_sockets=(), containerd_states=(),
                              crio_roots=())
    agent = Agent(AgentConfig(engine=EngineConfig(cache_dir=cache, pressure_interval=0),
                              identity=resolver if identity else None), [sink])
    agent.start()
    try:
        sink.wait_for(lambda rs: any(r["type"] == "start" for r in rs), timeout=120)
        for _ in range(kills):
            docker.cli("run", "--rm", *LIMIT, rt.IMAGE, *rt.OOM_CMD, check=False)
        sink.wait_for(lambda rs: sum(_docker_kill(r) for r in rs) >= kills, timeout=60)
    finally:
        agent.close()
    found = [r for r in sink.records if _docker_kill(r)]
    lat = [(r["_arrived_ns"] - r["ktime_ns"]) / 1e6 for r in found]
    return lat, sum(1 for r in found if (r.get("container") or {}).get("name"))


def _docker_kill(record: dict) -> bool:
    return record["type"] == "oom_kill" and (record.get("cgroup") or "").startswith("/docker/")


def round_trips(docker: rt.Docker, n: int) -> tuple[list[float], list[float]]:
    """(inspect ms, /_ping ms) for N running containers, one call each."""
    ids = [docker.cli("run", "-d", "--network", "none", rt.IMAGE, "sleep", "300").stdout.strip() for _ in range(n)]
    sock = str(docker.socket)
    inspect, ping = [], []
    try:
        for cid in ids:
            t0 = time.perf_counter()
            identity = _docker.inspect("docker", sock, cid, 1.0)
            inspect.append((time.perf_counter() - t0) * 1e3)
            assert identity.container is not None and identity.container.id == cid
            t0 = time.perf_counter()
            _docker.ping(sock, 1.0)
            ping.append((time.perf_counter() - t0) * 1e3)
    finally:
        docker.cli("rm", "-f", *ids, check=False)
    return inspect, ping


def cache_memory(n: int = 1000) -> tuple[float, float]:
    """(MiB for N containers in the resolver's cache, MiB for the same paths in a plain dict)."""
    paths = [f"/kubepods/burstable/pod{i:08d}-0000-0000-0000-000000000000/{i:064x}" for i in range(n)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    plain = {path: None for path in paths}
    plain_bytes = tracemalloc.get_traced_memory()[0] - base
    del plain
    resolver = Resolver(ResolverConfig(walk=False))
    base = tracemalloc.get_traced_memory()[0]
    for i, path in enumerate(paths):  # what the worker stores for each container it resolved
        labels = {"io.kubernetes.pod.name": f"api-{i}", "io.kubernetes.pod.namespace": "prod",
                  "io.kubernetes.pod.uid": f"uid-{i}", "io.kubernetes.container.name": "api",
                  "app": "api", "team": f"team-{i % 10}"}
        container = ContainerIdentity("docker", f"{i:064x}", f"k8s_api_api-{i}", "registry/api:1.2.3",
                                      f"sha256:{i:064x}", labels)
        resolver._put(path, _Entry(Identity(container, PodIdentity(f"api-{i}", "prod", f"uid-{i}", "api")), None))
    cache_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return cache_bytes / 2**20, plain_bytes / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=40, help="docker OOM kills per mode (in two rounds each)")
    ap.add_argument("--containers", type=int, default=30, help="containers for the round-trip figure")
    args = ap.parse_args()
    rt.need("dockerd", "docker")
    work = Path(tempfile.mkdtemp(prefix="oomtrace-bench-identity-"))
    cache = work / "headers"
    docker = rt.Docker(work / "docker")
    cgroups_before = rt.cgroups_present()
    docker.start(rt.image_archive(work / "bb.tar"))
    try:
        bare = bare_latency(headers.choose(cache), args.kills)
        on: list[float] = []
        off: list[float] = []
        named = 0
        for _ in range(2):  # alternate, so drift on the machine hits both alike
            lat, n = kill_latency(cache, docker, args.kills // 2, identity=True)
            on += lat
            named += n
            off += kill_latency(cache, docker, args.kills // 2, identity=False)[0]
        inspect, ping = round_trips(docker, args.containers)
    finally:
        docker.stop()
        rt.unmount_below(work)
        rt.remove_new_cgroups(cgroups_before)  # dockerd's /docker in every hierarchy
        shutil.rmtree(work, ignore_errors=True)
    cache_mib, plain_mib = cache_memory()

    def row(name: str, values: list[float]) -> str:
        return (f"   {name:<38} {len(values):>5} {statistics.median(values):>9.2f} {pct(values, 99):>9.2f} "
                f"{max(values):>9.2f}")

    print(f"1. OOM kill → record (ms), docker --rm containers OOM-killed; {named}/{len(on)} named with the resolver on")
    print(f"   {'':<38} {'kills':>5} {'median':>9} {'p99':>9} {'max':>9}")
    print(row("oomtrace, resolver on", on))
    print(row("oomtrace, resolver off", off))
    print(row("baseline: bare BCC loop (plain cgroups)", bare))
    print("2. the resolver's cost per container start (ms, one runtime round trip)")
    print(row("GET /containers/ID/json → identity", inspect))
    print(row("baseline: GET /_ping, same socket", ping))
    print("3. memory for 1,000 containers (6 labels each, and their pods)")
    print(f"   resolver cache {cache_mib:.2f} MiB   baseline: the 1,000 paths in a dict {plain_mib:.2f} MiB")


if __name__ == "__main__":
    main()
