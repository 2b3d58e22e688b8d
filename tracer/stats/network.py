"""Interface counters by netlink (pyroute2): the host's for the root container, a container's
from its own network namespace.

Opening a netlink socket inside another namespace costs milliseconds (pyroute2 does it from a
helper), so one socket per namespace is kept open between sweeps and closed once no container
uses that namespace any more; an open socket would otherwise keep a dead namespace alive.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tracer.stats.model import InterfaceStats

log = logging.getLogger("oomtrace.network")
# Not the host's own: cAdvisor leaves these out of the root container's interfaces and out
# of MachineInfo's network devices (prefixes).
IGNORED_DEVICES = ("lo", "veth", "docker", "nerdctl")


class NetworkReader:
    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self.host_ns = _ns_inode(f"{proc}/self/ns/net")
        self._host: Any = None  # a pyroute2 IPRoute, made on first use
        self._sockets: dict[int, Any] = {}
        self._used: set[int] = set()

    def host(self) -> list[InterfaceStats]:
        from pyroute2 import IPRoute

        if self._host is None:
            self._host = IPRoute()
        return [s for s in _stats(self._host) if not s.name.startswith(IGNORED_DEVICES)]

    def namespace_of(self, pid: int) -> int | None:
        return _ns_inode(f"{self.proc}/{pid}/ns/net")

    def container(self, pid: int) -> list[InterfaceStats] | None:
        """Counters of PID's namespace; None when it is the host's (the container has no network
        of its own) or PID is gone."""
        ns = self.namespace_of(pid)
        if ns is None or ns == self.host_ns:
            return None
        self._used.add(ns)
        sock = self._sockets.get(ns)
        try:
            if sock is None:
                from pyroute2 import IPRoute

                sock = self._sockets[ns] = IPRoute(netns=f"{self.proc}/{pid}/ns/net")
            return [s for s in _stats(sock) if s.name != "lo"]
        except Exception as e:  # noqa: BLE001 - pyroute2 raises many kinds; the namespace is gone
            log.debug("netns of pid %d: %s", pid, e)
            self._drop(ns)
            return None

    def end_sweep(self) -> None:
        for ns in [ns for ns in self._sockets if ns not in self._used]:
            self._drop(ns)
        self._used = set()

    def close(self) -> None:
        for ns in list(self._sockets):
            self._drop(ns)
        if self._host is not None:
            self._host.close()
            self._host = None

    def _drop(self, ns: int) -> None:
        sock = self._sockets.pop(ns, None)
        if sock is not None:
            try:
                sock.close()
            except Exception:  # noqa: BLE001 - closing a socket of a dead namespace
                pass


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _stats(ip) -> list[InterfaceStats]:
    out = []
    for link in ip.get_links():
        s = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS") or {}
        out.append(InterfaceStats(
            name=link.get_attr("IFLA_IFNAME") or "", rx_bytes=s.get("rx_bytes", 0), rx_packets=s.get("rx_packets", 0),
            rx_errors=s.get("rx_errors", 0), rx_dropped=s.get("rx_dropped", 0), tx_bytes=s.get("tx_bytes", 0),
            tx_packets=s.get("tx_packets", 0), tx_errors=s.get("tx_errors", 0), tx_dropped=s.get("tx_dropped", 0)))
    return out
