"""Fields that carry their JSON name, and to_json(): Go's encoding/json rules for the model."""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import field
from typing import Any


def json_field(json: str, default: Any = 0, omitempty: bool = False, factory: Any = None) -> Any:
    meta = {"json": json, "omitempty": omitempty}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def json_time(json: str, omitempty: bool = False) -> Any:
    """Unix seconds here; an RFC 3339 string in JSON."""
    return field(default=0.0, metadata={"json": json, "omitempty": omitempty, "time": True})


def rfc3339(seconds: float) -> str:
    if not seconds:
        return "0001-01-01T00:00:00Z"  # Go's zero time
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
                if meta.get("omitempty") and not v:
                    continue
                out[meta["json"]] = rfc3339(v)
                continue
            if meta.get("omitempty") and (v is None or (not dataclasses.is_dataclass(v) and not v)):
                continue
            out[meta.get("json", f.name)] = to_json(v)
        return out
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value
