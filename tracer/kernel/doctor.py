"""`oomtrace doctor`: what the kernel offers, and which probes `run` will use."""

from __future__ import annotations

from pathlib import Path

from tracer.kernel import cgroupfs
from tracer.kernel import headers
from tracer.kernel import host, probes

def report(cache_dir: Path) -> str:
    facts = host.gather(mount_tracefs=True)
    rows = [
        ("kernel", facts.release),
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
    return "yes, with the victim task (6.9+ layout)" if facts.mark_victim_task_arg else "yes, pid only (pre-6.9 layout)"


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
    for tp in probes.TRACEPOINTS:
        present = facts.tracefs is not None and (facts.tracefs / "events" / tp.group / tp.name).is_dir()
        rows.append((f"tracepoint {tp.group}:{tp.name}", tp.gives if present else "missing on this kernel"))
    width = max(len(probe) for probe, _ in rows)
    return [f"{probe:<{width}}  {what}" for probe, what in rows]
