"""The agent's on-disk spool: chunks the collector has not acked yet, one file each.

A chunk is written whole (temporary file, fsync, rename), so a crash leaves either the whole
chunk or nothing, and the spool survives an agent restart. It is bounded by bytes: the
oldest chunks make room for new ones, and what they held is counted as dropped. A full disk
is the same bound reached early: the oldest chunks are dropped until the new one fits, and a
chunk that cannot be written at all is dropped and counted; put() never raises.

Only files named like the chunks it writes (NNNNNNNNNNNNNNNN-COUNT.fwd, regular files) are
the spool's; anything else in the directory is left alone. A chunk file that cannot be read
back as a frame is deleted, logged and counted as dropped. The count of dropped records
survives restarts in a small state file beside the chunks (STATE_NAME, written atomically).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tracer.errors import OomtraceError

log = logging.getLogger("oomtrace.forward")

_SUFFIX = ".fwd"
_CHUNK_NAME = re.compile(r"[0-9a-f]{16}-[0-9]{1,12}" + re.escape(_SUFFIX))
_TMP_NAME = re.compile(r"[0-9a-f]{16}-[0-9]{1,12}\.tmp")  # a chunk being written
STATE_NAME = "state.json"  # {"dropped_total": N}
_STATE_TMP = STATE_NAME + ".tmp"
_FULL = (errno.ENOSPC, errno.EDQUOT)
STATE_SAVE_INTERVAL = 1.0  # seconds: drops are written to the state file at most this often (and at close)


class SpoolError(OomtraceError):
    """The spool directory cannot be used: it cannot be made, listed or written."""


@dataclass(frozen=True)
class Chunk:
    id: str  # the Forward protocol's chunk option: what the collector acks
    frame: bytes  # one PackedForward frame, sent as is
    count: int  # records in it
    name: str | None = None  # its spool file, once spooled


class Put(NamedTuple):
    stored: bool  # False: the chunk could not be written and was dropped (counted)
    lost: int  # records dropped by this put: older chunks that made room, and the chunk itself if not stored


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped = 0  # records dropped (full spool or disk, unreadable files), across restarts
        self.bad_files = 0  # chunk files that could not be read back, since this start
        self.last_error = ""  # why the last chunk could not be written, if one could not
        self._lock = threading.Lock()
        self._dirty = False  # self.dropped not yet in the state file
        self._saved_at = 0.0
        _usable_directory(directory)
        self._files: dict[str, int] = {}
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        taken = [e.name for e in entries if _CHUNK_NAME.fullmatch(e.name) or _TMP_NAME.fullmatch(e.name)]
        for entry in entries:
            if not _regular(entry):
                continue
            if _TMP_NAME.fullmatch(entry.name) or entry.name == _STATE_TMP:  # a write cut short by a crash
                _unlink(directory / entry.name)
            elif _CHUNK_NAME.fullmatch(entry.name):
                self._files[entry.name] = entry.stat(follow_symlinks=False).st_size
        self._next = max((int(n.split("-")[0], 16) for n in taken), default=0) + 1  # past every name in use
        self.dropped = self._load_state()

    @property
    def records(self) -> int:
        with self._lock:
            return sum(_count(name) for name in self._files)

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(self._files.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    def put(self, chunk: Chunk) -> Put:
        """Write CHUNK, dropping the oldest chunks for room (past max_bytes, or on a full disk).
        Never raises: a chunk that cannot be written is dropped and counted."""
        with self._lock:
            lost = 0
            while True:
                name = f"{self._next:016x}-{chunk.count}{_SUFFIX}"
                self._next += 1
                try:
                    self._write(name, chunk.frame)
                except OSError as e:
                    if e.errno in _FULL and self._files and self._could_fit(len(chunk.frame)):
                        lost += self._drop(next(iter(self._files)))  # the disk is full: make room, oldest first
                        continue
                    if e.errno == errno.ENOENT and self._remake():
                        continue
                    self.dropped += chunk.count
                    self._dirty = True
                    self.last_error = e.strerror or str(e)
                    log.debug("spool %s: cannot write a chunk (%s); dropped its %d records",
                              self.directory, self.last_error, chunk.count)
                    self._maybe_save()
                    return Put(False, lost + chunk.count)
                except Exception as e:  # never into the engine's thread
                    self.dropped += chunk.count
                    self._dirty = True
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.exception("spool %s: cannot write a chunk (%s); dropped its %d records",
                                  self.directory, e, chunk.count)
                    self._maybe_save()
                    return Put(False, lost + chunk.count)
                self._files[name] = len(chunk.frame)
                lost += self._trim(keep=name)
                self._maybe_save()
                return Put(True, lost)

    def _write(self, name: str, data: bytes) -> None:
        path = self.directory / name
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        try:
            _fsync_dir(self.directory)
        except OSError:  # the chunk is there; only its durability across a power cut is in doubt
            pass

    def _remake(self) -> bool:
        """The directory was removed under us: make it again (once per removal); what it held is
        gone and will be counted as dropped when it is found missing."""
        if self.directory.is_dir():
            return False
        try:
            self.directory.mkdir(parents=True, mode=0o700)
        except OSError:
            return False
        log.warning("spool directory %s was removed; made it again", self.directory)
        return True

    def _could_fit(self, size: int) -> bool:
        """Whether dropping our chunks could free room for SIZE bytes: not when the disk is full
        of other files, or the chunk is larger than the disk (then only it is dropped)."""
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return True
        return size + st.f_frsize <= st.f_bavail * st.f_frsize + sum(self._files.values())

    def oldest(self, decode_id, skip: set[str] | frozenset[str] = frozenset()) -> Chunk | None:
        """The oldest spooled chunk but those named in SKIP (in flight); DECODE_ID reads the
        chunk id out of its frame and raises if it is not a frame. A file that cannot be read,
        or is not a frame, is deleted and its records counted as dropped."""
        with self._lock:
            try:
                while True:
                    name = next((n for n in self._files if n not in skip), None)
                    if name is None:
                        return None
                    try:
                        frame = (self.directory / name).read_bytes()
                        return Chunk(decode_id(frame), frame, _count(name), name)
                    except Exception as e:  # noqa: BLE001 - unreadable or not a frame: it cannot be sent
                        self.bad_files += 1
                        lost = self._drop(name)
                        log.warning("spool %s: dropped %s (%d records): %s", self.directory, name, lost,
                                    f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            finally:
                self._maybe_save()

    def remove(self, chunk: Chunk) -> None:
        with self._lock:
            if chunk.name in self._files:
                del self._files[chunk.name]
                _unlink(self.directory / chunk.name)
            self._maybe_save()

    def save(self) -> None:
        """Write the dropped count to the state file now, if it changed (at close)."""
        with self._lock:
            self._save_state()

    def _trim(self, keep: str) -> int:
        lost = 0
        total = sum(self._files.values())
        for name in list(self._files):
            if total <= self.max_bytes or name == keep:
                break
            total -= self._files[name]
            lost += self._drop(name)
        return lost

    def _drop(self, name: str) -> int:
        """Delete chunk NAME, counting its records as dropped."""
        del self._files[name]
        _unlink(self.directory / name)
        lost = _count(name)
        self.dropped += lost
        self._dirty = True
        return lost

    # --- the state file ------------------------------------------------------------------------

    def _load_state(self) -> int:
        path = self.directory / STATE_NAME
        try:
            value = json.loads(path.read_bytes())["dropped_total"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"dropped_total is {value!r}")
            return value
        except FileNotFoundError:
            return 0
        except Exception as e:  # noqa: BLE001 - a damaged state file costs the count, not the start
            log.warning("spool %s: ignoring %s (%s); dropped_total starts at 0", self.directory, STATE_NAME, e)
            return 0

    def _maybe_save(self) -> None:
        if self._dirty and time.monotonic() - self._saved_at >= STATE_SAVE_INTERVAL:
            self._save_state()

    def _save_state(self) -> None:
        if not self._dirty:
            return
        self._saved_at = time.monotonic()
        tmp = self.directory / _STATE_TMP
        while True:
            try:
                with open(tmp, "wb") as f:
                    f.write(json.dumps({"dropped_total": self.dropped}).encode())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.directory / STATE_NAME)
            except OSError as e:
                _unlink(tmp)
                if e.errno in _FULL and self._files:  # the count matters more than the oldest chunk
                    self._drop(next(iter(self._files)))
                    continue
                log.debug("spool %s: cannot write %s (%s)", self.directory, STATE_NAME, e)
                return  # kept in memory, written at the next chance
            break
        try:
            _fsync_dir(self.directory)
        except OSError:
            pass
        self._dirty = False


def _usable_directory(directory: Path) -> None:
    """Make DIRECTORY (mode 0700) and check that chunks can be written in it; SpoolError says
    why not. A full disk is not an error here: the spool then drops chunks, counted."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise SpoolError(f"spool directory {directory}: it exists and is not a directory") from None
    except OSError as e:
        raise SpoolError(f"spool directory {directory}: cannot create it ({e.strerror or e})") from None
    if not directory.is_dir():
        raise SpoolError(f"spool directory {directory}: it exists and is not a directory")
    probe = directory / f".write-test-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        probe.unlink()
        os.scandir(directory).close()
    except OSError as e:
        if e.errno in _FULL:
            log.warning("spool directory %s: the disk is full; chunks will be dropped until there is room",
                        directory)
            return
        raise SpoolError(f"spool directory {directory}: cannot write there ({e.strerror or e})") from None


def _regular(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as e:  # e.g. a read-only remount: the file stays, the spool goes on
        log.debug("cannot remove %s (%s)", path, e)


def _count(name: str) -> int:
    return int(name[: -len(_SUFFIX)].split("-")[1])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
