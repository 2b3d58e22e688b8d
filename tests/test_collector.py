"""Agent → collector over real sockets: acks after commit, exactly once, spool, security,
bad input, a real peer client (fluent-logger), stdin and the events query, closing.

`oomtrace collect` (stdin) and `oomtrace events --db` run in this process, by click's
CliRunner; a collector that must be SIGKILLed, or a reader that must be another user, is a
real process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import pytest
import trustme
from click.testing import CliRunner
from fluent import sender
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.collecting import (
    CollectorProcess,
    RunningCollector,
    config,
    forward_frame,
    free_port,
    make_records,
    raw_exchange,
    send,
    sink_for,
    stored,
    wait_until,
)
from tracer.cli import main
from tracer.collect.collector import Collector
from tracer.collect.metrics import Metrics
from tracer.forward import wire
from tracer.forward.spool import Chunk, Spool

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def collector(tmp_path):
    running = RunningCollector(config(tmp_path))
    yield running
    running.stop()





def test_forwarded_records_are_stored_once_even_when_resent(collector, tmp_path):
    records = make_records(2500)
    sink = sink_for(collector.address, tmp_path)
    send(sink, records)
    sink.close()
    assert sink.stats.sent_records == 2500 and len(sink.spool) == 0
    rows = stored(collector.collector.config.db)
    assert [r[0] for r in rows] == [r["id"] for r in records]
    assert {(r[1], r[2], r[4]["seq"] % 5) for r in rows} == {("node-a", "memory_pressure", i) for i in range(5)}

    again = sink_for(collector.address, tmp_path)  # a resend of everything, as after a lost ack
    send(again, records)
    again.close()
    assert len(stored(collector.collector.config.db)) == 2500
    assert collector.metrics.duplicates._value.get() == 2500


def test_many_agents_at_once(collector, tmp_path):
    agents = [sink_for(collector.address, tmp_path / f"a{i}", node=f"node-{i}") for i in range(8)]
    batches = [make_records(2000, node=f"node-{i}") for i in range(8)]
    threads = [threading.Thread(target=send, args=(a, b)) for a, b in zip(agents, batches, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for agent in agents:
        agent.close()
    rows = stored(collector.collector.config.db)
    assert sorted(r[0] for r in rows) == sorted(r["id"] for b in batches for r in b)
    assert {r[1] for r in rows} == {f"node-{i}" for i in range(8)}


def test_fluent_logger_is_a_peer_client(collector):
    """Fluentd's own Python client (Message mode, EventTime) → our collector."""
    logger = sender.FluentSender("app", host=collector.address.host, port=collector.address.port,
                                 nanosecond_precision=True)
    try:
        for i in range(3):
            assert logger.emit("oom", {"type": "oom_kill", "pid": 100 + i, "cgroup": "/pod/x"}), logger.last_error
    finally:
        logger.close()
    rows = wait_until(lambda: len(stored(collector.collector.config.db)) == 3 and stored(collector.collector.config.db))
    assert [r[4]["pid"] for r in rows] == [100, 101, 102]
    assert {r[2] for r in rows} == {"oom_kill"} and rows[0][0].startswith("sha1:")  # no id: one from content
    # no node field: the peer's host is the node (one series per host, not one per connection)
    assert collector.metrics.oom_kills.labels("127.0.0.1")._value.get() == 3
    assert collector.metrics.received.labels("127.0.0.1")._value.get() == 3
    assert [r[1] for r in rows] == ["127.0.0.1"] * 3


def test_unix_socket(tmp_path):
    path = str(tmp_path / "collect.sock")
    running = RunningCollector(config(tmp_path, listen=(wire.Address("unix", path=path),)))
    try:
        sink = sink_for(wire.Address("unix", path=path), tmp_path)
        send(sink, make_records(10))
        sink.close()
        assert len(stored(running.collector.config.db)) == 10
    finally:
        running.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return d


def test_shared_key_over_tls(tmp_path, tls_files):
    running = RunningCollector(config(tmp_path, shared_key="s3cret", tls_cert=tls_files / "server.pem"))
    addr = wire.Address("tcp", "localhost", running.address.port)
    try:
        good = sink_for(addr, tmp_path, shared_key="s3cret", tls=True, tls_ca=tls_files / "ca.pem")
        send(good, make_records(50))
        good.close()
        assert good.stats.sent_records == 50

        wrong = sink_for(addr, tmp_path / "w", shared_key="guess", tls=True, tls_ca=tls_files / "ca.pem",
                         drain_timeout=1)
        send(wrong, make_records(5, prefix="w"))
        wait_until(lambda: running.metrics.rejected.labels("auth")._value.get() >= 1, what="auth rejection")
        wrong.close()
        assert wrong.stats.sent_records == 0 and wrong.spool.records == 5  # kept for a fixed key

        plain = sink_for(addr, tmp_path / "p", shared_key="s3cret", drain_timeout=1)  # no TLS
        send(plain, make_records(5, prefix="p"))
        plain.close()
        assert plain.stats.sent_records == 0
        assert len(stored(running.collector.config.db)) == 50
    finally:
        running.stop()


def test_a_collector_without_the_key_configured_is_told_apart(tmp_path, collector):
    """An agent with a key talking to a collector without one fails clearly, not silently."""
    sink = sink_for(collector.address, tmp_path, shared_key="k", drain_timeout=1, connect_timeout=1)
    send(sink, make_records(3))
    sink.close()
    assert sink.stats.sent_records == 0 and sink.spool.records == 3




def test_bad_input_closes_only_its_connection(tmp_path):
    running = RunningCollector(config(tmp_path, max_frame=64 << 10))
    try:
        sink = sink_for(running.address, tmp_path)  # a healthy agent, connected throughout
        send(sink, make_records(100, prefix="a"))
        wait_until(lambda: sink.stats.sent_records == 100)
        good = forward_frame(make_records(1, prefix="g"), "ok")
        cases = {
            "garbage": b"\xc1 this is not msgpack",
            "oversized": msgpack.packb(["t", b"x" * (200 << 10), {}]),
            "truncated": forward_frame(make_records(3, prefix="t"), "t")[:-5],
            "wrong types": msgpack.packb(["t", 1700000000, ["not", "a", "map"]]),
            "valid then garbage": good + b"\xc1",
            "more bad frames than the ack queue holds": b"\x00" * 20,  # once deadlocked the reader
        }
        replies = {name: raw_exchange(running.address, data) for name, data in cases.items()}
        assert replies["valid then garbage"] == wire.ack("ok")  # acked before the garbage
        assert all(not reply for name, reply in replies.items() if name != "valid then garbage")
        rejected = {s.labels["reason"]: s.value for m in running.metrics.rejected.collect() for s in m.samples
                    if s.name.endswith("_total")}
        assert rejected == {"invalid": 5, "oversized": 1}
        send(sink, make_records(100, prefix="b"))  # the healthy agent never noticed
        sink.close()
        assert sink.stats.sent_records == 200 and sink.stats.failures == 0
        assert len(stored(running.collector.config.db)) == 201
    finally:
        running.stop()


@pytest.fixture(scope="module")
def fuzz_collector(tmp_path_factory):
    running = RunningCollector(config(tmp_path_factory.mktemp("fuzz"), max_frame=16 << 10))
    yield running
    running.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=2048))
def test_fuzzed_connections_never_disturb_stored_records(fuzz_collector, garbage):
    db = fuzz_collector.collector.config.db
    before = len(stored(db))
    raw_exchange(fuzz_collector.address, garbage)
    chunk = wire.new_chunk_id()
    assert raw_exchange(fuzz_collector.address, forward_frame(make_records(1), chunk)) == wire.ack(chunk)
    after = len(stored(db))
    assert before + 1 <= after <= before + 2  # the garbage itself may have been a valid frame


def test_spool_survives_an_agent_restart_and_drains_when_the_collector_returns(tmp_path):
    port = free_port()
    addr = wire.Address("tcp", "127.0.0.1", port)
    first = sink_for(addr, tmp_path, drain_timeout=0.5)
    send(first, make_records(1500, prefix="first"))
    first.close()  # the agent stops while the collector is down
    assert first.spool.records == 1500

    second = sink_for(addr, tmp_path)  # the agent starts again: the spool is still there
    assert second.spool.records == 1500
    send(second, make_records(500, prefix="second"))
    running = RunningCollector(config(tmp_path, listen=(addr,)))
    try:
        db = running.collector.config.db
        wait_until(lambda: len(stored(db)) >= 2000, timeout=30, what="the spool to drain")
        second.flush()  # the forward_status record written on reconnect
        second.close()
        rows = stored(db)
        ids = [r[0] for r in rows if r[2] == "memory_pressure"]
        assert len(ids) == len(set(ids)) == 2000
        status = [r[4] for r in rows if r[2] == "forward_status"]
        assert status and status[-1]["reconnects"] == 1 and status[-1]["spooled_total"] >= 500
        assert running.metrics.agent_spooled_total.labels("node-a")._value.get() >= 500
        assert len(second.spool) == 0
    finally:
        running.stop()


def test_spool_is_bounded_and_drops_the_oldest(tmp_path):
    spool = Spool(tmp_path / "s", max_bytes=1000)
    for i in range(5):
        spool.put(Chunk(f"c{i}", bytes(400), 10))
    assert len(spool) == 2 and spool.records == 20 and spool.dropped == 30
    (tmp_path / "s" / "0000000000000009-3.tmp").write_bytes(b"half")  # a crash mid-write
    again = Spool(tmp_path / "s", max_bytes=1000)
    assert again.records == 20 and not list((tmp_path / "s").glob("*.tmp"))
    assert again.oldest(lambda frame: "id").name.startswith("0000000000000004")


def test_metrics_endpoint_serves_oom_kills_by_node(collector, tmp_path):
    port = free_port()
    collector.metrics.serve(wire.Address("tcp", "127.0.0.1", port))
    sink = sink_for(collector.address, tmp_path, node="worker-7")
    kills = make_records(2, node="worker-7", kind="oom_kill")
    send(sink, kills + kills)  # the resend is not a second kill
    sink.close()
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'oomtrace_oom_kills_total{node="worker-7"} 2.0' in text  # per pod: in the store, not in labels
    assert 'oomtrace_records_received_total{node="worker-7"} 4.0' in text
    assert "oomtrace_records_duplicate_total 2.0" in text


def test_metrics_registry_is_per_instance():
    a, b = Metrics(), Metrics()
    a.stored.inc(3)
    assert b.stored._value.get() == 0


def test_collector_sigkill_and_restart_loses_nothing_and_duplicates_nothing(tmp_path):
    db = tmp_path / "oom.db"
    port = free_port()
    listen = f"tcp://127.0.0.1:{port}"
    proc = CollectorProcess(db, listen)
    total = 20000
    records = make_records(total, prefix="kill")
    sink = sink_for(proc.address, tmp_path, chunk_records=200)

    def agent():
        for i, rec in enumerate(records):
            sink.write(rec)
            if i % 100 == 99:
                sink.flush()
                time.sleep(0.005)  # ~20,000 records/s for one second
        sink.flush()

    writer = threading.Thread(target=agent)
    writer.start()
    time.sleep(0.4)
    proc.kill()  # mid-stream, with chunks in flight
    time.sleep(0.5)
    proc = CollectorProcess(db, listen)
    writer.join()
    wait_until(lambda: sink.stats.sent_records >= total, timeout=60, what="the agent to settle")
    sink.close()
    proc.stop()
    ids = [r[0] for r in stored(db) if r[2] == "memory_pressure"]
    assert sink.stats.failures >= 1, "the kill was not noticed: the test proved nothing"
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == {r["id"] for r in records}


def _oomtrace(args: list[str], stdin: Path | None = None, text: bool = False) -> subprocess.CompletedProcess:
    """`oomtrace ARGS` by CliRunner, its outcome shaped like subprocess.run's. STDIN is a file,
    so that sys.stdin.buffer has a file descriptor, as it has in a pipe. An exception that the
    command did not turn into an exit status (a traceback, in a process) is raised here."""
    if stdin is None:
        result = CliRunner().invoke(main, args)
    else:
        with stdin.open("rb") as f:
            result = CliRunner().invoke(main, args, input=f)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if text:
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout_bytes, result.stderr_bytes)


def _collect_stdin(db: Path, data: bytes) -> subprocess.CompletedProcess:
    stdin = db.with_name(db.name + ".stdin")
    stdin.write_bytes(data)
    return _oomtrace(["collect", "--db", str(db)], stdin=stdin)


def test_stdin_stream_of_run_output(tmp_path):
    records = make_records(300, kind="oom_kill")
    done = _collect_stdin(tmp_path / "a.db", b"".join(msgpack.packb(r) for r in records))
    assert done.returncode == 0, done.stderr
    assert b"300 records from stdin" in done.stderr
    assert [r[0] for r in stored(tmp_path / "a.db")] == [r["id"] for r in records]


def test_stdin_garbage_keeps_what_came_before_and_says_where(tmp_path):
    good = b"".join(msgpack.packb(r) for r in make_records(20))
    done = _collect_stdin(tmp_path / "b.db", good + b"\xc1" + msgpack.packb({"type": "x"}))
    assert done.returncode == 1
    assert f"byte {len(good)} is not msgpack".encode() in done.stderr, done.stderr
    assert len(stored(tmp_path / "b.db")) == 20


def test_stdin_truncated_last_record(tmp_path):
    data = b"".join(msgpack.packb(r) for r in make_records(5))
    done = _collect_stdin(tmp_path / "c.db", data + msgpack.packb(make_records(1, prefix="z")[0])[:-3])
    assert done.returncode == 1 and b"ended inside a record" in done.stderr
    assert len(stored(tmp_path / "c.db")) == 5


def test_stdin_non_map_objects_are_skipped_with_a_warning(tmp_path):
    data = msgpack.packb([1, 2]) + b"".join(msgpack.packb(r) for r in make_records(3))
    done = _collect_stdin(tmp_path / "d.db", data)
    assert done.returncode == 0 and b"not a record map" in done.stderr
    assert len(stored(tmp_path / "d.db")) == 3


def test_events_query_table_and_json(tmp_path):
    kills = make_records(3, node="w1", kind="oom_kill")
    kills[1].update(cgroup="/kubepods/burstable/podX/c1", comm="java", pid=4242, anon_rss=300 << 20)
    data = b"".join(msgpack.packb(r) for r in kills + make_records(5, node="w2"))
    assert _collect_stdin(tmp_path / "e.db", data).returncode == 0

    def events(*args):
        done = _oomtrace(["events", "--db", str(tmp_path / "e.db"), *args], text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = events("--type", "oom_kill", "--cgroup", "/kubepods/burstable")
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "NODE", "TYPE", "WORKLOAD", "CGROUP", "DETAILS"] and len(lines) == 2
    assert "w1" in lines[1] and "pid=4242 comm=java" in lines[1] and "anon_rss=300.0MiB" in lines[1]
    out = [json.loads(line) for line in events("--node", "w2", "--since", "1h", "--output", "json").splitlines()]
    assert [r["seq"] for r in out] == [0, 1, 2, 3, 4] and {r["node"] for r in out} == {"w2"}
    assert events("--since", "0s") .splitlines()[1:] == []


def test_tls_client_ssl_context_verifies_by_default(tls_files):
    ctx = ssl.create_default_context(cafile=str(tls_files / "ca.pem"))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def _snapshot(directory: Path) -> tuple[int, dict[str, tuple[bytes, int]]]:
    """DIRECTORY's mtime (a file made and removed again changes it) and each file's bytes and mtime."""
    return directory.stat().st_mtime_ns, {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
                                          for p in sorted(directory.iterdir())}


@pytest.fixture
def read_only_db():
    """A collector's database at rest, chmod 0444 in a 0555 directory that any user can reach
    (not under pytest's tmp_path, which is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="oomtrace-ro-"))
    os.chmod(directory, 0o755)
    kills = make_records(3, node="w1", kind="oom_kill")
    data = b"".join(msgpack.packb(r) for r in kills + make_records(5, node="w2"))
    assert _collect_stdin(directory / "ro.db", data).returncode == 0
    (directory / "ro.db.stdin").unlink()
    os.chmod(directory / "ro.db", 0o444)
    os.chmod(directory, 0o555)
    try:
        yield directory / "ro.db"
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(directory)


def test_events_db_reads_a_read_only_database_and_changes_nothing(read_only_db):
    before = _snapshot(read_only_db.parent)
    assert list(before[1]) == ["ro.db"]  # the collector closed cleanly: no -wal, no -shm
    done = _oomtrace(["events", "--db", str(read_only_db), "--output", "json"], text=True)
    assert done.returncode == 0, done.stderr
    assert [(r["node"], r["type"]) for r in map(json.loads, done.stdout.splitlines())] == \
        [("w1", "oom_kill")] * 3 + [("w2", "memory_pressure")] * 5
    table = _oomtrace(["events", "--db", str(read_only_db), "-t", "oom_kill"], text=True)
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 4, table.stderr
    assert _snapshot(read_only_db.parent) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the reader as another user")
def test_events_db_as_a_user_without_write_access(read_only_db):
    """root may write anywhere; nobody may not: the read must not need to (a separate process,
    for its own uid)."""
    def as_nobody(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], user=65534, group=65534, extra_groups=[], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    if as_nobody("-c", "import tracer.cli").returncode != 0:
        pytest.skip(f"user nobody cannot import tracer from {ROOT}")
    before = _snapshot(read_only_db.parent)
    done = as_nobody("-m", "tracer", "events", "--db", str(read_only_db), "--node", "w2", "--output", "json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["seq"] for line in done.stdout.splitlines()] == [0, 1, 2, 3, 4]
    assert _snapshot(read_only_db.parent) == before


@pytest.mark.parametrize("content, says", [
    (None, "it has no records table"),  # SQLite, but not ours
    (b"a text file, not a database\n" * 50, "file is not a database"),
])
def test_events_db_refuses_a_database_that_is_not_ours(tmp_path, content, says):
    path = tmp_path / "other.db"
    if content is None:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE logs(line TEXT)")
        conn.close()
    else:
        path.write_bytes(content)
    before = _snapshot(tmp_path)
    done = _oomtrace(["events", "--db", str(path)], text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"Error: {path}: ") and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(tmp_path) == before  # no table created, no journal mode set, no -wal left


def test_collector_close_follows_aclose_and_is_idempotent(tmp_path):
    running = RunningCollector(config(tmp_path))
    sink = sink_for(running.address, tmp_path)
    send(sink, make_records(10))
    sink.close()
    with pytest.raises(RuntimeError, match="aclose"):  # its loop serves it in another thread
        running.collector.close()
    running.stop()  # aclose(): listeners, connections, then close() and so the writer
    running.collector.close()  # nothing left to do
    asyncio.run(running.collector.aclose())  # nor here
    with pytest.raises(RuntimeError, match="writer is closed"):
        running.collector.writer.submit([])
    assert len(stored(running.collector.config.db)) == 10


def test_collector_with_block_closes_listeners_and_writer(tmp_path):
    records = tmp_path / "in.msgpack"
    records.write_bytes(b"".join(msgpack.packb(r) for r in make_records(5)))
    with Collector(config(tmp_path)) as collector:
        asyncio.run(collector.start())  # that loop ends with the listener still open
        port = collector.addresses[0].port
        with records.open("rb") as f:
            assert collector.ingest(f) == 5
    with pytest.raises(RuntimeError, match="writer is closed"):
        collector.writer.submit([])
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the listening socket is gone
    collector.close()
    assert len(stored(collector.config.db)) == 5
