from __future__ import annotations

import ctypes

import pytest

from tracer.kernel import bpf_source
from tracer.kernel.cgroupfs import CgroupPaths, CgroupResolver, Hierarchy
from tracer.events.records import Clock, RecordBuilder, RecordFilter

L = bpf_source.layout()
C = L.constants


@pytest.fixture
def builder():
    hier = {4: Hierarchy(4, ("memory",), None), 0: Hierarchy(0, (), None)}
    resolver = CgroupResolver(hier, CgroupPaths(), clock=lambda: 0.0)
    resolver.seen(4, 100, "/pod/ctr")
    resolver.seen(4, 90, "/pod")
    return RecordBuilder(L, resolver, Clock(offset_ns=1_000_000_000_000), memory_hierarchy=4, page_size=4096)


def _oom(**fields) -> bytes:
    ev = L.structs["oom_kill_event"](type=C["OT_EVENT_OOM_KILL"], **fields)
    return bytes(ev)


def test_oom_kill_inferred_context(builder):
    rec = builder.decode(_oom(pid=7, tid=8, comm=b"hog", cgroup_id=100, memory_hierarchy=4,
                              context=C["OT_CONTEXT_INFERRED"], constraint=C["OT_CONSTRAINT_MEMCG"],
                              memcg_id=90, memcg_usage_pages=10, memcg_limit_pages=12,
                              anon_rss_kb=3, ktime_ns=5_000_000_000, trigger_comm=b"trig",
                              oom_domain_pages=99, chosen_points=5))
    assert rec["type"] == "oom_kill" and rec["time"] == 1005.0
    assert (rec["pid"], rec["tid"], rec["comm"]) == (7, 8, "hog")
    assert (rec["cgroup"], rec["memcg"], rec["constraint"], rec["context"]) == ("/pod/ctr", "/pod", "memcg", "inferred")
    assert (rec["memcg_usage"], rec["memcg_limit"], rec["anon_rss"]) == (40960, 49152, 3072)
    assert rec["oom_domain_pages"] is None and rec["chosen_points"] is None  # kprobe-only
    assert rec["trigger_comm"] == "trig"


def test_oom_kill_kprobe_context_on_cgroup_v2_uses_the_leaf(builder):
    builder.resolver.seen(0, 555, "/kubepods/pod1/ctr")
    rec = builder.decode(_oom(pid=1, tid=1, memory_hierarchy=0, cgroup_id=554, dfl_cgroup_id=555,
                              context=C["OT_CONTEXT_KPROBE"], constraint=C["OT_CONSTRAINT_GLOBAL"],
                              oom_domain_pages=1 << 20, chosen_points=1234, order=-1))
    assert rec["cgroup"] == "/kubepods/pod1/ctr" and rec["cgroup_id"] == 555
    assert rec["constraint"] == "global" and rec["memcg"] is None and rec["memcg_usage"] is None
    assert (rec["oom_domain_pages"], rec["chosen_points"], rec["order"]) == (1 << 20, 1234, -1)


def test_unknown_cgroup_id_gives_none_not_a_crash(builder):
    assert builder.decode(_oom(cgroup_id=424242, memory_hierarchy=4))["cgroup"] is None


def test_cgroup_event_feeds_the_resolver(builder):
    ev = L.structs["cgroup_event"](type=C["OT_EVENT_CGROUP_MKDIR"], hierarchy=4, id=777, level=2,
                                   path=b"/a/b", path_len=4)
    rec = builder.decode(bytes(ev))
    assert rec == {"type": "cgroup_create", "time": rec["time"], "ktime_ns": 0, "cgroup": "/a/b",
                   "cgroup_id": 777, "hierarchy": "memory", "level": 2}
    assert builder.resolver.path(4, 777) == "/a/b"


def test_garbled_samples_become_error_records(builder):
    assert builder.decode(b"\x63\x00\x00\x00")["error"].startswith("unknown event type 99")
    assert builder.decode(b"")["type"] == "error"
    short = _oom()[:16]
    assert "cannot decode" in builder.decode(short)["error"]


def test_old_kernel_tid_only_event_is_completed_from_proc(tmp_path, builder):
    d = tmp_path / "321"
    d.mkdir()
    (d / "status").write_text("Name:\tworker\nTgid:\t320\nUid:\t1000\t1000\t1000\t1000\n")
    (d / "cgroup").write_text("4:memory:/pod/ctr\n0::/\n")
    builder.proc = tmp_path
    rec = builder.decode(_oom(tid=321, memory_hierarchy=4))
    assert (rec["pid"], rec["comm"], rec["uid"], rec["cgroup"]) == (320, "worker", 1000, "/pod/ctr")


def test_filter():
    f = RecordFilter(frozenset({"oom_kill"}), "/kubepods")
    assert f.accepts({"type": "start"}) and f.accepts({"type": "lost"})
    assert f.accepts({"type": "oom_kill", "cgroup": "/kubepods/x", "memcg": None})
    assert f.accepts({"type": "oom_kill", "cgroup": None, "memcg": "/kubepods"})
    assert not f.accepts({"type": "oom_kill", "cgroup": "/system.slice", "memcg": None})
    assert not f.accepts({"type": "cgroup_create", "cgroup": "/kubepods/y"})


def test_clock_maps_monotonic_to_wall():
    assert Clock(offset_ns=10**9).wall(2 * 10**9) == 3.0
    assert isinstance(ctypes.sizeof(L.structs["oom_kill_event"]), int)


def test_stamped_ids_are_unique_within_and_across_runs():
    from tracer.events.records import RecordStamper

    a, b = RecordStamper("n1"), RecordStamper("n1")
    ids = [a.stamp({"type": "x"})["id"] for _ in range(1000)] + [b.stamp({"type": "x"})["id"]]
    assert len(set(ids)) == 1001 and a.prefix != b.prefix
    assert a.stamp({"type": "x"})["node"] == "n1"
