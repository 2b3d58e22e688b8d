"""What `oomtrace doctor` says about the container runtimes: found, and readable or why not."""

from __future__ import annotations

import os

from tracer.identity import _docker, _oci
from tracer.identity.model import SOCKET_MISSING, Unresolved
from tracer.identity.resolver import ResolverConfig


def runtimes(config: ResolverConfig | None = None) -> list[tuple[str, str]]:
    """(runtime, state) for each runtime the Resolver would ask: "readable (WHERE)", or why not."""
    c = config or ResolverConfig()
    out: list[tuple[str, str]] = []
    for name, sockets in (("docker", c.docker_sockets), ("podman", c.podman_sockets)):
        out.append((name, _api_state(sockets, c.timeout)))
    out.append(("containerd", _dir_state([os.path.join(s, _oci.TASKS) for s in c.containerd_states])))
    out.append(("crio", _dir_state([os.path.join(r, "overlay-containers") for r in c.crio_roots])))
    return out


def _api_state(sockets: tuple[str, ...], timeout: float) -> str:
    why = "no socket configured"
    for sock in sockets:
        try:
            _docker.ping(sock, timeout)
            return f"readable ({sock})"
        except Unresolved as u:
            why = f"{u.reason} ({sock})" if u.reason != SOCKET_MISSING or why.startswith("no ") else why
    return why


def _dir_state(dirs: list[str]) -> str:
    for d in dirs:
        if os.path.isdir(d):
            return f"readable ({d})" if os.access(d, os.R_OK | os.X_OK) else f"not readable ({d})"
    return "not found (" + ", ".join(dirs) + ")" if dirs else "not configured"


def summary(config: ResolverConfig | None = None) -> str:
    """One line: `docker readable (/var/run/docker.sock); podman socket missing (…); …`."""
    return "; ".join(f"{name} {state}" for name, state in runtimes(config))
