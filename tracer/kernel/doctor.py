"""`oomtrace doctor`: what the kernel offers, and which probes `run` will use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tracer.errors import OomtraceError
from tracer.kernel import cgroupfs, headers, host, probes

# Capability bits (linux/capability.h) this code needs without root.
_CAP_BITS = {"CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38,
             "CAP_BPF": 39}
RUN_NEEDS = ("root, or CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8) to load and attach its "
             "BPF programs and CAP_DAC_READ_SEARCH to read tracefs, with a --cache-dir it can write")
DOCTOR_NEEDS = "root, or CAP_DAC_READ_SEARCH to read tracefs"


class NotPrivileged(OomtraceError):
    """The process lacks what a command needs from the kernel."""


def require_privileges(command: str, status: Path = Path("/proc/self/status"),
                       cap_last_cap: Path = Path("/proc/sys/kernel/cap_last_cap")) -> None:
    """Raise NotPrivileged, with one line saying what COMMAND ("run" or "doctor") needs, when
    the effective capabilities lack it. Root normally has them all; a root without them
    (a container's) gets the same line."""
    caps = _effective_caps(status)
    if caps is None:
        return  # no /proc to tell: let the command try
    have = {name for name, bit in _CAP_BITS.items() if caps >> bit & 1}
    missing = [] if have & {"CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE"} or _tracefs_readable() else \
        ["CAP_DAC_READ_SEARCH"]
    if command == "run":
        if "CAP_SYS_ADMIN" not in have:
            if _last_cap(cap_last_cap) >= _CAP_BITS["CAP_BPF"]:
                missing = [c for c in ("CAP_BPF", "CAP_PERFMON") if c not in have] + missing
            else:  # before 5.8 the kernel knows no CAP_BPF or CAP_PERFMON
                missing = ["CAP_SYS_ADMIN"] + missing
    if missing:
        needs = RUN_NEEDS if command == "run" else DOCTOR_NEEDS
        raise NotPrivileged(f"oomtrace {command} needs {needs}; this process lacks {', '.join(missing)}")


def _effective_caps(status: Path) -> int | None:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _last_cap(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 40  # CAP_LAST_CAP of 5.9+


def _tracefs_readable() -> bool:
    """Whether tracefs's event directories are readable as things are (some hosts open them up)."""
    for path in host.TRACEFS_CANDIDATES:
        try:
            os.listdir(path / "events" / "oom")
            return True
        except OSError:
            continue
    return False


def report(cache_dir: Path, extra: tuple[tuple[str, str], ...] = ()) -> str:
    """What this kernel offers, a row per fact; EXTRA rows (from later stages, e.g. the
    container runtimes) come last, aligned with the rest."""
    facts = host.gather(mount_tracefs=True)
    rows = [
        ("kernel", f"{facts.release} ({headers.kernel_arch()}, {sys.byteorder}-endian)"),
        ("BTF", _yes(facts.btf, str(headers.BTF_PATH))),
        ("kernel headers", _yes(facts.kernel_headers, f"/lib/modules/{facts.release}/build")),
        ("kheaders", _yes(facts.kheaders, str(headers.KHEADERS_PATH))),
        ("headers for BCC", _header_plan(facts, cache_dir)),
        ("kprobes", _yes(facts.kprobes, "CONFIG_KPROBES")),
        ("oom_kill_process", facts.oom_kill_symbol or "not probeable"),
        ("tracefs", _tracefs(facts)),
        ("mark_victim", _mark_victim(facts)),
        ("cgroups", _cgroups(facts.hierarchies)),
        ("capabilities", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in facts.capabilities.items())),
        *extra,
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += ["", "probes `oomtrace run` will use:"]
    lines += [f"  {line}" for line in _probe_lines(facts)]
    return "\n".join(lines)


def _yes(ok: bool, what: str) -> str:
    return f"yes ({what})" if ok else f"no ({what})"


def _header_plan(facts: host.HostFacts, cache_dir: Path) -> str:
    if facts.kernel_headers:
        return "the kernel's own headers"
    if facts.kheaders:
        return "kheaders archive (unpacked by BCC)"
    if facts.btf:
        tree = headers.btf_tree_path(cache_dir, facts.release)
        state = "cached" if (tree / "include").is_dir() else "generated on first run"
        return f"generated from BTF, {state} at {tree}"
    return "none: install linux-headers for this kernel"


def _tracefs(facts: host.HostFacts) -> str:
    if facts.tracefs is None:
        return "not mounted and could not be mounted (run as root)"
    return f"{facts.tracefs}" + (" (mounted now by doctor)" if facts.tracefs_mounted_now else "")


def _mark_victim(facts: host.HostFacts) -> str:
    if not facts.mark_victim:
        return "missing: oomtrace cannot run"
    if facts.mark_victim_task_arg:
        return "yes, with the victim task (6.9+ layout)"
    source = ("oom_kill_process's oom_control.chosen" + (" and oom_kill_memcg_member" if facts.oom_group_symbol else "")
              if facts.oom_kill_symbol else "/proc while the victim still exists")
    return f"yes, pid only (pre-6.9 layout): the victim's comm and cgroup from {source}"


def _cgroups(hierarchies: dict[int, cgroupfs.Hierarchy]) -> str:
    memory = cgroupfs.memory_hierarchy(hierarchies)
    parts = [f"memory on {'v2' if memory.version == 2 else 'v1'} at {memory.mount}" if memory
             else "no memory controller mounted"]
    v2 = hierarchies.get(0)
    if v2 and v2.mount:
        parts.append(f"v2 at {v2.mount} ({' '.join(v2.controllers) or 'no controllers'})")
    v1 = [h.name for hid, h in sorted(hierarchies.items()) if hid and h.mount]
    if v1:
        parts.append("v1: " + " ".join(v1))
    return "; ".join(parts)


def _probe_lines(facts: host.HostFacts) -> list[str]:
    if facts.oom_kill_symbol:
        rows = [(f"kprobe {facts.oom_kill_symbol}", "OOM context: constraint, OOMing memcg, usage/limit, points")]
    else:
        rows = [("kprobe oom_kill_process",
                 "not available: constraint and OOMing memcg are inferred (nearest memcg at its limit)")]
    if facts.oom_kill_symbol and not facts.mark_victim_task_arg:
        rows.append((f"kprobe {facts.oom_group_symbol or 'oom_kill_memcg_member'}",
                     "memory.oom.group members: pid, comm, cgroup" if facts.oom_group_symbol
                     else "not traceable: oom.group members other than the chosen named from /proc"))
    for tp in probes.TRACEPOINTS:
        present = facts.tracefs is not None and (facts.tracefs / "events" / tp.group / tp.name).is_dir()
        gives = tp.gives if tp is not probes.TRACEPOINTS[0] or facts.mark_victim_task_arg else \
            "every victim: its tid only (pre-6.9 layout)"
        rows.append((f"tracepoint {tp.group}:{tp.name}", gives if present else "missing on this kernel"))
    width = max(len(probe) for probe, _ in rows)
    return [f"{probe:<{width}}  {what}" for probe, what in rows]
