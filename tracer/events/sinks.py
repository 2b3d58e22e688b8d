"""Where records go: a terminal (text), JSON lines, or a msgpack stream."""

from __future__ import annotations

import json
import os
import re
import select
import time
from collections.abc import Callable
from typing import IO, Protocol

import msgpack

from tracer.events.records import IDENTITY_FIELDS, RecordFilter

FORMATS = ("text", "json", "msgpack")
_TEXT_SKIP = {"type", "time", "ktime_ns", "id", "node"}
_REPORT_BULK = {"curves", "processes"}  # an oom_report's arrays
# What a terminal would act on rather than show: C0 and C1 controls, DEL, and the Unicode
# line separators and bidirectional overrides that reorder what follows them.
# Lone surrogates (a name os read with surrogate escapes) show as the bytes they stand for.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


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
    """A stream of encoded records. When its reader goes away (`oomtrace run | head`) it stops
    quietly: alive() turns false, later records are dropped, and the stream's descriptor is
    pointed at /dev/null so that flushing what is still buffered cannot fail again at exit."""

    def __init__(self, stream: IO) -> None:
        self.stream = stream
        self._gone = False

    def encode(self, record: dict) -> str | bytes:
        raise NotImplementedError

    def write(self, record: dict) -> None:
        if not self._gone:
            self._guard(self.stream.write, self.encode(record))

    def flush(self) -> None:
        if not self._gone:
            self._guard(self.stream.flush)

    def alive(self) -> bool:
        return not self._gone and reader_alive(self.stream)

    def _guard(self, op: Callable[..., object], *args: object) -> None:
        try:
            op(*args)
        except BrokenPipeError:
            self._gone = True
            _discard(self.stream)


def _discard(stream: IO) -> None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


class JsonSink(_StreamSink):
    def encode(self, record: dict) -> str:
        return json.dumps(record, separators=(",", ":")) + "\n"


class MsgpackSink(_StreamSink):
    """One msgpack map per record, back to back: msgpack.Unpacker reads the stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(stream)
        self._packer = msgpack.Packer()

    def encode(self, record: dict) -> bytes:
        return self._packer.pack(record)


class TextSink(_StreamSink):
    """One readable line per record: time, type, then key=value for what is set."""

    def encode(self, record: dict) -> str:
        return format_text(record) + "\n"


def format_text(record: dict) -> str:
    """Time, type, then key=value for what is set. An oom_kill leads with a sentence as kubelet's
    events read ("OOMKilled prod/api-5f container api (image …): pid 4201 python3, memcg limit
    64 MiB"); identity maps show as names (container=api pod=prod/api-5f), JSON keeps them whole."""
    stamp = record.get("time")
    when = (time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}"
            if isinstance(stamp, (int, float)) else "--:--:--.---")
    kind = record.get("type", "?")
    identity = IDENTITY_FIELDS.get(kind, ())
    head, skip = "", _TEXT_SKIP
    if kind == "oom_kill":
        head, skip = oom_sentence(record) + " | ", _TEXT_SKIP | set(identity)
    elif kind == "oom_report":  # its verdict, not thousands of samples: oomtrace report shows them
        from tracer.postmortem.analysis import analyse

        head, skip = analyse(record).verdict + " | ", _TEXT_SKIP | set(identity) | _REPORT_BULK
    fields = " ".join(f"{k}={_identity_text(v) if k in identity else _text_value(v)}" for k, v in record.items()
                      if k not in skip and v is not None)
    return printable(f"{when} {kind:<15} {head}{fields}")  # one pass over the line


def oom_sentence(record: dict) -> str:
    """An oom_kill as kubelet says it: `OOMKilled NAMESPACE/POD container NAME (image IMAGE): pid
    PID COMM, memcg limit N MiB`, or `System OOM encountered, victim process: COMM, pid: PID`."""
    pid, comm = record.get("pid"), record.get("comm")
    # context "none": no constraint was read, so "global" is not known to be true
    if record.get("constraint") == "global" and not record.get("memcg") and record.get("context") != "none":
        return f"System OOM encountered, victim process: {comm}, pid: {pid}"
    pod = record.get("pod") or record.get("memcg_pod")
    container = record.get("container") or record.get("memcg_container")
    words = ["OOMKilled"]
    if pod:
        words.append(f"{pod.get('namespace')}/{pod.get('name')}")
    name = (pod or {}).get("container") or (container and (container.get("name") or container.get("id", "")[:12]))
    if name:
        words.append(f"container {name}")
    if container and container.get("image"):
        words.append(f"(image {container['image']})")
    limit = record.get("memcg_limit")
    tail = f"pid {pid} {comm}" + (f", memcg limit {_mib(limit)}" if isinstance(limit, int) and limit else "")
    return " ".join(words) + ": " + tail


def _mib(size: int) -> str:
    mib = size / (1 << 20)
    return f"{mib:.0f} MiB" if mib == int(mib) else f"{mib:.1f} MiB"


def _identity_text(value: object) -> str:
    """A container as its name (else its short id), a pod as namespace/name."""
    if not isinstance(value, dict):
        return _text_value(value)
    if "namespace" in value:
        return _text_value(f"{value.get('namespace')}/{value.get('name')}")
    return _text_value(value.get("name") or str(value.get("id", ""))[:12])


def text_value(value: object) -> str:
    """A value as human output shows it: never a character a terminal would act on."""
    return printable(_text_value(value))


def _text_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))  # ASCII: controls come out as \\uXXXX
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def printable(text: str) -> str:
    """TEXT with control characters escaped (\\n, \\t, \\r, \\xNN, \\uNNNN), and a lone surrogate
    (a name os read with surrogate escapes) as the byte it stands for (\\xNN); for human output
    only: JSON and msgpack keep the real string. A cgroup name or a task's comm is whatever its
    owner chose, and must not move the cursor, recolour or rewrite a terminal."""
    if text.isprintable() or _UNPRINTABLE.search(text) is None:  # the first: a fast C pass
        return text
    return _UNPRINTABLE.sub(_escape_control, text)


def _escape_control(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    if "\udc80" <= c <= "\udcff":
        return f"\\x{ord(c) - 0xdc00:02x}"
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


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


class FilteredSink:
    """SINK, given only the records FILTER accepts (`run --type/--cgroup`); the engine itself
    writes every record, so other sinks (the Manager's events) see what the filter hides."""

    def __init__(self, sink: Sink, record_filter: RecordFilter) -> None:
        self.sink = sink
        self.filter = record_filter

    def write(self, record: dict) -> None:
        if self.filter.accepts(record):
            self.sink.write(record)

    def flush(self) -> None:
        self.sink.flush()

    def alive(self) -> bool:
        return self.sink.alive()
