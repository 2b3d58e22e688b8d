"""`oomtrace report`: the post-mortem of an OOM kill, from a collector's database or a saved
`oomtrace run -o json` stream: a verdict and context for a terminal, JSON for programs, or a
chart (PNG, SVG)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

OUTPUTS = ("text", "json", "png", "svg")


@click.command()
@click.argument("kill_id", required=False, metavar="[ID]")
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="a database written by oomtrace collect (read-only)")
@click.option("--input", "stream", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="a saved `oomtrace run -o json` stream")
@click.option("--last", is_flag=True, help="the newest report that matches the filters")
@click.option("--node", help="only kills on this node")
@click.option("--namespace", help="only kills of pods in this Kubernetes namespace")
@click.option("--pod", help="only kills in this pod (found after the pod is gone)")
@click.option("--cgroup", "cgroup_prefix", metavar="PREFIX", help="only kills whose cgroup or OOMing memcg starts "
              "with PREFIX")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
              help="without ID or --last: list the newest N reports")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="text", show_default=True,
              help="text: verdict, context, processes; json: the report and its analysis; png/svg: a chart (--out)")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="where -o png|svg writes the chart")
def report(kill_id: str | None, db: Path | None, stream: Path | None, last: bool, node: str | None,
           namespace: str | None, pod: str | None, cgroup_prefix: str | None, limit: int, output: str,
           out: Path | None) -> None:
    """Why an OOM kill happened: the memory curve of its cgroup over the minutes before it, what
    grew, the limit it hit, reclaim stalls, and the processes in it. ID is the oom_kill's id (or
    the oom_report's); without ID or --last, the newest reports are listed."""
    from tracer.postmortem.select import NoReport, Wanted, from_store, from_stream

    if (db is None) == (stream is None):
        raise click.UsageError("give one of --db FILE (a collector's database) or --input FILE (run -o json)")
    if kill_id is not None and last:
        raise click.UsageError("give an ID or --last, not both")
    if output in ("png", "svg") and out is None:
        raise click.UsageError(f"-o {output} writes a file: give --out FILE")
    single = kill_id is not None or last
    wanted = Wanted(kill_id, node, namespace, pod, cgroup_prefix, 1 if last else limit)
    try:
        found = from_store(db, wanted) if db is not None else from_stream(stream, wanted)  # type: ignore[arg-type]
    except NoReport as e:
        raise click.ClickException(str(e)) from e
    if not single:
        if output in ("png", "svg"):
            raise click.UsageError(f"-o {output} draws one report: give an ID or --last")
        _list(found, output)
        return
    _one(found[-1], output, out)


def _one(record: dict, output: str, out: Path | None) -> None:
    from tracer.postmortem.analysis import analyse

    analysis = analyse(record)
    if output == "json":
        click.echo(json.dumps({"verdict": analysis.verdict, "analysis": analysis.to_dict(), "report": record},
                              separators=(",", ":"), default=repr))
    elif output == "text":
        click.echo(text(record, analysis))
    else:
        from tracer.postmortem.chart import ChartUnavailable, render

        try:
            data = render(record, output, analysis)
        except ChartUnavailable as e:
            raise click.ClickException(str(e)) from e
        assert out is not None
        try:
            out.write_bytes(data)
        except OSError as e:
            raise click.ClickException(f"cannot write {out}: {e.strerror or e}") from e
        click.echo(f"{out}: {analysis.verdict}", err=True)


def _list(found: list[dict], output: str) -> None:
    from tracer.cli.tables import _columns, workload
    from tracer.postmortem.analysis import analyse

    if output == "json":
        for record in found:
            click.echo(json.dumps({"kill_id": record.get("kill_id"), "id": record.get("id"),
                                   "node": record.get("node"), "time": record.get("kill_time"),
                                   "cgroup": record.get("cgroup"), "verdict": analyse(record).verdict},
                                  separators=(",", ":"), default=repr))
        return
    rows: list[tuple[str, ...]] = [("KILL TIME", "NODE", "WORKLOAD", "CGROUP", "PROCESS", "KILL ID", "VERDICT")]
    rows += [(_when(r.get("kill_time")), str(r.get("node") or "-"), workload(r), str(r.get("cgroup") or "-"),
              f"{r.get('pid')} {r.get('comm')}", str(r.get("kill_id") or "-"), analyse(r).verdict) for r in found]
    click.echo(_columns(rows))


def text(record: dict, analysis) -> str:
    """The verdict, then the context (who, where, the limit, the samples, notes) and the processes."""
    from tracer.cli.tables import _columns, workload
    from tracer.events.sinks import oom_sentence, printable
    from tracer.postmortem.analysis import mib

    lines = [printable(analysis.verdict), ""]
    lines.append(printable(oom_sentence(dict(record, memcg_limit=record.get("limit")))))
    lines.append(f"  killed    {_when(record.get('kill_time'))} on {record.get('node') or '-'}"
                 f" (kill id {record.get('kill_id')}; report {record.get('delay', '?')} s later)")
    lines.append(f"  workload  {workload(record)}")
    lines.append(f"  cgroup    {record.get('cgroup')}   memcg {record.get('memcg') or '-'}"
                 f"   constraint {record.get('constraint')}")
    lines.append(f"  limit     {mib(record.get('limit')) if record.get('limit') else 'none'}"
                 f"   usage at the kill {mib(record.get('usage_at_kill')) if record.get('usage_at_kill') else '-'}"
                 + (f"   growth over the last minute {analysis.growth_per_s / (1 << 20):+.2f} MiB/s"
                    if analysis.growth_per_s is not None else ""))
    for curve in record.get("curves") or ():
        t = curve.get("t") or []
        span = f"over {-t[0]:.0f} s" if t and t[0] < 0 else "at the kill only" if t else "none"
        lines.append(f"  samples   {curve.get('cgroup')} ({'+'.join(curve.get('roles') or ())}): {len(t)} {span}"
                     f" (every {record.get('step')} s, every {record.get('fine_step')} s above"
                     f" {100 * (record.get('fine_above') or 0):.0f}% of the limit)")
    for note in record.get("notes") or ():
        lines.append(f"  note      {note}")
    procs = record.get("processes") or []
    total = record.get("processes_total")
    lines += ["", f"processes in {record.get('processes_cgroup') or '-'} at the kill: {total if total else 'none'}"
              + (f" (the {len(procs)} biggest shown)" if total and total > len(procs) else "")]
    if procs:
        rows: list[tuple[str, ...]] = [("PID", "RSS", "ANON", "FILE", "SHMEM", "COMM", "CGROUP")]
        rows += [(str(p.get("pid")), mib(p.get("rss")), mib(p.get("anon")), mib(p.get("file")), mib(p.get("shmem")),
                  str(p.get("comm")), str(p.get("cgroup"))) for p in procs]
        return "\n".join(printable(line) for line in lines) + "\n" + _columns(rows)  # cells already printable
    return "\n".join(printable(line) for line in lines)


def _when(stamp: object) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}"
