"""Finding `oom_report` records: in a collector's store (read-only) or in a saved
`oomtrace run -o json` stream, by the kill's id (or the report's own), the newest, or by
workload and cgroup. Errors say what was looked for and what is there (NoReport). Each report
found gets the reclaim stalls of the interval its kill fell in (analysis.add_late_stalls): the
`memory_pressure` record that holds them was made after the report.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import OomtraceError
from tracer.postmortem.analysis import add_late_stalls

_LATE = 120.0  # seconds after a kill in which its interval's memory_pressure records are looked for


class NoReport(OomtraceError):
    """No oom_report matches: the message says why (no reports at all, a kill without one, …)."""


@dataclass(frozen=True)
class Wanted:
    """Which reports: by ID (the kill's or the report's), else the newest LIMIT matching the filters."""

    id: str | None = None
    node: str | None = None
    namespace: str | None = None
    pod: str | None = None
    cgroup_prefix: str | None = None
    limit: int = 20

    def accepts(self, report: dict) -> bool:
        """The filters, on a record in memory (a stream file); the store applies them in SQL."""
        if self.node is not None and report.get("node") != self.node:
            return False
        pod = report.get("pod") or report.get("memcg_pod")
        pod = pod if isinstance(pod, dict) else {}
        if self.namespace is not None and pod.get("namespace") != self.namespace:
            return False
        if self.pod is not None and pod.get("name") != self.pod:
            return False
        if self.cgroup_prefix is not None:
            return any(isinstance(report.get(k), str) and report[k].startswith(self.cgroup_prefix)
                       for k in ("cgroup", "memcg"))
        return True


def from_stream(path: Path, wanted: Wanted) -> list[dict]:
    """The reports of a JSON lines file, oldest first (the newest wanted.limit, or the one with
    wanted.id). Lines that are not JSON objects are skipped: a stream cut by a crash still reads."""
    reports: list[dict] = []
    pressure: list[dict] = []
    kills: set[str] = set()
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                if record.get("type") == "oom_kill" and isinstance(record.get("id"), str):
                    kills.add(record["id"])
                elif record.get("type") == "oom_report" and wanted.accepts(record):
                    reports.append(record)
                elif record.get("type") == "memory_pressure":
                    pressure.append(record)
    except OSError as e:
        raise NoReport(f"cannot read {path}: {e.strerror or e}") from e
    found = _pick(reports, wanted, str(path), wanted.id in kills if wanted.id else False)
    return [add_late_stalls(r, [p for p in pressure if p.get("node") == r.get("node")]) for r in found]


def from_store(path: Path, wanted: Wanted) -> list[dict]:
    """The reports a collector stored, oldest first; read-only (StoreReader)."""
    from tracer.collect.store import Query, StoreReader

    try:
        with StoreReader(path) as reader:
            if wanted.id is not None:
                found = _by_id(reader, wanted.id, str(path))
            else:
                query = Query(types=("oom_report",), node=wanted.node, namespace=wanted.namespace, pod=wanted.pod,
                              cgroup_prefix=wanted.cgroup_prefix, limit=wanted.limit)
                found = list(reader.query(query))
                if not found:
                    any_report = next(reader.query(Query(types=("oom_report",), limit=1)), None)
                    _none(str(path), any_report is not None)
            return [add_late_stalls(r, _pressure_after(reader, r)) for r in found]
    except sqlite3.Error as e:
        raise NoReport(f"{path}: {e}") from e


def _pressure_after(reader, report: dict) -> list[dict]:
    """The memory_pressure records of the report's node and cgroups made in the minutes after its kill."""
    from tracer.collect.store import Query

    kill_time, top = report.get("kill_time"), report.get("memcg") or report.get("cgroup")
    if not isinstance(kill_time, (int, float)) or not isinstance(top, str):
        return []
    node = report.get("node") if isinstance(report.get("node"), str) else None
    return list(reader.query(Query(types=("memory_pressure",), node=node, since=kill_time,
                                   until=kill_time + _LATE, cgroup_prefix=top)))


def _by_id(reader, rid: str, where: str) -> list[dict]:
    """The report of kill RID (or the report RID itself)."""
    record = reader.record(rid)
    if record is None:
        raise NoReport(f"no record with id {rid} in {where}")
    kind = record.get("type")
    if kind == "oom_report":
        return [record]
    if kind != "oom_kill":
        raise NoReport(f"{rid} is a {kind} record in {where}, not an oom_kill or oom_report")
    report = report_of(reader, record)
    return [report] if report is not None else _missing(rid, where, kind)


def report_of(reader, kill: dict) -> dict | None:
    """The oom_report of KILL (a stored oom_kill), None when its agent sent none. Its kill_id is
    not a column: it is looked for among the reports of the kill's node from a minute before
    the kill to ten after (a report follows its kill within seconds)."""
    from tracer.collect.store import Query

    stamp = kill["time"]
    return next((r for r in reader.query(Query(types=("oom_report",), node=kill.get("node"), since=stamp - 60,
                                               until=stamp + 600)) if r.get("kill_id") == kill.get("id")), None)


def _missing(rid: str, where: str, kind: str | None) -> list[dict]:
    if kind == "oom_kill":
        raise NoReport(f"the kill {rid} has no oom_report in {where}: its agent ran without the flight recorder "
                       "(--no-recorder, or before oomtrace had one), or the report was lost")
    raise NoReport(f"no oom_report with id or kill id {rid} in {where}")


def _pick(reports: list[dict], wanted: Wanted, where: str, is_kill: bool) -> list[dict]:
    if wanted.id is not None:
        found = [r for r in reports if wanted.id in (r.get("kill_id"), r.get("id"))]
        return found[-1:] or _missing(wanted.id, where, "oom_kill" if is_kill else None)
    if not reports:
        _none(where, False)
    return reports[-wanted.limit:]


def _none(where: str, any_report: bool) -> None:
    if any_report:
        raise NoReport(f"no oom_report in {where} matches these filters")
    raise NoReport(f"no oom_report records in {where}: no OOM kill was recorded, or its agents ran without "
                   "the flight recorder (oomtrace run --no-recorder, or an older oomtrace)")
