"""What the identity resolver tells about a cgroup: typed, frozen, and their record form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Why a container's identity is null (record field `*container_unknown`, counted in Resolver.stats).
SOCKET_MISSING = "socket missing"  # the runtime's API socket is not there
REFUSED = "refused"  # the socket is there, nobody accepts on it
NO_ACCESS = "permission denied"  # the socket or bundle is there, not for this process (not root)
TIMEOUT = "timeout"  # connected, no answer within the (short) timeout
GARBLED = "garbled"  # config.json or the API's answer is not what a runtime writes
NOT_FOUND = "not found"  # the runtime does not know the container (still, after the retries)
PENDING = "pending"  # a resolve is queued or under way: the record did not wait for it
DROPPED = "dropped"  # the resolver's queue was full when the cgroup was seen
NOT_CONTAINER = "not a container"  # the path looked like a container's but no runtime has it
REASONS = (SOCKET_MISSING, REFUSED, NO_ACCESS, TIMEOUT, GARBLED, NOT_FOUND, PENDING, DROPPED, NOT_CONTAINER)


@dataclass(frozen=True)
class PodIdentity:
    """A Kubernetes pod, from the kubelet's labels (Docker) or CRI's annotations (containerd,
    CRI-O). `container` is the container's name in the pod; None for a pod-level cgroup."""

    name: str
    namespace: str
    uid: str | None = None
    container: str | None = None

    def to_record(self) -> dict:
        return {"name": self.name, "namespace": self.namespace, "uid": self.uid, "container": self.container}


@dataclass(frozen=True)
class ContainerIdentity:
    runtime: str  # docker, podman, containerd, crio
    id: str
    name: str | None = None
    image: str | None = None  # as the container was created from it (name:tag, or a digest)
    image_id: str | None = None  # sha256:… where the runtime gives it
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    # Unix seconds, where the runtime says (Docker, podman): the container spec's creation and
    # start time (cAdvisor master's start_time). Not in records: the kill's own time is there.
    created: float | None = field(default=None, compare=False)
    started: float | None = field(default=None, compare=False)

    def to_record(self) -> dict:
        return {"runtime": self.runtime, "id": self.id, "name": self.name, "image": self.image,
                "image_id": self.image_id, "labels": dict(self.labels)}


@dataclass(frozen=True)
class Identity:
    """A cgroup's workload: the container in it and/or its pod (a pod-level cgroup has only the pod)."""

    container: ContainerIdentity | None = None
    pod: PodIdentity | None = None


class Unresolved(Exception):
    """A backend could not name the container: REASON (one of REASONS); RETRY when asking again
    shortly may help (the runtime has not registered the container yet)."""

    def __init__(self, reason: str, retry: bool = False, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.retry = retry
