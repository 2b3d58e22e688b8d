"""The oomtrace command line. No BPF or /proc logic here: it wires options to the engine."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import click

from tracer.errors import OomtraceError
from tracer.events.records import RECORD_TYPES, RecordFilter
from tracer.events.sinks import FORMATS, TeeSink, make_sink


@click.group()
@click.version_option(package_name="oomtrace")
def main() -> None:
    """Trace OOM kills and containers with eBPF."""


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


def _shared_key(path: Path | None) -> str | None:
    """From --shared-key-file, else $OOMTRACE_SHARED_KEY: never on the command line, where ps shows it."""
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as e:
            raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="--shared-key-file") from e
    return os.environ.get("OOMTRACE_SHARED_KEY") or None


def _shared_key_option(f):
    return click.option("--shared-key-file", type=click.Path(path_type=Path, dir_okay=False),
                        help="the Forward protocol's shared key (else $OOMTRACE_SHARED_KEY)")(f)


@main.command()
@click.option("-o", "--output", type=click.Choice(FORMATS),
              help="text for a terminal, json (JSON lines) or msgpack for programs  [default: text, "
                   "or nothing with --forward]")
@click.option("-t", "--type", "types", multiple=True, type=click.Choice(RECORD_TYPES[1:]),
              help="only records of this type (repeatable); start/lost/error always pass")
@click.option("--cgroup", "cgroup_prefix", metavar="PREFIX",
              help="only records whose cgroup (or OOMing memcg) path starts with PREFIX")
@click.option("--pressure-interval", type=float, default=10.0, show_default=True,
              help="seconds between memory_pressure summaries; 0 turns reclaim tracing off")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("/var/cache/oomtrace"),
              show_default=True, help="where the header tree generated from BTF is kept")
@click.option("--duration", type=float, help="stop after this many seconds")
@click.option("--node", envvar="NODE_NAME", help="node name in every record  [default: hostname; env NODE_NAME]")
@click.option("--forward", type=ADDRESS, metavar="tcp://HOST:PORT|unix:PATH",
              help="send records to a collector (oomtrace collect, Fluentd, Fluent Bit) by the Forward protocol")
@_shared_key_option
@click.option("--tls", is_flag=True, help="--forward over TLS")
@click.option("--tls-ca", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="CA certificate(s) that sign the collector's (default: the system's)")
@click.option("--spool-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("/var/lib/oomtrace/spool"), show_default=True,
              help="where chunks wait while the collector is unreachable")
@click.option("--spool-max-mb", type=click.IntRange(1), default=256, show_default=True)
@click.option("--stats", "stats_interval", type=float, default=0.0, metavar="SECONDS",
              help="add a container_stats record per container every SECONDS (0: none)")
def run(output: str | None, types: tuple[str, ...], cgroup_prefix: str | None, pressure_interval: float,
        cache_dir: Path, duration: float | None, node: str | None, forward, shared_key_file: Path | None,
        tls: bool, tls_ca: Path | None, spool_dir: Path, spool_max_mb: int, stats_interval: float) -> None:
    """Stream OOM kills, cgroup creation/deletion and memory pressure, one record per event."""
    from tracer.events.engine import Engine, EngineConfig

    sinks = [] if (forward and output is None) else [make_sink(output or "text", sys.stdout, sys.stdout.buffer)]
    forwarder = None
    if forward is not None:
        from tracer.forward.forwarder import ForwardConfig, ForwardSink

        forwarder = ForwardSink(ForwardConfig(
            forward, node=node or socket.gethostname(), shared_key=_shared_key(shared_key_file), tls=tls,
            tls_ca=tls_ca, spool_dir=spool_dir, spool_max_bytes=spool_max_mb << 20))
        sinks.append(forwarder)
    record_filter = RecordFilter(frozenset(types) if types else None, cgroup_prefix)
    manager, sources = _stats_feed(stats_interval)
    engine = Engine(sinks[0] if len(sinks) == 1 else TeeSink(*sinks),
                    EngineConfig(cache_dir=cache_dir, pressure_interval=pressure_interval, node=node),
                    record_filter, sources)
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
        if manager is not None:
            manager.stop()
        engine.close()
        if forwarder is not None:
            forwarder.close()


@main.command()
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="the SQLite database (created if missing)")
@click.option("--listen", "listen", type=ADDRESS, multiple=True, metavar="tcp://HOST:PORT|unix:PATH|-",
              help="where to accept the Forward protocol (repeatable); - reads an `oomtrace run -o msgpack` "
                   "stream on stdin  [default: stdin when it is a pipe or file, else tcp://127.0.0.1:24224]")
@_shared_key_option
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="serve TCP over TLS with this certificate (PEM)")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="its private key, if not in the certificate file")
@click.option("--metrics", type=ADDRESS, metavar="tcp://HOST:PORT",
              help="serve Prometheus metrics at http://HOST:PORT/metrics")
@click.option("--retain", type=DURATION, default="30d", show_default=True,
              help="delete records older than this; 0 keeps them for ever")
@click.option("--retain-type", "retain_types", multiple=True, metavar="TYPE=DURATION",
              help="a retention for one record type, e.g. memory_pressure=1d (repeatable)")
@click.option("--sync", "synchronous", type=click.Choice(("full", "normal")), default="full", show_default=True,
              help="full: an acked record survives a power loss; normal: it survives a crash of the collector")
@click.option("--max-frame-mb", type=click.IntRange(1), default=16, show_default=True,
              help="a larger frame closes its connection")
@click.option("-v", "--verbose", is_flag=True, help="log every connection")
def collect(db: Path, listen, shared_key_file: Path | None, tls_cert: Path | None, tls_key: Path | None,
            metrics, retain: float, retain_types: tuple[str, ...], synchronous: str, max_frame_mb: int,
            verbose: bool) -> None:
    """Receive records from agents (or stdin) and keep them in SQLite."""
    import asyncio

    from tracer.collect.collector import Collector, CollectorConfig, IngestError
    from tracer.collect.store import Retention
    from tracer.forward.wire import Address

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="oomtrace collect: %(message)s", stream=sys.stderr)
    if not listen:
        listen = (Address("stdin"),) if not sys.stdin.isatty() else (Address.parse("tcp://127.0.0.1:24224"),)
    config = CollectorConfig(
        db=db, listen=tuple(listen), shared_key=_shared_key(shared_key_file), tls_cert=tls_cert, tls_key=tls_key,
        max_frame=max_frame_mb << 20, synchronous=synchronous,
        retention=Retention(retain or None, _retain_types(retain_types)))
    try:
        collector = Collector(config)
    except Exception as e:  # noqa: BLE001 - the database could not be opened
        raise click.ClickException(f"cannot open {db}: {e}") from e
    if metrics is not None:
        collector.metrics.serve(metrics)
    sockets = [a for a in config.listen if a.kind != "stdin"]
    try:
        if len(sockets) < len(config.listen):
            stored = collector.ingest(sys.stdin.buffer)
            click.echo(f"oomtrace collect: {stored} records from stdin", err=True)
        if sockets:
            asyncio.run(_serve(collector))
    except IngestError as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot listen: {e}") from e
    finally:
        if not sockets:
            collector.writer.close()


async def _serve(collector) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await collector.start()
    click.echo("oomtrace collect: listening on " + " ".join(map(str, collector.addresses)), err=True)
    try:
        await stop.wait()
    finally:
        await collector.close()


def _retain_types(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in items:
        kind, sep, age = item.partition("=")
        if not sep or not kind:
            raise click.BadParameter(f"{item!r}: use TYPE=DURATION", param_hint="--retain-type")
        out[kind] = DURATION.convert(age, None, None)
    return out


@main.command()
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="a database written by oomtrace collect; without it, events as they happen (root)")
@click.option("--since", type=DURATION, help="only records newer than this, e.g. 1h")
@click.option("--until", type=DURATION, help="only records older than this, e.g. 10m")
@click.option("-t", "--type", "types", multiple=True, help="only this record type (repeatable)")
@click.option("--cgroup", "cgroup_prefix", metavar="PREFIX", help="cgroup or OOMing memcg starts with PREFIX")
@click.option("--node", help="only records of this node")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="the newest N")
@click.option("--output", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.option("--duration", type=float, help="live: stop after this many seconds")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("/var/cache/oomtrace"), show_default=True)
def events(db: Path | None, since: float | None, until: float | None, types: tuple[str, ...],
           cgroup_prefix: str | None, node: str | None, limit: int, output: str, duration: float | None,
           cache_dir: Path) -> None:
    """Records a collector stored (--db), oldest first; or, live, cAdvisor's container events
    (-t oom, oomKill, containerCreation, containerDeletion) as the kernel reports them."""
    if db is None:
        from tracer.cli.stats import live_events
        from tracer.stats.model import EVENT_TYPES

        unknown = set(types) - set(EVENT_TYPES)
        if unknown:
            raise click.BadParameter(f"{', '.join(sorted(unknown))}: live types are {', '.join(EVENT_TYPES)}",
                                     param_hint="--type")
        live_events(types, cgroup_prefix or "/", duration, output, cache_dir)
        return
    import json
    import sqlite3

    from tracer.collect.store import Query, Store
    from tracer.cli.tables import events_table

    now = time.time()
    query = Query(since=now - since if since is not None else None, until=now - until if until is not None else None,
                  types=types, cgroup_prefix=cgroup_prefix, node=node, limit=limit)
    try:
        found = list(Store(db, "normal").query(query))
    except sqlite3.DatabaseError as e:
        raise click.ClickException(f"{db}: {e}") from e
    if output == "json":
        for record in found:
            click.echo(json.dumps(record, separators=(",", ":"), default=repr))
    else:
        click.echo(events_table(found))


def _stats_feed(interval: float):
    """With --stats: the container manager sweeping in its own thread, its records for the engine."""
    if interval <= 0:
        return None, ()
    from tracer.stats.manager import Manager, ManagerConfig
    from tracer.stats.feed import StatsFeed

    manager = Manager(ManagerConfig(housekeeping_interval=interval))
    feed = StatsFeed(manager)
    manager.start()
    return manager, (feed.drain,)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that flushing what is still buffered cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@main.command()
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("/var/cache/oomtrace"),
              show_default=True)
def doctor(cache_dir: Path) -> None:
    """Print what this kernel offers and which probes `run` will use."""
    from tracer.kernel.doctor import report

    try:
        click.echo(report(cache_dir))
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e


def _add_stats_commands() -> None:
    from tracer.cli import stats as cli_stats

    for command in (cli_stats.machine, cli_stats.containers, cli_stats.stats, cli_stats.fs):
        main.add_command(command)


_add_stats_commands()
