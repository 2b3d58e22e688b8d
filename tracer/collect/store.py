"""The collector's store: SQLite in WAL mode, one row per record, keyed by the record's id.

A record's msgpack bytes are kept as received; the columns beside them are what queries
filter on. Inserting an id that is already stored does nothing, so a resent chunk never
duplicates. One Store (the writer) belongs to one thread (sqlite3's rule); readers open a
StoreReader of their own, which never writes to the database or its directory.

Both are context managers, and close() on either may be called more than once.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

import msgpack

from tracer.forward.wire import Message


class Row(NamedTuple):
    """One record as stored: the columns of the records table, in their order."""

    id: str
    time: float
    received: float
    node: str | None
    type: str | None
    cgroup: str | None
    memcg: str | None
    tag: str
    body: bytes  # msgpack of [time, record], as received


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
_INSERT = (f"INSERT OR IGNORE INTO records({', '.join(Row._fields)})"
           f" VALUES ({', '.join('?' * len(Row._fields))})")
SYNC_MODES = ("full", "normal")


@dataclass
class Added:
    stored: int = 0
    duplicates: int = 0
    new: list[dict] = field(default_factory=list)  # newly stored oom_kill / forward_status records


_WATCHED = ("oom_kill", "forward_status")  # records the collector's metrics look into


def rows(message: Message, received: float, peer: str | None = None) -> list[Row]:
    """Table rows for a message's entries. A record without an id (from another producer)
    gets one from its content, so that its resends are recognised too."""
    out: list[Row] = []
    append = out.append
    tag = message.tag
    new = tuple.__new__  # Row(...) would run namedtuple's __new__ in Python: ~0.1 µs a row more
    for stamp, rec, raw in message.entries:  # hot: plain type checks, no helper calls
        rid, node, kind = rec.get("id"), rec.get("node"), rec.get("type")
        cgroup, memcg = rec.get("cgroup"), rec.get("memcg")
        append(new(Row, (rid if type(rid) is str else _content_id(tag, stamp, raw), stamp, received,
                         node if type(node) is str else peer, kind if type(kind) is str else None,
                         cgroup if type(cgroup) is str else None, memcg if type(memcg) is str else None,
                         tag, raw)))
    return out


def _content_id(tag: str, stamp: float, raw: bytes) -> str:
    return "sha1:" + hashlib.sha1(tag.encode("utf-8", "surrogateescape") + repr(stamp).encode() + raw).hexdigest()


class NotAStore(sqlite3.DatabaseError):
    """An SQLite database that oomtrace collect did not write: no records table, or not ours."""


_Self = TypeVar("_Self", bound="_Database")


class _Database:
    """What the writer and the readers share: queries, close(), `with`."""

    path: str
    db: sqlite3.Connection

    def count(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM records").fetchone()
        return n

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
        """Close the connection; again is a no-op (sqlite3's own close is idempotent)."""
        self.db.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(_Database):
    """The writer: opens (or creates) the database in WAL mode with its table and indexes."""

    def __init__(self, path: Path | str, synchronous: str = "full") -> None:
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}")
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.db.execute("PRAGMA cache_size=-32768")  # 32 MiB: the indexes of a busy day stay cached
            self.db.executescript(_SCHEMA)
        except BaseException:
            self.db.close()
            raise

    def add(self, batch: list[Row]) -> Added:
        """Insert in one transaction; committed when this returns."""
        result = Added()
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            watched = [row for row in batch if row.type in _WATCHED]
            if watched:  # which of these are new: asked once per batch, not row by row
                stored = self._existing([row.id for row in watched])
                for row in watched:
                    if row.id not in stored:
                        stored.add(row.id)
                        result.new.append(_record(row.body))
            self.db.executemany(_INSERT, map(tuple, batch))  # sqlite3 binds a plain tuple's items faster
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
            found.update(rid for (rid,) in self.db.execute(
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


class StoreReader(_Database):
    """Queries on a store that this process must not change (`oomtrace events --db`).

    Opened as file:PATH?mode=ro: no pragma that writes, no CREATE, nothing written to the
    file or its directory, so it works without write access. A database that is not a
    collector's (no records table with our columns) raises NotAStore; a file that is not
    SQLite raises sqlite3.DatabaseError; a missing one sqlite3.OperationalError.

    With a -wal (or -journal) beside the file, a writer is live or left committed records
    there: the read goes through SQLite's locks and that log (the -shm of a live collector
    is read without write access). Without one, the file holds every committed record and is
    read as immutable, the one way SQLite reads a WAL-mode file in a directory it cannot
    write, and it leaves no -wal/-shm behind. A collector that starts during that read is not
    seen by it (the read is of the file as it was)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(_readonly_uri(self.path), uri=True, isolation_level=None, timeout=30)
        try:
            _check_schema(self.db)
        except BaseException:
            self.db.close()
            raise


def _readonly_uri(path: str) -> str:
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    if not any(os.path.lexists(path + log) for log in ("-wal", "-journal")):
        uri += "&immutable=1"
    return uri


def _check_schema(db: sqlite3.Connection) -> None:
    columns = {name for _cid, name, *_ in db.execute("PRAGMA table_info(records)")}
    if not columns:
        raise NotAStore("not a database of oomtrace collect: it has no records table")
    missing = set(Row._fields) - columns
    if missing:
        raise NotAStore(f"not a database of oomtrace collect: its records table lacks {', '.join(sorted(missing))}")


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
