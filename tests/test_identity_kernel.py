"""Bad runtimes, real OOM kills: with the runtime's socket missing, a server that accepts and
never answers, or a garbled config.json, the agent's oom_kill record for a container-named
cgroup comes at once, with identity null and the counted reason."""

from __future__ import annotations

import time

import pytest

from tests.cgroups import Cgroup
from tests.kernel import CollectingSink, go, spawn_hog
from tests.test_identity_resolver import FakeDocker
from tracer.agent import Agent, AgentConfig
from tracer.events.engine import EngineConfig
from tracer.identity import ResolverConfig
from tracer.identity.model import GARBLED, SOCKET_MISSING, TIMEOUT

pytestmark = pytest.mark.root

CID = "ba5e" * 16


@pytest.mark.parametrize("case", ["missing", "hang", "garbled"])
def test_bad_runtime_gives_null_identity_at_once(cache_dir, tmp_path, case):
    sock = tmp_path / "docker.sock"
    state = tmp_path / "state"
    fake = FakeDocker(sock, "hang") if case == "hang" else None
    if case == "garbled":  # a containerd task whose bundle is not JSON
        bundle = state / "io.containerd.runtime.v2.task" / "k8s.io" / CID
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "annotations": {')
    leaf, reason = ((f"cri-containerd-{CID}.scope", GARBLED) if case == "garbled"
                    else (f"docker-{CID}.scope", SOCKET_MISSING if case == "missing" else TIMEOUT))
    sink = CollectingSink()
    identity = ResolverConfig(docker_sockets=(str(sock),), podman_sockets=(), containerd_states=(str(state),),
                              crio_roots=(), timeout=1.0, walk=False)
    config = AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=0), identity=identity)
    cg = None
    try:
        with Agent(config, [sink]) as agent:
            agent.start()
            sink.wait_for(lambda rs: agent.done or any(r["type"] == "start" for r in rs), 120)
            assert agent.failure is None and agent.resolver is not None
            cg = Cgroup.memory("identity", 16 << 20)
            sub = cg.child(leaf)
            deadline = time.monotonic() + 10
            while agent.resolver.stats[reason] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert agent.resolver.stats[reason] == 1, dict(agent.resolver.stats)
            if fake is not None:  # keep the worker stuck on the hanging socket during the kill
                agent.resolver.observe(f"/docker/{'1' * 64}")
            hog = spawn_hog(sub)
            go([hog])
            assert hog.wait(30) == -9
            sink.wait_for(lambda rs: any(r["type"] == "oom_kill" and r["cgroup"] == sub.path for r in rs), 10)
            recs = [r for r in sink.of_type("oom_kill") if r["cgroup"] == sub.path]
            assert recs, [r["cgroup"] for r in sink.of_type("oom_kill")]
            rec = recs[0]
            assert rec["container"] is None and rec["pod"] is None and rec["container_unknown"] == reason
            assert rec["memcg"] == cg.path and rec["memcg_container"] is None  # the parent is no container
            assert rec["_arrived_ns"] - rec["ktime_ns"] < 500e6, "the record waited"
    finally:
        if cg is not None:
            cg.remove()
        if fake is not None:
            fake.close()


def test_identity_off_leaves_records_as_they_were(cache_dir):
    sink = CollectingSink()
    config = AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=0), identity=None)
    with Agent(config, [sink]) as agent:
        agent.start()
        sink.wait_for(lambda rs: agent.done or any(r["type"] == "start" for r in rs), 120)
        assert agent.failure is None and agent.resolver is None
        cg = Cgroup.memory("identity-off")
        try:
            sink.wait_for(lambda rs: any(r["type"] == "cgroup_create" and r["cgroup"] == cg.path for r in rs), 10)
        finally:
            cg.remove()
    made = [r for r in sink.of_type("cgroup_create") if r["cgroup"] == cg.path]
    assert made and "container" not in made[0] and "pod" not in made[0]
