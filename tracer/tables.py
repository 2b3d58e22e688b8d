"""Stored records as a readable table (oomtrace events)."""

from __future__ import annotations

import time

from .sinks import text_value

_OOM_FIELDS = ("pid", "comm", "constraint", "memcg", "anon_rss", "memcg_limit", "trigger_comm")
_HIDDEN = {"type", "time", "ktime_ns", "id", "node", "cgroup", "tag"}
_SIZES = {"anon_rss", "file_rss", "shmem_rss", "total_vm", "memcg_usage", "memcg_limit"}


def events_table(records: list[dict]) -> str:
    rows = [("TIME", "NODE", "TYPE", "CGROUP", "DETAILS")]
    rows += [(_when(r.get("time")), str(r.get("node") or "-"), str(r.get("type") or r.get("tag") or "-"),
              str(r.get("cgroup") or "-"), _details(r)) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4]
                     for row in rows)


def _details(record: dict) -> str:
    keys = _OOM_FIELDS if record.get("type") == "oom_kill" else [k for k in record if k not in _HIDDEN]
    return " ".join(f"{k}={_size(record[k]) if k in _SIZES else text_value(record[k])}"
                    for k in keys if record.get(k) is not None)


def _size(value: object) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(value)


def _when(stamp: object) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
