"""`run --http` and its options: parsed here into the agent's HttpConfig and MetricsOptions."""

from __future__ import annotations

from pathlib import Path

import click

from tracer import defaults
from tracer.cli.params import POSITIVE_SECONDS


class HostPort(click.ParamType):
    """HOST:PORT, [V6]:PORT or tcp://HOST:PORT; a port alone (8080) listens on loopback, an
    empty host (:8080) on every interface."""

    name = "host:port"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = value.removeprefix("tcp://")
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = "127.0.0.1", text
        host = host.strip("[]") or "0.0.0.0"
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            self.fail(f"{value!r}: HOST:PORT expected (e.g. 127.0.0.1:8080)", param, ctx)
        return host, int(port)


def _groups(ctx, param, value: str | None) -> frozenset[str]:
    from tracer.serve.container_metrics import GROUPS, NOT_COLLECTED

    names = frozenset(v.strip() for v in (value or "").split(",") if v.strip())
    unknown = names - GROUPS - NOT_COLLECTED
    if unknown:
        raise click.BadParameter(f"unknown metric group(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(sorted(GROUPS))}", ctx, param)
    if param.name == "enable_metrics" and names & NOT_COLLECTED:
        raise click.BadParameter(f"oomtrace does not collect {', '.join(sorted(names & NOT_COLLECTED))}", ctx, param)
    return names


def _labels(ctx, param, value: tuple[str, ...]) -> tuple[str, ...]:
    from tracer.serve.container_metrics import label_keys

    try:
        return label_keys(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from e


_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


def _server_options(what: str) -> list:
    return [
        click.option("--http", "http_address", type=HostPort(), metavar="HOST:PORT",
                     help=f"serve {what} (beyond loopback it needs credentials: --http-htpasswd or "
                          "--http-bearer-token-file)"),
        click.option("--http-tls-cert", type=_FILE, help="serve HTTPS with this certificate (chain)"),
        click.option("--http-tls-key", type=_FILE, help="its private key, if not in the certificate file"),
        click.option("--http-htpasswd", type=_FILE, help="basic auth: users and bcrypt hashes (htpasswd -B)"),
        click.option("--http-bearer-token-file", type=_FILE, help="a token clients send as 'Authorization: Bearer'"),
        click.option("--http-insecure", is_flag=True,
                     help="allow an address beyond loopback without credentials or TLS"),
        click.option("--http-max-connections", type=click.IntRange(1), default=256, show_default=True),
    ]


def _apply(f, options: list):
    for option in reversed(options):
        f = option(f)
    return f


def web_options(f):
    """`collect --http`: the page of OOM kills and its JSON."""
    return _apply(f, _server_options("a web page of the OOM kills stored, with their charts, and its JSON (/api/…)"))


def http_options(f):
    """`run --http`: cAdvisor's REST API and metrics, and what goes into the metrics."""
    return _apply(f, [
        *_server_options("cAdvisor's REST API (/api/…), /metrics and /healthz"),
        click.option("--housekeeping-interval", type=POSITIVE_SECONDS, default=defaults.HOUSEKEEPING_INTERVAL,
                     show_default=True, help="seconds between container stats sweeps for --http (--stats sets "
                                             "its own)"),
        click.option("--disable-metrics", callback=_groups, metavar="GROUP,…",
                     help="cAdvisor metric groups to leave out of /metrics (cpu, memory, network, diskIO, disk, "
                          "process, oom_event, pressure, …)  [default: percpu,memory_numa,cpuset,hugetlb]"),
        click.option("--enable-metrics", callback=_groups, metavar="GROUP,…",
                     help="metric groups to add to the default ones (e.g. percpu,hugetlb)"),
        click.option("--metrics-label", "metrics_labels", multiple=True, metavar="KEY", callback=_labels,
                     help="also export container label KEY as container_label_KEY (repeatable; none by default)"),
        click.option("--docker-only", is_flag=True, help="/metrics: only Docker containers and the root"),
        click.option("--process-counts", is_flag=True,
                     help="count each container's open files and sockets (container_file_descriptors, "
                          "container_sockets; about 4 µs per descriptor per sweep)"),
    ])


def http_config(http_address, http_tls_cert, http_tls_key, http_htpasswd, http_bearer_token_file, http_insecure,
                http_max_connections):  # -> HttpConfig | None
    from tracer.serve.config import HttpConfig
    from tracer.serve.security import SecurityConfig

    if http_address is None:
        return None
    security = SecurityConfig(http_tls_cert, http_tls_key, http_htpasswd, http_bearer_token_file, http_insecure)
    return HttpConfig(http_address[0], http_address[1], security, max_connections=http_max_connections)


def http_settings(housekeeping_interval, disable_metrics, enable_metrics, metrics_labels, docker_only,
                  process_counts, **server) -> dict:
    """AgentConfig's http, metrics and housekeeping_interval fields."""
    from tracer.serve.container_metrics import DEFAULT_DISABLED, MetricsOptions

    disabled = (DEFAULT_DISABLED | disable_metrics) - enable_metrics if disable_metrics or enable_metrics \
        else DEFAULT_DISABLED
    metrics = MetricsOptions(disabled=frozenset(disabled), label_allowlist=tuple(metrics_labels),
                             docker_only=docker_only, process_counts=process_counts)
    return {"http": http_config(**server), "metrics": metrics, "housekeeping_interval": housekeeping_interval}
