"""Docker Engine API (and podman's Docker-compatible API) over a unix socket: one GET.

Why not the `docker` PyPI package (7.2.0): it brings five more packages (requests, urllib3,
charset-normalizer, idna, certifi) and 90-100 ms of imports (measured here; http.client, json
and socket: 15 ms, most of it loaded by the agent anyway) to make the one call needed here,
GET /containers/<id>/json, and it hides the socket's connect and read timeouts behind its own
defaults. http.client over an AF_UNIX socket is in the standard library, is a dozen lines, and
keeps what matters in our hands: a short timeout on every step and each failure told apart
(socket missing, refused, timeout, garbled answer). The same code reads podman's
Docker-compatible API. Unversioned paths: dockerd and podman answer them at their own version.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping

from tracer.identity.model import (
    GARBLED,
    NO_ACCESS,
    NOT_FOUND,
    REFUSED,
    SOCKET_MISSING,
    TIMEOUT,
    ContainerIdentity,
    Identity,
    PodIdentity,
    Unresolved,
)
from tracer.stats.model import parse_rfc3339

MAX_BODY = 4 << 20  # a container's inspect is a few KiB; more is not a runtime's answer
# The kubelet's labels on a Docker container (dockershim, cri-dockerd)
POD_NAME, POD_NAMESPACE = "io.kubernetes.pod.name", "io.kubernetes.pod.namespace"
POD_UID, CONTAINER_NAME = "io.kubernetes.pod.uid", "io.kubernetes.container.name"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def get(path: str, url: str, timeout: float) -> tuple[int, bytes]:
    """GET URL from the API on unix socket PATH: (status, body). Raises Unresolved with the
    reason when there is no HTTP answer."""
    conn = _UnixConnection(path, timeout)
    try:
        conn.request("GET", url, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise Unresolved(GARBLED, detail=f"{path}: an answer over {MAX_BODY} bytes")
        return resp.status, body
    except FileNotFoundError as e:
        raise Unresolved(SOCKET_MISSING, detail=path) from e
    except ConnectionRefusedError as e:
        raise Unresolved(REFUSED, detail=path) from e
    except PermissionError as e:
        raise Unresolved(NO_ACCESS, detail=path) from e
    except (TimeoutError, socket.timeout) as e:
        raise Unresolved(TIMEOUT, detail=path) from e
    except http.client.HTTPException as e:  # a status line that is not HTTP, a cut answer
        raise Unresolved(GARBLED, detail=f"{path}: {e!r}") from e
    except OSError as e:  # not a socket, permission, reset
        raise Unresolved(REFUSED, detail=f"{path}: {e}") from e
    finally:
        conn.close()


def get_json(path: str, url: str, timeout: float) -> object | None:
    """The JSON body of GET URL, or None for a 404; any other status or bad JSON is GARBLED."""
    status, body = get(path, url, timeout)
    if status == 404:
        return None
    if status != 200:
        raise Unresolved(GARBLED, detail=f"{path}: HTTP {status}")
    try:
        return json.loads(body)
    except ValueError as e:
        raise Unresolved(GARBLED, detail=f"{path}: {e}") from e


def ping(path: str, timeout: float) -> None:
    """GET /_ping (cheap on dockerd and podman alike); raises Unresolved unless it says 200."""
    status, _ = get(path, "/_ping", timeout)
    if status != 200:
        raise Unresolved(GARBLED, detail=f"{path}: /_ping HTTP {status}")


def inspect(runtime: str, sock: str, container_id: str, timeout: float) -> Identity:
    """The container's identity from `GET /containers/<id>/json` on SOCK."""
    body = get_json(sock, f"/containers/{container_id}/json", timeout)
    if body is None:
        raise Unresolved(NOT_FOUND, retry=True, detail=f"{runtime} {container_id[:12]}")
    try:
        assert isinstance(body, dict)
        config = body.get("Config") or {}
        labels = _strings(config.get("Labels"))
        container = ContainerIdentity(
            runtime=runtime, id=str(body["Id"]), name=str(body.get("Name") or "").lstrip("/") or None,
            image=_str(config.get("Image")), image_id=_str(body.get("Image")), labels=labels,
            created=_time(body.get("Created")), started=_time((body.get("State") or {}).get("StartedAt")))
    except (AssertionError, AttributeError, KeyError, TypeError) as e:
        raise Unresolved(GARBLED, detail=f"{runtime} inspect: {e!r}") from e
    return Identity(container, pod_from_labels(labels, POD_NAME, POD_NAMESPACE, POD_UID, CONTAINER_NAME))


def pod_from_labels(labels: Mapping[str, str], name: str, namespace: str, uid: str,
                    container: str) -> PodIdentity | None:
    """A pod when both its name and namespace are there (kubelet's rule for a pod's container)."""
    if not labels.get(name) or not labels.get(namespace):
        return None
    return PodIdentity(labels[name], labels[namespace], labels.get(uid) or None, labels.get(container) or None)


def _time(value: object) -> float | None:
    """Docker's RFC 3339 time with nanoseconds in Unix seconds; None for none, its zero time
    ("0001-01-01T00:00:00Z": never) or one that cannot be read."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"labels are {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}
