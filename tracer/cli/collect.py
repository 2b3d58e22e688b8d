"""`oomtrace collect`: the central collector, from flags."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

from tracer import defaults
from tracer.cli.http_options import http_config, web_options
from tracer.cli.params import ADDRESS, DURATION, POSITIVE_SECONDS, shared_key, shared_key_option, tcp_address


@click.command()
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="the SQLite database (created if missing)")
@click.option("--listen", "listen", type=ADDRESS, multiple=True, metavar="tcp://HOST:PORT|unix:PATH|-",
              help="where to accept the Forward protocol (repeatable); - reads an `oomtrace run -o msgpack` "
                   f"stream on stdin  [default: stdin when it is a pipe or file, else {defaults.COLLECTOR_LISTEN}]")
@shared_key_option
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="serve TCP over TLS with this certificate (PEM)")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="its private key, if not in the certificate file")
@click.option("--metrics", type=ADDRESS, metavar="tcp://HOST:PORT", callback=tcp_address,
              help="serve Prometheus metrics at http://HOST:PORT/metrics")
@click.option("--bind-node", is_flag=True,
              help="with a shared key: store each record under the node name its agent authenticated as, "
                   "whatever the record says")
@click.option("--max-connections", type=click.IntRange(1), default=1000, show_default=True,
              help="more are closed at once (counted); lowered to fit the open-file limit")
@click.option("--idle-timeout", type=POSITIVE_SECONDS, default=600.0, show_default=True,
              help="close a connection silent between frames this long (seconds)")
@click.option("--frame-timeout", type=POSITIVE_SECONDS, default=60.0, show_default=True,
              help="close a connection whose frame is not whole this long after its first byte (seconds)")
@click.option("--frame-budget-mb", type=click.IntRange(1), default=256, show_default=True,
              help="memory for frames being read, all connections together; past it, connections are closed")
@click.option("--retain", type=DURATION, default="30d", show_default=True,
              help="delete records received longer ago than this; 0 keeps them for ever")
@click.option("--retain-type", "retain_types", multiple=True, metavar="TYPE=DURATION",
              help="a retention for one record type, e.g. memory_pressure=1d (repeatable)")
@click.option("--sync", "synchronous", type=click.Choice(("full", "normal")), default="full", show_default=True,
              help="full: an acked record survives a power loss; normal: it survives a crash of the collector")
@click.option("--max-frame-mb", type=click.IntRange(1), default=16, show_default=True,
              help="a larger frame closes its connection")
@web_options
@click.option("-v", "--verbose", is_flag=True, help="log every connection")
def collect(db: Path, listen, shared_key_file: Path | None, tls_cert: Path | None, tls_key: Path | None,
            metrics, bind_node: bool, max_connections: int, idle_timeout: float, frame_timeout: float,
            frame_budget_mb: int, retain: float, retain_types: tuple[str, ...], synchronous: str, max_frame_mb: int,
            verbose: bool, **web) -> None:
    """Receive records from agents (or stdin) and keep them in SQLite; with --http, serve a
    page of the OOM kills stored."""
    import asyncio

    from tracer.collect.collector import Collector, CollectorConfig
    from tracer.collect.stdin import IngestError
    from tracer.collect.store import Retention
    from tracer.forward.wire import Address

    if not listen:
        listen = (Address("stdin"),) if _stdin_is_a_stream() else (Address.parse(defaults.COLLECTOR_LISTEN),)
    key = shared_key(shared_key_file)
    if bind_node and key is None:
        raise click.BadParameter("needs a shared key: only an authenticated name can be bound",
                                 param_hint="--bind-node")
    config = CollectorConfig(
        db=db, listen=tuple(listen), shared_key=key, tls_cert=tls_cert, tls_key=tls_key,
        max_frame=max_frame_mb << 20, synchronous=synchronous, bind_node=bind_node, max_connections=max_connections,
        idle_timeout=idle_timeout, frame_timeout=frame_timeout, frame_budget=frame_budget_mb << 20,
        retention=Retention(retain or None, _retain_types(retain_types)))
    with _log_to_stderr(logging.INFO if verbose else logging.WARNING):
        try:
            collector = Collector(config)
        except Exception as e:
            raise click.ClickException(f"cannot open {db}: {e}") from e
        with collector:  # commits and closes the store on every way out
            sockets = [a for a in config.listen if a.kind != "stdin"]
            page = _web(db, http_config(**web))
            try:
                if metrics is not None:
                    _serve_metrics(collector, metrics)
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
                if page is not None:
                    page.close()


def _web(db: Path, config):  # -> HttpServer | None: the page, started (its own thread)
    if config is None:
        return None
    from tracer.collect.web import web_server
    from tracer.errors import OomtraceError

    try:
        server = web_server(db, config)
        server.start()
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e
    return server


def _stdin_is_a_stream() -> bool:
    """A pipe or a file on stdin is a record stream; a terminal or /dev/null (a service
    manager's stdin) is not: then the collector listens."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # closed, or not a real file (CliRunner's)
        return not sys.stdin.isatty()
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def _serve_metrics(collector, address) -> None:
    try:
        collector.metrics.serve(address)
    except OSError as e:
        raise click.ClickException(f"cannot serve metrics on {address}: {e.strerror or e}") from e


@contextlib.contextmanager
def _log_to_stderr(level: int) -> Iterator[None]:
    """What logging.basicConfig did for the command's process, undone when the command ends
    (so that it also holds when the command runs inside another process, e.g. click's CliRunner)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("oomtrace collect: %(message)s"))
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


async def _serve(collector) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await collector.start()
        click.echo("oomtrace collect: listening on " + " ".join(map(str, collector.addresses)), err=True)
        await stop.wait()
    finally:
        await collector.aclose()  # the connections, then the writer; the caller's close() is then a no-op


def _retain_types(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in items:
        kind, sep, age = item.partition("=")
        if not sep or not kind:
            raise click.BadParameter(f"{item!r}: use TYPE=DURATION", param_hint="--retain-type")
        out[kind] = DURATION.convert(age, None, None)
    return out


def print_stored(db: Path, since: float | None, until: float | None, types: tuple[str, ...],
                 cgroup_prefix: str | None, node: str | None, workload: dict[str, str | None], limit: int,
                 output: str) -> None:
    """`events --db`: what a collector stored, as a table or JSON lines. Read-only: the
    database, its directory and a collector writing to it are left as they are."""
    import json
    import sqlite3

    from tracer.cli.tables import events_table
    from tracer.collect.store import Query, StoreReader

    now = time.time()
    query = Query(since=now - since if since is not None else None, until=now - until if until is not None else None,
                  types=types, cgroup_prefix=cgroup_prefix, node=node, limit=limit, **workload)
    try:
        with StoreReader(db) as reader:
            found = list(reader.query(query))
    except sqlite3.Error as e:
        raise click.ClickException(f"{db}: {e}") from e
    if output == "json":
        for record in found:
            click.echo(json.dumps(record, separators=(",", ":"), default=repr))
    else:
        click.echo(events_table(found))
