"""The Resolver: cgroup path → the workload in it, learned early (when the cgroup is made, or
by a walk at start), kept late (after the cgroup is removed), never waited for.

    observe(path)  the engine saw a cgroup made: queue a resolve (bounded queue; drops counted)
    lookup(path)   what is known now: a dict read, never a runtime call
    forget(path)   the cgroup is gone: keep its entry KEEP_DELETED seconds, for the records after
    close()        stop the worker

One worker thread asks the runtimes (private backends: _docker for Docker and podman's
Docker-compatible API, _oci for containerd's and CRI-O's bundles). A container the runtime does
not know yet (the cgroup can appear before the API answers for it) is asked again after short,
growing delays; a timeout is tried once more (podman answers slowly while a `run` holds its
lock); every other failure is final at once and counted by its reason. So a hanging socket
costs the worker two short timeouts per container, and never costs a record anything.
"""

from __future__ import annotations

import heapq
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tracer.identity import _docker, _oci
from tracer.identity.model import (
    DROPPED,
    NOT_CONTAINER,
    NOT_FOUND,
    PENDING,
    SOCKET_MISSING,
    TIMEOUT,
    Identity,
    PodIdentity,
    Unresolved,
)
from tracer.identity.paths import PodTarget, Target, classify
from tracer.kernel import cgroupfs


@dataclass(frozen=True)
class ResolverConfig:
    docker_sockets: tuple[str, ...] = ("/var/run/docker.sock",)
    podman_sockets: tuple[str, ...] = ("/run/podman/podman.sock",)
    containerd_states: tuple[str, ...] = ("/run/containerd",)
    crio_roots: tuple[str, ...] = ("/run/containers/storage",)
    timeout: float = 0.25  # seconds per socket step: a local daemon answers in milliseconds
    retry_delays: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)  # "not found yet": ~3 s in all
    queue_size: int = 1024  # cgroups waiting for the worker
    cache_size: int = 4096  # cgroup paths remembered (resolved or failed); deleted ones go first
    keep_deleted: float = 600.0  # seconds an entry outlives its cgroup
    pod_cache_size: int = 1024  # pod uid → pod, to name pod-level cgroups
    walk: bool = True  # at start, resolve the container cgroups that already exist
    walk_limit: int = 200_000  # cgroups the walk looks at, at most


@dataclass(frozen=True)
class _Entry:
    identity: Identity | None
    reason: str | None  # why identity is None


class Resolver:
    def __init__(self, config: ResolverConfig | None = None,
                 walk_root: Callable[[], tuple[str, str] | None] | None = None) -> None:
        self.config = config or ResolverConfig()
        self.stats: Counter[str] = Counter()  # failure reasons, and resolved, retries, evicted, expired, walked
        self._walk_root = walk_root or _memory_root
        self._entries: dict[str, _Entry] = {}  # insertion order is age: the oldest is evicted first
        self._deleted: dict[str, float] = {}  # path → when its cgroup went (monotonic), oldest first
        self._pods: dict[str, PodIdentity] = {}  # pod uid → the pod (container None)
        self._pending: set[str] = set()  # queued or waiting for a retry
        self._queue: queue.Queue[str] = queue.Queue(self.config.queue_size)
        self._lock = threading.Lock()  # writers only; lookup() reads the dicts without it
        self._stop = threading.Event()
        self._walked = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the engine's side: never blocks on a runtime -----------------------------------------

    def lookup(self, path: str) -> Identity | None:
        entry = self._entries.get(path)
        if entry is not None:
            return entry.identity
        target = classify(path)
        if isinstance(target, PodTarget):
            pod = self._pods.get(target.uid)
            return Identity(None, pod) if pod is not None else None
        return None

    def why(self, path: str) -> str | None:
        """Why lookup(PATH) is None for a container's cgroup; None when it is not one (as far as
        the path tells) or when it is known."""
        entry = self._entries.get(path)
        if entry is not None:
            return entry.reason if entry.reason != NOT_CONTAINER else None
        target = classify(path)
        if target is None:
            return None
        if isinstance(target, PodTarget):
            return None  # a pod's own cgroup holds no container: its pod is named when known
        if path in self._pending:
            return None if target.maybe else PENDING
        return None

    def identify(self, path: str) -> tuple[Identity | None, str | None]:
        """lookup() and why() together, for a record; a container cgroup not seen before (made
        before the walk, or its mkdir lost) is observed now, for the records that follow."""
        identity = self.lookup(path)
        if identity is not None:
            return identity, None
        entry = self._entries.get(path)
        if entry is None or entry.reason == DROPPED:
            self.observe(path)
        return None, self.why(path)

    def observe(self, path: str) -> None:
        entry = self._entries.get(path)
        if path in self._deleted:  # made again after its removal (a restart, a reused name): ask again
            with self._lock:
                self._deleted.pop(path, None)
            entry = None
        if (entry is not None and entry.reason != DROPPED) or path in self._pending:
            return
        target = classify(path)
        if not isinstance(target, Target):
            return
        with self._lock:
            if path in self._pending:
                return
            self._pending.add(path)
            try:
                self._queue.put_nowait(path)
            except queue.Full:
                self._pending.discard(path)
                self._put(path, _Entry(None, DROPPED))
                self.stats[DROPPED] += 1

    def forget(self, path: str) -> None:
        """PATH's cgroup is gone: its entry stays config.keep_deleted seconds (or until the cache
        needs the room), so records that come after the removal still carry the name."""
        if path in self._entries or path in self._pending:
            with self._lock:
                self._deleted.pop(path, None)
                self._deleted[path] = time.monotonic()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="oomtrace-identity", daemon=True)
        self._thread.start()

    def wait_walked(self, timeout: float) -> bool:
        """Wait until the start's walk of existing containers is done (a one-shot command that
        shows them wants their names); False if it took longer than TIMEOUT."""
        return self._walked.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __len__(self) -> int:
        return len(self._entries)

    # --- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        retries: list[tuple[float, str, int]] = []  # (when, path, attempt): a heap
        if self.config.walk:
            self._walk(retries)
        self._walked.set()
        next_expiry = 0.0
        while not self._stop.is_set():
            wait = min(0.25, max(0.0, retries[0][0] - time.monotonic())) if retries else 0.25
            try:
                path = self._queue.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                self._attempt(path, 0, retries)
            now = time.monotonic()
            while retries and retries[0][0] <= now and not self._stop.is_set():
                _, path, attempt = heapq.heappop(retries)
                self._attempt(path, attempt, retries)
            if now >= next_expiry:
                self._expire(now)
                next_expiry = now + 1.0

    def _walk(self, retries: list[tuple[float, str, int]]) -> None:
        """The container cgroups that exist at start, resolved inline (the queue is for later)."""
        root = self._walk_root()
        if root is None:
            return
        mount, top = root
        for n, (_, path) in enumerate(cgroupfs.cgroup_dirs(mount, top)):
            if self._stop.is_set() or n >= self.config.walk_limit:
                break
            if isinstance(classify(path), Target) and path not in self._entries:
                self.stats["walked"] += 1
                with self._lock:
                    self._pending.add(path)
                self._attempt(path, 0, retries)

    def _attempt(self, path: str, attempt: int, retries: list[tuple[float, str, int]]) -> None:
        target = classify(path)
        if not isinstance(target, Target):
            with self._lock:
                self._pending.discard(path)
            return
        try:
            identity = self._resolve(target)
        except Unresolved as u:
            delays = self.config.retry_delays
            # a busy runtime (podman holds its lock through a `run`) may miss one timeout: once more
            retry = u.retry or (u.reason == TIMEOUT and attempt == 0)
            if retry and attempt < len(delays):
                self.stats["retries"] += 1
                heapq.heappush(retries, (time.monotonic() + delays[attempt], path, attempt + 1))
                return
            reason = NOT_CONTAINER if target.maybe and u.reason == NOT_FOUND else u.reason
            self.stats[reason] += 1
            self._settle(path, _Entry(None, reason))
            return
        self.stats["resolved"] += 1
        self._settle(path, _Entry(identity, None))
        pod, uid = identity.pod, target.pod_uid or (identity.pod.uid if identity.pod else "")
        if pod is not None and uid:
            with self._lock:
                self._pods.pop(uid, None)
                self._pods[uid] = PodIdentity(pod.name, pod.namespace, pod.uid or uid, None)
                while len(self._pods) > self.config.pod_cache_size:
                    del self._pods[next(iter(self._pods))]

    def _resolve(self, t: Target) -> Identity:
        c = self.config
        if t.runtime == "docker":
            return self._api("docker", c.docker_sockets, t.id)
        if t.runtime == "podman":
            return self._api("podman", c.podman_sockets, t.id)
        if t.runtime in ("containerd", ""):
            bundle = _oci.containerd_bundle(c.containerd_states, t.id, t.namespace)
            if bundle is not None:
                return _oci.containerd_identity(bundle, t.id)
        if t.runtime in ("crio", ""):
            bundle = _oci.crio_bundle(c.crio_roots, t.id)
            if bundle is not None:
                return _oci.crio_identity(bundle, t.id)
        if t.runtime == "":  # a bare id below /kubepods: cri-dockerd keeps kubelet's labels in Docker
            try:
                return self._api("docker", c.docker_sockets, t.id)
            except Unresolved as u:
                if u.reason != SOCKET_MISSING:
                    raise
        # No bundle yet (or a plain /<a>/<b> cgroup that is no containerd task: not retried).
        raise Unresolved(NOT_FOUND, retry=not t.maybe, detail=f"{t.runtime or 'runtime'} {t.id[:12]}")

    def _api(self, runtime: str, sockets: tuple[str, ...], container_id: str) -> Identity:
        """The first socket that knows the container; else the most telling failure (a 404 from
        a live runtime, which is retried, over a socket that is missing)."""
        failure = Unresolved(SOCKET_MISSING, detail=f"no {runtime} socket configured")
        for sock in sockets:
            try:
                return _docker.inspect(runtime, sock, container_id, self.config.timeout)
            except Unresolved as u:
                if failure.reason != NOT_FOUND:
                    failure = u
        raise failure

    # --- the cache ----------------------------------------------------------------------------

    def _settle(self, path: str, entry: _Entry) -> None:
        with self._lock:
            self._pending.discard(path)
            self._put(path, entry)

    def _put(self, path: str, entry: _Entry) -> None:
        """(lock held) PATH → ENTRY, evicting the oldest removed cgroup's entry, else the oldest."""
        self._entries.pop(path, None)
        self._entries[path] = entry
        while len(self._entries) > self.config.cache_size:
            victim = next(iter(self._deleted), None)
            if victim is None or victim not in self._entries:
                victim = next(iter(self._entries))
            self._deleted.pop(victim, None)
            self._entries.pop(victim, None)
            self.stats["evicted"] += 1

    def _expire(self, now: float) -> None:
        cutoff = now - self.config.keep_deleted
        with self._lock:
            while self._deleted:
                path, when = next(iter(self._deleted.items()))
                if when > cutoff:
                    break
                del self._deleted[path]
                if self._entries.pop(path, None) is not None:
                    self.stats["expired"] += 1


def _memory_root() -> tuple[str, str] | None:
    """(mount, cgroup path of the mount) of the memory controller's hierarchy, else cgroup v2's."""
    hierarchies = cgroupfs.read_hierarchies()
    h = cgroupfs.memory_hierarchy(hierarchies) or hierarchies.get(0)
    if h is None or h.mount is None or not os.path.isdir(h.mount):
        return None
    return h.mount, h.root
