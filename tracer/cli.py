"""The oomtrace command line. No BPF or /proc logic here: it wires options to the engine."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import click

from .errors import OomtraceError
from .records import RECORD_TYPES, RecordFilter
from .sinks import FORMATS, make_sink


@click.group()
@click.version_option(package_name="oomtrace")
def main() -> None:
    """Trace OOM kills and containers with eBPF."""


@main.command()
@click.option("-o", "--output", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text for a terminal, json (JSON lines) or msgpack for programs")
@click.option("-t", "--type", "types", multiple=True, type=click.Choice(RECORD_TYPES[1:]),
              help="only records of this type (repeatable); start/lost/error always pass")
@click.option("--cgroup", "cgroup_prefix", metavar="PREFIX",
              help="only records whose cgroup (or OOMing memcg) path starts with PREFIX")
@click.option("--pressure-interval", type=float, default=10.0, show_default=True,
              help="seconds between memory_pressure summaries; 0 turns reclaim tracing off")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("/var/cache/oomtrace"),
              show_default=True, help="where the header tree generated from BTF is kept")
@click.option("--duration", type=float, help="stop after this many seconds")
def run(output: str, types: tuple[str, ...], cgroup_prefix: str | None, pressure_interval: float,
        cache_dir: Path, duration: float | None) -> None:
    """Stream OOM kills, cgroup creation/deletion and memory pressure, one record per event."""
    from .engine import Engine, EngineConfig

    sink = make_sink(output, sys.stdout, sys.stdout.buffer)
    record_filter = RecordFilter(frozenset(types) if types else None, cgroup_prefix)
    engine = Engine(sink, EngineConfig(cache_dir=cache_dir, pressure_interval=pressure_interval),
                    record_filter)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        engine.start()
        engine.run(stop, duration)
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e
    except BrokenPipeError:
        _discard_stdout()  # the reader went away (`| head`): stop quietly
    finally:
        engine.close()


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that flushing what is still buffered cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@main.command()
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("/var/cache/oomtrace"),
              show_default=True)
def doctor(cache_dir: Path) -> None:
    """Print what this kernel offers and which probes `run` will use."""
    from .doctor import report

    try:
        click.echo(report(cache_dir))
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e
