"""The collector under hostile peers, poison records, full disks and an unlucky operator: each
test reproduces a way it once lost or wedged data (issue 10) against the real collector."""

from __future__ import annotations

import concurrent.futures
import gc
import json
import logging
import math
import os
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import msgpack
import pytest
from click.testing import CliRunner

from tests.collecting import (
    OOMTRACE,
    CollectorProcess,
    RunningCollector,
    config,
    forward_frame,
    free_port,
    make_records,
    send,
    sink_for,
    stored,
    wait_until,
)
from tracer.cli import main
from tracer.collect import store
from tracer.collect.limits import LogLimiter
from tracer.collect.metrics import Metrics
from tracer.forward import wire

ROOT = Path(__file__).resolve().parents[1]
BAD = "\udcff"  # a byte that is not UTF-8, as msgpack hands it over (surrogateescape)


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, unicode_errors="surrogateescape")


def _exchange(address: wire.Address, data: bytes, timeout: float = 10) -> bytes:
    """Send DATA, keep the socket open for writing, read until the collector closes it."""
    with socket.create_connection((address.host, address.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def _unpack_all(data: bytes) -> list[dict]:
    up = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
    up.feed(data)
    return list(up)


def _poison(chunk: str) -> bytes:
    """One Forward frame of records a peer (or a buggy agent) can send: text that is not UTF-8
    in every column, a time past 2^63, a NaN time, a time in the year 9999."""
    now = time.time()
    entries = [
        [now, {"type": "oom_kill", "id": "bad-node", "node": f"node{BAD}", "cgroup": "/c"}],
        [now, {"type": "oom_kill", "id": f"bad-id{BAD}", "node": "n", "cgroup": f"/c{BAD}", "memcg": f"/m{BAD}"}],
        [2**63, {"type": "oom_kill", "id": "huge-time", "node": "n"}],
        [math.nan, {"type": "oom_kill", "id": "nan-time", "node": "n"}],
        [253402300000.0, {"type": "oom_kill", "id": "year-9999", "node": "n"}],
    ]
    return _pack([f"oomtrace.{BAD}", entries, {"chunk": chunk}])


def test_poison_records_are_stored_flagged_and_acked_beside_good_chunks(tmp_path):
    """Non-UTF-8 text and out-of-range times once escaped the ack task: no ack, no close, and
    the good chunks committed in the same batch lost their acks (5 of 5)."""
    running = RunningCollector(config(tmp_path))
    port = free_port()
    running.metrics.serve(wire.Address("tcp", "127.0.0.1", port))
    try:
        good = [forward_frame(make_records(50, node=f"g{i}", prefix=f"g{i}"), f"good-{i}") for i in range(5)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda data: _unpack_all(_exchange_until_ack(running.address, data)),
                                    [_poison(f"poison{BAD}"), *good]))
        assert replies[0] == [{"ack": f"poison{BAD}"}]  # the chunk id's bytes echoed as they came
        assert [r[0]["ack"] for r in replies[1:]] == [f"good-{i}" for i in range(5)]
        rows = {row.id: row for row in stored(running.collector.config.db)}
        assert len(rows) == 5 + 250
        assert rows["bad-node"].node == "node\\xff"  # columns escaped; the body keeps the bytes
        assert rows["bad-id\\xff"].cgroup == "/c\\xff"
        with sqlite3.connect(running.collector.config.db) as db:
            clamped = dict(db.execute("SELECT id, flags FROM records WHERE flags != 0").fetchall())
        assert clamped == {"huge-time": store.TIME_CLAMPED, "nan-time": store.TIME_CLAMPED,
                           "year-9999": store.TIME_CLAMPED}
        assert running.metrics.oom_kills.labels("n")._value.get() == 4  # each once, none a duplicate
        assert running.metrics.duplicates._value.get() == 0
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'oomtrace_oom_kills_total{node="node\\\\xff"} 1.0' in text  # /metrics still answers
        assert "oomtrace_records_time_clamped_total 3.0" in text
    finally:
        running.stop()


def _exchange_until_ack(address: wire.Address, data: bytes) -> bytes:
    with socket.create_connection((address.host, address.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while not _unpack_all(out):
            chunk = s.recv(65536)
            assert chunk, "closed without an ack"
            out += chunk
        return out


def test_a_record_dated_9999_does_not_hide_real_kills_from_since(tmp_path):
    db = store.Store(tmp_path / "s.db")
    now = time.time()
    future = [{"type": "oom_kill", "id": f"f{i}", "node": "liar", "time": 253402300000.0} for i in range(1000)]
    real = {"type": "oom_kill", "id": "real", "node": "n", "time": now - 5}
    db.add(store.rows(wire.decode(["t", [[r["time"], r] for r in [*future, real]]]), now))
    newest = list(db.query(store.Query(since=now - 3600, types=("oom_kill",), limit=1)))
    assert newest[0]["id"] == "f999" and newest[0]["time_clamped"] and newest[0]["time_sent"] == 253402300000.0
    assert newest[0]["time"] == now  # stored at its receive time, not in 9999
    assert [r["id"] for r in db.query(store.Query(since=now - 3600, until=now - 1))] == ["real"]
    db.close()


def test_ids_are_scoped_per_node(tmp_path):
    """One node cannot pre-empt another's kill by sending its id first."""
    db = store.Store(tmp_path / "s.db")
    now = time.time()
    same = [{"type": "oom_kill", "id": "k1", "node": node, "time": now} for node in ("a", "b", "b")]
    added = db.add(store.rows(wire.decode(["t", [[now, r] for r in same]]), now))
    assert (added.stored, added.duplicates) == (2, 1)
    assert sorted(r["node"] for r in db.query(store.Query())) == ["a", "b"]
    db.close()


def test_a_version_1_store_is_migrated_once_and_read_by_older_readers(tmp_path):
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as v1:  # the layout oomtrace wrote before ids were scoped per node
        v1.executescript("CREATE TABLE records (id TEXT NOT NULL UNIQUE, time REAL NOT NULL, received REAL NOT "
                         "NULL, node TEXT, type TEXT, cgroup TEXT, memcg TEXT, tag TEXT NOT NULL, body BLOB NOT NULL);"
                         "CREATE INDEX records_time ON records(time);")
        v1.execute("INSERT INTO records VALUES ('x', 1700000000, 1700000001, NULL, 'oom_kill', '/c', NULL, 't', ?)",
                   (msgpack.packb([1700000000, {"type": "oom_kill", "id": "x"}]),))
    with store.StoreReader(path) as reader:  # read as it is, nothing changed
        assert [r["id"] for r in reader.query(store.Query())] == ["x"]
    with store.Store(path) as db:
        assert db.db.execute("PRAGMA user_version").fetchone() == (store.SCHEMA_VERSION,)
        added = db.add(store.rows(wire.decode(["t", [[1700000000, {"id": "x", "node": "other"}]]]), 1700000002.0))
        assert added.stored == 1  # same id, another node: kept apart now
        assert db.count() == 2


def test_retention_runs_on_the_receive_time(tmp_path):
    db = store.Store(tmp_path / "s.db")
    now = time.time()
    late = {"type": "oom_kill", "id": "late", "node": "n", "time": now - 40 * 86400}  # spooled for 40 days
    db.add(store.rows(wire.decode(["t", [[late["time"], late]]]), now))
    assert db.expire(store.Retention(default=30 * 86400), now) == 0
    assert db.expire(store.Retention(default=30 * 86400), now + 31 * 86400) == 1
    db.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs: a disk that fills up (room for a full WAL of 4 MB once freed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 << 10))
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_then_freed_acks_again_after_a_failed_retention_pass(small_disk, tmp_path):
    """expire() once raised `database or disk is full` outside the writer's error handling: the
    only writer thread died and the collector never acked again, even after space was freed."""
    db_path = small_disk / "oom.db"
    with store.Store(db_path) as db:  # records the retention pass deletes 3 s after the collector starts
        old = make_records(2000, prefix="old")
        db.add(store.rows(wire.decode(["t", [[r["time"], r] for r in old]]), time.time() - 30 * 86400 + 3))
    running = RunningCollector(config(tmp_path, db=db_path, expire_interval=0.2,
                                      retention=store.Retention(default=30 * 86400)))
    filler = _fill(small_disk)
    try:
        wait_until(lambda: running.metrics.store_errors._value.get() >= 1, what="a failed store round")
        sink = sink_for(running.address, tmp_path, drain_timeout=1)
        send(sink, make_records(500, prefix="during"))
        time.sleep(1)
        assert sink.stats.sent_chunks == 0  # nothing acked while the disk is full: nothing lost either
        filler.unlink()
        wait_until(lambda: running.metrics.expired._value.get() == 2000, timeout=20, what="the retention pass")
        send(sink, make_records(500, prefix="after"))
        sink.close()  # drains: every record acked
        assert sink.spool.records == 0
        kept = [row.id for row in stored(db_path) if row.type == "memory_pressure"]
        assert len(kept) == len(set(kept)) == 1000
    finally:
        running.stop()


def test_stdin_keeps_good_records_around_a_poison_one(tmp_path):
    good = make_records(3, prefix="s")
    stream = b"".join(_pack(r) for r in [good[0], {"type": "oom_kill", "id": f"x{BAD}", "node": f"n{BAD}",
                                                   "time": 2**63}, good[1], {"time": math.nan, "id": "nan"}, good[2]])
    db = tmp_path / "in.db"
    proc = subprocess.run([*OOMTRACE, "collect", "--db", str(db), "--listen", "-"], input=stream,
                          capture_output=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert b"5 records from stdin" in proc.stderr
    assert sorted(row.id for row in stored(db)) == sorted([good[0]["id"], good[1]["id"], good[2]["id"], "nan",
                                                           "x\\xff"])


def test_a_bad_frame_closes_its_connection_at_once(tmp_path):
    """Found by the decoder after the reader moved on: the connection used to stay open until
    the peer closed it."""
    running = RunningCollector(config(tmp_path))
    try:
        good = forward_frame(make_records(2), "ok")
        bomb = msgpack.packb(["t", b"\x1f\x8b" + b"\0" * 100, {"compressed": "gzip"}])
        start = time.monotonic()
        reply = _exchange(running.address, good + bomb, timeout=10)  # we never close our side
        assert time.monotonic() - start < 5
        assert _unpack_all(reply) == [{"ack": "ok"}]
        assert running.metrics.rejected.labels("invalid")._value.get() == 1
    finally:
        running.stop()


def test_connection_cap_refuses_at_once_and_frees_up(tmp_path):
    running = RunningCollector(config(tmp_path, max_connections=3))
    held = [socket.create_connection((running.address.host, running.address.port)) for _ in range(3)]
    try:
        wait_until(lambda: running.metrics.connections._value.get() == 3)
        assert _exchange(running.address, b"", timeout=5) == b""  # closed at once, not queued
        assert running.metrics.refused.labels("cap")._value.get() == 1
        for s in held:
            s.close()
        wait_until(lambda: running.metrics.connections._value.get() == 0)
        sink = sink_for(running.address, tmp_path)
        send(sink, make_records(10))
        sink.close()
        assert sink.stats.sent_records == 10
    finally:
        running.stop()


def test_idle_and_slow_frames_time_out(tmp_path):
    running = RunningCollector(config(tmp_path, idle_timeout=0.5, frame_timeout=1.0))
    try:
        start = time.monotonic()
        assert _exchange(running.address, b"") == b""  # idle: closed after 0.5 s
        assert 0.4 < time.monotonic() - start < 5
        frame = forward_frame(make_records(5), "slow")
        with socket.create_connection((running.address.host, running.address.port), timeout=10) as s:
            start = time.monotonic()
            s.sendall(frame[:10])
            closed = False
            for byte in frame[10:30]:  # a byte every 0.2 s: never idle, never whole
                try:
                    s.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                time.sleep(0.2)
            closed = closed or s.recv(10) == b""
            assert closed and time.monotonic() - start < 3.5
        assert running.metrics.rejected.labels("idle")._value.get() == 1
        assert running.metrics.rejected.labels("slow")._value.get() == 1
    finally:
        running.stop()


def test_memory_budget_for_frames_being_read(tmp_path):
    """20 connections each holding 15 MB of a frame once kept 320 MB: now one budget bounds them."""
    running = RunningCollector(config(tmp_path, frame_budget=1 << 20, max_frame=4 << 20))
    try:
        big = _pack(["t", [[time.time(), {"pad": "x" * (3 << 20)}]], {"chunk": "big"}])
        holders = []
        for _ in range(3):  # 600 KB each, never finished: the second already exceeds 1 MB
            s = socket.create_connection((running.address.host, running.address.port), timeout=10)
            s.sendall(big[:600 << 10])
            holders.append(s)
        wait_until(lambda: running.metrics.refused.labels("memory")._value.get() >= 1, what="a refusal")
        assert running.collector.budget.used <= 1 << 20
        for s in holders:
            s.close()
        wait_until(lambda: running.collector.budget.used == 0, what="the budget given back")
        sink = sink_for(running.address, tmp_path)
        send(sink, make_records(100))
        sink.close()
        assert sink.stats.sent_records == 100
        wait_until(lambda: running.collector.budget.used == 0, what="stored frames given back")
    finally:
        running.stop()


def test_metric_labels_are_bounded():
    metrics = Metrics(max_nodes=3)
    rows = store.rows(wire.decode(["t", [[time.time(), {"node": f"n{i}"}] for i in range(10)]]), time.time())
    metrics.count_received(rows)
    nodes = {s.labels["node"]: s.value for m in metrics.received.collect() for s in m.samples
             if s.name.endswith("_total")}
    assert nodes == {"n0": 1, "n1": 1, "n2": 1, "~other": 7}
    assert metrics.nodes_overflow._value.get() == 7


def test_repeated_log_lines_are_counted_not_written(caplog):
    limiter = LogLimiter(logging.getLogger("oomtrace.test"), burst=5, window=0.2)
    with caplog.at_level(logging.WARNING, "oomtrace.test"):
        for i in range(1000):
            limiter(logging.WARNING, "cap", "refused %d", i)
        time.sleep(0.25)
        limiter(logging.WARNING, "cap", "refused again")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:5] == [f"refused {i}" for i in range(5)]
    assert lines[5:] == ["995 more like the next one were left out in 0 s", "refused again"]


def test_bound_node_names_records_by_their_authenticated_agent(tmp_path):
    running = RunningCollector(config(tmp_path, shared_key="s3cret", bind_node=True))
    try:
        sink = sink_for(running.address, tmp_path, node="node-a", shared_key="s3cret")
        send(sink, make_records(3, node="node-a", prefix="a") + make_records(2, node="node-b", prefix="b"))
        sink.close()
        assert {row.node for row in stored(running.collector.config.db)} == {"node-a"}
        assert running.metrics.node_mismatch._value.get() == 2
    finally:
        running.stop()


# --- the operator's side: flags and files ----------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["events", "--db", "{db}", "--since", "nan"], "'nan' is not a duration"),
    (["events", "--db", "{db}", "--since", "inf"], "'inf' is not a duration"),
    (["events", "--db", "{db}", "--since", "1h", "--until", "2h"], "--since must reach further back"),
    (["events", "--db", "{db}", "-t", "oom_kil"], "oom_kil: record types are"),
    (["events", "--duration", "-5"], "'-5' is not a number of seconds above 0"),
    (["run", "--duration", "nan"], "'nan' is not a number of seconds above 0"),
    (["collect", "--db", "{db}", "--retain", "nan"], "'nan' is not a duration"),
    (["collect", "--db", "{db}", "--metrics", "unix:/tmp/m"], "is not tcp://HOST:PORT"),
    (["collect", "--db", "{db}", "--shared-key-file", "{empty}"], "is empty"),
    (["collect", "--db", "{db}", "--bind-node"], "needs a shared key"),
])
def test_usage_errors_are_one_clear_line(tmp_path, args, says):
    db = tmp_path / "x.db"
    store.Store(db).close()
    (tmp_path / "empty").write_text("\n")
    argv = [a.format(db=db, empty=tmp_path / "empty") for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_a_busy_metrics_port_is_an_error_not_a_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([*OOMTRACE, "collect", "--db", str(tmp_path / "x.db"), "--listen", "tcp://127.0.0.1:0",
                               "--metrics", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True, cwd=ROOT,
                              stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 1 and f"cannot serve metrics on tcp://127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_listen_unix_never_deletes_a_regular_file(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("data")
    proc = subprocess.run([*OOMTRACE, "collect", "--db", str(tmp_path / "x.db"), "--listen", f"unix:{precious}"],
                          capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 1 and "exists and is not a socket" in proc.stderr
    assert precious.read_text() == "data"
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:  # a socket left by a collector that died
        s.bind(str(stale))
    collector = CollectorProcess(tmp_path / "x.db", f"unix:{stale}")  # replaced: it started
    collector.stop()


def test_collect_under_a_service_manager_listens_instead_of_reading_dev_null(tmp_path):
    proc = subprocess.Popen([*OOMTRACE, "collect", "--db", str(tmp_path / "x.db")], stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stderr.readline()
        assert "listening on" in line or "cannot listen" in line, line  # the default port may be taken here
        assert "from stdin" not in line
    finally:
        proc.terminate()
        proc.wait(15)


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_cut_frames_free_their_buffers_at_once(tmp_path):
    """A connection's acks once referred back to it: the cycle kept each cut frame's buffer
    until the cyclic GC ran, and a flood of them grew the collector to 800 MB."""
    running = RunningCollector(config(tmp_path))
    gc.disable()  # what a quiet process looks like to a refcount-only release
    try:
        cut = _pack(["t", b"z" * (9 << 20), {"chunk": "c"}])[: 8 << 20]
        before = _rss_mb()
        for _ in range(20):  # 160 MB in all, 8 MB at a time
            with socket.create_connection((running.address.host, running.address.port), timeout=10) as s:
                s.sendall(cut)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
        grown = _rss_mb() - before
        assert grown < 80, f"RSS grew {grown:.0f} MB"
        assert running.metrics.rejected.labels("invalid")._value.get() == 20
    finally:
        gc.enable()
        running.stop()


# --- the workload columns (records carry container/pod identity since schema 4) ----------------

def _kill(rid: str, pod: str | None, container: str, image: str, node: str = "n1") -> dict:
    return {"type": "oom_kill", "id": rid, "node": node, "time": time.time(), "cgroup": f"/kubepods/{rid}",
            "comm": "python3", "container": {"runtime": "containerd", "id": rid * 8, "name": container,
                                             "image": image, "image_id": None, "labels": {}},
            "pod": {"name": pod, "namespace": "prod", "uid": "u-" + rid, "container": container} if pod else None}


def test_a_kill_is_found_by_its_pod_after_the_pod_is_gone(tmp_path):
    db = tmp_path / "w.db"
    kills = [_kill("a", "api-5f", "api", "local/api:1"), _kill("b", "web-7c", "web", "local/web:2"),
             _kill("c", None, "batch", "local/batch:3")]
    pod_limit = {"type": "oom_kill", "id": "d", "node": "n1", "time": time.time(), "cgroup": "/kubepods/d/x",
                 "memcg_pod": {"name": "db-0", "namespace": "data", "uid": "u-d", "container": None}}
    with store.Store(db) as st:
        st.add(store.rows(wire.decode(["t", [[r["time"], r] for r in [*kills, pod_limit]]]), time.time()))
    run = CliRunner().invoke
    found = run(main, ["events", "--db", str(db), "--pod", "api-5f", "--output", "json"])
    assert found.exit_code == 0, found.output
    assert [json.loads(line)["id"] for line in found.output.splitlines()] == ["a"]
    for flag, value, ids in (("--container", "batch", ["c"]), ("--image", "local/web:2", ["b"]),
                             ("--namespace", "prod", ["a", "b"]), ("--namespace", "data", ["d"])):
        out = run(main, ["events", "--db", str(db), flag, value, "--output", "json"]).output
        assert [json.loads(line)["id"] for line in out.splitlines()] == ids, (flag, value)
    table = run(main, ["events", "--db", str(db)]).output
    assert "prod/api-5f/api" in table and "batch" in table and "data/db-0" in table
    assert run(main, ["events", "--pod", "x"]).exit_code == 2  # live events have no store to filter


def test_a_version_2_store_gains_the_workload_columns(tmp_path):
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as v2:
        v2.executescript("CREATE TABLE records (id TEXT NOT NULL, time REAL NOT NULL, received REAL NOT NULL, "
                         "node TEXT NOT NULL, type TEXT, cgroup TEXT, memcg TEXT, tag TEXT NOT NULL, flags INTEGER "
                         "NOT NULL DEFAULT 0, body BLOB NOT NULL, UNIQUE(node, id)); PRAGMA user_version=2;")
        v2.execute("INSERT INTO records VALUES ('x', 1700000000, 1700000001, 'n', 'oom_kill', '/c', NULL, 't', 0, ?)",
                   (msgpack.packb([1700000000, {"type": "oom_kill", "id": "x"}]),))
    with store.StoreReader(path) as reader:
        assert [r["id"] for r in reader.query(store.Query())] == ["x"]
        with pytest.raises(store.NotAStore, match="no pod"):
            list(reader.query(store.Query(pod="api")))
    with store.Store(path) as st:
        st.add(store.rows(wire.decode(["t", [[time.time(), _kill("y", "api", "api", "img")]]]), time.time()))
        assert [r["id"] for r in st.query(store.Query(pod="api"))] == ["y"]
        assert st.count() == 2
