"""The collector: the Forward protocol in (TCP, TLS, unix socket) or a record stream on stdin,
SQLite out.

A connection reads frames and hands them to the one writer thread, which decodes them and
puts whatever is waiting into one transaction (group commit: many agents cost one fsync per
round, not one per chunk). Each chunk is acked, in order, only once it is committed. A bad
frame closes its own connection at once with a logged reason, after acking what came before
it; other connections and stored records are untouched.

Facing a network, it bounds what peers can hold: connections (a cap, past which they are
closed at once), time (a handshake timeout, an idle timeout, and a deadline for a frame
once its first byte arrived), memory (one budget for the bytes of frames read and not yet
stored, over all connections) and its log (repeated lines are counted, not written).

Closing: `await collector.aclose()` in the event loop that serves the sockets (it stops
listening, ends the connections, then closes the writer); `collector.close()`, or the end of
a `with Collector(config) as collector:` block, where no loop is serving: after
asyncio.run() returns, or when only ingest() ran. Each may follow the other and be repeated;
the writer is closed once, after everything submitted to it is committed.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import resource
import socket
import sqlite3
import ssl
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgpack

from tracer import defaults
from tracer.collect import stdin, store
from tracer.collect.acks import Acks
from tracer.collect.limits import FrameBudget, LogLimiter
from tracer.collect.metrics import Metrics
from tracer.collect.writer import Writer
from tracer.forward import wire

log = logging.getLogger("oomtrace.collect")
_NOTHING = object()


@dataclass(frozen=True)
class CollectorConfig:
    db: Path
    listen: tuple[wire.Address, ...] = (wire.Address.parse(defaults.COLLECTOR_LISTEN),)
    hostname: str = field(default_factory=socket.gethostname)
    shared_key: str | None = None
    tls_cert: Path | None = None  # with tls_key: every TCP listener speaks TLS
    tls_key: Path | None = None
    max_frame: int = wire.DEFAULT_MAX_FRAME
    retention: store.Retention = store.Retention()
    synchronous: str = "full"
    handshake_timeout: float = 10.0
    expire_interval: float = 60.0
    batch_rows: int = 50_000  # at most this many rows in one transaction
    pipeline_depth: int = 8  # frames a connection may have waiting for their commit
    max_connections: int = 1000  # lowered to fit the descriptor limit
    idle_timeout: float = 600.0  # a connection silent between frames this long is closed
    frame_timeout: float = 60.0  # a frame must be whole this long after its first byte
    frame_budget: int = 256 << 20  # bytes of frames read and not yet stored, all connections together
    bind_node: bool = False  # with a shared key: a record's node is its connection's authenticated name


class Collector:
    """The sockets (start(), then aclose() in the same event loop) and stdin (ingest()) in
    front of one Writer. A context manager: leaving `with` calls close()."""

    def __init__(self, config: CollectorConfig, metrics: Metrics | None = None) -> None:
        if config.shared_key is not None and not config.shared_key:
            raise ValueError("the shared key is empty")
        self.config = config
        self.metrics = metrics or Metrics()
        self._ssl = _server_tls(config) if config.tls_cert else None  # before the thread: a bad cert leaks none
        self.writer = Writer(config.db, config.synchronous, config.retention, self.metrics,
                             config.batch_rows, config.expire_interval)
        self.addresses: list[wire.Address] = []  # where it listens, ports resolved
        self.max_connections = config.max_connections
        self.budget = FrameBudget(config.frame_budget)
        self._log = LogLimiter(log)
        self._servers: list[asyncio.AbstractServer] = []
        self._handlers: set[asyncio.Task] = set()
        self._closing = False  # connections stop acking
        self._closed = False  # the writer is closed (or closing)

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening if aclose() has not, then commit what the writer holds and close the
        database. Idempotent. For when no event loop is serving this collector, or from inside
        the one that is (its connections are then cancelled, not awaited); while another thread
        runs that loop it raises RuntimeError: await aclose() there instead."""
        if self._closed:
            return
        serving = {server.get_loop() for server in self._servers if server.is_serving()}
        inside = _running_loop()
        if any(loop.is_running() and loop is not inside for loop in serving):
            raise RuntimeError("the collector is serving in another thread's event loop: await aclose() there")
        self._closed = self._closing = True
        for server in self._servers:
            server.close()
        if inside is not None and inside in serving:
            for task in self._handlers:
                task.cancel()
        self.writer.close()

    # --- sockets ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on every configured address. OSError says why one cannot be used."""
        self.max_connections = min(self.config.max_connections, _descriptors() - 64)
        for addr in self.config.listen:
            if addr.kind == "tcp":
                server = await asyncio.start_server(self._connection, addr.host, addr.port, ssl=self._ssl)
                host, port = server.sockets[0].getsockname()[:2]
                self.addresses.append(wire.Address("tcp", host, port))
                if not _loopback(host) and self.config.shared_key is None:
                    log.warning("listening on %s without a shared key: anyone who reaches it can write",
                                self.addresses[-1])
            elif addr.kind == "unix":
                _remove_stale_socket(addr.path)
                server = await asyncio.start_unix_server(self._connection, addr.path)
                os.chmod(addr.path, 0o660)
                self.addresses.append(addr)
            else:
                continue
            self._servers.append(server)
            log.debug("listening on %s", self.addresses[-1])

    async def aclose(self) -> None:
        """Stop listening and drop open connections: what they had acked is committed; what
        they had not is resent by their agents. Then close() (the writer). Await it in the
        event loop that start() ran in; idempotent."""
        if self._closed:
            return
        self._closing = True
        for server in self._servers:
            server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer, host = _peer(writer)
        if len(self._handlers) >= self.max_connections:
            self.metrics.refused.labels("cap").inc()
            self._log(logging.WARNING, "cap", "%s: refused: %d connections are open (the cap)", peer,
                      len(self._handlers))
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.metrics.connections.inc()
        # No reference back to conn from its acks: a cycle would keep the unpacker's buffer (up to
        # a frame) until the cyclic GC ran, and a flood of cut frames grew the process to 800 MB.
        conn = _Connection(reader, writer, peer, wire.unpacker(self.config.max_frame),
                           Acks(writer, self.config.pipeline_depth, task.cancel))
        try:
            node, bound = host, None
            if self.config.shared_key is not None:
                node = await asyncio.wait_for(self._handshake(conn), self.config.handshake_timeout)
                bound = node if self.config.bind_node else None
            await self._frames(conn, node, bound)
        except asyncio.CancelledError:
            if conn.acks.error is None:
                raise  # the collector is closing; otherwise a frame failed and _close says which
        except Exception as e:  # noqa: BLE001 - every reason closes this connection alone
            self._fail(peer, e)
        finally:
            await self._close(conn, task)

    async def _frames(self, conn: _Connection, node: str, bound: str | None) -> None:
        started = 0.0  # when the frame being read got its first byte
        while True:
            for frame in wire.frames(conn.up):
                size, conn.done = conn.up.tell() - conn.done, conn.up.tell()
                await self._frame(conn, frame, size, node, bound)
            if conn.fed == conn.done:
                timeout, what = self.config.idle_timeout, "idle"
            else:
                started = started or time.monotonic()
                timeout, what = started + self.config.frame_timeout - time.monotonic(), "slow"
            data = await self._read(conn, timeout, what)
            if not data:
                if conn.done != conn.fed:
                    raise wire.WireError(f"connection closed inside a frame ({conn.fed - conn.done} bytes)")
                return
            conn.up.feed(data)
            if conn.fed == conn.done + len(data):
                started = time.monotonic()

    async def _read(self, conn: _Connection, timeout: float, what: str) -> bytes:
        try:
            data = await asyncio.wait_for(conn.reader.read(1 << 16), max(timeout, 0.0))
        except asyncio.TimeoutError:
            raise _Timeout(what, {"idle": f"no frame for {self.config.idle_timeout:.0f} s",
                                  "auth": "no PING within the handshake timeout"}.get(
                what, f"a frame not whole {self.config.frame_timeout:.0f} s after it started")) from None
        if not self.budget.take(len(data)):
            self.metrics.refused.labels("memory").inc()
            raise _Timeout("memory", f"the {self.config.frame_budget >> 20} MiB budget for frames being read "
                           "is spent; try again later")
        conn.fed += len(data)
        conn.held += len(data)
        self.metrics.frame_bytes.set(self.budget.used)
        return data

    async def _close(self, conn: _Connection, task: asyncio.Task) -> None:
        """Ack what was committed before the end (even of a connection closed for bad input),
        unless the collector itself is closing; then close."""
        conn.acks.interrupt = False  # a frame failing from now on must not cancel this
        try:
            if self._closing:
                conn.acks.cancel()
            else:
                await conn.acks.finish()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        except Exception as e:  # noqa: BLE001 - found by the writer, after the reader moved on
            self._fail(conn.peer, e)
        finally:
            self._release(conn, conn.held - conn.given)  # the partial frame; frames in flight give their own
            conn.held = conn.given
            self._handlers.discard(task)
            self.metrics.connections.dec()
            conn.writer.close()

    def _release(self, conn: _Connection, n: int) -> None:
        self.budget.give(n)
        self.metrics.frame_bytes.set(self.budget.used)

    async def _handshake(self, conn: _Connection) -> str:
        key = self.config.shared_key
        assert key is not None
        nonce = os.urandom(16)
        conn.writer.write(wire.helo(nonce))
        await conn.writer.drain()
        frame = next(wire.frames(conn.up), _NOTHING)
        while frame is _NOTHING:
            data = await self._read(conn, self.config.handshake_timeout, "auth")
            if not data:
                raise wire.AuthError("closed during the handshake")
            conn.up.feed(data)
            frame = next(wire.frames(conn.up), _NOTHING)
        size, conn.done = conn.up.tell(), conn.up.tell()
        conn.given += size
        self._release(conn, size)
        try:
            hostname, salt = wire.read_ping(frame, nonce, key)
        except wire.AuthError as e:
            conn.writer.write(wire.pong(False, str(e), self.config.hostname, b"", nonce, key))
            await conn.writer.drain()
            raise
        conn.writer.write(wire.pong(True, "", self.config.hostname, salt, nonce, key))
        await conn.writer.drain()
        self._log(logging.INFO, "auth-ok", "%s: authenticated as %s", conn.peer, hostname)
        return hostname

    async def _frame(self, conn: _Connection, frame: object, size: int, node: str, bound: str | None) -> None:
        def decode() -> tuple[list[store.Row], str | None]:  # runs in the writer's thread
            message = wire.decode(frame, self.config.max_frame)
            rows = store.rows(message, time.time(), node, bound)
            self.metrics.count_received(rows)
            if bound is not None:
                self._count_rebound(message, bound)
            return rows, message.chunk

        conn.given += size
        future = self.writer.submit(decode)
        future.add_done_callback(lambda _: self._release(conn, size))  # the writer's thread: a lock inside
        await conn.acks.add(future)

    def _count_rebound(self, message: wire.Message, bound: str) -> None:
        claims = sum(1 for entry in message.entries if entry.record.get("node") not in (None, bound))
        if claims:
            self.metrics.node_mismatch.inc(claims)

    def _fail(self, peer: str, e: BaseException) -> None:
        reason, detail = _reason(e, self.config.max_frame)
        if reason == "lost":
            self._log(logging.INFO, "lost", "%s: connection lost: %s", peer, detail)
            return
        self.metrics.rejected.labels(reason).inc()
        self._log(logging.WARNING, reason, "%s: closing the connection: %s", peer, detail)

    # --- stdin --------------------------------------------------------------------------

    def ingest(self, stream: BinaryIO, flush_seconds: float = 0.2, batch: int = 5000) -> int:
        """Store the records of a `oomtrace run -o msgpack` stream until EOF; returns how many
        arrived. What came before a garbled byte is stored; then IngestError says where."""
        return stdin.ingest(stream, self.writer, self.metrics, self._log, self.config.max_frame,
                            flush_seconds, batch)


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    up: msgpack.Unpacker
    acks: Acks  # a failed frame cancels the reading task: it closes at once
    fed: int = 0  # bytes received
    done: int = 0  # bytes up to the end of the last whole frame
    held: int = 0  # bytes taken from the frame budget
    given: int = 0  # of those, the bytes whose release is arranged (frames submitted, the handshake)


class _Timeout(Exception):
    """A connection that held a resource too long (or when none was left): its reason and why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _reason(e: BaseException, max_frame: int) -> tuple[str, str]:
    """A failed connection's reason (a metric label) and what to log."""
    if isinstance(e, _Timeout):
        return e.reason, str(e)
    if isinstance(e, asyncio.TimeoutError):
        return "auth", "no PING within the handshake timeout"
    if isinstance(e, wire.AuthError):
        return "auth", str(e)
    if isinstance(e, msgpack.BufferFull):
        return "oversized", f"a frame exceeds {max_frame} bytes"
    if isinstance(e, wire.WireError):
        return "invalid", str(e)
    if isinstance(e, (ConnectionError, ssl.SSLError)):
        return "lost", str(e)
    if isinstance(e, sqlite3.Error):  # e.g. a full disk: nothing is acked, so the agent resends
        return "store", f"cannot store: {e}"
    return "error", f"{type(e).__name__}: {e}"


def _descriptors() -> int:
    """The soft limit on open files, raised to the hard one: each connection holds one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _remove_stale_socket(path: str) -> None:
    """Make room for a unix socket at PATH: only a socket nobody listens on is removed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: its listener is gone
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process listens on {path}")


def _peer(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """(the peer as logs name it, host:port; its host alone: the node of records that name
    none, one per host rather than one per connection)."""
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple):
        host, port = name[:2]
        return f"{host}:{port}", str(host)
    label = f"unix:{writer.get_extra_info('sockname') or '?'}"
    return label, label


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _server_tls(config: CollectorConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key) if config.tls_key else None)
    return ctx
