"""The Fluentd Forward protocol v1, without I/O: frames, handshake, acks.

Spec: https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1
Both ends of oomtrace speak it (forwarder.py sends, collector.py receives), and so do Fluentd,
Fluent Bit and the fluent-logger clients, so any of them can sit on either end.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import msgpack

from tracer import defaults

EVENT_TIME = 0  # msgpack ext type of EventTime: big-endian u32 seconds, u32 nanoseconds
DEFAULT_MAX_FRAME = 16 << 20
_TEXT = "surrogateescape"  # invalid UTF-8 survives a decode/encode round trip unchanged


class WireError(ValueError):
    """A frame that is not a valid Forward message: its connection is closed with this reason."""


class AuthError(WireError):
    """The shared-key handshake failed."""


class Entry(NamedTuple):
    time: float
    record: dict
    raw: bytes  # msgpack of [time, record] as received: stored as is, never re-encoded


@dataclass(frozen=True)
class Message:
    tag: str
    entries: list[Entry]
    chunk: str | None  # set when the sender wants an ack


# --- encoding (the sending side) ---------------------------------------------------------

def event_time(seconds: float) -> msgpack.ExtType:
    whole = int(seconds)
    return msgpack.ExtType(EVENT_TIME, struct.pack(">II", whole, int(round((seconds - whole) * 1e9)) % 10**9))


def new_chunk_id() -> str:
    return base64.b64encode(os.urandom(16)).decode()


class FrameEncoder:
    """Records → PackedForward frames: [tag, entries as bin, {"chunk": id, "size": n}]."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(unicode_errors=_TEXT)

    def entry(self, record: dict) -> bytes:
        stamp = record.get("time")
        return self._packer.pack([event_time(stamp if isinstance(stamp, (int, float)) else 0.0), record])

    def frame(self, tag: str, entries: Iterable[bytes], chunk: str, count: int) -> bytes:
        return self._packer.pack([tag, b"".join(entries), {"chunk": chunk, "size": count}])


def ack(chunk: str) -> bytes:
    return msgpack.packb({"ack": chunk}, unicode_errors=_TEXT)  # the chunk id's bytes as they came


# --- decoding (the receiving side) -------------------------------------------------------

def _ext(code: int, data: bytes) -> object:
    if code == EVENT_TIME and len(data) == 8:
        sec, nsec = struct.unpack(">II", data)
        return sec + nsec / 1e9
    return msgpack.ExtType(code, data)


def unpacker(max_frame: int = DEFAULT_MAX_FRAME) -> msgpack.Unpacker:
    """A streaming reader of frames; a frame larger than MAX_FRAME raises msgpack's BufferFull.
    Arrays come as tuples: every empty one is the same object, so a frame of 8 million `[]`
    costs 64 MB of pointers, not the 600 MB that as many lists took."""
    return msgpack.Unpacker(raw=False, ext_hook=_ext, max_buffer_size=max_frame, use_list=False,
                            unicode_errors=_TEXT, strict_map_key=False)


def frames(up: msgpack.Unpacker) -> Iterator[object]:
    """The complete frames buffered in UP; bytes that are not msgpack raise WireError."""
    while True:
        try:
            frame = next(up)
        except StopIteration:
            return
        except (ValueError, TypeError, msgpack.UnpackException) as e:  # e.g. FormatError, a map as a key
            raise WireError(f"not msgpack ({str(e) or type(e).__name__})") from None
        yield frame


def decode(frame: object, max_frame: int = DEFAULT_MAX_FRAME) -> Message:
    """One unpacked frame in any of the four modes → its entries; WireError says what is wrong."""
    if not isinstance(frame, (list, tuple)) or len(frame) < 2:
        raise WireError(f"a frame must be an array [tag, ...], got {_kind(frame)}")
    tag, body = frame[0], frame[1]
    if not isinstance(tag, str):
        raise WireError(f"tag must be a string, got {_kind(tag)}")
    if isinstance(body, (int, float)):  # Message: [tag, time, record, option?]
        option = _option(frame, 3)
        entries = [_entry(body, frame[2] if len(frame) > 2 else None, None, 0)]
    elif isinstance(body, (list, tuple)):  # Forward: [tag, [[time, record], ...], option?]
        option = _option(frame, 2)
        entries = [_entry(*_pair(e, i), None, i) for i, e in enumerate(body)]
    elif isinstance(body, (bytes, str)):  # (Compressed)PackedForward: [tag, bin, option?]
        option = _option(frame, 2)
        data = body.encode("utf-8", _TEXT) if isinstance(body, str) else body
        if option.get("compressed") == "gzip":
            data = _gunzip(data, 4 * max_frame)
        elif option.get("compressed") not in (None, "text"):
            raise WireError(f"unknown compression {option['compressed']!r}")
        entries = _packed(data)
    else:
        raise WireError(f"second element must be time, entries or bin, got {_kind(body)}")
    chunk = option.get("chunk")
    if chunk is not None and not isinstance(chunk, str):
        raise WireError(f"chunk option must be a string, got {_kind(chunk)}")
    return Message(tag, entries, chunk)


def _option(frame, index: int) -> dict:
    if len(frame) <= index:
        return {}
    option = frame[index]
    if option is None:
        return {}
    if not isinstance(option, dict):
        raise WireError(f"option must be a map, got {_kind(option)}")
    return option


def _pair(entry: object, index: int) -> tuple[object, object]:
    if not isinstance(entry, (list, tuple)) or len(entry) < 2:
        raise WireError(f"entry {index} must be [time, record], got {_kind(entry)}")
    return entry[0], entry[1]


_PACKER = msgpack.Packer(unicode_errors=_TEXT)


def _entry(stamp: object, record: object, raw: bytes | None, index: int) -> Entry:
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise WireError(f"entry {index}: time must be an integer or EventTime, got {_kind(stamp)}")
    if not isinstance(record, dict):
        raise WireError(f"entry {index}: record must be a map, got {_kind(record)}")
    return Entry(stamp, record, raw if raw is not None else _PACKER.pack([stamp, record]))


def _packed(data: bytes) -> list[Entry]:
    """Entries of a PackedForward body, each [time, record] pair's bytes kept as they arrived."""
    up = msgpack.Unpacker(raw=False, ext_hook=_ext, unicode_errors=_TEXT, strict_map_key=False,
                          max_buffer_size=max(len(data), 1))
    up.feed(data)
    entries: list[Entry] = []
    start = 0
    try:
        for pair in up:  # the hot loop of the collector: one C-level unpack per entry
            end = up.tell()
            if type(pair) is not list or len(pair) < 2:
                raise WireError(f"entry {len(entries)} must be [time, record], got {_kind(pair)}")
            stamp, record = pair[0], pair[1]
            if type(record) is not dict or type(stamp) not in (float, int):
                _entry(stamp, record, None, len(entries))  # raises with the reason
            entries.append(Entry(stamp, record, data[start:end]))
            start = end
    except WireError:
        raise
    except (ValueError, TypeError) as e:  # msgpack's FormatError/StackError are ValueErrors
        raise WireError(f"entry {len(entries)} is not msgpack: {e}") from None
    if start != len(data):
        raise WireError(f"entries end inside entry {len(entries)} ({len(data) - start} bytes left)")
    return entries


def _gunzip(data: bytes, limit: int) -> bytes:
    """All gzip members, concatenated (the spec allows several), at most LIMIT bytes."""
    out = []
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            piece = inflater.decompress(data, limit - size + 1)
        except zlib.error as e:
            raise WireError(f"bad gzip data: {e}") from None
        size += len(piece)
        if size > limit or inflater.unconsumed_tail:
            raise WireError(f"decompressed entries exceed {limit} bytes")
        if not inflater.eof:
            raise WireError("gzip data ends early")
        out.append(piece)
        data = inflater.unused_data
    return b"".join(out)


_KINDS = {"tuple": "array", "list": "array", "dict": "map", "str": "string", "bytes": "bin", "NoneType": "nil"}


def _kind(value: object) -> str:
    """VALUE's msgpack type, for the message that says what was wrong."""
    name = type(value).__name__
    return _KINDS.get(name, name)


# --- the shared-key handshake --------------------------------------------------------------

def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", _TEXT)
    raise AuthError(f"expected a string, got {_kind(value)}")


def digest(salt: bytes, hostname: str, nonce: bytes, shared_key: str) -> str:
    return hashlib.sha512(salt + hostname.encode() + nonce + shared_key.encode()).hexdigest()


def helo(nonce: bytes, keepalive: bool = True) -> bytes:
    return msgpack.packb(["HELO", {"nonce": nonce, "auth": b"", "keepalive": keepalive}])


def read_helo(frame: object) -> bytes:
    """The server's nonce. User/password auth (a non-empty "auth" salt) is not supported."""
    if not (isinstance(frame, (list, tuple)) and len(frame) == 2 and frame[0] == "HELO"
            and isinstance(frame[1], dict)):
        raise AuthError(f"expected HELO, got {_kind(frame)}")
    if frame[1].get("auth"):
        raise AuthError("the server asks for a username and password, which oomtrace does not send")
    return _bytes(frame[1].get("nonce", b""))


def ping(hostname: str, shared_key: str, nonce: bytes, salt: bytes) -> bytes:
    return msgpack.packb(["PING", hostname, salt, digest(salt, hostname, nonce, shared_key), "", ""])


def read_ping(frame: object, nonce: bytes, shared_key: str) -> tuple[str, bytes]:
    """The client's hostname and salt, once its digest proves it knows the shared key."""
    if not (isinstance(frame, (list, tuple)) and len(frame) >= 4 and frame[0] == "PING"):
        raise AuthError(f"expected PING, got {_kind(frame)}")
    hostname, salt, their = frame[1], _bytes(frame[2]), frame[3]
    if not isinstance(hostname, str):
        raise AuthError("PING hostname must be a string")
    if their != digest(salt, hostname, nonce, shared_key):
        raise AuthError(f"shared key mismatch from {hostname!r}")
    return hostname, salt


def pong(ok: bool, reason: str, hostname: str, salt: bytes, nonce: bytes, shared_key: str) -> bytes:
    return msgpack.packb(["PONG", ok, reason, hostname, digest(salt, hostname, nonce, shared_key) if ok else ""])


def read_pong(frame: object, salt: bytes, nonce: bytes, shared_key: str) -> str:
    """The server's hostname, once its digest proves it knows the shared key too."""
    if not (isinstance(frame, (list, tuple)) and len(frame) >= 5 and frame[0] == "PONG"):
        raise AuthError(f"expected PONG, got {_kind(frame)}")
    _, ok, reason, hostname, theirs = frame[:5]
    if not ok:
        raise AuthError(f"the server refused the handshake: {reason}")
    if not isinstance(hostname, str) or theirs != digest(salt, hostname, nonce, shared_key):
        raise AuthError("the server's PONG digest does not match the shared key")
    return hostname


# --- addresses ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    """tcp://HOST:PORT, unix:PATH (or unix:///PATH), or - for stdin."""

    kind: str  # "tcp", "unix" or "stdin"
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str, default_port: int = defaults.FORWARD_PORT) -> Address:
        if text == "-":
            return cls("stdin")
        if text.startswith("unix:"):
            path = text[5:]
            path = path[2:] if path.startswith("///") else path
            if not path:
                raise ValueError(f"{text!r}: unix: needs a path")
            return cls("unix", path=path)
        rest = text[6:] if text.startswith("tcp://") else text
        if "://" in rest:
            raise ValueError(f"{text!r}: use tcp://HOST:PORT, unix:PATH or -")
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, str(default_port)
        host = host.strip("[]")  # [::1]:24224
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{text!r}: use tcp://HOST:PORT, unix:PATH or -")
        return cls("tcp", host=host, port=int(port))

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        return f"unix:{self.path}" if self.kind == "unix" else "-"
