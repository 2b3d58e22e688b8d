"""Commands over the container Interface: machine, containers, stats, fs, and live events.
Wiring only: the figures come from manager.Manager, the layout from tables.py."""

from __future__ import annotations

import json
import signal
import threading
import time

import click

from tracer.errors import OomtraceError
from tracer.stats.model import ContainerInfoRequest, EVENT_TYPES, EventRequest, RequestOptions, to_json

_OUTPUT = click.option("--output", type=click.Choice(("table", "json")), default="table", show_default=True)


def _manager(network: bool = True):
    from tracer.stats.manager import Manager, ManagerConfig

    m = Manager(ManagerConfig(network=network))
    m.start(background=False)
    return m


def _emit_json(value) -> None:
    """VALUE (model dataclasses, or dicts and lists of them) as cAdvisor's JSON."""
    click.echo(json.dumps(to_json(value), indent=1))


@click.command()
@_OUTPUT
def machine(output: str) -> None:
    """This machine as cAdvisor describes it: CPUs, memory, topology, disks, network, filesystems."""
    from tracer.stats import machine as machine_info
    from tracer.cli.tables import machine_table

    info, version = machine_info.machine_info(), machine_info.version_info()
    if output == "json":
        _emit_json({"machine": info, "version": version})
    else:
        click.echo(machine_table(info, version))


@click.command()
@click.argument("name", default="/")
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="everything below NAME too")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="seconds between the two samples that give the CPU rate")
@_OUTPUT
def containers(name: str, recursive: bool, interval: float, output: str) -> None:
    """Containers (cgroups) with their CPU rate, memory and limits."""
    from tracer.cli.tables import containers_table

    m = _manager(network=False)
    try:
        time.sleep(interval)
        info = m.container_info_v2(name, RequestOptions(recursive=recursive, count=2, max_age=0))
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e
    finally:
        m.stop()
    if output == "json":
        _emit_json(info)
    else:
        click.echo(containers_table(info))


@click.command()
@click.argument("name")
@click.option("--interval", type=float, default=1.0, show_default=True)
@_OUTPUT
def stats(name: str, interval: float, output: str) -> None:
    """One container's spec and latest stats (info/v1 ContainerInfo with --output json)."""
    from tracer.cli.tables import stats_table

    m = _manager()
    try:
        time.sleep(interval)
        m.sweep([name])
        info = m.container_info(name, ContainerInfoRequest(num_stats=2))
        v2 = m.container_info_v2(name, RequestOptions(count=2))[name]
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e
    finally:
        m.stop()
    if output == "json":
        _emit_json(info)
    else:
        click.echo(stats_table(info, v2))


@click.command()
@click.argument("path", default="/")
@click.option("--usage/--no-usage", default=True, show_default=True, help="also walk PATH for what it holds")
@_OUTPUT
def fs(path: str, usage: bool, output: str) -> None:
    """The filesystem holding PATH (capacity, free, inodes), and PATH's own usage."""
    from tracer.stats.filesystems import dir_usage, fs_info

    try:
        info = fs_info(path)
        walked = dir_usage(path) if usage else None
    except OSError as e:
        raise click.ClickException(f"{path}: {e.strerror or e}") from e
    if output == "json":
        doc = to_json(info)
        if walked is not None:
            doc["dir_usage"] = {"bytes": walked.bytes, "inodes": walked.inodes, "seconds": round(walked.seconds, 3)}
        _emit_json(doc)
        return
    from tracer.cli.tables import fs_table

    click.echo(fs_table(info, walked))


def live_events(types: tuple[str, ...], container: str, duration: float | None, output: str,
                cache_dir) -> None:
    """Events as they happen: the event engine feeds the Interface's event store; we watch it."""
    from tracer.events.engine import Engine, EngineConfig
    from tracer.stats.manager import Manager, ManagerConfig
    from tracer.cli.tables import event_line

    manager = Manager(ManagerConfig(network=False))
    watch = manager.watch_events(EventRequest(container_name=container, include_subcontainers=True,
                                              event_types=frozenset(types or EVENT_TYPES)))
    engine = Engine(_RecordsInto(manager), EngineConfig(cache_dir=cache_dir, pressure_interval=0))
    stop = threading.Event()
    failure: list[BaseException] = []

    def run_engine() -> None:
        try:
            engine.start()
            engine.run(stop, duration)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failure.append(e)
        finally:
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner = threading.Thread(target=run_engine, daemon=True)
    runner.start()
    dropped = 0
    try:
        while True:
            event = watch.get(0.2)
            if watch.dropped != dropped:
                click.echo(f"# {watch.dropped - dropped} events dropped: this reader was too slow", err=True)
                dropped = watch.dropped
            if event is not None:
                click.echo(json.dumps(to_json(event)) if output == "json" else event_line(event))
            elif stop.is_set():
                break
    finally:
        stop.set()
        runner.join(10)
        engine.close()
        manager.stop_watch(watch)
    if failure:
        raise click.ClickException(str(failure[0]))


class _RecordsInto:
    """A sink that hands engine records to the manager (oom kills, cgroup creation/deletion)."""

    def __init__(self, manager) -> None:
        self.manager = manager

    def write(self, record: dict) -> None:
        self.manager.on_record(record)

    def flush(self) -> None:
        pass

    def alive(self) -> bool:
        return True
