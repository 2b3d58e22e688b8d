"""Commands over the container Interface: machine, containers, stats, fs, and live events.
Wiring only: the figures come through the Interface (stats.interface, implemented by
stats.manager.Manager), the layout from tables.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from tracer.cli.params import POSITIVE_SECONDS, resolver_config, runtime_options
from tracer.errors import OomtraceError
from tracer.stats.interface import Interface
from tracer.stats.model import EVENT_TYPES, EventRequest, RequestOptions, to_json

T = TypeVar("T")
_OUTPUT = click.option("--output", type=click.Choice(("table", "json")), default="table", show_default=True)


_PROCESS_COUNTS = click.option("--process-counts/--no-process-counts", default=False, show_default=True,
                                help="count each container's open files and sockets (fd_count, socket_count): "
                                     "a walk of /proc/PID/fd, as cAdvisor's process metrics")


def _sampled(network: bool, interval: float, ask: Callable[[Interface], T], resolver_config=None,
             process_counts: bool = False, say: bool = False) -> T:
    """A Manager's first sample, a second one INTERVAL later (CPU rates need two), then ASK it.
    The containers are named by the runtimes (tracer.identity) while the interval passes.
    SAY: tell on stderr about the process counts (for a table; JSON's readers have the docs)."""
    from tracer.identity import Resolver
    from tracer.stats.manager import Manager, ManagerConfig

    resolver = Resolver(resolver_config)
    resolver.start()
    m = Manager(ManagerConfig(network=network, process_counts=process_counts), workloads=resolver.lookup)
    try:
        m.start(background=False)
        deadline = time.monotonic() + interval
        resolver.wait_walked(max(interval, 2.0))
        time.sleep(max(0.0, deadline - time.monotonic()))
        return ask(m)
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e
    finally:
        m.stop()
        resolver.close()
        if say:
            _say_process_counts(m, process_counts)


def _say_process_counts(m, on: bool) -> None:
    """On stderr: that fd_count and socket_count are 0 because they were not counted, or what
    the bounds of the count skipped."""
    if not on:
        click.echo("# fd_count and socket_count were not counted (0): --process-counts counts them", err=True)
        return
    c = m.fd_counts
    if c.skipped_pids or c.skipped_fds:
        click.echo(f"# process counts bounded: {c.skipped_pids} processes and the links of {c.skipped_fds} "
                   "descriptors were not walked", err=True)


def _emit_json(value) -> None:
    """VALUE (model dataclasses, or dicts and lists of them) as cAdvisor's JSON."""
    click.echo(json.dumps(to_json(value), indent=1))


@click.command()
@_OUTPUT
def machine(output: str) -> None:
    """This machine as cAdvisor describes it: CPUs, memory, topology, disks, network, filesystems."""
    from tracer.cli.tables import machine_table
    from tracer.stats import machine as machine_info

    info, version = machine_info.machine_info(), machine_info.version_info()
    if output == "json":
        _emit_json({"machine": info, "version": version})
    else:
        click.echo(machine_table(info, version))


@click.command()
@click.argument("name", default="/")
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="everything below NAME too")
@click.option("--interval", type=POSITIVE_SECONDS, default=1.0, show_default=True,
              help="seconds between the two samples that give the CPU rate")
@runtime_options
@_PROCESS_COUNTS
@_OUTPUT
def containers(name: str, recursive: bool, interval: float, docker_sockets: tuple[str, ...],
               containerd_states: tuple[str, ...], process_counts: bool, output: str) -> None:
    """Containers (cgroups) with their CPU rate, memory and limits, named by their runtimes."""
    from tracer.cli.tables import containers_table

    info = _sampled(False, interval,
                    lambda m: m.container_info_v2(name, RequestOptions(recursive=recursive, count=2, max_age=0)),
                    resolver_config(docker_sockets, containerd_states), process_counts, output == "table")
    if output == "json":
        _emit_json(info)
    else:
        click.echo(containers_table(info))


@click.command()
@click.argument("name")
@click.option("--interval", type=POSITIVE_SECONDS, default=1.0, show_default=True)
@runtime_options
@_PROCESS_COUNTS
@_OUTPUT
def stats(name: str, interval: float, docker_sockets: tuple[str, ...], containerd_states: tuple[str, ...],
          process_counts: bool, output: str) -> None:
    """One container's spec and latest stats (info/v1 ContainerInfo with --output json)."""
    from tracer.cli.tables import stats_table

    info, v2 = _sampled(True, interval, lambda m: (
        m.get_requested_containers_info(name, RequestOptions(recursive=False, count=2, max_age=0))[name],
        m.container_info_v2(name, RequestOptions(count=2))[name]), resolver_config(docker_sockets, containerd_states),
        process_counts, output == "table")
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
                cache_dir: Path) -> None:
    """Events as they happen: the agent's engine feeds the Interface's event store; we watch it."""
    from tracer.agent import Agent, AgentConfig
    from tracer.cli.tables import event_line
    from tracer.events.engine import EngineConfig

    agent = Agent(AgentConfig(engine=EngineConfig(cache_dir=cache_dir, pressure_interval=0),
                              container_events=True, duration=duration))
    assert agent.manager is not None
    watch = agent.manager.watch_events(EventRequest(container_name=container, include_subcontainers=True,
                                                    event_types=frozenset(types or EVENT_TYPES)))
    agent.stop_on_signals()
    agent.start()
    dropped = 0
    try:
        while True:
            event = watch.get(0.2)
            if watch.dropped != dropped:
                click.echo(f"# {watch.dropped - dropped} events dropped: this reader was too slow", err=True)
                dropped = watch.dropped
            if event is not None:
                click.echo(json.dumps(to_json(event)) if output == "json" else event_line(event))
            elif agent.done:
                break
    finally:
        agent.close()
        agent.manager.stop_watch(watch)
    if agent.failure is not None:
        raise click.ClickException(str(agent.failure))
