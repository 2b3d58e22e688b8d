"""Perf samples -> records: plain dicts with the schema documented in the README.

Decoding uses the ctypes layouts parsed from bpf/oomtrace.h. cgroup ids become paths through
the resolver; kernel timestamps (CLOCK_MONOTONIC) become wall-clock seconds. Every string from
the kernel (paths, comm) goes through cgroupfs.kernel_text(): valid UTF-8 as it is, otherwise
escaped, and then the record's "escaped" lists the field.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tracer.kernel.bpf_source import Layout
from tracer.kernel.cgroupfs import CgroupResolver, kernel_text, unescape_kernel_text

SCHEMA_VERSION = 6  # 4: container/pod identity (tracer/identity); 5: victim_source; 6: oom_report. docs/records.md
# Identity fields (tracer.identity.IdentitySink): on these record types, for these path fields.
IDENTITY_FIELDS = {"oom_kill": ("container", "pod", "memcg_container", "memcg_pod"),
                   "cgroup_create": ("container", "pod"), "cgroup_delete": ("container", "pod"),
                   "memory_pressure": ("container", "pod"), "container_stats": ("container", "pod"),
                   "oom_report": ("container", "pod", "memcg_container", "memcg_pod")}  # copied from its kill
RECORD_TYPES = ("start", "oom_kill", "cgroup_create", "cgroup_delete", "memory_pressure", "container_stats",
                "lost", "error", "forward_status", "oom_report")
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
        # A cgroup sample ends at its path's NUL: decode the fixed part, slice the strings.
        cg = self._cgroup
        self._cgroup_head = type("cgroup_event_head", (cg.__base__,),
                                 {"_fields_": [f for f in cg._fields_ if f[0] not in ("name", "path")]})
        self._cgroup_min = cg.path.offset
        self._name_at, self._path_at = cg.name.offset, cg.path.offset
        self._cgroup_cut = c["CGROUP_PATH_LEN"] - 1  # a path this long may have been cut
        self._decoders = {
            c[_TYPE + "OOM_KILL"]: self._oom_kill_record,
            c[_TYPE + "CGROUP_MKDIR"]: lambda raw: self._cgroup_record(raw, "cgroup_create"),
            c[_TYPE + "CGROUP_RMDIR"]: lambda raw: self._cgroup_record(raw, "cgroup_delete"),
        }
        self._constraints = layout.names("OT_CONSTRAINT_")
        self._contexts = layout.names("OT_CONTEXT_")
        self._victim_sources = layout.names("OT_VICTIM_")
        self._byteorder = layout.byteorder  # the kernel's: samples are in its byte order

    def decode(self, raw: bytes) -> dict:
        """One record for one sample; a sample that cannot be decoded gives an error record."""
        kind = int.from_bytes(raw[:4], self._byteorder) if len(raw) >= 4 else -1
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
        comm, comm_escaped = kernel_text(e.comm)  # a c_char array reads up to its first NUL
        trigger_comm, trigger_escaped = kernel_text(e.trigger_comm)
        rec = {
            "type": "oom_kill",
            "time": self.clock.wall(e.ktime_ns),
            "ktime_ns": e.ktime_ns,
            "pid": e.pid,
            "tid": e.tid,
            "comm": comm,
            "uid": e.uid,
            "cgroup": None,
            "cgroup_id": own_id,
            "memcg": None,
            "memcg_id": e.memcg_id,
            "constraint": self._constraints.get(e.constraint, str(e.constraint)),
            "context": self._contexts.get(e.context, "none"),
            # where pid, comm, cgroup came from: tracepoint, oom_control, oom_group, current (the kernel), proc, none
            "victim_source": self._victim_sources.get(e.victim_source, "none"),
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
            "trigger_comm": trigger_comm,
            "trigger_cgroup": None,
        }
        if comm_escaped:
            _escaped(rec, "comm")
        if trigger_escaped:
            _escaped(rec, "trigger_comm")
        if rec["victim_source"] != "tracepoint":  # pid-only mark_victim (before 6.9): no figures
            rec.update(dict.fromkeys(_TRACEPOINT_FIGURES))
        self.put_path(rec, "cgroup", own_hier, own_id)
        self.put_path(rec, "memcg", hier, e.memcg_id)
        self.put_path(rec, "trigger_cgroup", hier, e.trigger_cgroup_id)
        if not e.pid and e.tid:  # old mark_victim: only the tid came from the kernel
            self._fill_from_proc(rec, own_hier)
        elif not own_id:
            rec["cgroup_unknown"] = NO_ID
        return rec

    def put_path(self, rec: dict, field: str, hierarchy: int, cgroup_id: int) -> None:
        """REC[FIELD] = the path of (HIERARCHY, CGROUP_ID); when it is escaped FIELD joins
        rec["escaped"], and when it is unknown rec[FIELD + "_unknown"] says why."""
        path, escaped, why = self.resolver.lookup(hierarchy, cgroup_id)
        rec[field] = path
        if escaped:
            _escaped(rec, field)
        if why is not None:
            rec[field + "_unknown"] = why

    def _fill_from_proc(self, rec: dict, hierarchy: int) -> None:
        """Best effort for kernels whose mark_victim gives only a tid: /proc, if still there."""
        base = self.proc / str(rec["tid"])
        try:
            status = dict(line.split(b":\t", 1) for line in (base / "status").read_bytes().splitlines()
                          if b":\t" in line)
            rec["pid"] = int(status[b"Tgid"])
            rec["victim_source"] = "proc"
            rec["uid"] = int(status[b"Uid"].split()[0])
            try:  # comm as the kernel holds it (status escapes some bytes its own way)
                name = (base / "comm").read_bytes().rstrip(b"\n")
            except OSError:
                name = status[b"Name"].strip()
            rec["comm"], escaped = kernel_text(name)
            if escaped:
                _escaped(rec, "comm")
            for line in (base / "cgroup").read_bytes().splitlines():
                hid, _, rest = line.partition(b":")
                if hid.isdigit() and int(hid) == hierarchy:
                    rec["cgroup"], escaped = kernel_text(rest.partition(b":")[2])
                    rec.pop("cgroup_unknown", None)
                    if escaped:
                        _escaped(rec, "cgroup")
        except (OSError, KeyError, ValueError):
            rec["comm"] = rec["comm"] or None
        if rec["cgroup"] is None:
            rec["cgroup_unknown"] = rec.get("cgroup_unknown") or NO_ID

    def _cgroup_record(self, raw: bytes, kind: str) -> dict:
        if len(raw) < self._cgroup_min:
            raise ValueError(f"{len(raw)} bytes, the layout needs at least {self._cgroup_min}")
        e = self._cgroup_head.from_buffer_copy(raw)
        hier = e.hierarchy
        rec = {
            "type": kind,
            "time": self.clock.wall(e.ktime_ns),
            "ktime_ns": e.ktime_ns,
            "cgroup": None,
            "cgroup_id": e.id,
            "hierarchy": self.resolver.name(hier),
            "level": e.level,
        }
        path_at, name_at = self._path_at, self._name_at
        raw_path = raw[path_at: path_at + min(e.path_len, self._cgroup_cut + 1)].split(b"\0", 1)[0]
        name = raw[name_at: name_at + min(e.name_len, path_at - name_at)].split(b"\0", 1)[0]
        if _whole(raw_path, name, e.level, self._cgroup_cut):
            path, escaped = kernel_text(raw_path)
        else:  # cut by the kernel (past 1,023 bytes): rebuilt from what is known
            path, escaped = self._whole_path(hier, e.id, e.parent_id, name, kind == "cgroup_delete")
            if path is None:
                path, escaped = kernel_text(raw_path)
                rec["cgroup_truncated"] = True
                self.resolver.paths.truncated(hier, e.id)
        rec["cgroup"] = path
        if escaped:
            rec["escaped"] = ["cgroup"]
        if "cgroup_truncated" not in rec:
            self.resolver.seen(hier, e.id, path, escaped)
        return rec

    def _whole_path(self, hierarchy: int, cgroup_id: int, parent_id: int, name: bytes,
                    removed: bool) -> tuple[str | None, bool]:
        """The whole path of a cgroup whose event carried a cut one: its own path if a walk or
        an earlier event gave it (a removed cgroup), else its parent's path and its name."""
        if removed:
            path, escaped, _ = self.resolver.lookup(hierarchy, cgroup_id)
            if path is not None:
                return path, escaped
        parent, escaped, _ = self.resolver.lookup(hierarchy, parent_id)
        if parent is None or not name:
            return None, False
        whole = unescape_kernel_text(parent, escaped).rstrip(b"/") + b"/" + name
        return kernel_text(whole)


# What only the 6.9+ form of mark_victim gives: None in a record from an older one (uid may come from /proc).
_TRACEPOINT_FIGURES = ("uid", "oom_score_adj", "total_vm", "anon_rss", "file_rss", "shmem_rss", "pgtables")
NO_ID = "no id"  # the kernel gave no cgroup id (pre-6.9 mark_victim, the victim gone from /proc)


def _whole(path: bytes, name: bytes, level: int, cut: int) -> bool:
    """Whether the tracepoint's PATH is the cgroup's whole path: one "/" per level and its own
    NAME last (a path the kernel cut short lacks a "/" or ends inside a name). Without the name
    (it could not be read) only a path shorter than CUT bytes is known to be whole."""
    if not name:
        return len(path) < cut and (path.count(b"/") == level or not level)
    return path.count(b"/") == level and path.endswith(b"/" + name)


def escape_os_strings(record: dict) -> dict:
    """RECORD with every string that came from the OS with surrogate escapes (os.listdir of a
    cgroup named with a byte that is not UTF-8, as the container Manager reads them) put under
    the one rule: kernel_text() of its bytes, and the field listed in "escaped". For records not
    built here (container_stats); a string that is valid UTF-8 is left as it is."""
    for key, value in list(record.items()):
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                record[key], escaped = kernel_text(value.encode("utf-8", "surrogateescape"))
                if escaped:
                    _escaped(record, key)
    return record


def _escaped(rec: dict, field: str) -> None:
    escaped = rec.get("escaped")
    if escaped is None:
        rec["escaped"] = [field]
    elif field not in escaped:
        escaped.append(field)


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
