"""Loading on the real kernel: the full-BTF fallback and releasing the compiler's pages."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest

from tracer.kernel import headers, host, probes

pytestmark = pytest.mark.root


@pytest.mark.skipif(not headers.BTF_PATH.is_file(), reason="this kernel has no BTF to generate headers from")
def test_broken_trimmed_headers_fall_back_to_the_whole_dump(cache_dir, tmp_path):
    good = headers.ensure_btf_tree(cache_dir, platform.release())
    tree = tmp_path / "tree"
    shutil.copytree(good.path, tree)
    (tree / "include" / "oomtrace_vmlinux.h").write_text("#error trimmed dump is broken\n")
    plan = probes.ProbePlan.from_host(host.gather(), reclaim=False)
    loaded = probes.load(plan, headers.HeaderSource("btf", str(tree)))
    try:
        assert "raw tracepoint oom:mark_victim" in loaded.attached
        assert loaded.notes == ["trimmed BTF headers failed to compile; used the whole BTF dump"]
    finally:
        loaded.close()


def test_compiler_code_is_released_after_loading(cache_dir):
    plan = probes.ProbePlan.from_host(host.gather(), reclaim=False)
    loaded = probes.load(plan, headers.choose(cache_dir))
    try:
        mappings = probes.compiler_code_mappings()
        assert mappings, "BCC's compiler libraries should be mapped in this process"
        smaps = Path("/proc/self/smaps").read_text().split("\n")
        resident = 0
        for i, line in enumerate(smaps):
            start = line.split("-")[0]
            if any(start == f"{s:x}" for s, _ in mappings):
                resident += int(next(x for x in smaps[i:i + 8] if x.startswith("Rss:")).split()[1])
        assert resident < 8 * 1024, f"{resident} kB of compiler code still resident"
    finally:
        loaded.close()


@pytest.mark.parametrize("task_arg", [True, False], ids=["mark_victim-task", "mark_victim-pid-only"])
def test_every_program_passes_this_kernels_verifier(cache_dir, task_arg):
    """Loading runs the verifier even where a probe cannot attach (no kprobes here)."""
    import os

    from bcc import BPF

    from tracer.kernel import bpf_source

    if task_arg:  # that variant's classic tracepoint half is compiled against tracefs's format
        assert host.gather().mark_victim_task_arg, "this kernel's mark_victim has no task argument"
    os.environ.update(headers.choose(cache_dir).environ())
    plan = probes.ProbePlan(kprobe_symbol=None, mark_victim_task_arg=task_arg)
    bpf = BPF(text=bpf_source.program_text().encode(), cflags=plan.cflags())  # the parts pasted in
    try:
        assert (b"tracepoint__oom__mark_victim" in bpf.funcs) == task_arg  # loaded by BCC itself
        kinds = {b"on_oom_kill_process": BPF.KPROBE, b"on_oom_kill_process_return": BPF.KPROBE}
        names = [b"on_mark_victim", b"on_cgroup_mkdir", b"on_cgroup_rmdir", b"on_reclaim_begin",
                 b"on_direct_reclaim_end", b"on_memcg_reclaim_end", *kinds]
        for name in names:
            fn = bpf.load_func(name, kinds.get(name, BPF.RAW_TRACEPOINT))
            assert fn.fd >= 0
    finally:
        bpf.cleanup()
