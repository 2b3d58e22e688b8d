"""Container events (OOM kills, creation, deletion) kept for a while and streamed to watchers.

Unlike cAdvisor, whose watchers get a blocking send (one slow watcher stalls every producer),
each watcher here has a bounded queue: when it is full the event is dropped for that watcher
only and counted in its `dropped`, which its reader checks (`oomtrace events` says so).
"""

from __future__ import annotations

import bisect
import queue
import threading
from dataclasses import dataclass, field

from tracer.stats.model import EVENT_TYPES, Event, EventData, EventRequest, OomKillEventData


@dataclass(frozen=True)
class EventPolicy:
    """Retention per event type; cAdvisor's defaults (24 h, 100,000 events)."""

    max_age: float = 86400.0
    max_events: int = 100_000
    per_type_age: dict[str, float] = field(default_factory=dict)
    per_type_events: dict[str, int] = field(default_factory=dict)

    def age(self, kind: str) -> float:
        return self.per_type_age.get(kind, self.max_age)

    def count(self, kind: str) -> int:
        return self.per_type_events.get(kind, self.max_events)


def oom_events(record: dict, stamp: float) -> tuple[Event, Event]:
    """The `oom` and `oomKill` events of one `oom_kill` record, named as cAdvisor names them.

    cAdvisor's oomparser reads the kernel's `oom-kill:constraint=…,oom_memcg=M,task_memcg=T,…`
    line: the `oom` event is named after T (the victim task's memcg) and carries no data; the
    `oomKill` event after M (the memcg that hit its limit) with the pid, the name and (master)
    the constraint. Any OOM that is not a memcg's prints no oom_memcg, its regexp fails and both
    events keep their default name `/`, with no constraint: kubelet reads `/` as "System OOM
    encountered". (Its code comments say the reverse of this; its tests pin this.)"""
    pid, comm = int(record.get("pid") or 0), str(record.get("comm") or "")
    if record.get("constraint") != "memcg":
        return (Event("/", stamp, "oom"), Event("/", stamp, "oomKill", EventData(OomKillEventData(pid, comm))))
    task = record.get("cgroup") or "/"
    # The memcg's path is unknown only if the directory went before it was resolved; the
    # victim's own cgroup lies inside it, so it names the container that OOMed better than `/`.
    memcg = record.get("memcg") or task
    data = EventData(OomKillEventData(pid, comm, "CONSTRAINT_MEMCG"))
    return Event(task, stamp, "oom"), Event(memcg, stamp, "oomKill", data)


def matches(request: EventRequest, event: Event) -> bool:
    if event.event_type not in request.event_types:
        return False
    if request.start_time is not None and event.timestamp < request.start_time:
        return False
    if request.end_time is not None and event.timestamp > request.end_time:
        return False
    name = request.container_name
    if request.include_subcontainers:
        # cAdvisor: an empty name with subcontainers is every container, as "/" is.
        if name in ("/", ""):
            return True
        return event.container_name == name or event.container_name.startswith(name.rstrip("/") + "/")
    return event.container_name == name


class Watch:
    """One watcher: get() its events; `dropped` counts what its full queue could not take."""

    def __init__(self, request: EventRequest, size: int) -> None:
        self.request = request
        self.dropped = 0
        self._queue: queue.Queue[Event] = queue.Queue(size)
        self.closed = False

    def offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def get(self, timeout: float | None = None) -> Event | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


class EventStore:
    def __init__(self, policy: EventPolicy | None = None) -> None:
        self.policy = policy or EventPolicy()
        self._by_type: dict[str, list[tuple[float, int, Event]]] = {t: [] for t in EVENT_TYPES}
        self._seq = 0
        self._watches: list[Watch] = []
        self._lock = threading.Lock()

    def add(self, event: Event) -> None:
        with self._lock:
            self._seq += 1
            kept = self._by_type.setdefault(event.event_type, [])
            limit = self.policy.count(event.event_type)
            if limit > 0:
                bisect.insort(kept, (event.timestamp, self._seq, event))  # out-of-order arrivals sort in
                self._expire(event.event_type, kept, limit)
            watches = [w for w in self._watches if matches(w.request, event)]
        for watch in watches:  # never blocks: a full watcher loses this event, counted
            watch.offer(event)

    def _expire(self, kind: str, kept: list, limit: int) -> None:
        newest = kept[-1][0]
        horizon = newest - self.policy.age(kind)
        start = bisect.bisect_left(kept, (horizon,))
        start = max(start, len(kept) - limit)
        if start > 0:
            del kept[:start]

    def get(self, request: EventRequest) -> list[Event]:
        """Stored events matching REQUEST, oldest first: the most recent max_events of them."""
        with self._lock:
            found = [e for t in request.event_types for _, _, e in self._by_type.get(t, ()) if matches(request, e)]
        found.sort(key=lambda e: e.timestamp)
        return found[-request.max_events:] if request.max_events > 0 else found

    def watch(self, request: EventRequest, size: int = 1000) -> Watch:
        # cAdvisor refuses both: a watch streams what happens from now on.
        if request.end_time is not None:
            raise ValueError("a watch has no end time")
        if request.start_time is not None:
            raise ValueError("a watch has no start time")
        w = Watch(request, size)
        with self._lock:
            self._watches.append(w)
        return w

    def stop_watch(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)
        watch.closed = True

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_type.values())
