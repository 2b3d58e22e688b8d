"""The agent's Forward sink: records → chunks → a collector (ours, Fluentd or Fluent Bit).

The engine thread only packs records and queues chunks; a sender thread owns the connection.
Every chunk carries the Forward `chunk` option and is forgotten only once the collector has
acked it; up to max_inflight chunks are sent ahead, acked in order. While the collector is
unreachable, chunks go to the on-disk spool and are sent, oldest first, once it is back
(reconnecting with exponential backoff). Chunks in flight when the connection broke are
resent; records keep their ids, so the collector stores them once.

Nothing here raises into the engine's thread: a chunk the spool cannot take (a full or broken
disk) is dropped and counted. The sender thread never dies: an unexpected error is logged,
counted (stats.errors) and the loop goes on after a backoff. At close() every chunk not acked
(queued, in flight, or still being packed) is acked within drain_timeout or left in the spool.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from tracer import defaults
from tracer.events.records import RecordStamper
from tracer.forward import wire
from tracer.forward.spool import Chunk, Spool

log = logging.getLogger("oomtrace.forward")


@dataclass(frozen=True)
class ForwardConfig:
    address: wire.Address
    node: str = field(default_factory=socket.gethostname)
    tag_prefix: str = "oomtrace"  # tags are PREFIX.TYPE, e.g. oomtrace.oom_kill
    spool_dir: Path = defaults.SPOOL_DIR
    spool_max_bytes: int = defaults.SPOOL_MAX_MB << 20
    shared_key: str | None = None
    tls: bool = False
    tls_ca: Path | None = None  # None: the system's CAs
    tls_verify: bool = True
    chunk_records: int = 1000
    queue_chunks: int = 64  # chunks held in memory before they go to the spool
    max_inflight: int = 4  # chunks sent and not yet acked
    connect_timeout: float = 5.0
    ack_timeout: float = 10.0
    backoff_min: float = 0.2
    backoff_max: float = 30.0
    drain_timeout: float = 5.0  # at close: how long to keep sending before spooling the rest


@dataclass
class ForwardStats:
    sent_records: int = 0
    sent_chunks: int = 0
    spooled_records: int = 0  # records that went through the spool, since this start
    reconnects: int = 0
    failures: int = 0  # connections that broke or timed out
    errors: int = 0  # unexpected errors in the sender thread (logged with their traceback)


class ForwardSink:
    """A Sink (write/flush/alive) plus close(), which must be called to keep what is unsent."""

    def __init__(self, config: ForwardConfig) -> None:
        self.config = config
        self.stats = ForwardStats()
        self.spool = Spool(config.spool_dir, config.spool_max_bytes)
        self._encoder = wire.FrameEncoder()
        self._stamper = RecordStamper(config.node)
        self._pending: dict[str, list[bytes]] = {}
        self._pending_count = 0
        self._queue: queue.Queue[Chunk] = queue.Queue(config.queue_chunks)
        self._stop = threading.Event()
        self._outage = threading.Event()  # set while the collector is unreachable
        self._busy = threading.Event()  # set while a chunk is in flight
        self._lock = threading.Lock()  # write/flush may come from the engine and the sender
        self._conn: _Connection | None = None  # the sender's; close() may shut it down to stop waiting
        self._conn_lock = threading.Lock()
        self._closed = False
        self._drops_unreported = 0
        self._drops_logged_at = 0.0
        self._thread = threading.Thread(target=self._send_loop, name="oomtrace-forward", daemon=True)
        self._thread.start()

    # --- the Sink side (engine thread) ------------------------------------------------------

    def write(self, record: dict) -> None:
        with self._lock:
            tag = f"{self.config.tag_prefix}.{record.get('type', 'record')}"
            self._pending.setdefault(tag, []).append(self._encoder.entry(record))
            self._pending_count += 1
            full = self._pending_count >= self.config.chunk_records
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, self._pending_count = self._pending, {}, 0
        for tag, entries in pending.items():
            chunk_id = wire.new_chunk_id()
            chunk = Chunk(chunk_id, self._encoder.frame(tag, entries, chunk_id, len(entries)), len(entries))
            if self._closed:  # the sender is gone: straight to disk
                self._to_spool(chunk)
                continue
            try:
                self._queue.put_nowait(chunk)
            except queue.Full:
                self._to_spool(chunk)

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        """Send what is queued for up to drain_timeout, then spool what is left: the chunks in
        flight (whose acks are then not awaited), those queued and the records not yet packed.
        A chunk acked but spooled anyway is resent at the next start and stored once."""
        if self._closed:
            return
        self.flush()
        deadline = time.monotonic() + self.config.drain_timeout
        while (self._unsent() and not self._outage.is_set() and self._thread.is_alive()
               and time.monotonic() < deadline):
            time.sleep(0.01)
        self._stop.set()
        self._interrupt()  # a send or an ack wait in progress ends now; its chunks go to the spool
        self._thread.join()
        self._closed = True
        self.flush()  # a forward_status record the sender wrote meanwhile
        self._spool_queue()
        self.spool.save()

    def _interrupt(self) -> None:
        with self._conn_lock:
            if self._conn is not None:
                self._conn.shutdown()

    def _unsent(self) -> bool:
        return self._busy.is_set() or not self._queue.empty() or len(self.spool) > 0

    def status_record(self) -> dict:
        return self._stamper.stamp({
            "type": "forward_status", "time": round(time.time(), 6),
            "collector": str(self.config.address), "spooled": self.spool.records,
            "spooled_bytes": self.spool.bytes, "spooled_total": self.stats.spooled_records,
            "dropped_total": self.spool.dropped, "sent_total": self.stats.sent_records,
            "reconnects": self.stats.reconnects,
        })

    def _to_spool(self, chunk: Chunk) -> None:
        """CHUNK to the spool; never raises (the engine's thread calls this)."""
        if chunk.name is not None:
            return  # already there
        try:
            stored, lost = self.spool.put(chunk)
        except Exception:  # Spool.put does not raise; if it ever does, the chunk is lost, counted
            log.exception("spool %s: cannot spool a chunk; dropped its %d records", self.spool.directory, chunk.count)
            self.spool.dropped += chunk.count
            stored, lost = False, chunk.count
        if stored:
            self.stats.spooled_records += chunk.count
        if lost:
            self._report_drops(lost)

    def _report_drops(self, lost: int) -> None:
        """One warning per 10 s at most, with what was dropped since the last one."""
        self._drops_unreported += lost
        now = time.monotonic()
        if now - self._drops_logged_at >= 10.0:
            why = f"cannot write: {self.spool.last_error}" if self.spool.last_error else \
                f"full: at most {self.config.spool_max_bytes} bytes, or the disk"
            log.warning("spool %s %s; dropped %d records (%d in all)", self.spool.directory, why,
                        self._drops_unreported, self.spool.dropped)
            self.spool.last_error = ""
            self._drops_unreported = 0
            self._drops_logged_at = now

    # --- the sender thread ------------------------------------------------------------------

    def _send_loop(self) -> None:
        window: deque[Chunk] = deque()
        backoff = self.config.backoff_min  # between connection attempts
        trouble = self.config.backoff_min  # after an unexpected error
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    try:
                        conn = _Connection.open(self.config)
                    except (OSError, wire.WireError) as e:
                        if not self._outage.is_set():
                            log.warning("collector %s unreachable (%s); spooling", self.config.address, e)
                            self._outage.set()
                        self._spool_queue()
                        self._stop.wait(backoff * random.uniform(0.8, 1.2))
                        backoff = min(backoff * 2, self.config.backoff_max)
                        continue
                    with self._conn_lock:
                        self._conn = conn
                    backoff = self.config.backoff_min
                    if self._outage.is_set():
                        self._spool_queue()  # what came during the outage, so that the status below is whole
                        self.stats.reconnects += 1
                        log.warning("collector %s reachable again; sending %d spooled records",
                                    self.config.address, self.spool.records)
                        self.write(self.status_record())
                        self._outage.clear()
                if self._exchange(window):
                    trouble = self.config.backoff_min
            except Exception:  # the sender must never die: log, count, go on
                self.stats.errors += 1
                log.exception("forwarding to %s: unexpected error (%d so far); resending after %.1f s",
                              self.config.address, self.stats.errors, trouble)
                self._disconnect()
                self._spool_window(window)
                self._stop.wait(trouble * random.uniform(0.8, 1.2))
                trouble = min(trouble * 2, self.config.backoff_max)
        self._disconnect()
        unacked = len(window)
        self._spool_window(window)  # stopping: what was not acked goes to disk, resent at the next start
        if unacked:
            log.info("stopping: %d chunks not acked by %s kept in the spool", unacked, self.config.address)

    def _exchange(self, window: deque[Chunk]) -> bool:
        """Fill the window of chunks in flight (spooled ones first, oldest first), then take one
        ack, which must be the oldest chunk's; True once an ack was taken. On any failure every
        chunk in flight is spooled and the connection dropped; the collector stores a resent
        record once."""
        conn = self._conn
        assert conn is not None
        try:
            while len(window) < self.config.max_inflight and not self._stop.is_set():
                in_flight = {c.name for c in window if c.name}
                chunk = self.spool.oldest(_chunk_id, skip=in_flight) or self._next_queued(block=not window)
                if chunk is None:
                    break
                window.append(chunk)
                self._busy.set()
                conn.post(chunk)
            if not window:
                return False
            conn.await_ack(window[0].id)
        except (OSError, wire.WireError, ValueError) as e:
            if self._stop.is_set():
                log.info("stopping: stopped waiting for %s (%s)", self.config.address, e)
            else:
                log.warning("sending to %s failed (%s); will resend", self.config.address, e)
                self.stats.failures += 1
                self._outage.set()
            self._disconnect()
            self._spool_window(window)
            return False
        done = window.popleft()
        self.spool.remove(done)
        self.stats.sent_chunks += 1
        self.stats.sent_records += done.count
        if not window:
            self._busy.clear()
        return True

    def _disconnect(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _spool_window(self, window: deque[Chunk]) -> None:
        while window:
            self._to_spool(window.popleft())
        self._busy.clear()

    def _next_queued(self, block: bool) -> Chunk | None:
        try:
            return self._queue.get(timeout=0.1) if block else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _spool_queue(self) -> None:
        """Unreachable, or stopping: what waits in memory goes to disk, where a restart does not
        lose it."""
        while True:
            try:
                self._to_spool(self._queue.get_nowait())
            except queue.Empty:
                return


def _chunk_id(frame: bytes) -> str:
    """The chunk id of a spooled FRAME, which must be one whole Forward frame with a chunk
    option, as the collector would read it; else WireError (the spool then drops the file):
    a file the collector would refuse would otherwise be resent forever."""
    up = wire.unpacker()
    up.feed(frame)
    found = list(wire.frames(up))
    if len(found) != 1 or up.tell() != len(frame):
        raise wire.WireError(f"not one whole frame ({len(found)} msgpack objects, {len(frame)} bytes)")
    chunk = wire.decode(found[0]).chunk
    if not isinstance(chunk, str) or not chunk:
        raise wire.WireError("a frame without a chunk option")
    return chunk


class _Connection:
    """One connection to the collector: handshake, then frame → ack, one at a time."""

    def __init__(self, sock: socket.socket, config: ForwardConfig) -> None:
        self.sock = sock
        self.config = config
        self._unpacker = wire.unpacker(1 << 20)

    @classmethod
    def open(cls, config: ForwardConfig) -> _Connection:
        addr = config.address
        if addr.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(config.connect_timeout)
            try:
                sock.connect(addr.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((addr.host, addr.port), timeout=config.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if config.tls:
                sock = _tls_context(config).wrap_socket(sock, server_hostname=addr.host or None)
            conn = cls(sock, config)
            if config.shared_key is not None:
                conn._handshake()
            return conn
        except BaseException:
            sock.close()
            raise

    def _handshake(self) -> None:
        try:
            nonce = wire.read_helo(self._read(self.config.connect_timeout))
        except socket.timeout:
            raise wire.AuthError("no HELO from the collector: is a shared key set on its side?") from None
        salt = os.urandom(16)
        self.sock.sendall(wire.ping(self.config.node, self.config.shared_key, nonce, salt))
        wire.read_pong(self._read(self.config.connect_timeout), salt, nonce, self.config.shared_key)

    def post(self, chunk: Chunk) -> None:
        self.sock.settimeout(self.config.ack_timeout)
        self.sock.sendall(chunk.frame)

    def await_ack(self, chunk_id: str) -> None:
        reply = self._read(self.config.ack_timeout)
        if isinstance(reply, (list, tuple)) and reply and reply[0] == "HELO":
            raise wire.AuthError("the collector asks for a shared key (--shared-key-file)")
        if not isinstance(reply, dict) or reply.get("ack") != chunk_id:
            raise wire.WireError(f"expected the ack of chunk {chunk_id}, got {reply!r:.80}")

    def _read(self, timeout: float | None = None) -> object:
        self.sock.settimeout(timeout or self.config.ack_timeout)
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                pass
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("the collector closed the connection")
            self._unpacker.feed(data)

    def shutdown(self) -> None:
        """From another thread: a send or recv in progress on this connection returns at once."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _tls_context(config: ForwardConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(config.tls_ca) if config.tls_ca else None)
    if not config.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
