"""Identity onto records, on their way from the engine to the sinks; never waits on a runtime.

A record gets what the Resolver knows at that moment (a dict read): `container` and `pod` for
its `cgroup`, and on `oom_kill` also `memcg_container` and `memcg_pod` for the OOMing memcg (a
pod-level limit names the pod). When a container cgroup's identity is not known, the record
says why in `container_unknown` / `memcg_container_unknown`. The engine's cgroup_create
records feed the Resolver (observe) and its cgroup_delete records start the keep-late clock
(forget), after they are stamped.
"""

from __future__ import annotations

from tracer.events.sinks import Sink
from tracer.identity.resolver import Resolver

# record type → (path field, prefix of the identity fields it gets)
STAMPED: dict[str, tuple[tuple[str, str], ...]] = {
    "oom_kill": (("cgroup", ""), ("memcg", "memcg_")),
    "cgroup_create": (("cgroup", ""),),
    "cgroup_delete": (("cgroup", ""),),
    "memory_pressure": (("cgroup", ""),),
    "container_stats": (("cgroup", ""),),
}


class IdentitySink:
    def __init__(self, sink: Sink, resolver: Resolver) -> None:
        self.sink = sink
        self.resolver = resolver

    def write(self, record: dict) -> None:
        fields = STAMPED.get(record.get("type", ""))
        if fields is not None:
            path = record.get("cgroup")
            if record["type"] == "cgroup_create" and path and not record.get("cgroup_truncated"):
                self.resolver.observe(path)
            for field, prefix in fields:
                self.stamp(record, record.get(field), prefix)
            if record["type"] == "cgroup_delete" and path:
                self.resolver.forget(path)
        self.sink.write(record)

    def stamp(self, record: dict, path: str | None, prefix: str) -> None:
        identity, why = self.resolver.identify(path) if path else (None, None)
        container = identity.container if identity is not None else None
        pod = identity.pod if identity is not None else None
        record[prefix + "container"] = container.to_record() if container is not None else None
        record[prefix + "pod"] = pod.to_record() if pod is not None else None
        if why is not None:
            record[prefix + "container_unknown"] = why

    def flush(self) -> None:
        self.sink.flush()

    def alive(self) -> bool:
        return self.sink.alive()
