"""The collector's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tracer.collect.store import Added, Row
from tracer.forward.wire import Address


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter("oomtrace_records_received", "Records received, by node", ["node"], registry=r)
        self.stored = Counter("oomtrace_records_stored", "Records committed to the store", registry=r)
        self.duplicates = Counter("oomtrace_records_duplicate",
                                  "Records received again (a resend) and not stored twice", registry=r)
        self.rejected = Counter("oomtrace_frames_rejected",
                                "Frames refused (the connection was closed), by reason", ["reason"], registry=r)
        self.expired = Counter("oomtrace_records_expired", "Records deleted by retention", registry=r)
        self.oom_kills = Counter("oomtrace_oom_kills", "OOM kills stored, by node and victim cgroup",
                                 ["node", "cgroup"], registry=r)
        self.agent_spooled = Gauge("oomtrace_agent_records_spooled",
                                   "Records in an agent's spool at its last forward_status", ["node"], registry=r)
        self.agent_spooled_total = Gauge("oomtrace_agent_records_spooled_total",
                                         "Records an agent has spooled since it started", ["node"], registry=r)
        self.agent_dropped = Gauge("oomtrace_agent_records_dropped_total",
                                   "Records an agent's full spool dropped since it started", ["node"], registry=r)
        self.connections = Gauge("oomtrace_connections", "Open agent connections", registry=r)
        self._kills: dict[tuple[str, str], object] = {}  # labels() is slow; a kill storm is not rare

    def count_received(self, rows: list[Row]) -> None:
        for node, n in Tally(row.node or "" for row in rows).items():
            self.received.labels(node).inc(n)

    def count_added(self, added: Added) -> None:
        self.stored.inc(added.stored)
        self.duplicates.inc(added.duplicates)
        for rec in added.new:
            node = str(rec.get("node") or "")
            if rec.get("type") == "oom_kill":
                key = (node, str(rec.get("cgroup") or ""))
                child = self._kills.get(key)
                if child is None:
                    child = self._kills[key] = self.oom_kills.labels(*key)
                child.inc()
            else:  # forward_status: the agent's own counters
                self.agent_spooled.labels(node).set(_number(rec.get("spooled")))
                self.agent_spooled_total.labels(node).set(_number(rec.get("spooled_total")))
                self.agent_dropped.labels(node).set(_number(rec.get("dropped_total")))

    def serve(self, address: Address) -> None:
        if address.kind != "tcp":
            raise ValueError(f"metrics listen on tcp://HOST:PORT, not {address}")
        start_http_server(address.port, address.host, registry=self.registry)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
