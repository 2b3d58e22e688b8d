"""containerd and CRI-O: the OCI bundle config.json of the running container, read-only.

Both write the pod's and the container's names into the bundle's annotations (containerd's
CRI plugin: io.kubernetes.cri.*; CRI-O: io.kubernetes.pod.* and io.kubernetes.cri-o.*), and the
file is there from `create` on, before the container's cgroup gets its first task. Reading a
file of a few KiB on tmpfs is cheaper than a gRPC round trip, and needs no client library.
containerd's own labels live in its metadata database, which is not read; the annotations
(where `ctr run --label/--annotation` and CRI put what they know) stand for labels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from tracer.identity._docker import pod_from_labels
from tracer.identity.model import GARBLED, NO_ACCESS, NOT_FOUND, ContainerIdentity, Identity, PodIdentity, Unresolved

MAX_CONFIG = 4 << 20
TASKS = "io.containerd.runtime.v2.task"  # below containerd's state dir: <namespace>/<id>/config.json
CRI = "io.kubernetes.cri."


def containerd_bundle(states: Iterable[str], container_id: str, namespace: str = "") -> str | None:
    """The config.json of containerd task CONTAINER_ID (in NAMESPACE, else in any), or None."""
    for state in states:
        base = os.path.join(state, TASKS)
        try:
            namespaces = [namespace] if namespace else os.listdir(base)
        except OSError:
            continue
        for ns in namespaces:
            path = os.path.join(base, ns, container_id, "config.json")
            if os.path.exists(path):
                return path
    return None


def crio_bundle(roots: Iterable[str], container_id: str) -> str | None:
    for root in roots:
        path = os.path.join(root, "overlay-containers", container_id, "userdata", "config.json")
        if os.path.exists(path):
            return path
    return None


def read_annotations(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG + 1)
    except FileNotFoundError as e:  # the task ended between the look and the read
        raise Unresolved(NOT_FOUND, detail=path) from e
    except PermissionError as e:
        raise Unresolved(NO_ACCESS, detail=path) from e
    except OSError as e:
        raise Unresolved(GARBLED, detail=f"{path}: {e}") from e
    try:
        if len(raw) > MAX_CONFIG:
            raise ValueError("too large")
        config = json.loads(raw)
        annotations = config.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ValueError("annotations is not a map")
    except (ValueError, AttributeError) as e:  # JSONDecodeError is a ValueError
        # written whole before runc makes the cgroup, so a bad file stays bad: no retry
        raise Unresolved(GARBLED, detail=f"{path}: {e}") from e
    return {str(k): str(v) for k, v in annotations.items()}


def containerd_identity(path: str, container_id: str) -> Identity:
    a = read_annotations(path)
    sandbox = a.get(CRI + "container-type") == "sandbox"  # the pod's pause container
    pod = None
    if a.get(CRI + "sandbox-name") and a.get(CRI + "sandbox-namespace"):
        pod = PodIdentity(a[CRI + "sandbox-name"], a[CRI + "sandbox-namespace"], a.get(CRI + "sandbox-uid") or None,
                          None if sandbox else a.get(CRI + "container-name") or None)
    name = a.get(CRI + "container-name") or container_id
    return Identity(ContainerIdentity("containerd", container_id, name, a.get(CRI + "image-name") or None, None, a),
                    pod)


def crio_identity(path: str, container_id: str) -> Identity:
    a = read_annotations(path)
    labels = a
    try:  # CRI-O keeps the container's CRI labels as one JSON string
        parsed = json.loads(a.get("io.kubernetes.cri-o.Labels", "null"))
        if isinstance(parsed, dict):
            labels = {str(k): str(v) for k, v in parsed.items()}
    except ValueError:
        pass
    pod = pod_from_labels(a, "io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid",
                          "io.kubernetes.container.name")
    name = a.get("io.kubernetes.container.name") or a.get("io.kubernetes.cri-o.Name") or container_id
    return Identity(ContainerIdentity("crio", container_id, name, a.get("io.kubernetes.cri-o.ImageName") or None,
                                      a.get("io.kubernetes.cri-o.ImageRef") or None, labels), pod)
