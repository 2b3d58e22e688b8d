"""Option types and options that more than one command takes."""

from __future__ import annotations

import os
from pathlib import Path

import click


class Duration(click.ParamType):
    """90s, 15m, 1h, 7d or plain seconds."""

    name = "duration"
    _UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        unit = self._UNITS.get(text[-1:].lower()) if text else None
        try:
            seconds = float(text[:-1]) * unit if unit else float(text)
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            self.fail(f"{value!r} is not a duration like 90s, 15m, 1h or 7d", param, ctx)
        return seconds


class AddressType(click.ParamType):
    name = "address"

    def convert(self, value, param, ctx):
        from tracer.forward.wire import Address

        try:
            return value if isinstance(value, Address) else Address.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


DURATION = Duration()
ADDRESS = AddressType()


def shared_key(path: Path | None) -> str | None:
    """From --shared-key-file, else $OOMTRACE_SHARED_KEY: never on the command line, where ps shows it."""
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as e:
            raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="--shared-key-file") from e
    return os.environ.get("OOMTRACE_SHARED_KEY") or None


def shared_key_option(f):
    return click.option("--shared-key-file", type=click.Path(path_type=Path, dir_okay=False),
                        help="the Forward protocol's shared key (else $OOMTRACE_SHARED_KEY)")(f)
