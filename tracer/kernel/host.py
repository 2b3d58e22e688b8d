"""What the running kernel offers a BPF tracer: the facts behind `doctor` and the probe plan."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tracer.kernel import cgroupfs, headers, symbols

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe/type")
_CAPS = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


@dataclass(frozen=True)
class HostFacts:
    release: str
    btf: bool
    kernel_headers: bool
    kheaders: bool
    kprobes: bool
    tracefs: Path | None
    tracefs_mounted_now: bool
    oom_kill_symbol: str | None
    mark_victim: bool
    mark_victim_task_arg: bool
    hierarchies: dict[int, cgroupfs.Hierarchy] = field(default_factory=dict)
    capabilities: dict[str, bool] = field(default_factory=dict)
    # oom_kill_memcg_member: names memory.oom.group members where mark_victim gives only a tid
    oom_group_symbol: str | None = None


def gather(mount_tracefs: bool = True) -> HostFacts:
    release = platform.release()
    tracefs, mounted = find_tracefs(mount=mount_tracefs)
    kprobes = KPROBE_PMU.exists()
    symbol = group_symbol = None
    if kprobes:
        names = symbols.kallsyms_text_names(prefix="oom_kill_")
        traceable = symbols.traceable_functions(tracefs, "oom_kill_")
        symbol = symbols.choose_symbol("oom_kill_process", names, traceable)
        group_symbol = symbols.choose_symbol("oom_kill_memcg_member", names, traceable)
    fmt = mark_victim_format(tracefs)
    return HostFacts(
        release=release,
        btf=Path("/sys/kernel/btf/vmlinux").is_file(),
        kernel_headers=headers.kernel_headers_present(Path("/lib/modules", release)),
        kheaders=Path("/sys/kernel/kheaders.tar.xz").exists(),
        kprobes=kprobes,
        tracefs=tracefs,
        tracefs_mounted_now=mounted,
        oom_kill_symbol=symbol,
        mark_victim=fmt is not None,
        mark_victim_task_arg=fmt is not None and has_field(fmt, "comm"),
        hierarchies=cgroupfs.read_hierarchies(),
        capabilities=capabilities(),
        oom_group_symbol=group_symbol,
    )


def find_tracefs(mount: bool = True) -> tuple[Path | None, bool]:
    """The tracefs directory; mounts it at /sys/kernel/tracing when asked and needed."""
    for path in TRACEFS_CANDIDATES:
        if (path / "events").is_dir():
            return path, False
    if mount and os.geteuid() == 0 and TRACEFS_CANDIDATES[0].is_dir():
        done = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS_CANDIDATES[0])],
                              capture_output=True, check=False)
        if done.returncode == 0 and (TRACEFS_CANDIDATES[0] / "events").is_dir():
            return TRACEFS_CANDIDATES[0], True
    return None, False


def mark_victim_format(tracefs: Path | None) -> str | None:
    if tracefs is None:
        return None
    try:
        return (tracefs / "events" / "oom" / "mark_victim" / "format").read_text()
    except OSError:
        return None


def has_field(tracepoint_format: str, name: str) -> bool:
    """Whether a tracefs format file declares field NAME (6.9+ mark_victim declares comm)."""
    for line in tracepoint_format.splitlines():
        line = line.strip()
        if line.startswith("field:"):
            decl = line[len("field:"):].split(";")[0]
            if decl.split()[-1].split("[")[0] == name:
                return True
    return False


def capabilities(status: Path = Path("/proc/self/status")) -> dict[str, bool]:
    try:
        text = status.read_text()
    except OSError:
        return {}
    eff = next((int(line.split()[1], 16) for line in text.splitlines() if line.startswith("CapEff:")), 0)
    return {name: bool(eff >> bit & 1) for name, bit in _CAPS.items()}
