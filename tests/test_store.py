"""The SQLite store: dedup by id, content ids, queries, retention."""

from __future__ import annotations

import time

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
    assert [r["type"] for r in first.new] == ["oom_kill", "oom_kill"] and again.new == []
    assert db.count() == 12


def test_records_without_an_id_get_one_from_their_content(tmp_path):
    db = store.Store(tmp_path / "s.db")
    msg = wire.decode(["app.log", [[1700000000, {"msg": "a"}], [1700000000, {"msg": "b"}]]])
    assert db.add(store.rows(msg, 0.0, peer="10.0.0.7")).stored == 2
    assert db.add(store.rows(msg, 1.0, peer="10.0.0.7")).duplicates == 2
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
    db.add(store.rows(_message(old + new), now))
    policy = store.Retention(default=86400, per_type={"oom_kill": 7 * 86400})
    assert db.expire(policy, now) == 3  # old pressure records go; old OOM kills stay
    assert sorted(r["type"] for r in db.query(store.Query())) == ["memory_pressure"] * 2 + ["oom_kill"] * 3
    assert db.expire(store.Retention(default=None), now) == 0
