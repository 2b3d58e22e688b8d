"""Where records go: a terminal (text), JSON lines, or a msgpack stream."""

from __future__ import annotations

import json
import select
import time
from typing import IO, Protocol

import msgpack

FORMATS = ("text", "json", "msgpack")
_TEXT_SKIP = {"type", "time", "ktime_ns", "id", "node"}


class Sink(Protocol):
    def write(self, record: dict) -> None: ...
    def flush(self) -> None: ...
    def alive(self) -> bool: ...


def reader_alive(stream: IO) -> bool:
    """False once the reading end of a pipe has gone away (a pipe's writer then sees POLLERR)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
    return not any(ev & select.POLLERR for _, ev in poller.poll(0))


class _StreamSink:
    def __init__(self, stream: IO) -> None:
        self.stream = stream

    def flush(self) -> None:
        self.stream.flush()

    def alive(self) -> bool:
        return reader_alive(self.stream)


class JsonSink(_StreamSink):
    def write(self, record: dict) -> None:
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")


class MsgpackSink(_StreamSink):
    """One msgpack map per record, back to back: msgpack.Unpacker reads the stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(stream)
        self._packer = msgpack.Packer()

    def write(self, record: dict) -> None:
        self.stream.write(self._packer.pack(record))


class TextSink(_StreamSink):
    """One readable line per record: time, type, then key=value for what is set."""

    def write(self, record: dict) -> None:
        self.stream.write(format_text(record) + "\n")


def format_text(record: dict) -> str:
    stamp = record.get("time")
    when = (time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}"
            if isinstance(stamp, (int, float)) else "--:--:--.---")
    fields = " ".join(f"{k}={text_value(v)}" for k, v in record.items()
                      if k not in _TEXT_SKIP and v is not None)
    return f"{when} {record.get('type', '?'):<15} {fields}"


def text_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def make_sink(fmt: str, text_stream: IO[str], binary_stream: IO[bytes]) -> Sink:
    if fmt == "json":
        return JsonSink(text_stream)
    if fmt == "msgpack":
        return MsgpackSink(binary_stream)
    if fmt == "text":
        return TextSink(text_stream)
    raise ValueError(f"unknown output format {fmt!r}; one of {', '.join(FORMATS)}")


class TeeSink:
    """The same records to several sinks (stdout and a collector)."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def write(self, record: dict) -> None:
        for sink in self.sinks:
            sink.write(record)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def alive(self) -> bool:
        return all(sink.alive() for sink in self.sinks)
