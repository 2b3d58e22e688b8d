"""The SQLite store: dedup by id, content ids, queries, retention."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.collecting import make_records
from tracer.collect import store
from tracer.forward import wire


def _message(records, tag="oomtrace.x"):
    enc = wire.FrameEncoder()
    up = wire.unpacker()
    up.feed(enc.frame(tag, [enc.entry(r) for r in records], "c", len(records)))
    return wire.decode(next(up))


def test_a_resent_record_is_stored_once_and_counted_as_duplicate(tmp_path):
    db = store.Store(tmp_path / "s.db")
    recs = make_records(10) + make_records(2, kind="oom_kill")
    first = db.add(store.rows(_message(recs), time.time()))
    again = db.add(store.rows(_message(recs[5:]), time.time()))
    assert (first.stored, first.duplicates) == (12, 0)
    assert (again.stored, again.duplicates) == (0, 7)
    assert [r["type"] for _node, r in first.new] == ["oom_kill", "oom_kill"] and again.new == []
    assert db.count() == 12


def test_records_without_an_id_get_one_from_their_content(tmp_path):
    db = store.Store(tmp_path / "s.db")
    msg = wire.decode(["app.log", [[1700000000, {"msg": "a"}], [1700000000, {"msg": "b"}]]])
    assert db.add(store.rows(msg, 1700000001.0, peer="10.0.0.7")).stored == 2
    assert db.add(store.rows(msg, 1700000002.0, peer="10.0.0.7")).duplicates == 2
    (one, *_) = db.query(store.Query(node="10.0.0.7"))
    assert one == {"msg": "a", "node": "10.0.0.7", "tag": "app.log"}


def test_query_filters_and_limit_keep_the_newest(tmp_path):
    db = store.Store(tmp_path / "s.db")
    recs = make_records(6, node="n1", kind="oom_kill") + make_records(4, node="n2")
    recs[0]["memcg"] = "/team-a"
    recs[0]["cgroup"] = "/team-a/pod/c"
    db.add(store.rows(_message(recs), time.time()))
    assert len(list(db.query(store.Query(types=("oom_kill",))))) == 6
    assert {r["node"] for r in db.query(store.Query(node="n2"))} == {"n2"}
    assert [r["seq"] for r in db.query(store.Query(cgroup_prefix="/team-a"))] == [0]
    newest = list(db.query(store.Query(node="n1", limit=2)))
    assert [r["seq"] for r in newest] == [4, 5]  # oldest first, of the newest two
    assert list(db.query(store.Query(since=time.time() + 60))) == []


def test_retention_per_type_and_default(tmp_path):
    db = store.Store(tmp_path / "s.db")
    now = time.time()
    old = [dict(r, time=now - 3 * 86400) for r in make_records(3) + make_records(3, kind="oom_kill", prefix="k")]
    new = make_records(2, prefix="n")
    db.add(store.rows(_message(old), now - 3 * 86400))
    db.add(store.rows(_message(new), now))
    policy = store.Retention(default=86400, per_type={"oom_kill": 7 * 86400})
    assert db.expire(policy, now) == 3  # old pressure records go; old OOM kills stay
    assert sorted(r["type"] for r in db.query(store.Query())) == ["memory_pressure"] * 2 + ["oom_kill"] * 3
    assert db.expire(store.Retention(default=None), now) == 0


def test_rows_are_named_in_the_table_s_column_order(tmp_path):
    msg = wire.decode(["app.log", [[1700000000, {"msg": "a", "type": "oom_kill", "cgroup": "/c"}]]])
    (row,) = store.rows(msg, 1700000005.0, peer="10.0.0.7")
    assert isinstance(row, store.Row) and isinstance(row, tuple)  # what sqlite3 binds
    assert (row.time, row.received, row.node, row.type, row.cgroup, row.memcg, row.tag, row.flags) == (
        1700000000, 1700000005.0, "10.0.0.7", "oom_kill", "/c", None, "app.log", 0)
    assert row.id.startswith("sha1:") and row.body == msg.entries[0].raw
    with store.Store(tmp_path / "s.db") as db:
        columns = [name for _cid, name, *_ in db.db.execute("PRAGMA table_info(records)")]
    assert list(store.Row._fields) == columns


def test_store_and_reader_are_context_managers_closed_once_or_more(tmp_path):
    with store.Store(tmp_path / "s.db") as db:
        db.add(store.rows(_message(make_records(3)), time.time()))
    db.close()  # again: nothing happens
    with store.StoreReader(tmp_path / "s.db") as reader:
        assert reader.count() == 3
    reader.close()
    with pytest.raises(sqlite3.ProgrammingError):
        reader.count()


def test_a_reader_sees_what_a_live_writer_commits(tmp_path):
    path = tmp_path / "s.db"
    with store.Store(path) as db:
        db.add(store.rows(_message(make_records(3)), time.time()))
        assert (tmp_path / "s.db-wal").exists()  # the writer is live: the reader goes through its log
        with store.StoreReader(path) as reader:
            assert reader.count() == 3
            db.add(store.rows(_message(make_records(2, prefix="later")), time.time()))
            assert [r["seq"] for r in reader.query(store.Query())] == [0, 1, 2, 0, 1]
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.db.execute("DELETE FROM records")
        assert db.count() == 5


def _snapshot(path: Path) -> tuple:
    """PATH's bytes and mtime, its directory's files and mtime (a file made and removed changes it)."""
    return (path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir()),
            path.parent.stat().st_mtime_ns)


def test_a_reader_writes_nothing_to_a_store_at_rest(tmp_path):
    path = tmp_path / "s.db"
    with store.Store(path) as db:
        db.add(store.rows(_message(make_records(4)), time.time()))
    before = _snapshot(path)
    assert before[2] == ["s.db"]  # the writer closed cleanly: no -wal, no -shm
    with store.StoreReader(path) as reader:
        assert [r["seq"] for r in reader.query(store.Query(limit=2))] == [2, 3]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("CREATE TABLE x(y)")
    assert _snapshot(path) == before


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: sqlite3.connect(p).executescript("CREATE TABLE other(x); INSERT INTO other VALUES (1);"),
                 id="another table"),
    pytest.param(lambda p: sqlite3.connect(p).executescript("CREATE TABLE records(id, time);"),
                 id="another records table"),
    pytest.param(lambda p: p.write_bytes(b""), id="empty file"),
])
def test_a_reader_refuses_a_database_that_is_not_ours_and_leaves_it_alone(tmp_path, make):
    path = tmp_path / "other.db"
    make(path)
    before = _snapshot(path)
    with pytest.raises(store.NotAStore, match="not a database of oomtrace collect"):
        store.StoreReader(path)
    assert _snapshot(path) == before


def test_a_reader_refuses_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    before = _snapshot(path)
    with pytest.raises(sqlite3.DatabaseError):
        store.StoreReader(path)
    assert _snapshot(path) == before
    with pytest.raises(sqlite3.OperationalError):  # missing: not created
        store.StoreReader(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
