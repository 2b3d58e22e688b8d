import ctypes

import pytest

from tracer.kernel import bpf_source


def test_installed_header_parses_into_aligned_events():
    layout = bpf_source.layout()
    ev = layout.structs["oom_kill_event"]
    assert ev.type.offset == 0 and ev.comm.size == layout.constants["TASK_COMM_LEN"]
    assert ctypes.sizeof(ev) % 8 == 0
    cg = layout.structs["cgroup_event"]
    assert cg.path.size == layout.constants["CGROUP_PATH_LEN"]
    assert layout.names("OT_CONSTRAINT_") == {0: "global", 1: "cpuset", 2: "mempolicy", 3: "memcg"}
    assert set(layout.names("OT_EVENT_").values()) == {"oom_kill", "cgroup_mkdir", "cgroup_rmdir"}


def test_program_includes_the_header():
    src = (bpf_source.bpf_dir() / bpf_source.PROGRAM).read_text()
    assert '#include "oomtrace.h"' in src


def test_parse_header_grammar():
    layout = bpf_source.parse_header("""
        #define N 4 /* four */
        enum e { A = 1, B = 2, };
        struct s {
            __u32 a;   // comment
            __u64 b;
            char name[N];
            __s32 c;
        };""")
    s = layout.structs["s"]
    assert layout.constants == {"N": 4, "A": 1, "B": 2}
    assert (s.a.offset, s.b.offset, s.name.offset, s.c.offset) == (0, 8, 16, 20)
    assert ctypes.sizeof(s) == 24


def test_parse_header_rejects_what_it_cannot_mirror():
    with pytest.raises(ValueError, match="cannot parse member"):
        bpf_source.parse_header("struct s { struct other *p; };")
