"""`oomtrace collect --listen -`: the records of an `oomtrace run -o msgpack` stream on stdin,
into the same writer as the sockets. The same rules hold for each record (see store.rows);
a garbled byte ends the stream after everything before it is stored."""

from __future__ import annotations

import logging
import os
import select
import time
from typing import BinaryIO

import msgpack

from tracer.collect import store
from tracer.collect.limits import LogLimiter
from tracer.collect.metrics import Metrics
from tracer.collect.writer import Writer
from tracer.forward import wire

log = logging.getLogger("oomtrace.collect")


class IngestError(Exception):
    """A record stream that stopped being msgpack."""


def ingest(stream: BinaryIO, writer: Writer, metrics: Metrics, warn: LogLimiter, max_frame: int,
           flush_seconds: float = 0.2, batch: int = 5000) -> int:
    """Store STREAM's records until EOF, in batches of up to BATCH or whatever arrived within
    FLUSH_SECONDS; returns how many arrived. IngestError says where a stream went wrong."""
    fd = stream.fileno()
    up = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                          max_buffer_size=max_frame)
    rows: list[store.Row] = []
    total = skipped = 0
    offset = fed = 0
    eof = False
    while not eof:
        ready, _, _ = select.select([fd], [], [], flush_seconds)
        if ready:
            data = os.read(fd, 1 << 16)
            eof = not data
            fed += len(data)
            try:
                up.feed(data)
                for record in up:
                    start, offset = offset, up.tell()
                    if not isinstance(record, dict):
                        skipped += 1
                        warn(logging.WARNING, "stdin", "stdin: byte %d: a %s, not a record map; skipped",
                             start, type(record).__name__)
                        continue
                    rows.append(_row(record))
            except (ValueError, TypeError, msgpack.UnpackException) as e:
                _store(writer, metrics, rows)
                raise IngestError(f"stdin: byte {offset} is not msgpack ({e}); "
                                  f"{total + len(rows)} records before it are stored") from None
        if rows and (not ready or eof or len(rows) >= batch):
            total += _store(writer, metrics, rows)
            rows = []
    if skipped:
        log.warning("stdin: %d objects were not record maps", skipped)
    if fed != offset:
        raise IngestError(f"stdin ended inside a record ({fed - offset} bytes after byte {offset}); "
                          f"the {total} records before it are stored")
    return total


def _store(writer: Writer, metrics: Metrics, rows: list[store.Row]) -> int:
    if rows:
        def counted() -> tuple[list[store.Row], None]:  # metrics are the writer thread's
            metrics.count_received(rows)
            return rows, None

        writer.submit(counted).result()
    return len(rows)


def _row(record: dict) -> store.Row:
    stamp = record.get("time")
    stamp = stamp if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else time.time()
    body = msgpack.packb([stamp, record], unicode_errors="surrogateescape")
    message = wire.Message(f"oomtrace.{record.get('type', 'record')}", [wire.Entry(stamp, record, body)], None)
    (row,) = store.rows(message, time.time())
    return row
