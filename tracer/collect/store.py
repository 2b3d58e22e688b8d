"""The collector's store: SQLite in WAL mode, one row per record, keyed by the record's id.

A record's msgpack bytes are kept as received; the columns beside them are what queries
filter on. Inserting an id that is already stored does nothing, so a resent chunk never
duplicates. One Store belongs to one thread (sqlite3's rule); readers open their own.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import msgpack

from tracer.forward.wire import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL,
    received REAL NOT NULL,
    node TEXT,
    type TEXT,
    cgroup TEXT,
    memcg TEXT,
    tag TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records(time);
CREATE INDEX IF NOT EXISTS records_type_time ON records(type, time);
"""
_INSERT = ("INSERT OR IGNORE INTO records(id, time, received, node, type, cgroup, memcg, tag, body)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
SYNC_MODES = ("full", "normal")


@dataclass
class Added:
    stored: int = 0
    duplicates: int = 0
    new: list[dict] = field(default_factory=list)  # newly stored oom_kill / forward_status records


_WATCHED = ("oom_kill", "forward_status")  # records the collector's metrics look into


def rows(message: Message, received: float, peer: str | None = None) -> list[tuple]:
    """Table rows for a message's entries. A record without an id (from another producer)
    gets one from its content, so that its resends are recognised too."""
    out = []
    append = out.append
    tag = message.tag
    for stamp, rec, raw in message.entries:  # hot: plain type checks, no helper calls
        rid, node, kind = rec.get("id"), rec.get("node"), rec.get("type")
        cgroup, memcg = rec.get("cgroup"), rec.get("memcg")
        append((rid if type(rid) is str else _content_id(tag, stamp, raw), stamp, received,
                node if type(node) is str else peer, kind if type(kind) is str else None,
                cgroup if type(cgroup) is str else None, memcg if type(memcg) is str else None, tag, raw))
    return out


def _content_id(tag: str, stamp: float, raw: bytes) -> str:
    return "sha1:" + hashlib.sha1(tag.encode("utf-8", "surrogateescape") + repr(stamp).encode() + raw).hexdigest()


class Store:
    def __init__(self, path: Path | str, synchronous: str = "full") -> None:
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}")
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.db.execute("PRAGMA cache_size=-32768")  # 32 MiB: the indexes of a busy day stay cached
        self.db.executescript(_SCHEMA)

    def add(self, batch: list[tuple]) -> Added:
        """Insert in one transaction; committed when this returns."""
        result = Added()
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            watched = [r for r in batch if r[4] in _WATCHED]
            if watched:  # which of these are new: asked once per batch, not row by row
                stored = self._existing([r[0] for r in watched])
                for row in watched:
                    if row[0] not in stored:
                        stored.add(row[0])
                        result.new.append(_record(row[8]))
            self.db.executemany(_INSERT, batch)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        result.stored = self.db.total_changes - before
        result.duplicates = len(batch) - result.stored
        return result

    def _existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), 500):  # SQLite's limit on bound variables
            part = ids[i:i + 500]
            found.update(r[0] for r in self.db.execute(
                f"SELECT id FROM records WHERE id IN ({','.join('?' * len(part))})", part))
        return found

    def expire(self, retention: Retention, now: float | None = None) -> int:
        """Delete what is older than its type's retention; returns how many rows went."""
        now = time.time() if now is None else now
        before = self.db.total_changes
        for kind, age in retention.per_type.items():
            self.db.execute("DELETE FROM records WHERE type = ? AND time < ?", (kind, now - age))
        if retention.default is not None:
            others = ",".join("?" * len(retention.per_type))
            self.db.execute(f"DELETE FROM records WHERE time < ? AND coalesce(type, '') NOT IN ({others})",
                            (now - retention.default, *retention.per_type))
        return self.db.total_changes - before

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM records").fetchone()[0]

    def query(self, q: Query) -> Iterator[dict]:
        """Records matching Q, oldest first (the newest LIMIT of them when a limit is set)."""
        where, args = q.where()
        sql = f"SELECT node, tag, body FROM records{where} ORDER BY time DESC, rowid DESC"
        if q.limit is not None:
            sql += f" LIMIT {int(q.limit)}"
        found = self.db.execute(sql, args).fetchall()
        for node, tag, body in reversed(found):
            record = _record(body)
            record.setdefault("node", node)
            record.setdefault("tag", tag)
            yield record

    def close(self) -> None:
        self.db.close()


def _record(body: bytes) -> dict:
    """A stored body, msgpack of [time, record], back to the record."""
    return msgpack.unpackb(body, raw=False, strict_map_key=False, unicode_errors="replace",
                           ext_hook=lambda code, data: msgpack.ExtType(code, data))[1]


@dataclass(frozen=True)
class Retention:
    default: float | None = 30 * 86400.0  # seconds; None keeps records for ever
    per_type: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    since: float | None = None
    until: float | None = None
    types: tuple[str, ...] = ()
    cgroup_prefix: str | None = None  # matches the victim's cgroup or the OOMing memcg
    node: str | None = None
    limit: int | None = None

    def where(self) -> tuple[str, list]:
        terms: list[str] = []
        args: list = []
        if self.since is not None:
            terms.append("time >= ?")
            args.append(self.since)
        if self.until is not None:
            terms.append("time < ?")
            args.append(self.until)
        if self.types:
            terms.append(f"type IN ({','.join('?' * len(self.types))})")
            args.extend(self.types)
        if self.cgroup_prefix is not None:
            n = len(self.cgroup_prefix)
            terms.append("(substr(cgroup, 1, ?) = ? OR substr(memcg, 1, ?) = ?)")
            args.extend((n, self.cgroup_prefix, n, self.cgroup_prefix))
        if self.node is not None:
            terms.append("node = ?")
            args.append(self.node)
        return (" WHERE " + " AND ".join(terms) if terms else ""), args
