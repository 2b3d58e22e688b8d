from __future__ import annotations

import ctypes

import pytest

from tracer.events.records import Clock, RecordBuilder, RecordFilter
from tracer.kernel import bpf_source
from tracer.kernel.cgroupfs import CgroupPaths, CgroupResolver, Hierarchy

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
                              oom_domain_pages=99, chosen_points=5, victim_source=C["OT_VICTIM_TRACEPOINT"]))
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


# --- kernel strings: one rule, flagged; whole paths; why a path is unknown ---------------------------

def _mkdir_event(cgroup_id: int, path: bytes, level: int, name: bytes | None = None, parent_id: int = 0,
                 hierarchy: int = 4, kind: str = "OT_EVENT_CGROUP_MKDIR") -> bytes:
    """A cgroup event as the kernel sends it: only as far as the path's NUL."""
    name = path.rsplit(b"/", 1)[-1] if name is None else name
    ev = L.structs["cgroup_event"](type=C[kind], hierarchy=hierarchy, id=cgroup_id, level=level,
                                   parent_id=parent_id, path=path, path_len=len(path), name=name,
                                   name_len=len(name))
    return bytes(ev)[: L.structs["cgroup_event"].path.offset + len(path) + 1]


def _strict(rec: dict) -> None:
    import json

    import msgpack

    json.dumps(rec, ensure_ascii=False).encode("utf-8")
    assert msgpack.unpackb(msgpack.packb(rec)) == rec


def test_schema_version_names_the_new_fields():
    from tracer.events.records import SCHEMA_VERSION

    assert SCHEMA_VERSION == 6


def test_strings_that_are_not_utf8_are_escaped_and_flagged(builder):
    mk = builder.decode(_mkdir_event(501, b"/pod\xff/c\\x", level=2))
    assert mk["cgroup"] == "/pod\\xff/c\\\\x" and mk["escaped"] == ["cgroup"]
    rec = builder.decode(_oom(pid=1, tid=1, comm=b"a\xe2\x82b", trigger_comm=b"ok", cgroup_id=501,
                              memory_hierarchy=4, trigger_cgroup_id=501))
    assert rec["comm"] == "a\\xe2\\x82b" and rec["trigger_comm"] == "ok"
    assert rec["cgroup"] == rec["trigger_cgroup"] == "/pod\\xff/c\\\\x"
    assert rec["escaped"] == ["comm", "cgroup", "trigger_cgroup"]
    _strict(rec)
    _strict(mk)
    plain = builder.decode(_oom(pid=1, tid=1, comm="é\\x".encode(), cgroup_id=100, memory_hierarchy=4))
    assert plain["comm"] == "é\\x" and "escaped" not in plain  # valid UTF-8 stays as it is


def test_a_short_cgroup_sample_decodes_and_a_cut_header_is_an_error(builder):
    sample = _mkdir_event(600, b"/x", level=1)
    assert len(sample) < ctypes.sizeof(L.structs["cgroup_event"])
    assert builder.decode(sample)["cgroup"] == "/x"
    assert "cannot decode" in builder.decode(sample[:40])["error"]


def test_a_path_the_kernel_cut_is_rebuilt_from_the_parent_and_never_cached_cut(builder):
    long = b"/" + b"a" * 255 + b"/" + b"b\xff" + b"b" * 253 + b"/" + b"c" * 255
    builder.decode(_mkdir_event(700, long, level=3))  # whole (1,024 bytes would have been cut)
    cut = (long + b"/" + b"d" * 255)[:1023]
    names = [b"d" * 250 + b"%d" % i for i in range(5)]
    recs = [builder.decode(_mkdir_event(710 + i, cut, level=4, name=n, parent_id=700)) for i, n in enumerate(names)]
    assert [r["cgroup"] for r in recs] == [builder.resolver.path(4, 700) + "/" + n.decode() for n in names]
    assert all("cgroup_truncated" not in r and r["escaped"] == ["cgroup"] for r in recs)
    assert builder.resolver.path(4, 712) == recs[2]["cgroup"]
    # Its rmdir, cut again: the cached whole path.
    rm = builder.decode(_mkdir_event(712, cut, level=4, name=names[2], parent_id=999, kind="OT_EVENT_CGROUP_RMDIR"))
    assert rm["cgroup"] == recs[2]["cgroup"] and rm["type"] == "cgroup_delete"
    # An unknown parent: the cut path, said to be cut, and never cached (it names several cgroups).
    lost = builder.decode(_mkdir_event(800, cut, level=4, name=b"e", parent_id=424242))
    assert lost["cgroup"] == cut.decode("utf-8", "backslashreplace")  # no backslash in it to double
    assert lost["cgroup_truncated"] is True
    assert builder.resolver.lookup(4, 800) == (None, False, "truncated")
    kill = builder.decode(_oom(pid=2, tid=2, cgroup_id=800, memory_hierarchy=4))
    assert kill["cgroup"] is None and kill["cgroup_unknown"] == "truncated"


def test_an_unknown_path_says_why():
    hier = {4: Hierarchy(4, ("memory",), None), 9: Hierarchy(9, ("name=systemd",), None)}
    resolver = CgroupResolver(hier, CgroupPaths(limit=2, primary={4, 0}), clock=lambda: 0.0)
    b = RecordBuilder(L, resolver, Clock(offset_ns=0), memory_hierarchy=4, page_size=4096)
    for i in range(3):  # three paths, two places: the first is evicted
        b.decode(_mkdir_event(10 + i, b"/c%d" % i, level=1))
    for i in range(50):  # churn elsewhere evicts nothing of the memory hierarchy
        b.decode(_mkdir_event(1000 + i, b"/s%d" % i, level=1, hierarchy=9))
    rec = b.decode(_oom(pid=3, tid=3, cgroup_id=10, memory_hierarchy=4, memcg_id=11, trigger_cgroup_id=77))
    assert (rec["cgroup"], rec["cgroup_unknown"]) == (None, "evicted")
    assert rec["memcg"] == "/c1" and "memcg_unknown" not in rec
    assert (rec["trigger_cgroup"], rec["trigger_cgroup_unknown"]) == (None, "never seen")
    assert resolver.paths.evictions() == {4: 1, 9: 49}
    global_oom = b.decode(_oom(pid=3, tid=3, cgroup_id=12, memory_hierarchy=4))
    assert global_oom["memcg"] is None and "memcg_unknown" not in global_oom  # no memcg: nothing unknown
    no_id = b.decode(_oom(pid=3, tid=3, memory_hierarchy=4))
    assert no_id["cgroup"] is None and no_id["cgroup_unknown"] == "no id"


def test_old_kernel_proc_fallback_uses_the_same_rule(tmp_path, builder):
    d = tmp_path / "321"
    d.mkdir()
    (d / "status").write_bytes(b"Name:\tw\\377\nTgid:\t320\nUid:\t0\t0\t0\t0\n")
    (d / "comm").write_bytes(b"w\xff\n")
    (d / "cgroup").write_bytes(b"4:memory:/p\xff\n")
    builder.proc = tmp_path
    rec = builder.decode(_oom(tid=321, memory_hierarchy=4))
    assert (rec["comm"], rec["cgroup"], sorted(rec["escaped"])) == ("w\\xff", "/p\\xff", ["cgroup", "comm"])
    assert "cgroup_unknown" not in rec
    gone = builder.decode(_oom(tid=999, memory_hierarchy=4))
    assert gone["cgroup"] is None and gone["cgroup_unknown"] == "no id"


def test_strings_os_read_with_surrogate_escapes_come_under_the_same_rule():
    import os

    from tracer.events.records import escape_os_strings

    rec = escape_os_strings({"type": "container_stats", "cgroup": os.fsdecode(b"/c\xff\\"), "x": "é", "n": 1})
    assert rec == {"type": "container_stats", "cgroup": "/c\\xff\\\\", "x": "é", "n": 1, "escaped": ["cgroup"]}
    _strict(rec)


# --- pre-6.9 mark_victim: where the victim's identity came from ---------------------------------------

def test_victim_from_oom_control_is_the_kernels_even_when_proc_says_otherwise(tmp_path, builder):
    """5.10: the kprobe's oom_control.chosen gave pid, comm and cgroup; /proc is never read (a
    process reusing the tid must not rename the victim) and the figures 6.9+ gives are None."""
    d = tmp_path / "321"
    d.mkdir()
    (d / "status").write_text("Name:\tother\nTgid:\t999\nUid:\t5\t5\t5\t5\n")
    (d / "cgroup").write_text("4:memory:/elsewhere\n")
    builder.proc = tmp_path
    rec = builder.decode(_oom(pid=320, tid=321, comm=b"hog", cgroup_id=100, memory_hierarchy=4,
                              victim_source=C["OT_VICTIM_OOM_CONTROL"], context=C["OT_CONTEXT_KPROBE"]))
    assert (rec["pid"], rec["comm"], rec["cgroup"], rec["victim_source"]) == (320, "hog", "/pod/ctr", "oom_control")
    assert rec["anon_rss"] is None and rec["total_vm"] is None and rec["uid"] is None
    _strict(rec)


def test_victim_source_says_proc_or_none_when_only_the_tid_came(tmp_path, builder):
    d = tmp_path / "321"
    d.mkdir()
    (d / "status").write_text("Name:\tworker\nTgid:\t320\nUid:\t1000\t1000\t1000\t1000\n")
    (d / "cgroup").write_text("4:memory:/pod/ctr\n")
    builder.proc = tmp_path
    assert builder.decode(_oom(tid=321, memory_hierarchy=4))["victim_source"] == "proc"
    gone = builder.decode(_oom(tid=322, memory_hierarchy=4))
    assert (gone["victim_source"], gone["comm"], gone["pid"]) == ("none", None, 0)
    fig = builder.decode(_oom(pid=1, tid=1, anon_rss_kb=2, victim_source=C["OT_VICTIM_TRACEPOINT"]))
    assert (fig["victim_source"], fig["anon_rss"]) == ("tracepoint", 2048)


def test_samples_decode_in_the_kernels_byte_order():
    """A big-endian kernel's samples (s390x, ppc64): the type and every field read in its order."""
    big = bpf_source.parse_header((bpf_source.bpf_dir() / bpf_source.HEADER).read_text(), "big")
    hier = {4: Hierarchy(4, ("memory",), None)}
    b = RecordBuilder(big, CgroupResolver(hier, CgroupPaths(), clock=lambda: 0.0), Clock(0), 4, page_size=4096)
    b.resolver.seen(4, 100, "/pod/ctr")
    ev = big.structs["oom_kill_event"](type=C["OT_EVENT_OOM_KILL"], pid=0x01020304, tid=0x01020304, comm=b"hog",
                                       cgroup_id=100, memory_hierarchy=4, victim_source=C["OT_VICTIM_TRACEPOINT"])
    raw = bytes(ev)
    assert raw[:4] == C["OT_EVENT_OOM_KILL"].to_bytes(4, "big")
    rec = b.decode(raw)
    assert (rec["type"], rec["pid"], rec["comm"], rec["cgroup"]) == ("oom_kill", 0x01020304, "hog", "/pod/ctr")
    mkdir = big.structs["cgroup_event"](type=C["OT_EVENT_CGROUP_MKDIR"], hierarchy=4, id=777, level=1,
                                        path=b"/a", path_len=2, name=b"a", name_len=1)
    assert b.decode(bytes(mkdir))["cgroup"] == "/a"
