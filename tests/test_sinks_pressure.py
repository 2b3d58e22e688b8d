from __future__ import annotations

import io
import json
from types import SimpleNamespace

import msgpack

from tracer.events.pressure import PressureTracker
from tracer.events.sinks import format_text, make_sink
from tracer.kernel.cgroupfs import CgroupPaths, CgroupResolver

REC = {"type": "oom_kill", "time": 1.5, "pid": 3, "comm": "a b", "cgroup": "/x", "memcg": None}


def test_msgpack_stream_round_trips():
    buf = io.BytesIO()
    sink = make_sink("msgpack", io.StringIO(), buf)
    sink.write(REC)
    sink.write({"type": "lost", "count": 2})
    assert list(msgpack.Unpacker(io.BytesIO(buf.getvalue()))) == [REC, {"type": "lost", "count": 2}]


def test_json_lines():
    out = io.StringIO()
    sink = make_sink("json", out, io.BytesIO())
    sink.write(REC)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [REC]


def test_text_line_skips_unset_fields_and_quotes_spaces():
    line = format_text(REC)
    assert "oom_kill" in line and 'comm="a b"' in line and "memcg" not in line and "pid=3" in line


def _kv(cg, kind, count, stall, reclaimed, max_stall, epoch):
    return (SimpleNamespace(cgroup_id=cg, kind=kind),
            SimpleNamespace(count=count, stall_ns=stall, reclaimed_pages=reclaimed,
                            max_stall_ns=max_stall, epoch=epoch))


def test_pressure_reports_growth_per_cgroup_and_interval_max():
    r = CgroupResolver({}, CgroupPaths(), clock=lambda: 0.0)
    r.seen(4, 10, "/a")
    t = PressureTracker(r, 4, {1: "direct", 2: "memcg"})
    first = t.records([_kv(10, 2, 5, 500, 7, 200, 0), _kv(10, 1, 1, 50, 0, 50, 0)], 0, 1.0, 100.0)
    assert len(first) == 1
    assert (first[0]["cgroup"], first[0]["memcg_reclaims"], first[0]["direct_reclaims"]) == ("/a", 5, 1)
    assert (first[0]["stall_ns"], first[0]["max_stall_ns"], first[0]["reclaimed_pages"]) == (550, 200, 7)
    # Nothing new: no record. Growth in epoch 1 only: the delta, and the max of epoch 1.
    assert t.records([_kv(10, 2, 5, 500, 7, 200, 0)], 1, 1.0, 101.0) == []
    third = t.records([_kv(10, 2, 8, 800, 7, 90, 2)], 2, 1.0, 102.0)
    assert (third[0]["memcg_reclaims"], third[0]["stall_ns"], third[0]["max_stall_ns"]) == (3, 300, 90)


def test_a_pipe_whose_reader_closed_is_not_alive():
    import os

    from tracer.events.sinks import reader_alive

    r, w = os.pipe()
    with os.fdopen(w, "wb") as stream:
        assert reader_alive(stream)
        os.close(r)
        assert not reader_alive(stream)
    assert reader_alive(io.BytesIO())  # no descriptor: nothing to tell


HOSTILE = "\x1b[31mred\nhog\r\t\x07\x9b\u202eevil\u2028"


def test_text_output_escapes_control_characters_and_json_msgpack_keep_them():
    rec = dict(REC, comm=HOSTILE, cgroup="/c\x1b]0;t\x07", escaped=["a\nb"], missing={"k": "\x1b"})
    line = format_text(rec)
    assert not any(c in line for c in "\x1b\n\r\t\x07\x9b\u202e\u2028")
    assert "comm=\\x1b[31mred\\nhog\\r\\t\\x07\\x9b\\u202eevil\\u2028" in line
    assert "cgroup=/c\\x1b]0;t\\x07" in line and "escaped=a\\nb" in line
    spaced = format_text(dict(REC, comm="a \x1b b"))
    assert "\x1b" not in spaced and 'comm="a \\u001b b"' in spaced
    out = io.StringIO()
    make_sink("json", out, io.BytesIO()).write(rec)
    assert json.loads(out.getvalue())["comm"] == HOSTILE
    buf = io.BytesIO()
    make_sink("msgpack", io.StringIO(), buf).write(rec)
    assert msgpack.unpackb(buf.getvalue())["comm"] == HOSTILE


def test_tables_escape_every_cell():
    from tracer.cli.tables import event_line, events_table

    recs = [{"type": "oom_kill", "time": 1.0, "node": "n\x1b[2J", "cgroup": "/c\nx", "comm": HOSTILE, "pid": 1},
            {"type": "cgroup_create", "time": 1.0, "cgroup": "/\x1b[1A", "k\x1b": "v\x07"}]
    table = events_table(recs)
    assert len(table.splitlines()) == 3
    assert not any(c in table for c in "\x1b\r\t\x07\x9b\u202e\u2028")
    assert "/c\\nx" in table and "n\\x1b[2J" in table and "k\\x1b=v\\x07" in table
    oom = SimpleNamespace(pid=1, process_name="a\x1bb c")
    event = SimpleNamespace(timestamp=1.0, event_type="oomKill", container_name="/x\ny",
                            event_data=SimpleNamespace(oom=oom))
    assert event_line(event).endswith("/x\\ny pid=1 process=a\\x1bb c")
    # A name os read with surrogate escapes shows as its bytes, and prints on a UTF-8 terminal.
    header, row = events_table([{"type": "container_stats", "cgroup": "/odd\udcff"}]).splitlines()
    assert row.split()[header.split().index("CGROUP")] == "/odd\\xff"


def test_identity_from_a_runtime_is_escaped_in_text():
    """Names and labels come from whoever made the container: the kubelet-style sentence and the
    name fields are escaped like every other text field."""
    rec = {"type": "oom_kill", "time": 1.0, "pid": 9, "comm": "app", "constraint": "memcg", "memcg": "/docker/x",
           "memcg_limit": 96 << 20,
           "container": {"runtime": "docker", "id": "ab" * 32, "name": "api\x1b[2J", "image": "img\n:1",
                         "image_id": None, "labels": {"k": "v\x07"}},
           "pod": {"name": "p\u202e", "namespace": "ns", "uid": None, "container": "c\r"}}
    line = format_text(rec)
    assert not any(c in line for c in "\x1b\r\n\x07\u202e")
    assert "OOMKilled ns/p\\u202e container c\\r (image img\\n:1): pid 9 app, memcg limit 96 MiB" in line
    other = format_text({"type": "cgroup_delete", "time": 1.0, "cgroup": "/docker/x",
                         "container": rec["container"], "pod": rec["pod"]})
    assert "container=api\\x1b[2J pod=ns/p\\u202e" in other
