"""`oomtrace run` and `oomtrace doctor`, and the command group. Flags only: the agent
(tracer.agent) builds and runs what they describe."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import click

from tracer import defaults
from tracer.cli.http_options import http_options, http_settings
from tracer.cli.params import (
    ADDRESS,
    POSITIVE_SECONDS,
    SECONDS,
    resolver_config,
    runtime_options,
    shared_key,
    shared_key_option,
)
from tracer.errors import OomtraceError
from tracer.events.records import RECORD_TYPES, RecordFilter
from tracer.events.sinks import FORMATS, make_sink


@click.group()
@click.version_option(package_name="oomtrace")
def main() -> None:
    """Trace OOM kills and containers with eBPF."""


@main.command()
@click.option("-o", "--output", type=click.Choice(FORMATS),
              help="text for a terminal, json (JSON lines) or msgpack for programs  [default: text, "
                   "or nothing with --forward]")
@click.option("-t", "--type", "types", multiple=True, type=click.Choice(RECORD_TYPES[1:]),
              help="only records of this type (repeatable); start, lost, error and forward_status always pass")
@click.option("--cgroup", "cgroup_prefix", metavar="PREFIX",
              help="only records whose cgroup (or OOMing memcg) path starts with PREFIX")
@click.option("--pressure-interval", type=SECONDS, default=defaults.PRESSURE_INTERVAL, show_default=True,
              help="seconds between memory_pressure summaries; 0 turns reclaim tracing off")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=defaults.CACHE_DIR,
              show_default=True, help="where the header tree generated from BTF is kept")
@click.option("--duration", type=POSITIVE_SECONDS, help="stop after this many seconds")
@click.option("--node", envvar="NODE_NAME", help="node name in every record  [default: hostname; env NODE_NAME]")
@click.option("--forward", type=ADDRESS, metavar="tcp://HOST:PORT|unix:PATH",
              help="send records to a collector (oomtrace collect, Fluentd, Fluent Bit) by the Forward protocol")
@shared_key_option
@click.option("--tls", is_flag=True, help="--forward over TLS")
@click.option("--tls-ca", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="CA certificate(s) that sign the collector's (default: the system's)")
@click.option("--spool-dir", type=click.Path(path_type=Path, file_okay=False),
              default=defaults.SPOOL_DIR, show_default=True,
              help="where chunks wait while the collector is unreachable")
@click.option("--spool-max-mb", type=click.IntRange(1), default=defaults.SPOOL_MAX_MB, show_default=True)
@click.option("--stats", "stats_interval", type=SECONDS, default=0.0, metavar="SECONDS",
              help="add a container_stats record per container every SECONDS (0: none)")
@click.option("--identity/--no-identity", default=True, show_default=True,
              help="name the container and pod of each record from the runtimes (Docker, podman, containerd, "
                   "CRI-O)")
@click.option("--recorder/--no-recorder", default=True, show_default=True,
              help="keep the last minutes of every memory cgroup with a limit, and follow each oom_kill with an "
                   "oom_report (its memory curve and processes; see oomtrace report)")
@click.option("--recorder-minutes", type=click.FloatRange(0.5, 60), default=5.0, show_default=True,
              help="minutes of history the recorder keeps per cgroup")
@runtime_options
@http_options
def run(output: str | None, types: tuple[str, ...], cgroup_prefix: str | None, pressure_interval: float,
        cache_dir: Path, duration: float | None, node: str | None, forward, shared_key_file: Path | None,
        tls: bool, tls_ca: Path | None, spool_dir: Path, spool_max_mb: int, stats_interval: float,
        identity: bool, recorder: bool, recorder_minutes: float, docker_sockets: tuple[str, ...],
        containerd_states: tuple[str, ...], **http) -> None:
    """Stream OOM kills, cgroup creation/deletion and memory pressure, one record per event;
    with --http, serve cAdvisor's REST API and Prometheus metrics too."""
    from tracer.agent import Agent, AgentConfig
    from tracer.events.engine import EngineConfig
    from tracer.forward.forwarder import ForwardConfig
    from tracer.kernel.doctor import RUN_NEEDS
    from tracer.postmortem.recorder import RecorderConfig

    outputs = [] if (forward and output is None) else [make_sink(output or "text", sys.stdout, sys.stdout.buffer)]
    forward_config = None if forward is None else ForwardConfig(
        forward, node=node or socket.gethostname(), shared_key=shared_key(shared_key_file), tls=tls,
        tls_ca=tls_ca, spool_dir=spool_dir, spool_max_bytes=spool_max_mb << 20)
    config = AgentConfig(
        engine=EngineConfig(cache_dir=cache_dir, pressure_interval=pressure_interval, node=node),
        record_filter=RecordFilter(frozenset(types) if types else None, cgroup_prefix),
        stats_interval=stats_interval, forward=forward_config, duration=duration,
        identity=resolver_config(docker_sockets, containerd_states) if identity else None,
        recorder=RecorderConfig(minutes=recorder_minutes) if recorder else None,
        **http_settings(**http))
    try:
        agent = Agent(config, outputs)
    except OomtraceError as e:  # e.g. a spool directory that cannot be made or written
        raise click.ClickException(str(e)) from e
    agent.stop_on_signals()
    try:
        try:
            agent.start()
        except OomtraceError as e:  # e.g. --http on an address in use
            raise click.ClickException(str(e)) from e
        agent.wait()
    finally:
        agent.close()
    if isinstance(agent.failure, OomtraceError):
        raise click.ClickException(str(agent.failure))
    if isinstance(agent.failure, PermissionError):  # what Engine.start's check could not foresee
        raise click.ClickException(f"{agent.failure}: oomtrace run needs {RUN_NEEDS}")
    if agent.failure is not None:
        raise agent.failure


@main.command()
@click.option("--cache-dir", type=click.Path(path_type=Path), default=defaults.CACHE_DIR,
              show_default=True)
def doctor(cache_dir: Path) -> None:
    """Print what this kernel offers, which probes `run` will use, and which container
    runtimes it can name containers from."""
    from tracer.identity.probe import summary
    from tracer.kernel.doctor import DOCTOR_NEEDS, report, require_privileges

    try:
        require_privileges("doctor")
        click.echo(report(cache_dir, extra=(("runtimes", summary()),)))
    except OomtraceError as e:
        raise click.ClickException(str(e)) from e
    except PermissionError as e:  # what require_privileges could not foresee
        raise click.ClickException(f"{e}: oomtrace doctor needs {DOCTOR_NEEDS}") from e


def _add_commands() -> None:
    from tracer.cli import stats
    from tracer.cli.collect import collect
    from tracer.cli.events import events
    from tracer.cli.report import report

    for command in (collect, events, report, stats.machine, stats.containers, stats.stats, stats.fs):
        main.add_command(command)


_add_commands()
