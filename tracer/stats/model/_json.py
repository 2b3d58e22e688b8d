"""Fields that carry their JSON name, and to_json(): Go's encoding/json rules for the model."""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import field
from typing import Any


def json_field(json: str, default: Any = 0, omitempty: bool = False, factory: Any = None,
               pointer: bool = False) -> Any:
    """POINTER: a Go pointer field (None = nil). Go's omitempty drops only nil then, never a
    pointer at 0: `inodes_free: 0` must stay in the JSON (it is kubelet's eviction signal)."""
    meta = {"json": json, "omitempty": omitempty, "pointer": pointer}
    if pointer:
        default = None
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def json_time(json: str, omitempty: bool = False) -> Any:
    """Unix seconds here; an RFC 3339 string in JSON. Go's omitempty never drops a time.Time
    (a struct), so 0 is written as Go's zero time whatever the tag says."""
    return field(default=0.0, metadata={"json": json, "omitempty": omitempty, "time": True})


def rfc3339(seconds: float) -> str:
    """Go's time.RFC3339Nano: UTC, the fraction with its trailing zeros trimmed (none if 0).
    Python floats carry microseconds reliably, so the fraction has at most 6 digits here."""
    if not seconds:
        return "0001-01-01T00:00:00Z"  # Go's zero time
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    fraction = f"{stamp.microsecond:06d}".rstrip("0")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$")


def parse_rfc3339(text: str) -> float:
    """rfc3339() read back, as Go's time.Parse(time.RFC3339) takes it: a zone is required, the
    fraction may have up to 9 digits (nanoseconds). ValueError for anything else, an impossible
    date (02-30) included."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time (e.g. 2026-11-28T12:00:00Z)")
    zone = "+00:00" if m.group(4) in ("Z", "z") else m.group(4)
    whole = datetime.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{zone}").timestamp()
    digits = (m.group(3) or "")[:9]
    return whole + (int(digits) / 10 ** len(digits) if digits else 0.0)


def _empty(v: Any, pointer: bool) -> bool:
    """Go's omitempty: nil, false, 0, "" and empty slices and maps; never a struct value, and
    of a pointer only nil (a pointer at 0 is not empty)."""
    if v is None:
        return True
    return not pointer and not dataclasses.is_dataclass(v) and not v


def to_json(value: Any) -> Any:
    """The JSON-able form, with cAdvisor's field names."""
    if dataclasses.is_dataclass(value):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            meta = f.metadata
            if meta.get("inline"):
                out.update(to_json(v))
                continue
            if meta.get("time"):
                out[meta["json"]] = rfc3339(v)
                continue
            if meta.get("omitempty") and _empty(v, meta.get("pointer", False)):
                continue
            out[meta.get("json", f.name)] = to_json(v)
        return out
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value
