"""Perf samples -> records: plain dicts with the schema documented in the README.

Decoding uses the ctypes layouts parsed from bpf/oomtrace.h. cgroup ids become paths through
the resolver; kernel timestamps (CLOCK_MONOTONIC) become wall-clock seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tracer.kernel.bpf_source import Layout
from tracer.kernel.cgroupfs import CgroupResolver

SCHEMA_VERSION = 2
RECORD_TYPES = ("start", "oom_kill", "cgroup_create", "cgroup_delete", "memory_pressure", "container_stats",
                "lost", "error", "forward_status")
_TYPE = "OT_EVENT_"
ALWAYS_PASS = frozenset({"start", "lost", "error", "forward_status"})


@dataclass(frozen=True)
class Clock:
    """Maps bpf_ktime_get_ns() (CLOCK_MONOTONIC) to Unix time."""

    offset_ns: int

    @classmethod
    def now(cls) -> Clock:
        return cls(time.time_ns() - time.monotonic_ns())

    def wall(self, ktime_ns: int) -> float:
        return round((ktime_ns + self.offset_ns) / 1e9, 6)


class RecordBuilder:
    """Decodes the samples of the events perf buffer."""

    def __init__(self, layout: Layout, resolver: CgroupResolver, clock: Clock,
                 memory_hierarchy: int, page_size: int | None = None, proc: Path = Path("/proc")) -> None:
        self.resolver = resolver
        self.clock = clock
        self.memory_hierarchy = memory_hierarchy
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self.proc = proc
        c = layout.constants
        self._oom_kill = layout.structs["oom_kill_event"]
        self._cgroup = layout.structs["cgroup_event"]
        self._decoders = {
            c[_TYPE + "OOM_KILL"]: self._oom_kill_record,
            c[_TYPE + "CGROUP_MKDIR"]: lambda raw: self._cgroup_record(raw, "cgroup_create"),
            c[_TYPE + "CGROUP_RMDIR"]: lambda raw: self._cgroup_record(raw, "cgroup_delete"),
        }
        self._constraints = layout.names("OT_CONSTRAINT_")
        self._contexts = layout.names("OT_CONTEXT_")

    def decode(self, raw: bytes) -> dict:
        """One record for one sample; a sample that cannot be decoded gives an error record."""
        kind = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else -1
        decoder = self._decoders.get(kind)
        if decoder is None:
            return {"type": "error", "error": f"unknown event type {kind} ({len(raw)} bytes)"}
        try:
            return decoder(raw)
        except ValueError as e:  # short sample: header and program disagree
            return {"type": "error", "error": f"cannot decode event type {kind}: {e}"}

    def _oom_kill_record(self, raw: bytes) -> dict:
        e = self._oom_kill.from_buffer_copy(raw)
        page = self.page_size
        kprobe = self._contexts.get(e.context) == "kprobe"
        hier = e.memory_hierarchy if e.memory_hierarchy >= 0 else self.memory_hierarchy
        # On cgroup v2 the victim's own (leaf) cgroup; on v1 its memory-controller cgroup.
        own_id, own_hier = (e.dfl_cgroup_id, 0) if hier == 0 else (e.cgroup_id, hier)
        rec = {
            "type": "oom_kill",
            "time": self.clock.wall(e.ktime_ns),
            "ktime_ns": e.ktime_ns,
            "pid": e.pid,
            "tid": e.tid,
            "comm": _text(e.comm),
            "uid": e.uid,
            "cgroup": self.resolver.path(own_hier, own_id),
            "cgroup_id": own_id,
            "memcg": self.resolver.path(hier, e.memcg_id),
            "memcg_id": e.memcg_id,
            "constraint": self._constraints.get(e.constraint, str(e.constraint)),
            "context": self._contexts.get(e.context, "none"),
            "memcg_usage": e.memcg_usage_pages * page if e.memcg_id else None,
            "memcg_limit": e.memcg_limit_pages * page if e.memcg_id else None,
            "oom_score_adj": e.oom_score_adj,
            "total_vm": e.total_vm_kb * 1024,
            "anon_rss": e.anon_rss_kb * 1024,
            "file_rss": e.file_rss_kb * 1024,
            "shmem_rss": e.shmem_rss_kb * 1024,
            "pgtables": e.pgtables_kb * 1024,
            "oom_domain_pages": e.oom_domain_pages if kprobe else None,
            "chosen_points": e.chosen_points if kprobe else None,
            "order": e.order if kprobe else None,
            "gfp_mask": e.gfp_mask if kprobe else None,
            "trigger_pid": e.trigger_pid,
            "trigger_tid": e.trigger_tid,
            "trigger_comm": _text(e.trigger_comm),
            "trigger_cgroup": self.resolver.path(hier, e.trigger_cgroup_id),
        }
        if not e.pid and e.tid:  # old mark_victim: only the tid came from the kernel
            self._fill_from_proc(rec, own_hier)
        return rec

    def _fill_from_proc(self, rec: dict, hierarchy: int) -> None:
        """Best effort for kernels whose mark_victim gives only a tid: /proc, if still there."""
        base = self.proc / str(rec["tid"])
        try:
            status = dict(line.split(":\t", 1) for line in (base / "status").read_text().splitlines()
                          if ":\t" in line)
            rec["pid"] = int(status["Tgid"])
            rec["comm"] = status["Name"].strip()
            rec["uid"] = int(status["Uid"].split()[0])
            for line in (base / "cgroup").read_text().splitlines():
                hid, _, rest = line.partition(":")
                if hid.isdigit() and int(hid) == hierarchy:
                    rec["cgroup"] = rest.partition(":")[2]
        except (OSError, KeyError, ValueError):
            rec["comm"] = rec["comm"] or None

    def _cgroup_record(self, raw: bytes, kind: str) -> dict:
        e = self._cgroup.from_buffer_copy(raw)
        path = bytes(e.path[: e.path_len]).decode("utf-8", "replace")
        self.resolver.seen(e.hierarchy, e.id, path)
        return {
            "type": kind,
            "time": self.clock.wall(e.ktime_ns),
            "ktime_ns": e.ktime_ns,
            "cgroup": path,
            "cgroup_id": e.id,
            "hierarchy": self.resolver.name(e.hierarchy),
            "level": e.level,
        }


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class RecordStamper:
    """Gives each record its node and an id unique across agents and restarts.

    The id (a random per-run prefix and a sequence number) travels with the record through
    the spool and every resend, so that a collector stores each record once.
    """

    def __init__(self, node: str, prefix: str | None = None) -> None:
        self.node = node
        self.prefix = prefix or os.urandom(8).hex()
        self._seq = 0

    def stamp(self, record: dict) -> dict:
        self._seq += 1
        record["id"] = f"{self.prefix}-{self._seq:010x}"  # fixed width: ids sort as they were made
        record["node"] = self.node
        return record


@dataclass(frozen=True)
class RecordFilter:
    """--type and --cgroup. start, lost, error and forward_status always pass: nothing goes silently."""

    types: frozenset[str] | None = None
    cgroup_prefix: str | None = None

    def accepts(self, record: dict) -> bool:
        kind = record["type"]
        if kind in ALWAYS_PASS:
            return True
        if self.types is not None and kind not in self.types:
            return False
        if self.cgroup_prefix is not None:
            return any((record.get(k) or "").startswith(self.cgroup_prefix)
                       for k in ("cgroup", "memcg"))
        return True
