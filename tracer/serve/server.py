"""The HTTP server of the agent (`run --http`: tracer.serve.endpoints) and of the collector
(`collect --http`: tracer.collect.web): aiohttp in a thread of its own with its own event
loop. Its owner starts it (start() binds: a bad address fails the start, not a later request)
and closes it.

aiohttp, because it is one well-kept library that gives what this needs without a framework
around it: TLS, chunked streaming for event watches, request size limits, an asyncio server
whose idle connections cost no thread. Per request it costs ~0.2 ms, about what the standard
library's ThreadingHTTPServer costs (0.08-0.25 ms across runs, scripts/bench_serve.py): at a
scrape every 15 s, either is noise beside the render.

Limits facing a network: a cap on open connections (past it a connection is closed at once
and counted), a deadline for a request's headers (a slowloris is closed), an idle keep-alive
timeout, a time limit per request (event streams excepted), a 64 KiB body limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from tracer.errors import OomtraceError
from tracer.serve.config import HttpConfig
from tracer.serve.exposition import single
from tracer.serve.rest import error, parse_bool
from tracer.serve.security import Authenticator, check, tls_context

log = logging.getLogger("oomtrace.http")


class _Refuse(asyncio.Protocol):
    """A connection past the cap: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


_STREAM = re.compile(r"^/api/v[0-9.]+/events(/|$)")


def is_stream(request: web.Request) -> bool:
    """An event stream: the one kind of request with no time limit (it ends with its client)."""
    return bool(_STREAM.match(request.path)) and parse_bool(request.query.get("stream", "")) is True


class HttpServer:
    """A server for ROUTES (add_routes before start()), behind the guard: credentials, limits,
    a time limit per request (handling and sending both), JSON errors. /healthz is its own:
    HEALTHY() returns None when all is well, else what is wrong (then 503). WORK is the pool
    the routes' work runs in (bounded: RestLimits.max_busy threads)."""

    def __init__(self, config: HttpConfig, healthy: Callable[[], str | None] | None = None,
                 name: str = "oomtrace-http") -> None:
        check(config.security, config.host)
        self.config = config
        self.healthy = healthy or (lambda: None)
        self.name = name
        self.auth = Authenticator(config.security)
        self.ssl = tls_context(config.security)
        self.work = ThreadPoolExecutor(config.rest.max_busy, thread_name_prefix=f"{name}-work")
        # bcrypt in a pool of its own, and a bound on what waits for it: wrong passwords (never
        # remembered) cannot hold up the requests that got in
        self._auth_pool = ThreadPoolExecutor(2, thread_name_prefix=f"{name}-auth")
        self._auth_waiting = 0
        self.routes: list[web.RouteDef] = []
        self.refused = 0  # connections past the cap
        self.slow = 0  # connections closed for not sending their headers in time
        self.unauthorized = 0
        # Connections accepted and not yet past their header deadline; with aiohttp's own list
        # (connections whose TLS handshake is done) they are what the cap counts.
        self._young: set[RequestHandler] = set()
        self._served: set[int] = set()  # ids of young connections that sent a request's headers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self.port = config.port  # the bound port (differs when 0 was asked for)

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        self.routes.extend(routes)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        sock = self._bind()
        self._thread = threading.Thread(target=self._run, args=(sock,), name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise OomtraceError(f"--http {self.config.host}:{self.config.port}: {self._failure}")

    def _bind(self) -> socket.socket:
        host = self.config.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.config.port))
            sock.listen(128)
        except OSError as e:
            sock.close()
            raise OomtraceError(f"--http {self.config.host}:{self.config.port}: {e.strerror or e}") from e
        self.port = sock.getsockname()[1]
        sock.setblocking(False)
        return sock

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as e:
            self._failure = e
            log.exception("the HTTP server stopped")
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stopped = asyncio.Event()
        app = web.Application(middlewares=[self._guard], client_max_size=self.config.max_body,
                              handler_args={"keepalive_timeout": self.config.idle_timeout})
        app.add_routes([web.get("/healthz", self._healthz), *self.routes])
        # aiohttp logs each malformed request (no Host, 8 KiB header lines, …) with a traceback,
        # at ERROR: any client could flood the log. It answers them 400 itself.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=self.config.idle_timeout)
        await runner.setup()
        server = runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: self._protocol(server), sock=sock, ssl=self.ssl,
                                            ssl_handshake_timeout=self.config.header_timeout if self.ssl else None)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            listener.close()
            await runner.cleanup()

    def _protocol(self, server: web.Server) -> asyncio.BaseProtocol:
        """Called at accept, before any TLS handshake: the cap counts handshakes too."""
        young = self._young.difference(server.connections)
        if len(young) + len(server.connections) >= self.config.max_connections:
            self.refused += 1
            return _Refuse()
        handler = server()
        self._young.add(handler)
        assert self._loop is not None
        self._loop.call_later(self.config.header_timeout, self._deadline, handler)
        return handler

    def _deadline(self, handler: RequestHandler) -> None:
        """No complete request headers within the deadline: a slowloris, or a dead peer. (A TLS
        handshake not done by then was ended by asyncio: ssl_handshake_timeout.)"""
        self._young.discard(handler)
        served = id(handler) in self._served
        self._served.discard(id(handler))
        transport = handler.transport
        if not served and transport is not None and not transport.is_closing():
            self.slow += 1
            transport.close()

    def close(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
        self.work.shutdown(wait=False, cancel_futures=True)
        self._auth_pool.shutdown(wait=False, cancel_futures=True)

    # --- requests --------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.protocol in self._young:  # its deadline is pending: it holds the handler, so the id is its own
            self._served.add(id(request.protocol))
        # /healthz is open: it says only "ok" or why not, and a kubelet's probe sends no credentials.
        if self.auth.required and request.path != "/healthz":
            refused = await self._refused(request.headers.get("Authorization"))
            if refused is not None:
                return refused
        if is_stream(request):
            return await _as_json(handler, request)
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout
        try:
            response = await asyncio.wait_for(_as_json(handler, request), self.config.request_timeout)
        except asyncio.TimeoutError:
            return error(503, f"the request took longer than {self.config.request_timeout:g} s")
        # Sending is timed too: a client that does not read would otherwise hold the answer
        # (megabytes, for a recursive stats request) and its connection for ever.
        try:
            await asyncio.wait_for(_send(request, response), max(0.1, deadline - asyncio.get_running_loop().time()))
        except asyncio.TimeoutError:
            if request.transport is not None:
                request.transport.abort()  # drop what is buffered: close() would wait to send it
        return response

    async def _refused(self, header: str | None) -> web.Response | None:
        """None when the credentials are good; else the answer: 401, or 429 when too many
        checks are already waiting for bcrypt."""
        allowed = self.auth.remembered(header)
        if allowed is None:
            if self._auth_waiting >= 16:
                return error(429, "too many authentication attempts at once; try again")
            self._auth_waiting += 1
            try:
                allowed = await asyncio.get_running_loop().run_in_executor(self._auth_pool, self.auth.allows, header)
            finally:
                self._auth_waiting -= 1
        if allowed:
            return None
        self.unauthorized += 1
        response = error(401, "unauthorized")
        response.headers["WWW-Authenticate"] = 'Basic realm="oomtrace"' if self.auth.users else "Bearer"
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        problem = self.healthy()
        return web.Response(text="ok" if problem is None else problem, status=200 if problem is None else 503)

    def counters(self) -> str:
        """The server's own counters, in the exposition format."""
        lines = [
            ("oomtrace_http_connections_refused_total", "Connections closed at once: the cap was reached",
             self.refused),
            ("oomtrace_http_slow_connections_total", "Connections closed for not sending a request in time",
             self.slow),
            ("oomtrace_http_unauthorized_total", "Requests refused for missing or wrong credentials",
             self.unauthorized),
        ]
        return "".join(single(n, h, "counter", v) for n, h, v in lines)


async def _as_json(handler: Callable, request: web.Request) -> web.StreamResponse:
    """The handler's answer, aiohttp's own errors (404 for no route, 413, …) as JSON."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        response = error(e.status, e.reason)
        if "Allow" in e.headers:
            response.headers["Allow"] = e.headers["Allow"]
        return response


async def _send(request: web.Request, response: web.StreamResponse) -> None:
    """Send RESPONSE and wait until the kernel has taken it all: asyncio buffers whatever the
    socket does not take at once, so a finished write_eof() says nothing about the client."""
    if not response.prepared:
        await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    while transport is not None and not transport.is_closing() and transport.get_write_buffer_size():
        await asyncio.sleep(0.05)
