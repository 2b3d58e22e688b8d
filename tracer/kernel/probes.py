"""Compile bpf/oomtrace.bpf.c and its parts with BCC and attach what the kernel offers.

mark_victim is the one probe oomtrace cannot run without. The kprobe (OOM context), the
cgroup tracepoints and the reclaim tracepoints each degrade with a stated reason.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tracer.errors import ProbeError
from tracer.kernel import bpf_source, headers
from tracer.kernel.headers import HeaderSource
from tracer.kernel.host import HostFacts


@dataclass(frozen=True)
class Tracepoint:
    group: str
    name: str
    program: str  # the function in bpf/ attached to it (as a raw tracepoint)
    feature: str  # victims (required), cgroups or reclaim
    gives: str  # what oomtrace learns from it, for `oomtrace doctor`


# Every tracepoint the program uses, said once: load() attaches them, doctor lists them.
TRACEPOINTS = (
    Tracepoint("oom", "mark_victim", "on_mark_victim", "victims",
               "every victim: pid, comm, uid, rss, oom_score_adj, cgroup"),
    Tracepoint("cgroup", "cgroup_mkdir", "on_cgroup_mkdir", "cgroups", "container creation, cgroup id -> path"),
    Tracepoint("cgroup", "cgroup_rmdir", "on_cgroup_rmdir", "cgroups", "container deletion"),
    Tracepoint("vmscan", "mm_vmscan_direct_reclaim_begin", "on_reclaim_begin", "reclaim", "direct reclaim starts"),
    Tracepoint("vmscan", "mm_vmscan_direct_reclaim_end", "on_direct_reclaim_end", "reclaim", "direct reclaim stalls"),
    Tracepoint("vmscan", "mm_vmscan_memcg_reclaim_begin", "on_reclaim_begin", "reclaim", "memcg reclaim starts"),
    Tracepoint("vmscan", "mm_vmscan_memcg_reclaim_end", "on_memcg_reclaim_end", "reclaim", "memcg reclaim stalls"),
)
_MARK_VICTIM = TRACEPOINTS[0]


@dataclass(frozen=True)
class ProbePlan:
    """What to compile and attach, decided from the host's facts."""

    kprobe_symbol: str | None
    mark_victim_task_arg: bool
    cgroups: bool = True
    reclaim: bool = True
    group_symbol: str | None = None  # oom_kill_memcg_member: only for the pid-only mark_victim

    @classmethod
    def from_host(cls, facts: HostFacts, reclaim: bool = True) -> ProbePlan:
        if not facts.mark_victim:
            raise ProbeError(
                "this kernel has no oom:mark_victim tracepoint (Linux 4.13+) or tracefs is not "
                "mounted: oomtrace cannot see OOM kills here")
        return cls(facts.oom_kill_symbol, facts.mark_victim_task_arg, reclaim=reclaim,
                   group_symbol=None if facts.mark_victim_task_arg else facts.oom_group_symbol)

    def cflags(self) -> list[str]:
        flags = [f"-I{bpf_source.bpf_dir()}", "-Wno-unused-function"]
        if self.mark_victim_task_arg:
            flags.append("-DMARK_VICTIM_TASK_ARG")
        return flags


@dataclass
class Probes:
    """The loaded BPF object and what got attached."""

    bpf: object
    attached: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # probe -> why not
    notes: list[str] = field(default_factory=list)

    def open_events(self, on_event: Callable[[int, int, int], None],
                    on_lost: Callable[[int], None], page_cnt: int) -> None:
        self.bpf[b"events"].open_perf_buffer(on_event, page_cnt=page_cnt, lost_cb=on_lost)

    def poll(self, timeout_ms: int) -> None:
        self.bpf.perf_buffer_poll(timeout=timeout_ms)

    def pressure(self) -> list[tuple[object, object]]:
        """(pressure_key, pressure_value) pairs of the in-kernel reclaim totals."""
        return list(self.bpf[b"pressure"].items())

    def bump_pressure_epoch(self) -> int:
        table = self.bpf[b"pressure_epoch"]
        key = table.Key(0)
        epoch = table[key].value + 1
        table[key] = table.Leaf(epoch)
        return epoch

    def close(self) -> None:
        self.bpf.cleanup()


def load(plan: ProbePlan, source: HeaderSource) -> Probes:
    """Compile the program against SOURCE's headers and attach every probe of PLAN."""
    os.environ.update(source.environ())
    try:
        from bcc import BPF
    except ImportError as e:
        raise ProbeError(
            "the bcc Python module is missing: install python3-bpfcc and run oomtrace with the "
            "system python3 (or a venv made with --system-site-packages)") from e
    program = bpf_source.bpf_dir() / bpf_source.PROGRAM
    notes = []
    try:
        bpf = _compile(BPF, program, plan.cflags(), source)
    except ProbeError:
        if source.kind != "btf":
            raise
        # The trimmed BTF dump missed something this kernel needs: the whole dump is slower but complete.
        bpf = _compile(BPF, program, plan.cflags() + [headers.FULL_BTF_FLAG], source)
        notes.append("trimmed BTF headers failed to compile; used the whole BTF dump")
    probes = Probes(bpf, notes=notes)
    if plan.mark_victim_task_arg:  # BCC attached its TRACEPOINT_PROBE when loading
        probes.attached.append("tracepoint oom:mark_victim (figures)")
    try:
        _attach_required(probes, "raw tracepoint oom:mark_victim", _raw_tp(bpf, _MARK_VICTIM))
    except ProbeError:
        bpf.cleanup()
        raise
    _attach_kprobe(probes, plan)
    wanted = {"cgroups": plan.cgroups, "reclaim": plan.reclaim}
    for tp in TRACEPOINTS:
        if wanted.get(tp.feature):
            _attach_optional(probes, f"raw tracepoint {tp.group}:{tp.name}", _raw_tp(bpf, tp))
    _free_compiler_memory(bpf)
    return probes


def _compile(bpf_class: type, program: Path, cflags: list[str], source: HeaderSource) -> object:
    try:
        return bpf_class(text=bpf_source.program_text(program).encode(), cflags=cflags)
    except Exception as e:  # BCC raises bare Exception on compile errors
        raise ProbeError(f"BCC could not compile {program.name} with {source.kind} headers "
                         f"({source.path}): {e}") from e


def _raw_tp(bpf: object, tp: Tracepoint) -> Callable[[], object]:
    return lambda: bpf.attach_raw_tracepoint(tp=tp.name.encode(), fn_name=tp.program.encode())


def _attach_kprobe(probes: Probes, plan: ProbePlan) -> None:
    name = "kprobe oom_kill_process"
    if plan.kprobe_symbol is None:
        probes.missing[name] = "no kprobes on this kernel (CONFIG_KPROBES) or no traceable symbol"
        return
    sym = plan.kprobe_symbol.encode()
    ok = _attach_optional(probes, f"kprobe {plan.kprobe_symbol}", lambda: probes.bpf.attach_kprobe(
        event=sym, fn_name=b"on_oom_kill_process"))
    if ok:
        _attach_optional(probes, f"kretprobe {plan.kprobe_symbol}", lambda: probes.bpf.attach_kretprobe(
            event=sym, fn_name=b"on_oom_kill_process_return"))
    if plan.mark_victim_task_arg:
        return  # mark_victim names every victim itself
    if plan.group_symbol is None:
        probes.missing["kprobe oom_kill_memcg_member"] = (
            "not traceable here: memory.oom.group members other than the chosen victim are named from /proc")
        return
    group = plan.group_symbol.encode()
    if _attach_optional(probes, f"kprobe {plan.group_symbol}", lambda: probes.bpf.attach_kprobe(
            event=group, fn_name=b"on_oom_kill_memcg_member")):
        _attach_optional(probes, f"kretprobe {plan.group_symbol}", lambda: probes.bpf.attach_kretprobe(
            event=group, fn_name=b"on_oom_kill_memcg_member_return"))


def _attach_required(probes: Probes, name: str, attach: Callable[[], object]) -> None:
    if not _attach_optional(probes, name, attach):
        raise ProbeError(f"cannot attach {name}: {probes.missing[name]}")


def _attach_optional(probes: Probes, name: str, attach: Callable[[], object]) -> bool:
    try:
        attach()
    except Exception as e:  # noqa: BLE001 - BCC raises bare Exception for attach failures
        probes.missing[name] = str(e) or type(e).__name__
        return False
    probes.attached.append(name)
    return True


_MADV_DONTNEED = 4
_COMPILER_LIBS = ("libLLVM", "libclang-cpp", "libclang.so")  # not libbcc: it reads the perf buffer


def _free_compiler_memory(bpf: object) -> None:
    """Release the compiler's memory once everything is loaded: it is most of the RSS.

    BCC's free_bcc_memory() only covers an LLVM linked into libbcc; Debian links it as shared
    libraries, whose code pages are then dropped here. Only executable mappings: they are
    clean file pages (PIC code is never relocated), so a later use just faults them back in.
    """
    free = getattr(bpf, "free_bcc_memory", None)
    if free is not None:
        free()
    libc = ctypes.CDLL(None, use_errno=True)
    for start, end in compiler_code_mappings():
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def compiler_code_mappings(maps: Path = Path("/proc/self/maps")) -> list[tuple[int, int]]:
    """(start, end) of the executable, private, file-backed mappings of the compiler libraries."""
    found = []
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[1] == "r-xp" and any(lib in parts[5] for lib in _COMPILER_LIBS):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            found.append((start, end))
    return found


def read_event(data: int, size: int) -> bytes:
    """Copy a perf sample out of BCC's buffer (valid only during the callback)."""
    return ctypes.string_at(data, size)
