"""The collector's store: SQLite in WAL mode, one row per record, keyed by its node and id.

A record's msgpack bytes are kept as received; the columns beside them are what queries
filter on. Inserting a (node, id) that is already stored does nothing, so a resent chunk
never duplicates, and one node cannot take another's id. The columns are what the collector
trusts: a record's time outside [2000, now + 10 min] (its clock, or a lie) is stored as the
receive time and flagged; text that is not UTF-8 is stored escaped (the body keeps it as
sent); retention runs on the receive time. One Store (the writer) belongs to one thread (sqlite3's rule); readers open a
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
from typing import Any, NamedTuple, TypeVar

import msgpack

from tracer.forward.wire import Message


class Row(NamedTuple):
    """One record as stored: the columns of the records table, in their order."""

    id: str
    time: float  # the record's time, or the receive time when that is not believable (flags)
    received: float
    node: str  # "" when neither the record nor its connection names one
    type: str | None
    cgroup: str | None
    memcg: str | None
    tag: str
    flags: int  # TIME_CLAMPED
    namespace: str | None  # the workload, from the record's pod/container identity (its memcg's if none)
    pod: str | None
    container: str | None
    image: str | None
    body: bytes  # msgpack of [time, record], as received


TIME_CLAMPED = 1  # the record's own time was NaN, before 2000 or too far ahead: `time` is when it arrived
EARLIEST = 946684800.0  # 2000-01-01: no oomtrace record is older
FUTURE_SKEW = 600.0  # a clock this far ahead of the collector's is believed
TEXT_COLUMNS = ("id", "node", "type", "cgroup", "memcg", "tag", "namespace", "pod", "container", "image")


# PRAGMA user_version. 1 (0 on disk): id alone was unique, no flags; 2: no workload columns.
SCHEMA_VERSION = 3
_WORKLOAD = ("namespace", "pod", "container", "image")
_TABLE = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT NOT NULL,
    time REAL NOT NULL,
    received REAL NOT NULL,
    node TEXT NOT NULL,
    type TEXT,
    cgroup TEXT,
    memcg TEXT,
    tag TEXT NOT NULL,
    flags INTEGER NOT NULL DEFAULT 0,
    namespace TEXT,
    pod TEXT,
    container TEXT,
    image TEXT,
    body BLOB NOT NULL,
    UNIQUE(node, id)
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS records_time ON records(time);
CREATE INDEX IF NOT EXISTS records_type_time ON records(type, time);
CREATE INDEX IF NOT EXISTS records_received ON records(received);
"""
# Only a resend is ignored: OR IGNORE would also swallow a NOT NULL failure and ack a record never stored.
_INSERT = (f"INSERT INTO records({', '.join(Row._fields)}) VALUES ({', '.join('?' * len(Row._fields))})"
           " ON CONFLICT(node, id) DO NOTHING")
SYNC_MODES = ("full", "normal")


@dataclass
class Added:
    stored: int = 0
    duplicates: int = 0
    new: list[tuple[str, dict]] = field(default_factory=list)  # (node column, record): new oom_kill/forward_status


_WATCHED = ("oom_kill", "forward_status")  # records the collector's metrics look into


def rows(message: Message, received: float, peer: str = "", bound_node: str | None = None) -> list[Row]:
    """Table rows for a message's entries. A record without an id (from another producer)
    gets one from its content, so that its resends are recognised too. A record without a
    node is PEER's; with BOUND_NODE every record is that node's, whatever it says. The
    workload columns come from the record's `pod` and `container` (an OOM kill's victim),
    else its `memcg_pod` and `memcg_container` (a pod-level limit names the pod)."""
    out: list[Row] = []
    append = out.append
    tag = message.tag
    latest = received + FUTURE_SKEW
    new = tuple.__new__  # Row(...) would run namedtuple's __new__ in Python: ~0.1 µs a row more
    for stamp, rec, raw in message.entries:  # hot: plain type checks, one call (workload, ~0.1 µs)
        rid, node, kind = rec.get("id"), rec.get("node"), rec.get("type")
        cgroup, memcg = rec.get("cgroup"), rec.get("memcg")
        if type(rid) is not str:
            rid = _content_id(tag, stamp, raw)
        flags = 0
        if not EARLIEST <= stamp <= latest:  # NaN fails this too; an int past 2^63 cannot be bound
            stamp, flags = received, TIME_CLAMPED
        append(new(Row, (rid, stamp, received,
                         bound_node if bound_node is not None else node if type(node) is str else peer,
                         kind if type(kind) is str else None, cgroup if type(cgroup) is str else None,
                         memcg if type(memcg) is str else None, tag, flags, *workload(rec), raw)))
    return out


_NO_WORKLOAD = (None, None, None, None)


def workload(record: dict) -> tuple[str | None, ...]:
    """(namespace, pod, container, image) of a record: its `pod` and `container` (an OOM kill's
    victim), else its `memcg_pod` and `memcg_container`; what is not a string is None."""
    pod, container = record.get("pod") or record.get("memcg_pod"), record.get("container") or record.get(
        "memcg_container")
    return _workload(pod, container) if pod or container else _NO_WORKLOAD


def _workload(pod: object, container: object) -> tuple[str | None, ...]:
    pod = pod if isinstance(pod, dict) else {}
    container = container if isinstance(container, dict) else {}
    values = (pod.get("namespace"), pod.get("name"), pod.get("container") or container.get("name"),
              container.get("image"))
    return tuple(v if isinstance(v, str) else None for v in values)


def text(value: str) -> str:
    """VALUE as valid UTF-8 text: the bytes that were not (surrogate escapes) as \\xNN, any other
    lone surrogate as \\uNNNN. What SQLite and a metrics label can hold; the body keeps the bytes."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return "".join(_char(c) for c in value)


def _char(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if 0xD800 <= code <= 0xDFFF else c


def storable(row: Row) -> Row:
    """ROW with every text column valid UTF-8 (see text())."""
    fixed: dict[str, Any] = {name: text(value) for name in TEXT_COLUMNS
                             if isinstance(value := getattr(row, name), str)}
    return row._replace(**fixed)


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

    _flags = "flags"  # a reader of a version 1 store has "0" here
    missing: tuple[str, ...] = ()  # workload columns a reader's older store lacks

    def query(self, q: Query) -> Iterator[dict]:
        """Records matching Q, oldest first (the newest LIMIT of them when a limit is set). A
        record whose time was not believed has the receive time as `time`, what it said as
        `time_sent`, and `time_clamped: true`."""
        asked = [name for name in self.missing if getattr(q, name) is not None]
        if asked:
            raise NotAStore(f"this store was written before oomtrace kept workloads: it has no {', '.join(asked)}")
        where, args = q.where()
        sql = f"SELECT node, tag, time, {self._flags}, body FROM records{where} ORDER BY time DESC, rowid DESC"
        if q.limit is not None:
            sql += f" LIMIT {int(q.limit)}"
        found = self.db.execute(sql, args).fetchall()
        for node, tag, stamp, flags, body in reversed(found):
            record = _record(body)
            if node:
                record.setdefault("node", node)
            record.setdefault("tag", tag)
            if flags & TIME_CLAMPED:
                record["time_sent"] = record.get("time")
                record["time"] = stamp
                record["time_clamped"] = True
            yield record

    def record(self, rid: str, kind: str | None = None) -> dict | None:
        """The record with id RID (of type KIND), as query() gives it; None when there is none.
        The id is a column; the record is read back from its node's rows at its time."""
        sql = "SELECT node, time, type FROM records WHERE id = ?" + (" AND type = ?" if kind else "")
        row = self.db.execute(sql + " ORDER BY time LIMIT 1", (rid, kind) if kind else (rid,)).fetchone()
        if row is None:
            return None
        node, stamp, found = row
        return next((r for r in self.query(Query(types=(found,), node=node, since=stamp, until=stamp + 1e-3))
                     if r.get("id") == rid), None)

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
            self._schema()
        except BaseException:
            self.db.close()
            raise

    def _schema(self) -> None:
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise NotAStore(f"written by a newer oomtrace (store version {version}; this one knows {SCHEMA_VERSION})")
        columns = _columns(self.db)
        old = bool(columns) and "flags" not in columns
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for name in _WORKLOAD if columns and not old else ():  # version 2: the workload columns added
                if name not in columns:
                    self.db.execute(f"ALTER TABLE records ADD COLUMN {name} TEXT")
            if old:  # a version 1 store: ids were unique across nodes; copied once into the new table
                _check_schema(self.db, _V1_COLUMNS)
                for statement in ("DROP INDEX IF EXISTS records_time", "DROP INDEX IF EXISTS records_type_time",
                                  "ALTER TABLE records RENAME TO records_v1"):  # executescript would commit
                    self.db.execute(statement)
            self.db.execute(_TABLE)
            if old:
                self.db.execute("INSERT INTO records(id, time, received, node, type, cgroup, memcg, tag, body) "
                                "SELECT id, time, received, coalesce(node, ''), type, cgroup, memcg, tag, body "
                                "FROM records_v1")
                self.db.execute("DROP TABLE records_v1")
            for statement in filter(str.strip, _INDEXES.split(";")):
                self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        _check_schema(self.db)

    def _rollback(self) -> None:
        if self.db.in_transaction:  # SQLite has already rolled back after e.g. SQLITE_FULL
            self.db.execute("ROLLBACK")

    def add(self, batch: list[Row]) -> Added:
        """Insert in one transaction; committed when this returns. Text that SQLite cannot take
        (not UTF-8) is escaped first (the rare path: tried only when the plain insert fails)."""
        try:
            return self._add(batch)
        except UnicodeEncodeError:
            return self._add([storable(row) for row in batch])

    def _add(self, batch: list[Row]) -> Added:
        result = Added()
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            watched = [row for row in batch if row.type in _WATCHED]
            if watched:  # which of these are new: asked once per batch, not row by row
                stored = self._existing([(row.node, row.id) for row in watched])
                for row in watched:
                    if (row.node, row.id) not in stored:
                        stored.add((row.node, row.id))
                        result.new.append((row.node, _record(row.body)))
            self.db.executemany(_INSERT, map(tuple, batch))  # sqlite3 binds a plain tuple's items faster
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        result.stored = self.db.total_changes - before
        result.duplicates = len(batch) - result.stored
        return result

    def _existing(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (node, id) pairs are stored, asked node by node: the unique index leads with node."""
        by_node: dict[str, list[str]] = {}
        for node, rid in keys:
            by_node.setdefault(node, []).append(rid)
        found: set[tuple[str, str]] = set()
        for node, ids in by_node.items():
            for i in range(0, len(ids), 500):  # SQLite's limit on bound variables
                part = ids[i:i + 500]
                found.update(self.db.execute(
                    f"SELECT node, id FROM records WHERE node = ? AND id IN ({','.join('?' * len(part))})",
                    (node, *part)))
        return found

    def expire(self, retention: Retention, now: float | None = None) -> int:
        """Delete what arrived longer ago than its type's retention (by the receive time: a
        record's own time is the sender's word); returns how many rows went."""
        now = time.time() if now is None else now
        before = self.db.total_changes
        for kind, age in retention.per_type.items():
            self.db.execute("DELETE FROM records WHERE type = ? AND received < ?", (kind, now - age))
        if retention.default is not None:
            others = ",".join("?" * len(retention.per_type))
            self.db.execute(f"DELETE FROM records WHERE received < ? AND coalesce(type, '') NOT IN ({others})",
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
            columns = _columns(self.db)
            if "flags" not in columns:  # version 1: nothing was clamped
                self._flags = "0"
            _check_schema(self.db, tuple(name for name in Row._fields if name in _V1_COLUMNS or name in columns))
            self.missing = tuple(name for name in _WORKLOAD if name not in columns)
        except BaseException:
            self.db.close()
            raise


def _readonly_uri(path: str) -> str:
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    if not any(os.path.lexists(path + log) for log in ("-wal", "-journal")):
        uri += "&immutable=1"
    return uri


_V1_COLUMNS = ("id", "time", "received", "node", "type", "cgroup", "memcg", "tag", "body")


def _columns(db: sqlite3.Connection) -> set[str]:
    return {name for _cid, name, *_ in db.execute("PRAGMA table_info(records)")}


def _check_schema(db: sqlite3.Connection, fields: tuple[str, ...] = Row._fields) -> None:
    columns = _columns(db)
    if not columns:
        raise NotAStore("not a database of oomtrace collect: it has no records table")
    missing = set(fields) - columns
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
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    image: str | None = None
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
        for column in ("node", *_WORKLOAD):
            value = getattr(self, column)
            if value is not None:
                terms.append(f"{column} = ?")
                args.append(value)
        return (" WHERE " + " AND ".join(terms) if terms else ""), args
