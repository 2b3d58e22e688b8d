"""What a cgroup path says about its container: runtime, id, pod, QoS class.

Container names are cgroup paths; this reads the conventions of docker, containerd (CRI),
cri-o, podman, systemd and the kubelet (both cgroup drivers) from the path alone, without
asking any runtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ID = r"([0-9a-f]{64})"
# (pattern of the last path element, namespace)
_RUNTIMES = [
    (re.compile(rf"^docker-{_ID}\.scope$"), "docker"),
    (re.compile(rf"^cri-containerd-{_ID}\.scope$"), "containerd"),
    (re.compile(rf"^crio-{_ID}\.scope$"), "crio"),
    (re.compile(rf"^crio-conmon-{_ID}\.scope$"), "crio"),
    (re.compile(rf"^libpod-{_ID}\.scope$"), "podman"),
    (re.compile(rf"^libpod-conmon-{_ID}\.scope$"), "podman"),
]
_BARE_ID = re.compile(rf"^{_ID}$")  # cgroupfs driver: /docker/<id>, /kubepods/.../<id>
_POD = re.compile(r"^(?:kubepods-(?:burstable-|besteffort-)?)?pod([0-9a-f_-]{36})(?:\.slice)?$")
_SYSTEMD_UNIT = re.compile(r"\.(scope|service|slice|socket|mount)$")


@dataclass(frozen=True)
class Identity:
    namespace: str = ""
    aliases: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def container_id(self) -> str:
        return self.labels.get("container_id", "")


def identify(name: str) -> Identity:
    parts = [p for p in name.split("/") if p]
    labels: dict[str, str] = {}
    pod = _pod(parts, labels)
    if not parts:
        return Identity()
    leaf = parts[-1]
    namespace, cid = "", ""
    for pattern, runtime in _RUNTIMES:
        m = pattern.match(leaf)
        if m:
            namespace, cid = runtime, m.group(1)
            break
    else:
        m = _BARE_ID.match(leaf)
        if m:
            cid = m.group(1)
            namespace = "docker" if parts[0] == "docker" else ("containerd" if pod else "")
    if cid:
        labels["container_id"] = cid
        return Identity(namespace, (cid, cid[:12]), labels)
    if _SYSTEMD_UNIT.search(leaf) and not pod:
        return Identity("systemd", (leaf,), labels)
    return Identity(namespace, (), labels)


def _pod(parts: list[str], labels: dict[str, str]) -> bool:
    if not parts or not parts[0].startswith("kubepods"):
        return False
    qos = "guaranteed"
    for part in parts:
        if "besteffort" in part:
            qos = "besteffort"
        elif "burstable" in part:
            qos = "burstable"
        m = _POD.match(part)
        if m:
            labels["io.kubernetes.pod.uid"] = m.group(1).replace("_", "-")
            labels["qos_class"] = qos
            return True
    labels["qos_class"] = qos
    return False
