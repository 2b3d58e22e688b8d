"""Which runtime made a cgroup, and the container's id, from the cgroup path alone (no I/O).

The kubelet, docker, containerd (CRI and plain ctr), CRI-O and podman name container cgroups
each their own way; tracer.stats.cgroups.naming reads most of them (both cgroup drivers), and
this adds what naming leaves out: podman's cgroupfs parent (/libpod_parent/libpod-<id>), plain
containerd's /<namespace>/<id>, and that conmon's own scopes are not the container.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from tracer.stats.cgroups import naming

_LIBPOD = re.compile(r"^libpod-([0-9a-f]{64})(?:\.scope)?$")
_CONMON = re.compile(r"^(?:crio|libpod)-conmon-[0-9a-f]{64}\.scope$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,75}$")  # containerd's identifier rule


@dataclass(frozen=True)
class Target:
    """A container cgroup. RUNTIME is "" when the path does not say which runtime (a bare id
    below /kubepods: containerd, CRI-O or cri-dockerd); NAMESPACE is containerd's, when known.
    MAYBE: only plain containerd's /<namespace>/<id> form, which any two-level cgroup has; it
    is a container only if a containerd task of that name exists (the worker checks)."""

    runtime: str
    id: str
    namespace: str = ""
    pod_uid: str = ""
    maybe: bool = False


@dataclass(frozen=True)
class PodTarget:
    """A pod-level cgroup (/kubepods/burstable/pod<uid>): named by any container of the pod."""

    uid: str


@functools.lru_cache(maxsize=8192)  # pure; called for every record's paths on the engine's thread
def classify(path: str) -> Target | PodTarget | None:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    leaf = parts[-1]
    if _CONMON.match(leaf):
        return None  # conmon, the runtime's monitor: not the workload
    m = _LIBPOD.match(leaf)
    if m:
        return Target("podman", m.group(1))
    ident = naming.identify(path)
    pod_uid = ident.labels.get("io.kubernetes.pod.uid", "")
    cid = ident.container_id
    if cid:
        if ident.namespace == "docker" or leaf.startswith("docker-"):
            return Target("docker", cid, pod_uid=pod_uid)
        if leaf.startswith("cri-containerd-"):
            return Target("containerd", cid, pod_uid=pod_uid)
        if leaf.startswith("crio-"):
            return Target("crio", cid, pod_uid=pod_uid)
        return Target("", cid, pod_uid=pod_uid)  # cgroupfs driver under /kubepods: ask each
    if pod_uid and (leaf.startswith("pod") or leaf.startswith("kubepods-")):
        return PodTarget(pod_uid)
    if len(parts) == 2 and _NAME.match(parts[0]) and _NAME.match(leaf) and not parts[0].endswith(".slice"):
        return Target("containerd", leaf, namespace=parts[0], maybe=True)
    return None
