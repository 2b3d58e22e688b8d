"""The collector's Prometheus metrics, in a registry of its own (no global state).

The only label whose values come from agents is `node`, and it is bounded: past MAX_NODES
distinct names, the rest are counted under `node="~other"` and in
oomtrace_metric_nodes_overflow. Which pod or cgroup an OOM kill hit belongs in the store
(`oomtrace events --db`), not in a label that would make one series per pod.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tracer.collect.store import Added, Row, text
from tracer.forward.wire import Address

MAX_NODES = 5000
OTHER_NODES = "~other"


class Metrics:
    def __init__(self, max_nodes: int = MAX_NODES) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter("oomtrace_records_received", "Records received, by node (the record's, else "
                                "the authenticated name, else the peer's address)", ["node"], registry=r)
        self.stored = Counter("oomtrace_records_stored", "Records committed to the store", registry=r)
        self.duplicates = Counter("oomtrace_records_duplicate",
                                  "Records received again (a resend) and not stored twice", registry=r)
        self.clamped = Counter("oomtrace_records_time_clamped", "Records whose own time was not believable "
                               "(NaN, before 2000, more than 10 minutes ahead): stored at their receive time",
                               registry=r)
        self.node_mismatch = Counter("oomtrace_records_node_rebound", "Records that named another node than "
                                     "their authenticated connection's, stored under the connection's", registry=r)
        self.rejected = Counter("oomtrace_frames_rejected",
                                "Frames refused (the connection was closed), by reason", ["reason"], registry=r)
        self.refused = Counter("oomtrace_connections_refused", "Connections closed at once: the connection "
                               "cap or the memory budget for frames being read was reached", ["reason"], registry=r)
        self.store_errors = Counter("oomtrace_store_errors", "Store rounds that failed (e.g. a full disk): "
                                    "nothing in them was acked, so their agents resend", registry=r)
        self.expired = Counter("oomtrace_records_expired", "Records deleted by retention", registry=r)
        self.oom_kills = Counter("oomtrace_oom_kills", "OOM kills stored, by node", ["node"], registry=r)
        self.agent_spooled = Gauge("oomtrace_agent_records_spooled",
                                   "Records in an agent's spool at its last forward_status", ["node"], registry=r)
        self.agent_spooled_total = Gauge("oomtrace_agent_records_spooled_total",
                                         "Records an agent has spooled since it started", ["node"], registry=r)
        self.agent_dropped = Gauge("oomtrace_agent_records_dropped_total", "Records an agent's full spool "
                                   "dropped, over its restarts (kept in its spool directory)", ["node"], registry=r)
        self.connections = Gauge("oomtrace_connections", "Open agent connections", registry=r)
        self.frame_bytes = Gauge("oomtrace_frame_bytes_buffered",
                                 "Bytes of frames read and not yet stored, over all connections", registry=r)
        self.nodes_overflow = Counter("oomtrace_metric_nodes_overflow", f"Records from nodes beyond the first "
                                      f"{max_nodes} names, counted under node=\"{OTHER_NODES}\"", registry=r)
        self._max_nodes = max_nodes
        self._nodes: dict[str, str] = {}  # node as received -> its label value: escaped, or ~other

    def node(self, name: str | None) -> str:
        """The label value for NAME: valid UTF-8, one of at most max_nodes, else ~other."""
        key = name or ""
        label = self._nodes.get(key)
        if label is None:
            if len(self._nodes) < self._max_nodes:
                label = self._nodes[key] = text(key)
            else:
                label = OTHER_NODES
        return label

    def count_received(self, rows: list[Row]) -> None:
        for node, n in Tally(row.node for row in rows).items():
            label = self.node(node)
            self.received.labels(label).inc(n)
            if label is OTHER_NODES:  # counted here, once per record received
                self.nodes_overflow.inc(n)
        clamped = sum(row.flags for row in rows)  # TIME_CLAMPED is the only flag
        if clamped:
            self.clamped.inc(clamped)

    def count_added(self, added: Added) -> None:
        self.stored.inc(added.stored)
        self.duplicates.inc(added.duplicates)
        for name, rec in added.new:
            node = self.node(name)
            if rec.get("type") == "oom_kill":
                self.oom_kills.labels(node).inc()
            else:  # forward_status: the agent's own counters
                self.agent_spooled.labels(node).set(_number(rec.get("spooled")))
                self.agent_spooled_total.labels(node).set(_number(rec.get("spooled_total")))
                self.agent_dropped.labels(node).set(_number(rec.get("dropped_total")))

    def serve(self, address: Address) -> None:
        """Serve /metrics; OSError (e.g. the port is taken) is raised here, at once."""
        if address.kind != "tcp":
            raise ValueError(f"metrics listen on tcp://HOST:PORT, not {address}")
        start_http_server(address.port, address.host, registry=self.registry)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
