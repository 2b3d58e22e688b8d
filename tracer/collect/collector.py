"""The collector: the Forward protocol in (TCP, TLS, unix socket) or a record stream on stdin,
SQLite out.

A connection reads frames and hands them to the one writer thread, which decodes them and
puts whatever is waiting into one transaction (group commit: many agents cost one fsync per
round, not one per chunk). Each chunk is acked, in order, only once it is committed. A bad
frame closes its own connection with a logged reason, after acking what came before it;
other connections and stored records are untouched.

Closing: `await collector.aclose()` in the event loop that serves the sockets (it stops
listening, ends the connections, then closes the writer); `collector.close()`, or the end of
a `with Collector(config) as collector:` block, where no loop is serving: after
asyncio.run() returns, or when only ingest() ran. Each may follow the other and be repeated;
the writer is closed once, after everything submitted to it is committed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import os
import queue
import select
import socket
import sqlite3
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple, Union

import msgpack

from tracer import defaults
from tracer.collect import store
from tracer.collect.metrics import Metrics
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


_Work = Union[list[store.Row], Callable[[], tuple[list[store.Row], object]]]


class _Job(NamedTuple):
    work: _Work  # rows, or a callable that decodes them in the writer's thread
    future: concurrent.futures.Future


class Writer:
    """The store's only thread. submit() returns a future that is done once the rows are committed."""

    def __init__(self, config: CollectorConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()  # no job is queued behind the stop
        self._closed = False
        self._ready = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="oomtrace-store", daemon=True)
        self._thread.start()
        self._ready.result()  # the database opened, or its error raised here

    def submit(self, rows: _Work) -> concurrent.futures.Future:
        """Store ROWS, or what a callable decodes in this thread (then the future's result is the
        callable's second value: the chunk to ack). Decoding here, beside the inserts, keeps the
        event loop's thread and this one from trading the GIL back and forth for every frame.
        RuntimeError once the writer is closed."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the collector's writer is closed")
            self._queue.put(_Job(rows, future))
        return future

    def close(self) -> None:
        """Commit what was submitted, close the database and end the thread. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            db = store.Store(self.config.db, self.config.synchronous)
        except Exception as e:  # noqa: BLE001 - handed to the opener
            self._ready.set_exception(e)
            return
        self._ready.set_result(None)
        next_expire = 0.0
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                size = _size(item.work)
                while size < self.config.batch_rows:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)  # finish this round first
                        break
                    batch.append(item)
                    size += _size(item.work)
                self._commit(db, batch)
                if time.monotonic() >= next_expire:
                    self.metrics.expired.inc(db.expire(self.config.retention))
                    next_expire = time.monotonic() + self.config.expire_interval
        finally:
            db.close()

    def _commit(self, db: store.Store, batch: list[_Job]) -> None:
        ready, results = [], []
        for work, future in batch:
            if callable(work):
                try:
                    rows, result = work()
                except Exception as e:  # noqa: BLE001 - that frame's connection closes; the rest go on
                    future.set_exception(e if isinstance(e, wire.WireError) else
                                         wire.WireError(f"cannot decode the frame: {type(e).__name__}: {e}"))
                    continue
            else:
                rows, result = work, None
            ready.append(rows)
            results.append((future, result))
        try:
            added = db.add([row for rows in ready for row in rows])
        except Exception as e:  # noqa: BLE001 - each waiter gets the error; nothing is acked
            log.error("store: %s", e)
            for future, _ in results:
                future.set_exception(e)
            return
        self.metrics.count_added(added)
        for future, result in results:
            future.set_result(result)


class Collector:
    """The sockets (start(), then aclose() in the same event loop) and stdin (ingest()) in
    front of one Writer. A context manager: leaving `with` calls close()."""

    def __init__(self, config: CollectorConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self._ssl = _server_tls(config) if config.tls_cert else None  # before the thread: a bad cert leaks none
        self.writer = Writer(config, self.metrics)
        self.addresses: list[wire.Address] = []  # where it listens, ports resolved
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
        for addr in self.config.listen:
            if addr.kind == "tcp":
                server = await asyncio.start_server(self._connection, addr.host, addr.port, ssl=self._ssl)
                host, port = server.sockets[0].getsockname()[:2]
                self.addresses.append(wire.Address("tcp", host, port))
                if not _loopback(host) and self.config.shared_key is None:
                    log.warning("listening on %s without a shared key: anyone who reaches it can write",
                                self.addresses[-1])
            elif addr.kind == "unix":
                Path(addr.path).unlink(missing_ok=True)
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
        peer = _peer(writer)
        task = asyncio.current_task()
        self._handlers.add(task)
        self.metrics.connections.inc()
        up = wire.unpacker(self.config.max_frame)
        acks = _Acks(writer, self.config.pipeline_depth)
        fed = done = 0  # bytes received; bytes up to the end of the last whole frame
        try:
            node = peer
            if self.config.shared_key is not None:
                node, fed, done = await asyncio.wait_for(self._handshake(reader, writer, up, peer),
                                                         self.config.handshake_timeout)
            while True:
                for frame in wire.frames(up):
                    done = up.tell()
                    await self._frame(frame, acks, node)
                data = await reader.read(1 << 16)
                if not data:
                    if done != fed:
                        raise wire.WireError(f"connection closed inside a frame ({fed - done} bytes)")
                    return
                up.feed(data)
                fed += len(data)
        except wire.AuthError as e:
            self._reject(peer, "auth", e)
        except asyncio.TimeoutError:
            self._reject(peer, "auth", "no PING within the handshake timeout")
        except msgpack.BufferFull:
            self._reject(peer, "oversized", f"a frame exceeds {self.config.max_frame} bytes")
        except wire.WireError as e:
            self._reject(peer, "invalid", e)
        except (ConnectionError, ssl.SSLError) as e:
            log.info("%s: connection lost: %s", peer, e)
        except sqlite3.Error as e:  # e.g. a full disk: nothing is acked, so the agent resends
            self._reject(peer, "store", f"cannot store: {e}")
        finally:
            await self._close(peer, acks, writer, task)

    async def _close(self, peer: str, acks: _Acks, writer: asyncio.StreamWriter, task) -> None:
        """Ack what was committed before the end (even of a connection closed for bad input),
        unless the collector itself is closing; then close."""
        try:
            if self._closing:
                acks.cancel()
            else:
                await acks.finish()
        except sqlite3.Error as e:
            self._reject(peer, "store", f"cannot store: {e}")
        except wire.WireError as e:  # decoded in the writer's thread, after the reader moved on
            self._reject(peer, "invalid", e)
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            self.metrics.connections.dec()
            writer.close()

    async def _handshake(self, reader, writer, up, peer: str) -> tuple[str, int, int]:
        key = self.config.shared_key
        nonce = os.urandom(16)
        writer.write(wire.helo(nonce))
        await writer.drain()
        fed = 0
        frame = next(wire.frames(up), _NOTHING)
        while frame is _NOTHING:
            data = await reader.read(1 << 16)
            if not data:
                raise wire.AuthError("closed during the handshake")
            up.feed(data)
            fed += len(data)
            frame = next(wire.frames(up), _NOTHING)
        try:
            hostname, salt = wire.read_ping(frame, nonce, key)
        except wire.AuthError as e:
            writer.write(wire.pong(False, str(e), self.config.hostname, b"", nonce, key))
            await writer.drain()
            raise
        writer.write(wire.pong(True, "", self.config.hostname, salt, nonce, key))
        await writer.drain()
        log.info("%s: authenticated as %s", peer, hostname)
        return hostname, fed, up.tell()

    async def _frame(self, frame: object, acks: _Acks, node: str) -> None:
        def decode() -> tuple[list[store.Row], str | None]:  # runs in the writer's thread
            message = wire.decode(frame, self.config.max_frame)
            rows = store.rows(message, time.time(), node)
            self.metrics.count_received(rows)
            return rows, message.chunk

        await acks.add(self.writer.submit(decode))

    def _reject(self, peer: str, reason: str, detail: object) -> None:
        self.metrics.rejected.labels(reason).inc()
        log.warning("%s: closing the connection: %s", peer, detail)

    # --- stdin --------------------------------------------------------------------------

    def ingest(self, stream: BinaryIO, flush_seconds: float = 0.2, batch: int = 5000) -> int:
        """Store the records of a `oomtrace run -o msgpack` stream until EOF; returns how many
        arrived. What came before a garbled byte is stored; then IngestError says where."""
        fd = stream.fileno()
        up = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                              max_buffer_size=self.config.max_frame)
        rows: list[store.Row] = []
        total = skipped = 0
        offset = fed = 0
        eof = False
        while not eof:
            ready, _, _ = select.select([fd], [], [], flush_seconds)
            if ready:
                data = os.read(fd, 1 << 16)
                eof = not data
                fed += len(data)
                try:
                    up.feed(data)
                    for record in up:
                        start, offset = offset, up.tell()
                        if not isinstance(record, dict):
                            skipped += 1
                            log.warning("stdin: byte %d: a %s, not a record map; skipped", start,
                                        type(record).__name__)
                            continue
                        rows.append(_stdin_row(record))
                except (ValueError, TypeError, msgpack.UnpackException) as e:
                    self._store(rows)
                    raise IngestError(f"stdin: byte {offset} is not msgpack ({e}); "
                                      f"{total + len(rows)} records before it are stored") from None
            if rows and (not ready or eof or len(rows) >= batch):
                total += self._store(rows)
                rows = []
        if skipped:
            log.warning("stdin: %d objects were not record maps", skipped)
        if fed != offset:
            raise IngestError(f"stdin ended inside a record ({fed - offset} bytes after byte {offset}); "
                              f"the {total} records before it are stored")
        return total

    def _store(self, rows: list[store.Row]) -> int:
        if rows:
            self.metrics.count_received(rows)
            self.writer.submit(rows).result()
        return len(rows)


def _size(work: _Work) -> int:
    return 1000 if callable(work) else len(work)  # a frame's rows are counted once decoded


class _Acks:
    """One connection's acks, sent in order, each once its frame is committed. The connection
    goes on reading and decoding while earlier frames commit, at most DEPTH frames ahead, so
    an agent with several chunks in flight keeps the writer busy. After a frame fails (bad
    input, a store error) nothing more is acked; the error is raised once, by add() or finish()."""

    def __init__(self, writer: asyncio.StreamWriter, depth: int) -> None:
        self.writer = writer
        self.queue: asyncio.Queue = asyncio.Queue(depth)
        self.error: BaseException | None = None
        self._raised = False
        self.task = asyncio.ensure_future(self._run())

    async def add(self, committed: concurrent.futures.Future) -> None:
        """COMMITTED's result is the chunk to ack (None: the sender wants no ack)."""
        self._raise()
        await self.queue.put(committed)

    async def finish(self) -> None:
        await self.queue.put(None)
        await self.task
        self._raise()

    def cancel(self) -> None:
        self.task.cancel()

    def _raise(self) -> None:
        if self.error is not None and not self._raised:
            self._raised = True
            raise self.error

    async def _run(self) -> None:
        while (committed := await self.queue.get()) is not None:
            try:
                chunk = await asyncio.wrap_future(committed)
            except (wire.WireError, sqlite3.Error) as e:
                self.error = self.error or e
                continue
            if chunk is not None and self.error is None:
                try:
                    self.writer.write(wire.ack(chunk))
                    await self.writer.drain()
                except (ConnectionError, ssl.SSLError) as e:  # the agent went away: it resends
                    self.error = e


class IngestError(Exception):
    """A record stream that stopped being msgpack."""


def _stdin_row(record: dict) -> store.Row:
    stamp = record.get("time")
    stamp = stamp if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else time.time()
    body = msgpack.packb([stamp, record], unicode_errors="surrogateescape")
    message = wire.Message(f"oomtrace.{record.get('type', 'record')}", [wire.Entry(stamp, record, body)], None)
    (row,) = store.rows(message, time.time())
    return row


def _peer(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple):
        host, port = name[:2]
        return f"{host}:{port}"
    return f"unix:{writer.get_extra_info('sockname') or '?'}"


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
