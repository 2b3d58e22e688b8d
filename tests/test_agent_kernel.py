"""The agent, the one composition point: engine, Manager, sinks and their threads, on the real kernel."""

from __future__ import annotations

import threading
import time

import pytest

from tests.cgroups import Cgroup
from tests.kernel import CollectingSink
from tracer.agent import Agent, AgentConfig
from tracer.events.engine import Engine, EngineConfig
from tracer.events.records import RecordFilter

pytestmark = pytest.mark.root


def _stats_by_sweep(sink: CollectingSink) -> dict[float, set[str]]:
    sweeps: dict[float, set[str]] = {}
    for r in sink.of_type("container_stats"):
        sweeps.setdefault(r["time"], set()).add(r["cgroup"])
    return sweeps


def test_run_stats_sees_a_new_container_in_the_next_sweep(cache_dir):
    """Discovery runs every 60 s; a cgroup the engine sees made is in the very next sweep. The
    output filter keeps only container_stats: the Manager still gets the cgroup_create records."""
    sink = CollectingSink()
    config = AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=0),
                         record_filter=RecordFilter(frozenset({"container_stats"})), stats_interval=1.0)
    with Agent(config, [sink]) as agent:
        agent.start()
        sink.wait_for(lambda rs: agent.done or any(r["type"] == "start" for r in rs), 60)
        assert agent.failure is None and sink.of_type("start")
        assert agent.manager is not None and agent.manager.config.discovery_interval >= 60
        sink.wait_for(lambda rs: len(_stats_by_sweep(sink)) >= 1, 10)
        cg = Cgroup.create("agent")
        made = time.time()
        try:
            sink.wait_for(lambda rs: any(t > made + 0.3 for t in _stats_by_sweep(sink)), 10)
            later = sorted(t for t in _stats_by_sweep(sink) if t > made + 0.3)
            assert later, "no sweep after the cgroup was made"
            assert cg.name in _stats_by_sweep(sink)[later[0]]
            assert not sink.of_type("cgroup_create"), "the output filter let a cgroup_create through"
        finally:
            cg.remove()
    assert agent.failure is None


def test_agent_stops_in_order_and_reports_a_start_failure(tmp_path, monkeypatch):
    from tracer.errors import ProbeError

    def fail(self):
        raise ProbeError("no oom:mark_victim here")

    monkeypatch.setattr(Engine, "start", fail)
    sink = CollectingSink()
    with Agent(AgentConfig(engine=EngineConfig(cache_dir=tmp_path), stats_interval=5.0), [sink]) as agent:
        agent.start()
        assert agent.wait(30)
    assert isinstance(agent.failure, ProbeError)
    assert agent.manager is not None and agent.manager._thread is not None
    assert not agent.manager._thread.is_alive()


def test_engine_close_while_run_polls_in_another_thread(cache_dir):
    """close() from another thread stops the poll loop and waits for it: the probes are never
    freed under a poll (this once raised AttributeError: 'NoneType' object has no attribute 'poll')."""
    engine = Engine(CollectingSink(), EngineConfig(cache_dir=cache_dir, pressure_interval=0.2))
    engine.start()
    failures: list[BaseException] = []

    def poll() -> None:
        try:
            engine.run(threading.Event())  # never set: only close() ends it
        except BaseException as e:  # noqa: BLE001 - the test reports it
            failures.append(e)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    engine.close()
    thread.join(5)
    assert not thread.is_alive() and failures == []
    assert engine.probes is None
    with pytest.raises(RuntimeError, match="after close"):
        engine.run(threading.Event())
