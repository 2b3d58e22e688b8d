"""The forwarder when things go wrong on the agent's side: a full or read-only spool disk, a
shutdown with chunks in flight, odd files in the spool directory, counters across restarts,
and an unexpected error in the sender thread. The real ForwardSink against a real collector
or a real socket server written here; disks are small tmpfs mounts (root)."""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
from click.testing import CliRunner

from tests.collecting import RunningCollector, config, make_records, stored, wait_until
from tracer.cli import main
from tracer.errors import OomtraceError
from tracer.forward import wire
from tracer.forward.forwarder import ForwardConfig, ForwardSink


def sink_for(address: wire.Address, spool_dir: Path, **changes) -> ForwardSink:
    base = ForwardConfig(address, node="node-a", spool_dir=spool_dir, backoff_min=0.05, backoff_max=0.5,
                         drain_timeout=20, connect_timeout=1)
    return ForwardSink(replace(base, **changes))


def send(sink: ForwardSink, records: list[dict]) -> None:
    for rec in records:
        sink.write(rec)
    sink.flush()


def closed_port() -> wire.Address:
    """An address where no collector listens (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return wire.Address("tcp", "127.0.0.1", s.getsockname()[1])


def chunk_files(spool_dir: Path) -> list[Path]:
    return sorted(p for p in spool_dir.glob("*.fwd") if p.is_file())


def ids_in_spool(spool_dir: Path) -> list[str]:
    out = []
    for path in chunk_files(spool_dir):
        up = wire.unpacker()
        up.feed(path.read_bytes())
        out += [e.record["id"] for frame in wire.frames(up) for e in wire.decode(frame).entries]
    return out


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, name) → a fresh tmpfs of SIZE bytes; remount_ro(path); all unmounted after."""
    mounted: list[Path] = []

    def mount(size: int, name: str = "disk") -> Path:
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
        mounted.append(path)
        return path

    def remount_ro(path: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)

    mount.remount_ro = remount_ro
    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)]).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


class AckServer:
    """A Forward server on 127.0.0.1 that reads every frame and acks each one DELAY seconds after
    it arrived, in order; DELAY None: it never acks (but keeps reading). It asks for the shared
    key KEY, and sends its HELO once `go` is set: until then the agent can only queue chunks."""

    KEY = "k"

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.go = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = wire.Address("tcp", "127.0.0.1", self.listener.getsockname()[1])
        self.received: list[str] = []  # chunk ids, as they arrived
        self.acked: list[str] = []  # acks written to the socket
        self._closing = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            due: queue.Queue = queue.Queue()
            threading.Thread(target=self._read, args=(conn, due), daemon=True).start()
            threading.Thread(target=self._ack, args=(conn, due), daemon=True).start()

    def _read(self, conn: socket.socket, due: queue.Queue) -> None:
        up = wire.unpacker()
        try:
            self.go.wait()
            nonce = os.urandom(16)
            conn.sendall(wire.helo(nonce))
            ping = None
            while ping is None and (data := conn.recv(65536)):
                up.feed(data)
                ping = next(wire.frames(up), None)
            hostname, salt = wire.read_ping(ping, nonce, self.KEY)
            conn.sendall(wire.pong(True, "", "slow-server", salt, nonce, self.KEY))
            for frame in wire.frames(up):  # frames that came with the PING
                self._received(frame, due)
            while data := conn.recv(65536):
                up.feed(data)
                for frame in wire.frames(up):
                    self._received(frame, due)
        except OSError:
            pass

    def _received(self, frame: object, due: queue.Queue) -> None:
        chunk = wire.decode(frame).chunk
        self.received.append(chunk)
        if self.delay is not None:
            due.put((time.monotonic() + self.delay, chunk))

    def _ack(self, conn: socket.socket, due: queue.Queue) -> None:
        while not self._closing.is_set():
            try:
                when, chunk = due.get(timeout=0.1)
            except queue.Empty:
                continue
            if self._closing.wait(max(0.0, when - time.monotonic())):
                return
            try:
                conn.sendall(wire.ack(chunk))
            except OSError:
                return
            self.acked.append(chunk)

    def close(self) -> None:
        self.go.set()
        self._closing.set()
        self.listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


# --- 1. a full spool disk; an unusable spool directory ------------------------------------------

@pytest.mark.root
def test_a_full_spool_disk_drops_the_oldest_counts_them_and_never_raises(tmpfs, tmp_path):
    """256 KiB of disk, the collector down, ~700 KB of chunks: the engine's writes never raise
    (nor does the sender thread die); the oldest chunks make room, every record is either in
    the spool or counted as dropped; a chunk bigger than the disk is dropped and counted. Once
    the collector is back, what the spool kept is stored, once."""
    spool_dir = tmpfs(256 << 10) / "spool"
    addr = closed_port()
    records = make_records(6000, prefix="full")
    sink = sink_for(addr, spool_dir, chunk_records=50, queue_chunks=4, drain_timeout=0.5)
    try:
        for i in range(0, len(records), 500):  # the engine's thread: writes, and spools when the queue is full
            send(sink, records[i:i + 500])
            time.sleep(0.02)
        wait_until(lambda: sink.spool.records + sink.spool.dropped == 6000, what="every chunk spooled or dropped")
        before = sink.spool.records
        huge = make_records(1, prefix="huge")[0] | {"blob": "x" * (400 << 10)}
        send(sink, [huge])  # one chunk larger than the whole disk: only it is dropped
        wait_until(lambda: sink.spool.dropped + sink.spool.records == 6001, what="the huge chunk dropped")
        assert sink.spool.records == before
        assert sink._thread.is_alive() and getattr(sink.stats, "errors", 0) == 0
    finally:
        sink.close()
    assert sink.spool.dropped > 1000 and sink.spool.records > 0
    assert sink.spool.records + sink.spool.dropped == 6001
    kept = ids_in_spool(spool_dir)
    assert len(kept) == len(set(kept)) == sink.spool.records
    assert set(kept) <= {r["id"] for r in records}
    assert records[-1]["id"] in kept and records[0]["id"] not in kept  # the oldest were dropped

    running = RunningCollector(config(tmp_path, listen=(addr,)))
    try:
        again = sink_for(addr, spool_dir)
        assert again.spool.dropped == sink.spool.dropped  # counted across the restart
        wait_until(lambda: len(stored(running.collector.config.db)) >= len(kept), what="the spool to drain")
        again.close()
        ids = [r.id for r in stored(running.collector.config.db)]
        assert sorted(ids) == sorted(kept) and len(again.spool) == 0
    finally:
        running.stop()


@pytest.mark.root
def test_a_spool_disk_already_full_at_start_drops_and_keeps_going(tmpfs):
    disk = tmpfs(64 << 10)
    (disk / "spool").mkdir()
    with open(disk / "filler", "wb", buffering=0) as f:  # something else filled the disk
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    sink = sink_for(closed_port(), disk / "spool", drain_timeout=0.2)
    send(sink, make_records(500))
    sink.close()
    assert sink.spool.dropped == 500 and sink.spool.records == 0


@pytest.mark.root
@pytest.mark.parametrize("case", ["read-only, there", "read-only, to be made", "a file in the way",
                                  "a file, not a directory"])
def test_an_unusable_spool_directory_is_one_clear_line_at_start(tmpfs, tmp_path, case):
    if case.startswith("read-only"):
        disk = tmpfs(64 << 10)
        (disk / "spool").mkdir()
        tmpfs.remount_ro(disk)
        spool_dir = disk / ("spool" if case == "read-only, there" else "new")
        why = "Read-only file system"
    elif case == "a file in the way":
        (tmp_path / "file").write_text("")
        spool_dir = tmp_path / "file" / "spool"
        why = "Not a directory"
    else:
        (tmp_path / "file").write_text("")
        spool_dir = tmp_path / "file"
        why = "not a directory"
    with pytest.raises(OomtraceError, match=f"spool directory {spool_dir}: .*{why}"):
        sink_for(closed_port(), spool_dir)

    if case == "a file, not a directory":
        return  # click's own check of --spool-dir refuses it
    result = CliRunner().invoke(main, ["run", "--forward", str(closed_port()), "--spool-dir", str(spool_dir),
                                       "--duration", "0.1"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    assert result.output.startswith(f"Error: spool directory {spool_dir}: ") and why in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# --- 2. shutdown with chunks in flight --------------------------------------------------------

@pytest.mark.parametrize("delay", [6.0, None], ids=["acks after 6 s", "never acks"])
def test_close_keeps_every_unacked_chunk_in_flight_or_queued_and_the_next_start_sends_it(tmp_path, delay):
    """A collector that acks slowly (or never): at close, after drain_timeout, the chunks in the
    send window are spooled with those queued and those still being packed; close() does not
    wait for their acks; the next start sends them all, and the collector stores each once."""
    server = AckServer(delay)
    addr = server.address
    records = make_records(1000, prefix="inflight")
    sink = sink_for(addr, tmp_path / "spool", chunk_records=100, drain_timeout=1.0, ack_timeout=30,
                    shared_key=AckServer.KEY, connect_timeout=30)
    try:
        send(sink, records[:900])  # 9 chunks queued while the agent waits for the HELO
        server.go.set()
        wait_until(lambda: len(server.received) == 4, what="a full send window")
        time.sleep(0.2)
        assert len(server.received) == 4  # the window: 4 in flight, 5 queued
        for rec in records[900:]:
            sink.write(rec)  # packed, not yet flushed into a chunk
        t0 = time.monotonic()
        sink.close()
        took = time.monotonic() - t0
    finally:
        server.close()
    assert sink.stats.sent_records + sink.spool.records == 1000, "chunks neither acked nor spooled"
    assert set(server.received) <= {c.id for c in _spooled_chunks(tmp_path / "spool")}
    assert sorted(ids_in_spool(tmp_path / "spool")) == sorted(r["id"] for r in records)
    assert took < 1.0 + 2.0, f"close() waited {took:.1f} s for acks"

    running = RunningCollector(config(tmp_path))
    try:
        again = sink_for(running.address, tmp_path / "spool")
        wait_until(lambda: len(stored(running.collector.config.db)) >= 1000, what="the spool to drain")
        again.close()
        ids = [r.id for r in stored(running.collector.config.db)]
        assert sorted(ids) == sorted(r["id"] for r in records) and len(again.spool) == 0
    finally:
        running.stop()


def _spooled_chunks(spool_dir: Path):
    from tracer.forward.spool import Chunk

    out = []
    for path in chunk_files(spool_dir):
        frame = msgpack.unpackb(path.read_bytes(), raw=False)
        out.append(Chunk(frame[2]["chunk"], b"", frame[2]["size"], path.name))
    return out


# --- 3. odd files in the spool directory ------------------------------------------------------

def _bad_entries_frame() -> bytes:
    """Looks like a chunk; the collector refuses it (its entries are not msgpack)."""
    return msgpack.packb(["oomtrace.x", b"\xc1\xc1\xc1", {"chunk": "bad-entries", "size": 4}])


ODD = {  # name → what is put there; None: a directory
    "notes.txt": b"left here by someone\n",
    "sub": None,
    "x.fwd": b"not ours",
    "d.tmp": None,
    "0000000000000000-1.fwd": msgpack.packb({"not": "a chunk"}),  # valid msgpack, not a frame
    "0000000000000000-2.fwd": b"\xc1\xc1 not msgpack",
    "0000000000000000-3.fwd": b"",
    "0000000000000000-4.fwd": _bad_entries_frame(),
    "0000000000000000-5.fwd": None,  # a directory named like a chunk
    "0000000000000000-6.fwd": msgpack.packb(["oomtrace.x", b"", {"size": 6}]),  # a frame without a chunk id
    "state.json": b"{not json",
}
BAD_CHUNKS = {"0000000000000000-1.fwd": 1, "0000000000000000-2.fwd": 2, "0000000000000000-3.fwd": 3,
              "0000000000000000-4.fwd": 4, "0000000000000000-6.fwd": 6}


@pytest.mark.parametrize("odd", sorted(ODD))
def test_an_odd_file_in_the_spool_directory_never_stops_forwarding(tmp_path, odd, caplog):
    spool_dir = tmp_path / "spool"
    good = make_records(300, prefix="good")
    first = sink_for(closed_port(), spool_dir, drain_timeout=0.2)  # a real spooled chunk, behind the odd one
    send(first, good)
    first.close()
    assert first.spool.records == 300
    path = spool_dir / odd
    if ODD[odd] is None:
        path.mkdir()
        (path / "inside.fwd").write_bytes(b"x")
    else:
        path.write_bytes(ODD[odd])

    running = RunningCollector(config(tmp_path))

    def delivered() -> int:
        return sum(r.type == "memory_pressure" for r in stored(running.collector.config.db))

    try:
        with caplog.at_level(logging.WARNING, logger="oomtrace.forward"):
            sink = sink_for(running.address, spool_dir)  # the start does not fail
            wait_until(lambda: delivered() >= 300, timeout=10, what="the good chunk behind the odd file")
            more = make_records(50, prefix="more")
            send(sink, more)
            wait_until(lambda: delivered() >= 350, timeout=10, what="new records")
            assert sink._thread.is_alive() and getattr(sink.stats, "errors", 0) == 0
            sink.close()
        ids = [r.id for r in stored(running.collector.config.db)]
        assert sorted(ids) == sorted(r["id"] for r in good + more)
        if odd in BAD_CHUNKS:  # deleted, logged with its reason, counted
            assert not path.exists() and sink.spool.bad_files == 1
            assert sink.spool.dropped == BAD_CHUNKS[odd]
            assert any(odd in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)
        elif odd == "state.json":  # a damaged state file costs the count, not the start
            assert sink.spool.dropped == 0
            assert any("state.json" in r.getMessage() for r in caplog.records)
        else:  # not the spool's: left alone
            assert path.exists() and sink.spool.dropped == 0
    finally:
        running.stop()


# --- 4. counters across restarts -------------------------------------------------------------

def test_dropped_total_survives_restarts_and_forward_status_is_current(tmp_path):
    addr = closed_port()
    spool_dir = tmp_path / "spool"
    first = sink_for(addr, spool_dir, chunk_records=50, spool_max_bytes=40_000, drain_timeout=0.2)
    send(first, make_records(2000, prefix="one"))
    first.close()
    d1, r1 = first.spool.dropped, first.spool.records
    assert d1 > 0 and d1 + r1 == 2000
    assert json.loads((spool_dir / "state.json").read_text()) == {"dropped_total": d1}

    second = sink_for(addr, spool_dir, chunk_records=50, spool_max_bytes=40_000, drain_timeout=5)
    assert second.spool.dropped == d1 and second.spool.records == r1
    send(second, make_records(500, prefix="two"))
    wait_until(lambda: second.spool.records + second.spool.dropped == 2500, what="the new records spooled")
    spooled, dropped = second.spool.records, second.spool.dropped
    assert dropped > d1

    running = RunningCollector(config(tmp_path, listen=(addr,)))
    try:
        db = running.collector.config.db

        def status():
            second.flush()  # the engine's loop would flush it
            return [r.record for r in stored(db) if r.type == "forward_status"]

        found = wait_until(status, what="a forward_status record")
        second.close()
        assert found[-1]["dropped_total"] == dropped  # not 0 after the restart
        assert found[-1]["spooled"] == spooled  # the spool's count when the record was made
        assert running.metrics.agent_dropped.labels("node-a")._value.get() == dropped
        assert len([r for r in stored(db) if r.type == "memory_pressure"]) == spooled
    finally:
        running.stop()
    third = sink_for(addr, spool_dir, drain_timeout=0.2)
    assert third.spool.dropped == dropped
    third.close()


# --- the sender thread never dies -------------------------------------------------------------

def test_an_unexpected_error_in_the_sender_is_logged_counted_and_survived(tmp_path, caplog):
    running = RunningCollector(config(tmp_path))
    try:
        sink = sink_for(running.address, tmp_path / "spool")
        real_oldest, calls = sink.spool.oldest, []

        def flaky(*args, **kw):
            calls.append(1)
            if len(calls) <= 2:
                raise RuntimeError("a bug")
            return real_oldest(*args, **kw)

        with caplog.at_level(logging.ERROR, logger="oomtrace.forward"):
            sink.spool.oldest = flaky
            records = make_records(500)
            send(sink, records)
            wait_until(lambda: sink.stats.sent_records >= 500 and len(calls) > 2, timeout=10, what="delivery")
        assert sink._thread.is_alive() and getattr(sink.stats, "errors", 0) == 2
        assert sum(r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records) == 2
        sink.close()
        assert sorted(r.id for r in stored(running.collector.config.db)) == sorted(r["id"] for r in records)
    finally:
        running.stop()


@pytest.mark.parametrize("what", ["removed", "replaced by a file"])
def test_the_engine_side_never_raises_when_the_spool_directory_goes_away(tmp_path, what):
    """The spool directory removed under a running agent: it is made again. Replaced by a file:
    every write fails (ENOTDIR), and write(), flush() and close() still return, with what could
    not be written counted as dropped."""
    spool_dir = tmp_path / "spool"
    sink = sink_for(closed_port(), spool_dir, chunk_records=10, queue_chunks=1, drain_timeout=0.2)
    shutil.rmtree(spool_dir)
    if what == "replaced by a file":
        spool_dir.write_text("")
    send(sink, make_records(200))
    assert sink._thread.is_alive()
    sink.close()
    if what == "removed":
        assert sink.spool.records == 200 and sink.spool.dropped == 0 and len(chunk_files(spool_dir)) == 20
    else:
        assert sink.spool.dropped == 200 and sink.spool.records == 0 and spool_dir.is_file()
