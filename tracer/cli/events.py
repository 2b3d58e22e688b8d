"""`oomtrace events`: what a collector stored (--db), or cAdvisor's container events live."""

from __future__ import annotations

from pathlib import Path

import click

from tracer import defaults
from tracer.cli.params import DURATION, POSITIVE_SECONDS


@click.command()
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="a database written by oomtrace collect; without it, events as they happen (root)")
@click.option("--since", type=DURATION, help="only records newer than this, e.g. 1h")
@click.option("--until", type=DURATION, help="only records older than this, e.g. 10m")
@click.option("-t", "--type", "types", multiple=True, help="only this record type (repeatable)")
@click.option("--cgroup", "cgroup_prefix", metavar="PREFIX", help="cgroup or OOMing memcg starts with PREFIX")
@click.option("--node", help="only records of this node")
@click.option("--namespace", help="--db: only records of pods in this Kubernetes namespace")
@click.option("--pod", help="--db: only records of this pod (found after the pod is gone)")
@click.option("--container", help="--db: only records of this container (its name in the pod, or the runtime's)")
@click.option("--image", help="--db: only records of containers of this image (as the runtime names it)")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="the newest N")
@click.option("--output", type=click.Choice(("table", "json")), default="table", show_default=True)
@click.option("--duration", type=POSITIVE_SECONDS, help="live: stop after this many seconds")
@click.option("--cache-dir", type=click.Path(path_type=Path, readable=False), default=defaults.CACHE_DIR,
              show_default=True, help="live: the header cache (--db does not use it)")
def events(db: Path | None, since: float | None, until: float | None, types: tuple[str, ...],
           cgroup_prefix: str | None, node: str | None, namespace: str | None, pod: str | None,
           container: str | None, image: str | None, limit: int, output: str, duration: float | None,
           cache_dir: Path) -> None:
    """Records a collector stored (--db), oldest first; or, live, cAdvisor's container events
    (-t oom, oomKill, containerCreation, containerDeletion) as the kernel reports them."""
    if since is not None and until is not None and since <= until:
        raise click.BadParameter(f"--since must reach further back than --until ({since:g} s ≤ {until:g} s ago): "
                                 "nothing lies between", param_hint="--since")
    if db is not None:
        from tracer.cli.collect import print_stored
        from tracer.events.records import RECORD_TYPES

        unknown = set(types) - set(RECORD_TYPES)
        if unknown:
            raise click.BadParameter(f"{', '.join(sorted(unknown))}: record types are {', '.join(RECORD_TYPES)}",
                                     param_hint="--type")

        workload = {"namespace": namespace, "pod": pod, "container": container, "image": image}
        print_stored(db, since, until, types, cgroup_prefix, node, workload, limit, output)
        return
    asked = [f"--{name}" for name, value in (("namespace", namespace), ("pod", pod), ("container", container),
                                              ("image", image)) if value is not None]
    if asked:
        raise click.UsageError(f"{', '.join(asked)} filter what a collector stored: give --db")
    from tracer.cli.stats import live_events
    from tracer.stats.model import EVENT_TYPES

    unknown = set(types) - set(EVENT_TYPES)
    if unknown:
        raise click.BadParameter(f"{', '.join(sorted(unknown))}: live types are {', '.join(EVENT_TYPES)}",
                                 param_hint="--type")
    live_events(types, cgroup_prefix or "/", duration, output, cache_dir)
