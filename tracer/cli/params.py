"""Option types and options that more than one command takes."""

from __future__ import annotations

import math
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
        if not 0 <= seconds < math.inf:  # NaN too
            self.fail(f"{value!r} is not a duration like 90s, 15m, 1h or 7d", param, ctx)
        return seconds


class Seconds(click.ParamType):
    """A finite number of seconds, at least MINIMUM (above it when EXCLUSIVE)."""

    name = "seconds"

    def __init__(self, minimum: float = 0.0, exclusive: bool = False) -> None:
        self.minimum = minimum
        self.exclusive = exclusive

    def convert(self, value, param, ctx) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        low_ok = seconds > self.minimum if self.exclusive else seconds >= self.minimum
        if not (low_ok and seconds < math.inf):
            bound = f"above {self.minimum:g}" if self.exclusive else f"at least {self.minimum:g}"
            self.fail(f"{value!r} is not a number of seconds {bound}", param, ctx)
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
SECONDS = Seconds()  # 0 allowed: an interval that turns something off
POSITIVE_SECONDS = Seconds(exclusive=True)
ADDRESS = AddressType()


def tcp_address(ctx, param, value):
    """A callback for options that only make sense on TCP (an HTTP listener)."""
    if value is not None and value.kind != "tcp":
        raise click.BadParameter(f"{value} is not tcp://HOST:PORT", ctx, param)
    return value


def shared_key(path: Path | None) -> str | None:
    """From --shared-key-file, else $OOMTRACE_SHARED_KEY: never on the command line, where ps shows it."""
    if path is not None:
        try:
            key = path.read_text().strip()
        except OSError as e:
            raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="--shared-key-file") from e
        if not key:  # never "no auth" by accident: a key file that was meant to hold one
            raise click.BadParameter(f"{path} is empty", param_hint="--shared-key-file")
        return key
    return os.environ.get("OOMTRACE_SHARED_KEY") or None


def shared_key_option(f):
    return click.option("--shared-key-file", type=click.Path(path_type=Path, dir_okay=False),
                        help="the Forward protocol's shared key (else $OOMTRACE_SHARED_KEY)")(f)


def runtime_options(f):
    """--docker-socket and --containerd-state: where the identity resolver asks the runtimes."""
    f = click.option("--containerd-state", "containerd_states", multiple=True, metavar="DIR",
                     help="containerd's state directory: its tasks' bundles (repeatable)  "
                          "[default: /run/containerd]")(f)
    return click.option("--docker-socket", "docker_sockets", multiple=True, metavar="PATH",
                        help="Docker's API socket (repeatable)  [default: /var/run/docker.sock]")(f)


def resolver_config(docker_sockets: tuple[str, ...], containerd_states: tuple[str, ...]):
    """The identity resolver's configuration, with the places given on the command line."""
    from dataclasses import replace

    from tracer.identity import ResolverConfig

    changes = {"docker_sockets": docker_sockets, "containerd_states": containerd_states}
    return replace(ResolverConfig(), **{k: v for k, v in changes.items() if v})
