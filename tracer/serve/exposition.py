"""Prometheus text exposition (format 0.0.4), written by hand for speed: a scrape of 1,000
containers is ~50,000 samples, and prometheus_client's objects per sample cost ~10× more
(scripts/bench_serve.py prints both). Only the pieces every family needs live here."""

from __future__ import annotations

import math
from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})
_EXACT = 2 ** 53  # integers below this are exact in a float64: written without a fraction


def escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    return value.translate(_ESCAPES)


def number(value: float | int) -> str:
    """A sample value as Prometheus parses it (Go's +Inf/-Inf/NaN spelled its way)."""
    if isinstance(value, int) and -_EXACT < value < _EXACT:
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < _EXACT:
        return str(int(v))
    return repr(v)


def header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {help_text.translate(_HELP_ESCAPES)}\n# TYPE {name} {kind}\n"


def labels(pairs: Iterable[tuple[str, str]]) -> str:
    """`k1="v1",k2="v2"` (no braces), values escaped."""
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


def single(name: str, help_text: str, kind: str, value: float | int) -> str:
    """A family of one unlabelled sample."""
    return f"{header(name, help_text, kind)}{name} {number(value)}\n"
