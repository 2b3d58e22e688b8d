"""Helpers for the collector tests: a real collector on real sockets, in a thread or a process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import msgpack

from tracer.collect.collector import Collector, CollectorConfig
from tracer.events.records import RecordStamper
from tracer.forward import wire
from tracer.forward.forwarder import ForwardConfig, ForwardSink
from tracer.forward.wire import Address

OOMTRACE = [sys.executable, "-m", "tracer"]


class RunningCollector:
    """A Collector serving on its own event loop in a thread, on ephemeral ports."""

    def __init__(self, config: CollectorConfig) -> None:
        self.collector = Collector(config)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.collector.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(10), "the collector did not start"

    @property
    def address(self) -> Address:
        return self.collector.addresses[0]

    @property
    def metrics(self):
        return self.collector.metrics

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.collector.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def config(tmp_path: Path, **changes) -> CollectorConfig:
    base = CollectorConfig(db=tmp_path / "oom.db", listen=(Address("tcp", "127.0.0.1", 0),), hostname="collector")
    return replace(base, **changes)


def make_records(n: int, node: str = "node-a", kind: str = "memory_pressure", prefix: str | None = None) -> list[dict]:
    stamper = RecordStamper(node, prefix)
    now = time.time()
    return [stamper.stamp({"type": kind, "time": now + i * 1e-6, "cgroup": f"/kubepods/pod{i % 5}/c",
                           "seq": i}) for i in range(n)]


class Stored(NamedTuple):
    id: str
    node: str | None
    type: str | None
    cgroup: str | None
    record: dict


def stored(db: Path) -> list[Stored]:
    """(id, node, type, cgroup, record) of every stored row."""
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT id, node, type, cgroup, body FROM records ORDER BY time").fetchall()
        except sqlite3.OperationalError:  # the collector has created the file, not yet the table
            return []
    return [Stored(i, n, t, c, msgpack.unpackb(b, raw=False, strict_map_key=False,
                                                 unicode_errors="surrogateescape")[1]) for i, n, t, c, b in rows]


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class CollectorProcess:
    """`oomtrace collect` as a real process (for SIGKILL and pipes)."""

    def __init__(self, db: Path, listen: str, *extra: str) -> None:
        self.proc = subprocess.Popen([*OOMTRACE, "collect", "--db", str(db), "--listen", listen, *extra],
                                     stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     cwd=Path(__file__).resolve().parents[1])
        line = self.proc.stderr.readline()
        match = re.search(r"listening on (\S+)", line)
        assert match, f"collect did not start: {line!r}"
        self.address = Address.parse(match.group(1))

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=15)
        assert self.proc.returncode == 0, err
        return err


def sink_for(address: wire.Address, tmp_path: Path, **changes) -> ForwardSink:
    base = ForwardConfig(address, node="node-a", spool_dir=tmp_path / "spool", backoff_min=0.05,
                         backoff_max=0.5, drain_timeout=20, connect_timeout=1)
    return ForwardSink(replace(base, **changes))


def send(sink: ForwardSink, records: list[dict]) -> None:
    for rec in records:
        sink.write(rec)
    sink.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_exchange(address: wire.Address, data: bytes) -> bytes:
    """Send DATA on a new connection; return what comes back until the collector closes it."""
    with socket.create_connection((address.host, address.port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:  # closed with our bytes still unread: TCP says reset
            pass
        return out


def forward_frame(records: list[dict], chunk: str) -> bytes:
    enc = wire.FrameEncoder()
    return enc.frame("oomtrace.t", [enc.entry(r) for r in records], chunk, len(records))
