import ctypes
import fnmatch
import re
import sys
from pathlib import Path

import pytest

from tracer.kernel import bpf_source, probes


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
    assert '#include "oomtrace.h"' in bpf_source.program_text()  # a real include, found by -I


def _parts() -> list[Path]:
    return sorted(bpf_source.bpf_dir().glob("*.bpf.h"))


def test_program_text_pastes_every_part_once_in_place():
    main = bpf_source.bpf_dir() / bpf_source.PROGRAM
    text = bpf_source.program_text()
    assert text.startswith(f"#define {bpf_source.PROGRAM_TEXT_MACRO} 1\n")
    assert len(_parts()) >= 3
    for part in _parts():
        assert f'#include "{part.name}"' in main.read_text()
        assert f'#include "{part.name}"' not in text
        assert text.count(f'#line 1 "{part}"') == 1
        assert part.read_text() in text


def test_every_name_python_uses_is_in_the_compiled_text():
    """BCC sees programs and maps only in the text it compiles (never in an #included file)."""
    text = bpf_source.program_text()
    programs = {tp.program for tp in probes.TRACEPOINTS}
    programs |= {"on_oom_kill_process", "on_oom_kill_process_return"}
    for name in programs:
        assert re.search(rf"^int {name}\(", text, re.MULTILINE), name
    assert "TRACEPOINT_PROBE(oom, mark_victim)" in text
    for table in ("events", "pressure", "pressure_epoch"):
        assert re.search(rf"^BPF_\w+\((?:[^;]*, )?{table}[,)]", text, re.MULTILINE), table


def test_each_part_refuses_to_compile_outside_the_program_text():
    for part in _parts():
        lines = [ln for ln in part.read_text().split("*/", 1)[1].splitlines() if ln.strip()]
        assert lines[:2] == [f"#ifndef {bpf_source.PROGRAM_TEXT_MACRO}", f'#error "{part.name} is part of '
                             'oomtrace.bpf.c: compile tracer.kernel.bpf_source.program_text()"'], part.name


def test_source_files_cover_the_program_its_parts_and_header():
    names = {p.name for p in bpf_source.source_files()}
    assert {bpf_source.PROGRAM, bpf_source.HEADER} | {p.name for p in _parts()} <= names


def test_package_data_ships_every_source_file():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not run from a checkout")
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["tracer.bpf"]
    for path in bpf_source.source_files():
        assert any(fnmatch.fnmatch(path.name, pat) for pat in patterns), path.name


def test_program_text_nests_parts_and_keeps_line_numbers(tmp_path):
    (tmp_path / "main.bpf.c").write_text('a\n#include "one.bpf.h"  /* one */\nb\n')
    (tmp_path / "one.bpf.h").write_text('c\n#include "two.bpf.h"\nd\n')
    (tmp_path / "two.bpf.h").write_text("e\n")
    text = bpf_source.program_text(tmp_path / "main.bpf.c")
    main, one, two = (tmp_path / n for n in ("main.bpf.c", "one.bpf.h", "two.bpf.h"))
    assert text.splitlines() == [
        f"#define {bpf_source.PROGRAM_TEXT_MACRO} 1",
        f'#line 1 "{main}"', "a",
        f'#line 1 "{one}"', "c",
        f'#line 1 "{two}"', "e",
        f'#line 3 "{one}"', "d",
        f'#line 3 "{main}"', "b",
    ]


def test_program_text_rejects_parts_that_include_each_other(tmp_path):
    (tmp_path / "main.bpf.c").write_text('#include "one.bpf.h"\n')
    (tmp_path / "one.bpf.h").write_text('#include "two.bpf.h"\n')
    (tmp_path / "two.bpf.h").write_text('#include "one.bpf.h"\n')
    with pytest.raises(ValueError, match="one.bpf.h -> two.bpf.h -> one.bpf.h"):
        bpf_source.program_text(tmp_path / "main.bpf.c")


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


def test_parse_header_follows_the_kernels_byte_order():
    text = "#define N 4\nstruct s {\n __u32 type;\n __u64 id;\n char name[N];\n};"
    assert bpf_source.parse_header(text).byteorder == sys.byteorder
    big = bpf_source.parse_header(text, "big")
    little = bpf_source.parse_header(text, "little")
    raw = (7).to_bytes(4, "big") + bytes(4) + (0x0102030405060708).to_bytes(8, "big") + b"abc\0" + bytes(4)
    assert (big.structs["s"].from_buffer_copy(raw).type, big.structs["s"].from_buffer_copy(raw).id) == (
        7, 0x0102030405060708)
    assert little.structs["s"].from_buffer_copy(raw).type == 7 << 24  # the wrong order is visibly wrong
    assert big.byteorder == "big" and little.byteorder == "little"


def test_victim_sources_are_named_in_the_header():
    assert bpf_source.layout().names("OT_VICTIM_") == {1: "tracepoint", 2: "oom_control", 3: "current", 4: "oom_group"}
