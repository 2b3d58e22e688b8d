"""The collector's web page (`collect --http`): the OOM kills of every node, newest first,
filtered by node, namespace, pod and time; a page per kill with its memory chart, the
verdict, the context and the processes (its oom_report); and the JSON behind them (/api/…).

HTML is written here, escaped, with one stylesheet shipped in the package (static/); no
script and nothing fetched from elsewhere. The chart is drawn on the server as SVG by
tracer.postmortem.chart (matplotlib), the same chart `oomtrace report -o svg` draws. The
database is opened read-only for each request (StoreReader) in a worker thread: the page never
holds a lock the collector's writer waits for.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import json
import logging
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from tracer.collect.store import Query, StoreReader
from tracer.serve.config import HttpConfig
from tracer.serve.server import HttpServer

log = logging.getLogger("oomtrace.web")
PAGE_SIZE = 200  # kills on the list page; the API takes ?limit= up to MAX_LIMIT
MAX_LIMIT = 5000
CHARTS = 32  # charts kept drawn (~50 KB of SVG each)
_SPANS = {"m": 60.0, "h": 3600.0, "d": 86400.0}


class BadFilter(ValueError):
    pass


def since_seconds(text: str) -> float:
    """`30m`, `6h`, `7d`: how far back."""
    try:
        value, unit = float(text[:-1]), text[-1]
        if unit in _SPANS and value > 0:
            return value * _SPANS[unit]
    except (ValueError, IndexError):
        pass
    raise BadFilter(f"since: {text!r} is not a span such as 30m, 6h or 7d")


def query(params: Any, limit: int = PAGE_SIZE) -> Query:
    """The kills' Query from the page's (or the API's) parameters."""
    since = params.get("since") or ""
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError as e:
            raise BadFilter(f"limit: {params['limit']!r} is not a number") from e
        if not 1 <= limit <= MAX_LIMIT:
            raise BadFilter(f"limit: 1 to {MAX_LIMIT}")
    return Query(since=time.time() - since_seconds(since) if since else None, types=("oom_kill",),
                 node=params.get("node") or None, namespace=params.get("namespace") or None,
                 pod=params.get("pod") or None, limit=limit)


class Web:
    """Reads DB (the collector's SQLite store) for each request."""

    def __init__(self, db: Path, work: Executor | None = None) -> None:
        self.db = db
        self.work = work  # the server's bounded pool
        # pyplot keeps global state: one chart at a time; a kill's chart never changes, so the
        # last CHARTS drawn are kept
        self._draw = threading.Lock()
        self._charts: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.index), web.get("/kills/{id}", self.detail),
                web.get("/api/kills", self.api_kills), web.get("/api/kills/{id}", self.api_kill),
                web.get("/api/kills/{id}/chart.{fmt}", self.chart), web.get("/static/style.css", self.style),
                web.get("/favicon.ico", self.favicon)]

    # --- reading the store -----------------------------------------------------------------------

    def kills(self, q: Query) -> tuple[list[dict], dict[str, int]]:
        """The kills (newest first) and the count of kills per namespace under the same filters."""
        with StoreReader(self.db) as reader:
            found = list(reader.query(q))[::-1]
            where, args = Query(since=q.since, types=q.types, node=q.node, pod=q.pod).where()
            counts = dict(reader.db.execute(f"SELECT coalesce(namespace, ''), count(*) FROM records{where} "
                                            "GROUP BY 1 ORDER BY 2 DESC", args).fetchall())
        return found, counts

    def kill(self, rid: str) -> tuple[dict, dict | None]:
        """The kill RID and its oom_report (None when its agent sent none)."""
        from tracer.postmortem.select import report_of

        with StoreReader(self.db) as reader:
            kill = reader.record(rid, "oom_kill")
            if kill is None:
                raise KeyError(rid)
            return kill, report_of(reader, kill)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.work, fn, *args)

    async def _kill_or_404(self, rid: str) -> tuple[dict, dict | None]:
        try:
            return await self._in_thread(self.kill, rid)
        except KeyError:
            raise web.HTTPNotFound(reason=f"no OOM kill with id {rid}") from None

    # --- JSON ------------------------------------------------------------------------------------

    async def api_kills(self, request: web.Request) -> web.Response:
        try:
            q = query(request.query)
        except BadFilter as e:
            return _json({"error": str(e)}, 400)
        found, counts = await self._in_thread(self.kills, q)
        return _json({"kills": found, "namespaces": counts})

    async def api_kill(self, request: web.Request) -> web.Response:
        kill, report = await self._kill_or_404(request.match_info["id"])
        analysis = _analysis(report)
        return _json({"kill": kill, "report": report, "analysis": analysis.to_dict() if analysis else None})

    async def chart(self, request: web.Request) -> web.Response:
        fmt = request.match_info["fmt"]
        if fmt not in ("svg", "png"):
            raise web.HTTPNotFound(reason=f"no chart format {fmt!r}: svg or png")
        kill, report = await self._kill_or_404(request.match_info["id"])
        if report is None:
            raise web.HTTPNotFound(reason="this kill has no oom_report: its agent ran without the flight recorder")
        from tracer.postmortem import chart

        try:
            body = await self._in_thread(self._chart, request.match_info["id"], report, fmt)
        except chart.ChartUnavailable as e:
            return _json({"error": f"no chart: {e}"}, 501)
        return web.Response(body=body, content_type="image/svg+xml" if fmt == "svg" else "image/png")

    def _chart(self, rid: str, report: dict, fmt: str) -> bytes:
        from tracer.postmortem import chart

        with self._draw:
            body = self._charts.get((rid, fmt))
            if body is None:
                body = self._charts[(rid, fmt)] = chart.render(report, fmt)
                while len(self._charts) > CHARTS:
                    self._charts.popitem(last=False)
            return body

    # --- HTML ------------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        params = request.query
        try:
            q = query(params)
        except BadFilter as e:
            return _page("OOM kills", f'<p class="error">{_e(str(e))}</p>' + _filters(params), 400)
        found, counts = await self._in_thread(self.kills, q)
        rows = "".join(_kill_row(k) for k in found)
        namespaces = "".join(
            f'<li><a href="/?{_qs(params, namespace=ns)}">{_e(ns or "(none)")}</a> {n}</li>'
            for ns, n in counts.items())
        body = (_filters(params) +
                f'<section class="counts"><h2>Kills per namespace</h2><ul>{namespaces or "<li>none</li>"}</ul>'
                f'</section><table id="kills"><thead><tr><th>time (UTC)</th><th>node</th><th>namespace</th>'
                f'<th>pod</th><th>container</th><th>process</th><th>cgroup</th><th>constraint</th></tr></thead>'
                f'<tbody>{rows or _EMPTY_ROW}</tbody></table>'
                f'<p class="note">{len(found)} shown, newest first (at most {q.limit}).</p>')
        return _page("OOM kills", body)

    async def detail(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        try:
            kill, report = await self._in_thread(self.kill, rid)
        except KeyError:
            return _page("Not found", f'<p class="error">No OOM kill with id {_e(rid)}.</p>', 404)
        analysis = _analysis(report)
        parts = [f'<p><a href="/">← all kills</a></p><h2>{_e(_who(kill))}</h2>', _facts(kill)]
        if report is None:
            parts.append('<p class="note">No oom_report for this kill: its agent ran without the flight recorder '
                         '(<code>run --no-recorder</code>, or a version before it), or the report was lost.</p>')
        else:
            assert analysis is not None
            parts.append(f'<p class="verdict" id="verdict">{_e(analysis.verdict)}</p>')
            parts.append(f'<figure><img id="chart" src="/api/kills/{_q(rid)}/chart.svg" width="1000" '
                         f'alt="memory before the kill"></figure>')
            parts.append(_context(report, analysis))
            parts.append(_processes(report))
            notes = "".join(f"<li>{_e(str(n))}</li>" for n in report.get("notes") or ())
            if notes:
                parts.append(f'<ul class="notes">{notes}</ul>')
        parts.append(f'<p><a href="/api/kills/{_q(rid)}">JSON</a></p>')
        return _page(f"OOM kill {rid}", "".join(parts))

    async def style(self, request: web.Request) -> web.Response:
        css = resources.files("tracer.collect").joinpath("static/style.css").read_text(encoding="utf-8")
        return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "max-age=3600"})

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)


def web_server(db: Path, config: HttpConfig) -> HttpServer:
    server = HttpServer(config, name="oomtrace-web")
    server.add_routes(Web(db, server.work).routes())
    return server


# --- helpers ---------------------------------------------------------------------------------------

_EMPTY_ROW = '<tr><td colspan="8" class="note">No OOM kill matches.</td></tr>'


def _analysis(report: dict | None):
    if report is None:
        return None
    from tracer.postmortem.analysis import analyse

    return analyse(report)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(value, default=str, separators=(",", ":")), status=status,
                        content_type="application/json")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _qs(params: Any, **changes: str) -> str:
    merged = {k: v for k, v in params.items() if k in ("node", "namespace", "pod", "since") and v}
    merged.update(changes)
    return _e(urllib.parse.urlencode(merged))


def _time(stamp: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(stamp), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _pod(record: dict) -> dict:
    pod = record.get("pod")
    return pod if isinstance(pod, dict) else {}


def _container(record: dict) -> dict:
    container = record.get("container")
    return container if isinstance(container, dict) else {}


def _who(kill: dict) -> str:
    pod, container = _pod(kill), _container(kill)
    name = f"{pod.get('namespace')}/{pod.get('name')}" if pod.get("name") else container.get("name") or ""
    return f"{kill.get('comm') or '?'} (pid {kill.get('pid')}) killed" + (f" in {name}" if name else "") + \
        f" on {kill.get('node') or '?'}"


def _kill_row(k: dict) -> str:
    pod, container = _pod(k), _container(k)
    rid = str(k.get("id") or "")
    return (f'<tr><td><a href="/kills/{_q(rid)}">{_time(k.get("time"))}</a></td><td>{_e(k.get("node"))}</td>'
            f'<td>{_e(pod.get("namespace"))}</td><td>{_e(pod.get("name"))}</td>'
            f'<td>{_e(pod.get("container") or container.get("name"))}</td>'
            f'<td>{_e(k.get("comm"))} ({_e(k.get("pid"))})</td><td class="path">{_e(k.get("cgroup"))}</td>'
            f'<td>{_e(k.get("constraint"))}</td></tr>')


def _filters(params: Any) -> str:
    def field(name: str, label: str, hint: str) -> str:
        return (f'<label>{label} <input name="{name}" value="{_e(params.get(name, ""))}" '
                f'placeholder="{hint}"></label>')

    return ('<form class="filters" method="get" action="/">' + field("node", "node", "any") +
            field("namespace", "namespace", "any") + field("pod", "pod", "any") +
            field("since", "since", "e.g. 6h, 7d") + '<button type="submit">filter</button></form>')


def _facts(kill: dict) -> str:
    pod, container = _pod(kill), _container(kill)
    facts = [("time (UTC)", _time(kill.get("time"))), ("node", kill.get("node")),
             ("namespace", pod.get("namespace")), ("pod", pod.get("name")),
             ("container", pod.get("container") or container.get("name")), ("image", container.get("image")),
             ("process", f"{kill.get('comm')} (pid {kill.get('pid')})"), ("cgroup", kill.get("cgroup")),
             ("OOMing memcg", kill.get("memcg")), ("constraint", kill.get("constraint")), ("id", kill.get("id"))]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts if v not in (None, ""))
    return f'<table class="facts" id="facts">{rows}</table>'


def _context(report: dict, analysis) -> str:
    facts = {k: v for k, v in analysis.to_dict().items() if k != "verdict" and v not in (None, "", [], {})}
    rows = "".join(f"<tr><th>{_e(k.replace('_', ' '))}</th><td>{_e(_size(v))}</td></tr>" for k, v in facts.items())
    return f'<h3>Context</h3><table class="facts" id="context">{rows}</table>' if rows else ""


def _processes(report: dict) -> str:
    procs = report.get("processes") or []
    if not procs:
        return '<h3>Processes</h3><p class="note">No process was left in the cgroup.</p>'
    rows = "".join(
        f"<tr><td>{_e(p.get('pid'))}</td><td>{_e(p.get('comm'))}</td><td>{_mib(p.get('rss'))}</td>"
        f"<td>{_mib(p.get('anon'))}</td><td>{_mib(p.get('file'))}</td><td>{_mib(p.get('shmem'))}</td>"
        f"<td class=\"path\">{_e(p.get('cgroup'))}</td></tr>" for p in procs)
    return ('<h3>Processes at the kill</h3><table id="processes"><thead><tr><th>pid</th><th>command</th>'
            '<th>rss</th><th>anon</th><th>file</th><th>shmem</th><th>cgroup</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>')


def _size(value: object) -> object:
    """A byte count as MiB (the analysis's figures are bytes; small ints are counts)."""
    return f"{value / 1048576:.1f} MiB" if isinstance(value, int) and not isinstance(value, bool) \
        and abs(value) >= 1 << 20 else value


def _mib(value: object) -> str:
    return f"{value / 1048576:.1f} MiB" if isinstance(value, (int, float)) else ""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · oomtrace</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/static/style.css"></head><body><header><h1><a href="/">oomtrace</a>'
            f' <span>{_e(title)}</span></h1></header><main>{body}</main></body></html>')
    return web.Response(text=text, status=status, content_type="text/html")
