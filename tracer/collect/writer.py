"""The store's only thread: decodes frames, commits them in groups, expires old records.

Whatever fails, the thread goes on and every submitted future is answered. A store error
(a full disk) fails that round's futures, so nothing is acked and the agents resend; the
next round tries again, so the collector acks again as soon as space is back. A frame that
cannot be decoded, or whose rows the store refuses, fails its own future alone: the other
frames of the round are committed and acked.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from typing import Callable, NamedTuple, Union

from tracer.collect import store
from tracer.collect.limits import LogLimiter
from tracer.collect.metrics import Metrics
from tracer.forward import wire

log = logging.getLogger("oomtrace.collect")

_Work = Union[list[store.Row], Callable[[], tuple[list[store.Row], object]]]


class _Job(NamedTuple):
    work: _Work  # rows, or a callable that decodes them in the writer's thread
    future: concurrent.futures.Future


class _Ready(NamedTuple):
    rows: list[store.Row]
    future: concurrent.futures.Future
    result: object  # the future's result once the rows are committed


class Writer:
    """submit() returns a future that is done once the rows are committed."""

    def __init__(self, path, synchronous: str, retention: store.Retention, metrics: Metrics,
                 batch_rows: int = 50_000, expire_interval: float = 60.0) -> None:
        self.metrics = metrics
        self.retention = retention
        self.batch_rows = batch_rows  # at most this many rows in one transaction
        self.expire_interval = expire_interval
        self._log = LogLimiter(log)  # a full disk fails every round until it is freed
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()  # no job is queued behind the stop
        self._closed = False
        self._ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(path, synchronous), name="oomtrace-store",
                                        daemon=True)
        self._thread.start()
        self._ready.result()  # the database opened, or its error raised here

    def submit(self, rows: _Work) -> concurrent.futures.Future:
        """Store ROWS, or what a callable decodes in this thread (then the future's result is the
        callable's second value: the chunk to ack). Decoding here, beside the inserts, keeps the
        event loop's thread and this one from trading the GIL back and forth for every frame.
        RuntimeError once the writer is closed."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the collector's writer is closed")
            self._queue.put(_Job(rows, future))
        return future

    def close(self) -> None:
        """Commit what was submitted, close the database and end the thread. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join()

    def _run(self, path, synchronous: str) -> None:
        try:
            db = store.Store(path, synchronous)
        except Exception as e:  # noqa: BLE001 - handed to the opener
            self._ready.set_exception(e)
            return
        self._ready.set_result(None)
        next_expire = 0.0
        try:
            while (batch := self._next_batch(next_expire - time.monotonic())) is not None:
                if batch:
                    self._commit(db, batch)
                del batch  # its frames, while the next get() waits: a big one would stay in memory
                if time.monotonic() >= next_expire:  # idle or busy: retention keeps its pace
                    self._expire(db)
                    next_expire = time.monotonic() + self.expire_interval
        finally:
            db.close()

    def _next_batch(self, wait: float) -> list[_Job] | None:
        """The jobs waiting, up to batch_rows rows, after at most WAIT seconds (then maybe
        none); None once closed and drained."""
        try:
            item = self._queue.get(timeout=max(wait, 0.0))
        except queue.Empty:
            return []
        if item is None:
            return None
        batch = [item]
        size = _size(item.work)
        while size < self.batch_rows:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # finish this round first
                break
            batch.append(item)
            size += _size(item.work)
        return batch

    def _commit(self, db: store.Store, batch: list[_Job]) -> None:
        ready = [r for job in batch if (r := _decode(job)) is not None]
        try:
            self._add(db, ready)
        except Exception as e:  # a waiter must never be left without an answer
            log.exception("store: unexpected error")
            for item in ready:
                if not item.future.done():
                    item.future.set_exception(e)

    def _add(self, db: store.Store, ready: list[_Ready]) -> None:
        try:
            added = db.add([row for item in ready for row in item.rows])
        except sqlite3.OperationalError as e:  # the store itself (full disk, I/O): nothing acked, all resent
            self.metrics.store_errors.inc()
            self._log(logging.ERROR, "store", "store: %s; nothing in this round is acked", e)
            for item in ready:
                item.future.set_exception(e)
            return
        except Exception:  # some frame's rows: find it, keep the others
            if len(ready) == 1:
                raise
            for item in ready:
                self._commit_one(db, item)
            return
        self.metrics.count_added(added)
        for item in ready:
            item.future.set_result(item.result)

    def _commit_one(self, db: store.Store, item: _Ready) -> None:
        try:
            self._add(db, [item])
        except Exception as e:  # noqa: BLE001 - this frame's connection closes with the reason
            item.future.set_exception(wire.WireError(f"cannot store the frame: {type(e).__name__}: {e}"))

    def _expire(self, db: store.Store) -> None:
        try:
            self.metrics.expired.inc(db.expire(self.retention))
        except sqlite3.Error as e:  # a full disk can refuse even a delete; the next pass tries again
            self.metrics.store_errors.inc()
            self._log(logging.ERROR, "expire", "store: retention pass: %s", e)


def _decode(job: _Job) -> _Ready | None:
    work, future = job
    if not callable(work):
        return _Ready(work, future, None)
    try:
        rows, result = work()
    except Exception as e:  # noqa: BLE001 - that frame's connection closes; the rest go on
        error = e if isinstance(e, wire.WireError) else wire.WireError(
            f"cannot decode the frame: {type(e).__name__}: {e}")
        error.__context__ = None  # its traceback, or the one it replaced, would keep the frame alive
        future.set_exception(error.with_traceback(None))
        return None
    return _Ready(rows, future, result)


def _size(work: _Work) -> int:
    return 1000 if callable(work) else len(work)  # a frame's rows are counted once decoded
