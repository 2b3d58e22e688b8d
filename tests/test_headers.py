from __future__ import annotations

from pathlib import Path

import pytest

from tracer.kernel import headers
from tracer.errors import KernelUnsupported

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
