"""The agent: the one place that builds the event engine, the container Manager, the sinks and
the forwarder, owns their threads and stops them in order. The CLI only parses flags into an
AgentConfig; every later feature (HTTP, workload identity) plugs in here.

    kernel → Engine → IdentitySink (container/pod stamped from the Resolver's cache; the cgroups
       (its thread)    made feed the Resolver, whose own thread asks the runtimes) ─┐
                     ┌──────────────────────────────────────────────────────────────┘
                     ├─ outputs: text / JSON lines / msgpack   (--type/--cgroup filter these)
       (its thread)  ├─ ForwardSink → a collector                (filtered too; its own thread)
                     └─ Manager.on_record: cAdvisor events, and discovery at once on a cgroup
                        made or removed (every record, unfiltered)
    Manager housekeeping (its thread) → StatsFeed → Engine        (container_stats, with --stats)
    FlightRecorder (its thread): samples memory cgroups; sees every record (unfiltered) and turns
       each oom_kill into an oom_report, which the Engine takes like container_stats
    HTTP server (its thread, --http): cAdvisor's REST API and /metrics over the Manager; the
       metrics cache is invalidated by every sweep, and AgentMetrics counts the engine's records

Stop order: the engine's loop ends and it detaches its probes (flushing what was buffered);
then the flight recorder's thread stops (a report the engine can no longer take is counted
in its stats.dropped_reports); then the identity Resolver's worker stops; then the HTTP server (open event streams end);
then the Manager's housekeeping stops; last the forwarder sends or spools what it holds, so no
record the engine produced is dropped on the way out.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from tracer import defaults
from tracer.events.engine import Engine, EngineConfig
from tracer.events.records import RecordFilter
from tracer.events.sinks import FilteredSink, Sink, TeeSink
from tracer.forward.forwarder import ForwardConfig, ForwardSink
from tracer.identity import IdentitySink, Resolver, ResolverConfig
from tracer.postmortem.recorder import FlightRecorder, RecorderConfig
from tracer.serve.agent_metrics import AgentMetrics
from tracer.serve.config import HttpConfig
from tracer.serve.container_metrics import MetricsOptions
from tracer.stats.cgroups import StatsOptions
from tracer.stats.feed import StatsFeed
from tracer.stats.manager import Manager, ManagerConfig


@dataclass(frozen=True)
class AgentConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    record_filter: RecordFilter = field(default_factory=RecordFilter)  # for outputs and the forwarder
    stats_interval: float = 0.0  # > 0: the Manager sweeps every N seconds into container_stats records
    container_events: bool = False  # a Manager for cAdvisor's container events, with no sweeps
    forward: ForwardConfig | None = None
    duration: float | None = None  # stop after this many seconds
    identity: ResolverConfig | None = field(default_factory=ResolverConfig)  # None: no container/pod names
    recorder: RecorderConfig | None = None  # the flight recorder: an oom_report per oom_kill (run: on)
    http: HttpConfig | None = None  # --http: cAdvisor's REST API and /metrics
    metrics: MetricsOptions = field(default_factory=MetricsOptions)
    housekeeping_interval: float = defaults.HOUSEKEEPING_INTERVAL  # sweeps for --http when --stats is not given


class Agent:
    """start() → wait() → close(); or `with Agent(...) as agent: agent.wait()`."""

    def __init__(self, config: AgentConfig, outputs: Sequence[Sink] = ()) -> None:
        self.config = config
        self.resolver = Resolver(config.identity) if config.identity is not None else None
        self.manager = self._make_manager(config, self.resolver)
        self.feed = StatsFeed(self.manager) if self.manager is not None and config.stats_interval > 0 else None
        self.forwarder = ForwardSink(config.forward) if config.forward is not None else None
        sinks: list[Sink] = [FilteredSink(s, config.record_filter) for s in outputs]
        if self.forwarder is not None:
            sinks.append(FilteredSink(self.forwarder, config.record_filter))
        if self.manager is not None:
            sinks.append(_ManagerEvents(self.manager))
        self.recorder = FlightRecorder(config.recorder) if config.recorder is not None else None
        if self.recorder is not None:  # unfiltered: it needs every oom_kill and memory_pressure
            sinks.append(self.recorder)
        self.agent_metrics: AgentMetrics | None = None
        self.http = self._make_http(config, self.manager)
        if self.agent_metrics is not None:
            sinks.append(self.agent_metrics)
        sink: Sink = sinks[0] if len(sinks) == 1 else TeeSink(*sinks)
        if self.resolver is not None:  # first, so that every sink (and the Manager) sees the names
            sink = IdentitySink(sink, self.resolver)
        sources = tuple(s.drain for s in (self.feed, self.recorder) if s is not None)
        self.engine = Engine(sink, config.engine, sources=sources)
        self.failure: BaseException | None = None  # what ended the engine's thread, if not a stop
        self._stop = threading.Event()
        self._done = threading.Event()
        self._started = threading.Event()  # the engine's probes are attached
        self._thread: threading.Thread | None = None
        self._closed = False

    @staticmethod
    def _make_manager(config: AgentConfig, resolver: Resolver | None) -> Manager | None:
        workloads = resolver.lookup if resolver is not None else None  # specs get the runtimes' names
        if config.stats_interval > 0 or config.http is not None:
            interval = config.stats_interval if config.stats_interval > 0 else config.housekeeping_interval
            return Manager(_collection(config.metrics, interval), workloads=workloads)
        if config.container_events:
            return Manager(ManagerConfig(network=False), workloads=workloads)
        return None

    def _make_http(self, config: AgentConfig, manager: Manager | None):  # -> HttpServer | None
        """With --http: the server, its metrics cache (invalidated by every sweep), and the
        sink that counts the engine's records for oomtrace's own metrics (self.agent_metrics)."""
        if config.http is None or manager is None:
            return None
        from tracer.serve.cache import MetricsCache
        from tracer.serve.container_metrics import ContainerMetrics
        from tracer.serve.endpoints import agent_server

        cache = MetricsCache(manager, ContainerMetrics(config.metrics))
        manager.on_sweep(cache.invalidate)
        counters = {"oomtrace_stats_records_dropped": (
            "container_stats records the engine did not take in time",
            lambda: float(self.feed.dropped if self.feed else 0))}
        self.agent_metrics = AgentMetrics(counters)
        return agent_server(manager, config.http, cache, self.agent_metrics, healthy=self._health)

    def _health(self) -> str | None:
        """/healthz: 503 until the probes are attached (a first start may build the BTF header
        tree), and once the engine's loop has ended (a failure, or the probes gone)."""
        if self._done.is_set():
            return f"the event engine stopped: {self.failure or 'stopped'}"
        if not self._started.is_set():
            return "starting: loading the probes"
        return None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """The Manager's first sweep and housekeeping, then the engine (probes, start record and
        poll loop) in a thread of its own. A failure to start ends wait() and is in .failure."""
        if self.resolver is not None:  # first: its walk of existing containers runs meanwhile
            self.resolver.start()
        if (self.feed is not None or self.http is not None) and self.manager is not None:
            self.manager.start()
        if self.http is not None:
            self.http.start()
        if self.recorder is not None:  # before the engine: its first sweep runs while the probes load
            self.recorder.start()
        self._thread = threading.Thread(target=self._run_engine, name="oomtrace-engine", daemon=True)
        self._thread.start()

    def _run_engine(self) -> None:
        try:
            self.engine.start()
            self._started.set()
            self.engine.run(self._stop, self.config.duration)
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the agent
            self.failure = e
        finally:
            self._done.set()

    def stop(self) -> None:
        """Ask the engine's loop to end (safe from a signal handler)."""
        self._stop.set()

    def stop_on_signals(self) -> None:
        """SIGINT and SIGTERM stop the agent (call from the main thread)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

    def wait(self, timeout: float | None = None) -> bool:
        """True once the engine's loop has ended: a stop, --duration, the reader gone, a failure."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def close(self) -> None:
        """Stop everything in order (see the module's docstring); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.engine.close()
        finally:
            if self.recorder is not None:
                self.recorder.close()
            if self.resolver is not None:
                self.resolver.close()
            if self.http is not None:
                self.http.close()
            if self.manager is not None:
                self.manager.stop()
            if self.forwarder is not None:
                self.forwarder.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ManagerEvents:
    """Every engine record to the Manager: OOM kills and cgroup creation/deletion become
    cAdvisor events, and a cgroup made or removed wakes discovery."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    def write(self, record: dict) -> None:
        self.manager.on_record(record)

    def flush(self) -> None:
        pass

    def alive(self) -> bool:
        return True


def _collection(metrics: MetricsOptions, interval: float) -> ManagerConfig:
    """What the sweeps read follows the metric groups, as cAdvisor's --disable_metrics turns its
    collectors off: a group left out costs nothing (per-CPU usage, disk I/O, hugetlb, NUMA,
    cpuset, network; fds and sockets only with --process-counts)."""
    on = metrics.enabled
    stats = StatsOptions(per_cpu=on("percpu"), diskio=on("diskIO"), hugetlb=on("hugetlb"), numa=on("memory_numa"),
                         cpuset=on("cpuset"))
    return ManagerConfig(housekeeping_interval=interval, stats=stats, network=on("network"),
                         process_counts=metrics.process_counts and on("process"))
