"""oomtrace's own metrics on the agent's /metrics: OOM kills by namespace and constraint, what
the engine lost, and which probes are attached. A sink: the engine hands it every record.

Bounded: at most MAX_NAMESPACES namespace values; kills in the rest are counted under
"~other" and in oomtrace_metric_labels_overflow_total, so a flood of namespaces cannot grow
the scrape without limit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

MAX_NAMESPACES = 1000
OTHER = "~other"


class AgentMetrics:
    """Counts records as the engine writes them; render() is the exposition of this registry
    plus the counters COUNTERS gives (name without _total → (help, callable)), read at scrape
    time from the parts that keep their own counts."""

    def __init__(self, counters: dict[str, tuple[str, Callable[[], float]]] | None = None,
                 max_namespaces: int = MAX_NAMESPACES) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.oom_kills = Counter("oomtrace_oom_kills_total", "OOM kills the kernel reported, by the victim's pod "
                                 "namespace (empty outside Kubernetes) and the OOM's constraint",
                                 ("namespace", "constraint"), registry=r)
        self.records = Counter("oomtrace_records_total", "Records the engine wrote, by type", ("type",), registry=r)
        self.lost = Counter("oomtrace_lost_samples_total", "Samples the kernel's perf buffer dropped", registry=r)
        self.errors = Counter("oomtrace_record_errors_total", "Samples that could not be decoded", registry=r)
        self.overflow = Counter("oomtrace_metric_labels_overflow_total",
                                "Kills counted under namespace=\"~other\" because the namespace bound was reached",
                                registry=r)
        self.probe = Gauge("oomtrace_probe_attached", "1 for each probe the engine attached, 0 for one it could "
                           "not attach", ("probe",), registry=r)
        if counters:
            r.register(_Read(counters))
        self._namespaces: set[str] = set()
        self._max_namespaces = max_namespaces
        self._lock = threading.Lock()

    # --- the sink --------------------------------------------------------------------------

    def write(self, record: dict) -> None:
        kind = str(record.get("type"))
        self.records.labels(kind if kind in _TYPES else "other").inc()
        if kind == "oom_kill":
            self.oom_kills.labels(self._namespace(record), str(record.get("constraint") or "")).inc()
        elif kind == "lost":
            self.lost.inc(max(0, int(record.get("count") or 0)))
        elif kind == "error":
            self.errors.inc()
        elif kind == "start":
            for probe in record.get("probes") or ():
                self.probe.labels(str(probe)).set(1)
            for probe in record.get("missing") or {}:
                self.probe.labels(str(probe)).set(0)

    def flush(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def _namespace(self, record: dict) -> str:
        pod = record.get("pod")
        namespace = str(pod.get("namespace") or "") if isinstance(pod, dict) else ""
        with self._lock:
            if namespace in self._namespaces:
                return namespace
            if len(self._namespaces) < self._max_namespaces:
                self._namespaces.add(namespace)
                return namespace
        self.overflow.inc()
        return OTHER

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Read(Collector):
    def __init__(self, counters: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self.counters = counters

    def collect(self):
        for name, (help_text, read) in self.counters.items():
            yield CounterMetricFamily(name, help_text, value=read())


# Record types counted by name; anything else (a future type) under "other": a bounded label.
_TYPES = frozenset({"start", "oom_kill", "cgroup_create", "cgroup_delete", "memory_pressure", "container_stats",
                    "lost", "error", "forward_status", "oom_report"})
