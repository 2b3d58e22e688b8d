"""What the agent serves (`run --http`): cAdvisor's REST API and /metrics over the Interface,
with oomtrace's own metrics after cAdvisor's."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from tracer.serve.agent_metrics import AgentMetrics
from tracer.serve.cache import MetricsCache
from tracer.serve.config import HttpConfig
from tracer.serve.exposition import CONTENT_TYPE, single
from tracer.serve.rest import Busy, Rest, error
from tracer.serve.server import HttpServer
from tracer.stats.interface import Interface


class AgentEndpoints:
    def __init__(self, interface: Interface, config: HttpConfig, cache: MetricsCache,
                 agent_metrics: AgentMetrics | None = None) -> None:
        self.rest = Rest(interface, config.rest)
        self.cache = cache
        self.agent_metrics = agent_metrics
        self.server: HttpServer | None = None

    def routes(self, server: HttpServer) -> list[web.RouteDef]:
        self.server = server
        self.rest.work = server.work
        return [web.get("/metrics", self._metrics), *self.rest.routes()]

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        try:
            body = await self.rest.run(self.cache.body)
        except Busy:
            return error(503, "busy: try the scrape again")
        tail = (self.agent_metrics.render() if self.agent_metrics is not None else b"") + \
            self._own(time.perf_counter() - t0).encode()
        # The cached body as it is, then the tail: no 6 MB copy per scrape
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        response.content_length = len(body) + len(tail)
        await response.prepare(request)
        await response.write(body)
        await response.write(tail)
        return response

    def _own(self, seconds: float) -> str:
        lines = [
            ("oomtrace_http_event_stream_dropped_total", "counter", "Events a slow event stream reader missed",
             self.rest.stream_dropped),
            ("oomtrace_metrics_containers_dropped", "gauge", "Containers left out of the last render: past the "
             "bound of 10,000", self.cache.dropped),
            ("oomtrace_metrics_render_seconds", "gauge", "Time the last render of the container metrics took",
             self.cache.render_seconds),
            ("oomtrace_metrics_scrape_seconds", "gauge", "Time this scrape took before these lines", seconds),
        ]
        text = "".join(single(n, h, t, v) for n, t, h, v in lines)
        return text + (self.server.counters() if self.server is not None else "")


def agent_server(interface: Interface, config: HttpConfig, cache: MetricsCache,
                 agent_metrics: AgentMetrics | None = None,
                 healthy: Callable[[], str | None] | None = None) -> HttpServer:
    """The agent's server: REST, /metrics and /healthz."""
    server = HttpServer(config, healthy)
    endpoints = AgentEndpoints(interface, config, cache, agent_metrics)
    server.add_routes(endpoints.routes(server))
    return server
