"""The agent's on-disk spool: chunks the collector has not acked yet, one file each.

A chunk is written whole (temporary file, fsync, rename), so a crash leaves either the whole
chunk or nothing, and the spool survives an agent restart. It is bounded by bytes: the
oldest chunks make room for new ones, and what they held is counted as dropped.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

_SUFFIX = ".fwd"


@dataclass(frozen=True)
class Chunk:
    id: str  # the Forward protocol's chunk option: what the collector acks
    frame: bytes  # one PackedForward frame, sent as is
    count: int  # records in it
    name: str | None = None  # its spool file, once spooled


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped = 0  # records dropped to stay within max_bytes, since this start
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in directory.glob("*.tmp"):  # a write cut short by a crash
            leftover.unlink(missing_ok=True)
        self._files = {p.name: p.stat().st_size for p in sorted(directory.glob("*" + _SUFFIX))}
        self._next = max((int(n.split("-")[0], 16) for n in self._files), default=0) + 1

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

    def put(self, chunk: Chunk) -> int:
        """Write CHUNK; returns how many records older chunks lost to make room."""
        with self._lock:
            name = f"{self._next:016x}-{chunk.count}{_SUFFIX}"
            self._next += 1
            path = self.directory / name
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(chunk.frame)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.directory)
            self._files[name] = len(chunk.frame)
            return self._trim(keep=name)

    def oldest(self, decode_id, skip: set[str] | frozenset[str] = frozenset()) -> Chunk | None:
        """The oldest spooled chunk but those named in SKIP (in flight); DECODE_ID reads the
        chunk id out of its frame."""
        with self._lock:
            while True:
                name = next((n for n in self._files if n not in skip), None)
                if name is None:
                    return None
                try:
                    frame = (self.directory / name).read_bytes()
                    return Chunk(decode_id(frame), frame, _count(name), name)
                except (OSError, ValueError):  # unreadable or not a frame: it cannot be sent
                    self.dropped += _count(name)
                    self._unlink(name)

    def remove(self, chunk: Chunk) -> None:
        with self._lock:
            if chunk.name in self._files:
                self._unlink(chunk.name)

    def _trim(self, keep: str) -> int:
        lost = 0
        total = sum(self._files.values())
        for name in list(self._files):
            if total <= self.max_bytes or name == keep:
                break
            total -= self._files[name]
            lost += _count(name)
            self._unlink(name)
        self.dropped += lost
        return lost

    def _unlink(self, name: str) -> None:
        del self._files[name]
        (self.directory / name).unlink(missing_ok=True)


def _count(name: str) -> int:
    return int(name[: -len(_SUFFIX)].split("-")[1])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
