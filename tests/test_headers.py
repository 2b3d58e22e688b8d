from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tracer.errors import KernelUnsupported
from tracer.kernel import bpf_source, btf_trim, headers

BTF_C = """\
struct bpf_map { int x; };
struct task_struct { int pid; };
enum bpf_func_id { BPF_FUNC_unspec = 0, BPF_FUNC_map_lookup_elem = 1, };
enum { BPF_ANY = 0, BPF_NOEXIST = 1, OTHER_THING = 7, };
enum cgroup_subsys_id { memory_cgrp_id = 4, };
"""
UAPI = """\
/* enum not_a_tag { ignored } in a comment */
struct bpf_map { __u32 fd; };
enum bpf_func_id { ___BPF_FUNC_MAPPER(__BPF_ENUM_FN) };
enum {
	BPF_ANY		= 0, /* create new element or update existing */
	BPF_NOEXIST	= 1, /* create new element if it didn't exist */
	BPF_F_FLAG	= (1U << 0),
};
"""


def test_clashing_names_cover_tags_enumerators_and_macro_built_enums():
    names = set(headers.clashing_names(BTF_C, UAPI))
    assert names == {"bpf_map", "bpf_func_id", "BPF_FUNC_unspec", "BPF_FUNC_map_lookup_elem",
                     "BPF_ANY", "BPF_NOEXIST"}


def test_enumerators_with_parenthesised_commas():
    assert headers._enumerators(" A = F(1, 2), B, C = (3) ") == {"A", "B", "C"}


def test_linux_version_code():
    assert headers.linux_version_code("6.18.44-fc-v669") == (6 << 16) + (18 << 8) + 44
    assert headers.linux_version_code("6.1.300-amd64") == (6 << 16) + (1 << 8) + 255
    with pytest.raises(KernelUnsupported):
        headers.linux_version_code("garbage")


def test_parse_kconfig_keeps_values():
    cfg = headers.parse_kconfig("# comment\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_C=\"x\"\n# CONFIG_D is not set\n")
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": "m", "CONFIG_C": '"x"'}


def test_write_btf_tree_renames_clashes_and_writes_bcc_files(tmp_path):
    headers.write_btf_tree(tmp_path, BTF_C, UAPI, {"CONFIG_BPF_SYSCALL": "y", "CONFIG_X": "m"},
                           "6.18.1", ["linux/oom.h"])
    types_h = (tmp_path / "include/linux/types.h").read_text()
    assert "#define bpf_map __btf_bpf_map" in types_h and "#undef bpf_map" in types_h
    assert "task_struct" not in types_h  # only clashes are renamed
    order = [types_h.index(s) for s in ("#define BPF_ANY", "#include <oomtrace_vmlinux.h>", "#undef BPF_ANY")]
    assert order == sorted(order)
    kconfig = (tmp_path / "include/linux/kconfig.h").read_text()
    assert "#define CONFIG_BPF_SYSCALL 1" in kconfig and "#define CONFIG_X_MODULE 1" in kconfig
    assert f"LINUX_VERSION_CODE {(6 << 16) + (18 << 8) + 1}" in (tmp_path / "include/linux/version.h").read_text()
    assert (tmp_path / "include/linux/oom.h").is_file()
    assert "PAGE_SIZE" in (tmp_path / "arch/x86/include/asm/page.h").read_text()


def test_cache_key_changes_with_btf_release_and_bcc(tmp_path):
    btf = tmp_path / "vmlinux"
    btf.write_bytes(b"one")
    k1 = headers.cache_key(btf, "6.1.0", "0.26")
    assert k1 == headers.cache_key(btf, "6.1.0", "0.26")
    assert k1 != headers.cache_key(btf, "6.1.1", "0.26")
    assert k1 != headers.cache_key(btf, "6.1.0", "0.29")
    btf.write_bytes(b"two")
    assert k1 != headers.cache_key(btf, "6.1.0", "0.26")


@pytest.fixture
def bpf_copy(tmp_path, monkeypatch):
    """A copy of bpf/ that the header code reads instead of the real one."""
    copy = tmp_path / "bpf"
    shutil.copytree(bpf_source.bpf_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(bpf_source, "bpf_dir", lambda: copy)
    return copy


def test_cache_key_changes_when_any_bpf_source_changes(tmp_path, bpf_copy):
    """The trimmed tree holds only what the sources name: a stale one must never be reused."""
    btf = tmp_path / "vmlinux"
    btf.write_bytes(b"one")
    key = headers.cache_key(btf, "6.1.0", "0.26")
    sources = sorted(bpf_copy.glob("*.[ch]"))
    assert {p.name for p in sources} >= {bpf_source.PROGRAM, bpf_source.HEADER, "victims.bpf.h",
                                         "cgroups.bpf.h", "reclaim.bpf.h"}
    for path in sources:
        text = path.read_text()
        path.write_text(text + "/* changed */\n")
        assert headers.cache_key(btf, "6.1.0", "0.26") != key, path.name
        path.write_text(text)
        assert headers.cache_key(btf, "6.1.0", "0.26") == key, path.name
    (bpf_copy / "new.bpf.h").write_text("/* a new part */\n")
    assert headers.cache_key(btf, "6.1.0", "0.26") != key
    (bpf_copy / "new.bpf.h").unlink()
    # Text moved across a file boundary names other identifiers ("ab" + "c" is not "a" + "bc").
    first, second = sources[:2]
    a, b = first.read_text(), second.read_text()
    first.write_text(a + "x")
    second.write_text("y" + b)
    moved = headers.cache_key(btf, "6.1.0", "0.26")
    first.write_text(a + "xy")
    second.write_text(b)
    assert headers.cache_key(btf, "6.1.0", "0.26") != moved


def test_trimming_roots_and_stubs_come_from_every_part(bpf_copy):
    (bpf_copy / "extra.bpf.h").write_text("#include <linux/only_in_a_part.h>\nstruct only_in_a_part *p;\n")
    assert "linux/only_in_a_part.h" in headers.extra_stubs()
    roots = btf_trim.roots_of(headers._program_sources())
    assert "struct only_in_a_part" in roots
    for part in bpf_copy.glob("*.bpf.h"):
        assert btf_trim.roots_of([part.read_text()]) <= roots, part.name


def test_choose_prefers_kernel_headers_then_kheaders(tmp_path):
    build = tmp_path / "modules/6.1.0/build/include/linux"
    build.mkdir(parents=True)
    (build / "kconfig.h").write_text("")
    kheaders = tmp_path / "kheaders.tar.xz"
    src = headers.choose(tmp_path / "cache", "6.1.0", tmp_path / "modules", kheaders, tmp_path / "nobtf")
    assert src.kind == "kernel-headers" and src.environ() == {}
    kheaders.write_bytes(b"")
    src = headers.choose(tmp_path / "cache", "6.2.0", tmp_path / "modules", kheaders, tmp_path / "nobtf")
    assert src.kind == "kheaders"


def test_debians_split_headers_count_as_kernel_headers(tmp_path):
    """linux-headers-R-amd64 holds the generated files (build/), -common the rest (source/).
    Found on Debian 12 in the VM suite: a check of build/ alone fell back to BTF."""
    release = tmp_path / "modules/6.1.0-50-amd64"
    (release / "build/include/generated").mkdir(parents=True)
    (release / "source/include/linux").mkdir(parents=True)
    (release / "build/include/generated/autoconf.h").write_text("")
    none = tmp_path / "none"
    with pytest.raises(KernelUnsupported):  # the generated half alone is not a tree
        headers.choose(tmp_path / "cache", "6.1.0-50-amd64", tmp_path / "modules", none, none)
    (release / "source/include/linux/kconfig.h").write_text("")
    src = headers.choose(tmp_path / "cache", "6.1.0-50-amd64", tmp_path / "modules", none, none)
    assert src.kind == "kernel-headers" and src.path == str(release / "build")


def test_choose_without_headers_or_btf_says_what_to_install(tmp_path):
    with pytest.raises(KernelUnsupported, match="linux-headers-9.9.9"):
        headers.choose(tmp_path, "9.9.9", tmp_path, tmp_path / "none.tar.xz", tmp_path / "nobtf")


@pytest.mark.skipif(not headers.BTF_PATH.is_file(), reason="this kernel has no /sys/kernel/btf/vmlinux")
def test_btf_tree_is_generated_once_then_reused(tmp_path):
    first = headers.ensure_btf_tree(tmp_path, "6.18.0-test")
    assert first.generated and first.kind == "btf"
    assert first.environ() == {"BCC_KERNEL_SOURCE": first.path}
    names = (Path(first.path) / "NAMES").read_text().split()
    assert "bpf_attr" in names and "BPF_FUNC_map_lookup_elem" in names and len(names) > 300
    second = headers.ensure_btf_tree(tmp_path, "6.18.0-test")
    assert second.path == first.path and not second.generated
