"""/metrics served from the last sweep: the container families are rendered at most once per
sweep, on the first scrape after it, and every scrape until the next sweep gets those bytes.
No scrape reads a cgroup file."""

from __future__ import annotations

import ctypes
import logging
import threading

from tracer.serve.container_metrics import MACHINE_SCRAPE_ERROR_HELP, SCRAPE_ERROR_HELP, ContainerMetrics, Rendered
from tracer.serve.exposition import single
from tracer.stats.interface import Interface
from tracer.stats.model import ContainerInfo, RequestOptions

log = logging.getLogger("oomtrace.http")
_LATEST = RequestOptions(count=1, recursive=True)  # what cAdvisor's collector asks for


class MetricsCache:
    def __init__(self, interface: Interface, metrics: ContainerMetrics) -> None:
        self.interface = interface
        self.metrics = metrics
        self.errors = 0
        self._generation = 0  # bumped by every sweep
        self._rendered_at = -1
        self._body = b""
        self._last: Rendered | None = None
        self._lock = threading.Lock()

    def invalidate(self, *_: object) -> None:
        """A Manager sweep listener: the next scrape renders again."""
        self._generation += 1

    @property
    def dropped(self) -> int:
        return self._last.dropped if self._last else 0

    @property
    def render_seconds(self) -> float:
        return self._last.seconds if self._last else 0.0

    def body(self) -> bytes:
        with self._lock:  # concurrent scrapes wait for one render, not one each
            if self._rendered_at != self._generation:
                generation = self._generation
                self._body = self._render()
                self._rendered_at = generation
            return self._body

    def _render(self) -> bytes:
        scrape_error = 0
        infos: list[ContainerInfo] = []
        try:
            infos = list(self.interface.get_requested_containers_info("/", _LATEST).values())
        except Exception:
            log.exception("cannot list the containers for /metrics")
            scrape_error = 1
        machine_error = 0
        try:
            machine, version = self.interface.machine_info(), self.interface.version_info()
        except Exception:
            log.exception("cannot read the machine's info for /metrics")
            machine, version, machine_error = None, None, 1
        self.errors += scrape_error + machine_error
        rendered = self.metrics.render(infos, machine, version)
        body, rendered.body = rendered.body, b""  # held once, in self._body
        self._last = rendered
        tail = (single("container_scrape_error", SCRAPE_ERROR_HELP, "gauge", scrape_error) +
                single("machine_scrape_error", MACHINE_SCRAPE_ERROR_HELP, "gauge", machine_error))
        del infos, rendered
        body += tail.encode()
        _trim()  # hand back to the system what the render freed (glibc keeps freed heap otherwise)
        return body


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _trim() -> None:
    """Hand back to the system what the render freed. glibc keeps freed heap, and after a
    large block is freed it raises its mmap threshold, so the next 6 MB body comes from the
    heap too and stays: a fixed 1 MiB threshold keeps large blocks mmapped (given back on
    free). glibc only; elsewhere nothing happens."""
    libc = ctypes.CDLL(None)
    if hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
