"""cAdvisor's REST API over the Interface: /api/v1.0-v1.3 and /api/v2.0-v2.1, with its paths,
query parameters and JSON shapes (cAdvisor's cmd/internal/api, docs/api.md, docs/api_v2.md).

Where cAdvisor answers an error with a 500 and a text body, this answers as an API should:
404 with a JSON error for an unknown container, 400 for a bad parameter; never a traceback.
A container name in a URL is only ever looked up among the known containers: no part of a
URL reaches the filesystem.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from aiohttp import web

from tracer.errors import NoSuchCgroup
from tracer.serve.config import RestLimits
from tracer.stats.conversion import cpu_inst
from tracer.stats.interface import Interface
from tracer.stats.model import (
    EVENT_TYPES,
    ContainerInfo,
    ContainerInfoRequest,
    EventRequest,
    FsInfoV2,
    NetworkStatsV2,
    RequestOptions,
    parse_rfc3339,
    to_json,
)
from tracer.stats.model.rest import Attributes, DeprecatedContainerStats
from tracer.stats.summary import derive

log = logging.getLogger("oomtrace.http")
V1 = ("v1.0", "v1.1", "v1.2", "v1.3")
V2 = ("v2.0", "v2.1")
_V1_TYPES = {"v1.0": ("containers", "machine"), "v1.1": ("containers", "machine", "subcontainers"),
             "v1.2": ("containers", "docker", "machine", "subcontainers"),
             "v1.3": ("containers", "docker", "events", "machine", "subcontainers")}
_V2_TYPES = ("attributes", "events", "machine", "spec", "stats", "storage", "summary", "version")
_EVENT_PARAMS = {"oom_events": "oom", "oom_kill_events": "oomKill", "creation_events": "containerCreation",
                 "deletion_events": "containerDeletion"}
_TRUE, _FALSE = frozenset({"1", "t", "T", "TRUE", "true", "True"}), frozenset({"0", "f", "F", "FALSE", "false",
                                                                             "False"})
MAX_EVENTS_CAP = 100_000  # the EventStore's own bound; a larger max_events is the same as all


class BadRequest(ValueError):
    """A query parameter or body cAdvisor would refuse."""


def error(status: int, message: str) -> web.Response:
    return web.Response(text=json.dumps({"error": message}), status=status, content_type="application/json")


def container_name(args: str) -> str:
    """cAdvisor's getContainerName: path.Join("/", args), cleaned (`..` cannot climb above /)."""
    return posixpath.normpath("/" + args.strip("/")) if args.strip("/") else "/"


def parse_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool; None where it would fail (cAdvisor then ignores the parameter)."""
    return True if value in _TRUE else False if value in _FALSE else None


def parse_time(value: str, name: str) -> float:
    """RFC 3339, as Go's time.Parse(time.RFC3339) takes it: a zone is required."""
    try:
        return parse_rfc3339(value)
    except ValueError as e:
        raise BadRequest(f"invalid {name}: {e}") from e


def event_request(query: Any, name: str) -> tuple[EventRequest, bool]:
    """cAdvisor's getEventRequest. No event type asked for means none (its NewRequest)."""
    stream = parse_bool(query.get("stream", "")) or False
    sub = parse_bool(query.get("subcontainers", "")) or False
    every = parse_bool(query.get("all_events", "")) or False
    types = set(EVENT_TYPES) if every else {kind for param, kind in _EVENT_PARAMS.items()
                                            if parse_bool(query.get(param, "")) is True}
    max_events = 10
    if "max_events" in query:
        try:
            max_events = int(query["max_events"])
        except ValueError as e:
            raise BadRequest(f"invalid max_events {query['max_events']!r}") from e
    start = parse_time(query["start_time"], "start_time") if "start_time" in query else None
    end = parse_time(query["end_time"], "end_time") if "end_time" in query else None
    if stream and (start is not None or end is not None):
        raise BadRequest("a stream of events takes no start_time or end_time")
    request = EventRequest(start, end, frozenset(types), min(max_events, MAX_EVENTS_CAP), name, sub)
    return request, stream


def request_options(query: Any) -> RequestOptions:
    """cAdvisor's GetRequestOptions, with its defaults (count 64) and its refusals."""
    id_type = query.get("type") or "name"
    if id_type not in ("name", "docker"):
        raise BadRequest(f"unknown 'type' {id_type!r}")
    count = 64
    if query.get("count"):
        try:
            count = int(query["count"])
        except ValueError as e:
            raise BadRequest(f"failed to parse 'count' option: {query['count']}") from e
        if count < -1:
            raise BadRequest(f"invalid 'count' option: only -1 and larger values allowed, not {count}")
    max_age = None
    if query.get("max_age"):
        max_age = go_duration(query["max_age"])
    return RequestOptions(id_type, count, query.get("recursive") == "true", max_age)


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Go's time.ParseDuration (e.g. 1m30s, 500ms), in seconds."""
    rest, total = text, 0.0
    if rest in ("0",):
        return 0.0
    if not rest:
        raise BadRequest("empty duration")
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        number, unit = rest[:i], rest[i:j]
        if not number or unit not in _UNITS:
            raise BadRequest(f"failed to parse 'max_age' option: invalid duration {text!r}")
        try:
            total += float(number) * _UNITS[unit]
        except ValueError as e:  # "." or "1..2"
            raise BadRequest(f"failed to parse 'max_age' option: invalid duration {text!r}") from e
        rest = rest[j:]
    return total


async def container_request(request: web.Request) -> ContainerInfoRequest:
    """The v1 POST body (ContainerInfoRequest JSON: num_stats, start, end); none = defaults."""
    body = await request.read()
    if not body.strip():
        return ContainerInfoRequest()
    if not body.lstrip().startswith(b"{"):
        raise BadRequest("unable to decode the json value: an object expected")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # RecursionError: {"a": [[[[… nested past Python's limit
        raise BadRequest(f"unable to decode the json value: {type(e).__name__}") from e
    if not isinstance(data, dict):
        raise BadRequest("unable to decode the json value: an object expected")
    num_stats = data.get("num_stats", ContainerInfoRequest().num_stats)
    if not isinstance(num_stats, int) or isinstance(num_stats, bool):
        raise BadRequest("num_stats: an integer expected")
    times: dict[str, float | None] = {}
    for key in ("start", "end"):
        value = data.get(key)
        if value and not isinstance(value, str):
            raise BadRequest(f"{key}: an RFC 3339 time expected")
        times[key] = parse_time(value, key) if value else None
    return ContainerInfoRequest(num_stats, times["start"], times["end"])


def deprecated_stats(info: ContainerInfo) -> list[DeprecatedContainerStats]:
    """cAdvisor's DeprecatedStatsFromV1 (/api/v2.0/stats)."""
    spec, out, last = info.spec, [], None
    for s in info.stats:
        d = DeprecatedContainerStats(timestamp=s.timestamp, has_cpu=spec.has_cpu, has_memory=spec.has_memory,
                                     has_hugetlb=spec.has_hugetlb, has_network=spec.has_network,
                                     has_filesystem=spec.has_filesystem, has_diskio=spec.has_diskio,
                                     has_custom_metrics=spec.has_custom_metrics)
        if spec.has_cpu and s.cpu is not None:
            d.cpu, d.cpu_inst, last = s.cpu, cpu_inst(last, s), s
        if spec.has_memory and s.memory is not None:
            d.memory = s.memory
        if spec.has_hugetlb:
            d.hugetlb = s.hugetlb
        if spec.has_network and s.network is not None:
            d.network = NetworkStatsV2(s.network.interfaces)
        if spec.has_filesystem:
            d.filesystem = s.filesystem
        if spec.has_diskio and s.diskio is not None:
            d.diskio = s.diskio
        out.append(d)
    return out


class Busy(Exception):
    """More requests are being worked on than the pool takes: answered 503."""


class Rest:
    """The routes. Each handler's work, the Interface call and the JSON encoding both, runs in
    WORK (a small pool of threads: a call may read cgroup files, and 4 MB of JSON takes a
    while), so the event loop only moves bytes; at most limits.max_busy requests are worked on
    at once, and one that waits longer than limits.wait_busy is answered 503."""

    def __init__(self, interface: Interface, limits: RestLimits | None = None,
                 work: Executor | None = None) -> None:
        self.interface = interface
        self.limits = limits or RestLimits()
        self.work = work
        self.streams = 0
        self._dropped_closed = 0  # events missed by streams that ended
        self._live: set[Any] = set()  # the watches of the streams open now
        self._busy: asyncio.Semaphore | None = None  # made in the loop's thread, on first use

    @property
    def stream_dropped(self) -> int:
        return self._dropped_closed + sum(w.dropped for w in list(self._live))

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/api", self.api), web.route("*", "/api/", self.api),
                web.route("*", "/api/{version}", self.api), web.route("*", "/api/{version}/", self.api),
                web.route("*", "/api/{version}/{type}", self.api),
                web.route("*", "/api/{version}/{type}/{args:.*}", self.api)]

    async def api(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST", "HEAD"):
            response = error(405, f"method {request.method} not allowed")
            response.headers["Allow"] = "GET, POST, HEAD"
            return response
        version = request.match_info.get("version")
        kind = request.match_info.get("type")
        args = request.match_info.get("args", "")
        if not version:
            return error(400, "Supported API versions: " + ",".join(V1 + V2))
        if version not in V1 + V2:
            return error(404, f"unsupported API version {version!r}")
        types = _V1_TYPES[version] if version in V1 else _V2_TYPES
        if not kind:
            return error(400, f"Supported request types: {','.join(types)}")
        if kind not in types:
            return error(404, f"unknown request type {kind!r}")
        try:
            handler = getattr(self, f"_{'v1' if version in V1 else 'v2'}_{kind}")
            return await handler(request, args, version)
        except BadRequest as e:
            return error(400, str(e))
        except NoSuchCgroup as e:
            return error(404, str(e))
        except Busy:
            return error(503, f"busy: {self.limits.max_busy} requests are being answered; try again")
        except web.HTTPException:  # e.g. 413 for a body past the limit: the server's guard answers it
            raise
        except Exception as e:
            log.exception("%s %s failed", request.method, request.path)
            return error(500, f"internal error: {type(e).__name__}")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """FN(*ARGS) in the pool, once one of the limits.max_busy places is free (Busy when
        none is within limits.wait_busy). /metrics goes through here too."""
        if self._busy is None:
            self._busy = asyncio.Semaphore(self.limits.max_busy)
        try:
            await asyncio.wait_for(self._busy.acquire(), self.limits.wait_busy)
        except asyncio.TimeoutError:
            raise Busy() from None
        try:
            return await asyncio.get_running_loop().run_in_executor(self.work, fn, *args)
        finally:
            self._busy.release()

    async def _json(self, fn: Callable[..., Any], *args: Any, status: int = 200) -> web.Response:
        """FN(*ARGS) as a JSON response, worked out and encoded in the pool."""
        body = await self.run(_encode, fn, args)
        return web.Response(body=body, status=status, content_type="application/json")

    # --- v1 ---------------------------------------------------------------------------------

    async def _v1_machine(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        return await self._json(self.interface.machine_info)

    async def _v1_containers(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        query = await container_request(request)
        return await self._json(self.interface.container_info, container_name(args), query)

    async def _v1_subcontainers(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        query = await container_request(request)
        return await self._json(self.interface.subcontainer_info, container_name(args), query)

    async def _v1_docker(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        query = await container_request(request)
        parts = [p for p in args.split("/") if p]
        if len(parts) > 1:
            raise BadRequest(f"unknown request for Docker container {parts}")
        if parts:
            return await self._json(lambda: {(i := self.interface.docker_container(parts[0], query)).reference.name: i})
        return await self._json(lambda: {i.reference.name: i for i in self.interface.subcontainer_info("/", query)
                                         if i.reference.namespace == "docker"})

    async def _v1_events(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        query, stream = event_request(request.query, container_name(args))
        if not stream:
            return await self._json(self.interface.get_events, query)
        if request.method == "HEAD":  # a stream has no end to give a length for
            response = error(405, "an event stream is read with GET")
            response.headers["Allow"] = "GET"
            return response
        return await self._stream(request, query)

    _v2_events = _v1_events

    async def _stream(self, request: web.Request, query: EventRequest) -> web.StreamResponse:
        """JSON lines as events happen, until the client goes away (cAdvisor's streamResults).
        A client that stops reading for limits.write_timeout is dropped."""
        if self.streams >= self.limits.max_streams:
            return error(503, f"too many event streams open ({self.limits.max_streams})")
        self.streams += 1
        watch = None
        try:
            watch = self.interface.watch_events(query, self.limits.queue_size)
            self._live.add(watch)
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            while request.transport is not None and not request.transport.is_closing():
                event = watch.get(timeout=0)  # never waits: the loop is not to block
                if event is None:
                    await asyncio.sleep(self.limits.poll)
                    continue
                line = (json.dumps(to_json(event), separators=(",", ":")) + "\n").encode()
                try:
                    await asyncio.wait_for(response.write(line), self.limits.write_timeout)
                except asyncio.TimeoutError:
                    break
            return response
        finally:
            self.streams -= 1
            if watch is not None:
                self._live.discard(watch)
                self._dropped_closed += watch.dropped
                self.interface.stop_watch(watch)

    # --- v2 ---------------------------------------------------------------------------------

    async def _v2_version(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        return await self._json(lambda: self.interface.version_info().cadvisor_version)

    async def _v2_attributes(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        return await self._json(self._attributes)

    def _attributes(self) -> Attributes:
        machine, info = self.interface.machine_info(), self.interface.version_info()
        return Attributes(
            info.kernel_version, info.container_os_version, info.docker_version, info.docker_api_version,
            info.cadvisor_version, machine.num_cores, machine.cpu_frequency_khz, machine.memory_capacity,
            machine.machine_id, machine.system_uuid, machine.hugepages, machine.filesystems, machine.disk_map,
            machine.network_devices, machine.topology, machine.cloud_provider, machine.instance_type)

    _v2_machine = _v1_machine

    async def _v2_stats(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        options = request_options(request.query)
        name = container_name(args)
        if version == "v2.1":  # map name → v2 ContainerInfo, the root left out (it is machine stats)
            return await self._json(lambda: {n: i for n, i in self.interface.container_info_v2(name, options).items()
                                             if n != "/"})
        return await self._json(lambda: {n: deprecated_stats(i) for n, i in
                                         self.interface.get_requested_containers_info(name, options).items()})

    async def _v2_spec(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        options = replace(request_options(request.query), count=0)
        name = container_name(args)
        return await self._json(lambda: {n: i.spec for n, i in self.interface.container_info_v2(name, options).items()})

    async def _v2_summary(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        options = replace(request_options(request.query), count=-1)
        name = container_name(args)
        return await self._json(lambda: {n: derive(i.stats, time.time()) for n, i in
                                         self.interface.get_requested_containers_info(name, options).items()})

    async def _v2_storage(self, request: web.Request, args: str, version: str) -> web.StreamResponse:
        label = request.query.get("label", "")
        if request.query.get("uuid"):  # cAdvisor looks a filesystem up by its UUID; oomtrace keeps none
            return error(404, f"no filesystem with uuid {request.query['uuid']!r}: oomtrace knows filesystems "
                              "by label only")

        def found() -> list[FsInfoV2]:
            out = [f for f in self._filesystems() if not label or label in f.labels]
            if not out:
                raise NoSuchCgroup(f"no filesystem labelled {label!r}")
            return out
        return await self._json(found)

    def _filesystems(self) -> list[FsInfoV2]:
        """Kubelet's filesystems: the root's, then the runtime's images' (when there is one)."""
        out = [self.interface.root_fs_info()]
        try:
            out.extend(self.interface.images_fs_info())
        except Exception as e:  # noqa: BLE001 - no runtime found: the root alone, as cAdvisor without one
            log.debug("no image filesystem: %s", e)
        return out


def _encode(fn: Callable[..., Any], args: tuple) -> bytes:
    return json.dumps(to_json(fn(*args)), separators=(",", ":")).encode()
