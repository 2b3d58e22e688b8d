from __future__ import annotations

import re
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
    assert "PAGE_SIZE" in (tmp_path / "arch" / headers.kernel_arch() / "include/asm/page.h").read_text()


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


@pytest.mark.parametrize("machine, arch", [
    ("x86_64", "x86"), ("i686", "x86"), ("aarch64", "arm64"), ("armv7l", "arm"), ("ppc64le", "powerpc"),
    ("s390x", "s390"), ("riscv64", "riscv"), ("loongarch64", "loongarch"), ("mips64el", "mips")])
def test_kernel_arch_maps_unames_machine_to_the_kernels_arch_dir(machine, arch):
    assert headers.kernel_arch(machine, environ={}) == arch


def test_kernel_arch_takes_arch_from_the_environment_first():
    assert headers.kernel_arch("x86_64", environ={"ARCH": "arm64"}) == "arm64"


def test_btf_tree_on_arm64_has_arm64s_arch_dir_and_no_x86(tmp_path, monkeypatch):
    """The tree follows the running machine: uname says aarch64, so BCC looks in arch/arm64."""
    monkeypatch.setattr(headers.platform, "machine", lambda: "aarch64")
    monkeypatch.delenv("ARCH", raising=False)
    headers.write_btf_tree(tmp_path, BTF_C, UAPI, {"CONFIG_BPF_SYSCALL": "y"}, "6.1.0-50-arm64", [])
    assert "PAGE_SIZE" in (tmp_path / "arch/arm64/include/asm/page.h").read_text()
    assert not (tmp_path / "arch/x86").exists()
    assert sorted(p.name for p in (tmp_path / "arch").iterdir()) == ["arm64"]


def test_debians_split_arm64_headers_count_as_kernel_headers(tmp_path):
    """Debian's arm64 split: linux-headers-R-arm64 (build/, with arch/arm64) and -common (source/)."""
    release = tmp_path / "modules/6.1.0-50-arm64"
    (release / "build/include/generated").mkdir(parents=True)
    (release / "build/arch/arm64/include/generated").mkdir(parents=True)
    (release / "source/include/linux").mkdir(parents=True)
    (release / "build/include/generated/autoconf.h").write_text("")
    (release / "source/include/linux/kconfig.h").write_text("")
    none = tmp_path / "none"
    src = headers.choose(tmp_path / "cache", "6.1.0-50-arm64", tmp_path / "modules", none, none)
    assert src.kind == "kernel-headers" and src.path == str(release / "build")


def test_explicit_padding_names_bpftools_padding_bit_fields():
    dump = ("struct a {\n\tlong x;\n\tlong: 64;\n\tlong: 64;\n\tstruct b y;\n\tlong: 30;\n"
            "\tunion {\n\t\tlong: 64;\n\t};\n};\n")
    out = headers.explicit_padding(dump)
    assert "long: 64;" not in out and "long: 30;" in out  # only whole 64-bit padding is rewritten
    assert out.count("char __oomtrace_pad") == 3 and "\t\tchar __oomtrace_pad2[8];" in out
    assert len(set(re.findall(r"__oomtrace_pad\d+", out))) == 3


# The shape of 5.10's sched_entity: bpftool pads up to a cacheline-aligned member with long: 64.
PADDED = ("struct ot_inner { u64 a; u64 b; };\nstruct ot_pad {\n\tstruct ot_inner x;\n\tunsigned int y;\n\tu64 z;\n"
          "\tlong unsigned int w;\n\tlong: 64;\n\tlong: 64;\n\tlong: 64;\n\tstruct ot_inner avg;\n};\n")


@pytest.mark.root
@pytest.mark.skipif(not headers.BTF_PATH.is_file(), reason="this kernel has no /sys/kernel/btf/vmlinux")
def test_bccs_rewriter_and_compiler_agree_on_offsets_in_the_btf_tree(tmp_path):
    """&p->member (BCC's rewriter) and offsetof (the BPF compile) give the same offsets in the
    generated tree. Without explicit_padding() they did not for PADDED (avg 80 vs 64 here) nor
    for task_struct on Debian 11's 5.10 (pid 16 bytes late)."""
    import os
    import time

    from bcc import BPF

    dump = headers.explicit_padding(headers.dump_btf_c(headers.BTF_PATH) + PADDED)
    headers.write_btf_tree(tmp_path, dump, headers.bcc_uapi_bpf_header(), headers.read_kconfig(), "6.1.0-test",
                           headers.extra_stubs())
    fields = [("ot_pad", "y"), ("ot_pad", "w"), ("ot_pad", "avg"), ("task_struct", "pid"),
              ("task_struct", "comm"), ("task_struct", "cgroups"), ("task_struct", "rt")]
    body = "".join(f"i = {n}; v = (u64)&((struct {t} *)addr)->{m} - addr; off.update(&i, &v); i = {n + 32}; "
                   f"v = __builtin_offsetof(struct {t}, {m}); off.update(&i, &v);\n"
                   for n, (t, m) in enumerate(fields))
    prog = ("#include <linux/sched.h>\nBPF_ARRAY(off, u64, 64);\nRAW_TRACEPOINT_PROBE(sys_enter) {\n"
            "int i; u64 v; u64 addr = bpf_get_current_task();\n" + body + "return 0;\n}\n")
    old = os.environ.get("BCC_KERNEL_SOURCE")
    os.environ["BCC_KERNEL_SOURCE"] = str(tmp_path)
    try:
        b = BPF(text=prog.encode())
    finally:
        os.environ.pop("BCC_KERNEL_SOURCE") if old is None else os.environ.update(BCC_KERNEL_SOURCE=old)
    try:
        deadline = time.monotonic() + 5
        while not b[b"off"][b[b"off"].Key(32 + 2)].value and time.monotonic() < deadline:  # a syscall runs it
            time.sleep(0.05)
        vals = {k.value: v.value for k, v in b[b"off"].items()}
    finally:
        b.cleanup()
    rewriter = {f: vals.get(n) for n, f in enumerate(fields)}
    compiled = {f: vals.get(n + 32) for n, f in enumerate(fields)}
    assert compiled[("ot_pad", "avg")] == 64 and rewriter == compiled, (rewriter, compiled)


@pytest.mark.parametrize("closing", [b"#endif /* _UAPI__LINUX_BPF_H__ */\n", b"#endif /* __LINUX_BPF_H__ */\n"])
def test_the_uapi_header_embedded_in_libbcc_is_found_whatever_its_closing_comment(closing):
    """BCC 0.26 (Debian 12/13) closes it with _UAPI__LINUX_BPF_H__, 0.37 (sid) with __LINUX_BPF_H__."""
    body = b"#ifndef _UAPI__LINUX_BPF_H__\n#define _UAPI__LINUX_BPF_H__\nstruct bpf_map { int x; };\n" + closing
    lib = b"\x7fELF junk\0more" + body + b"\0after the string\0#endif\0"
    assert headers.embedded_uapi_bpf_header(lib) == body.decode()
    assert headers.embedded_uapi_bpf_header(b"\x7fELF no header here\0") is None
