"""cAdvisor's REST API on `run --http`, on the real kernel: each endpoint's JSON against
cAdvisor's struct tags (tests/data), stats of a real cgroup equal to the CLI's, a real OOM kill
delivered by an event stream, and the errors (404, 400, never a traceback)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cgroups import Cgroup
from tests.kernel import go, spawn_hog
from tests.serving import get, get_json, serving_agent, url
from tests.test_cadvisor_conformance import _MASTER_MEMORY

pytestmark = pytest.mark.root
MiB = 1 << 20
HOLD = ("a = bytearray({n} << 20)\nfor i in range(0, len(a), 4096):\n    a[i] = 1\n"
        "import time\ntime.sleep(600)\n")
FIELDS = json.loads((Path(__file__).parent / "data" / "cadvisor-json-fields-v0.56.2.json").read_text())["files"]


def tags(go_file: str, struct: str) -> tuple[set[str], set[str]]:
    """(every JSON name, the names always written) of a cAdvisor struct."""
    fields = [f for f in FIELDS[go_file][struct] if not f["skip"]]
    names, always = set(), set()
    for f in fields:
        if f["inline"] or not f["field"]:  # an embedded struct: its fields are the parent's
            inner_names, inner_always = tags(go_file if f["type"].lstrip("*") in FIELDS[go_file] else
                                             "info/v1/container.go", f["type"].lstrip("*").split(".")[-1])
            names |= inner_names
            always |= inner_always
            continue
        names.add(f["json"])
        if not f["omitempty"]:
            always.add(f["json"])
    return names, always


# Fields of cAdvisor master that oomtrace already writes (the conformance test's known differences)
MASTER_FIELDS = {"ContainerSpec": {"start_time"}, "MemoryStats": set(_MASTER_MEMORY)}


def conforms(obj: Any, go_file: str, struct: str) -> None:
    names, always = tags(go_file, struct)
    names |= MASTER_FIELDS.get(struct, set())
    assert isinstance(obj, dict), obj
    assert set(obj) <= names, f"{struct}: not cAdvisor's {set(obj) - names}"
    assert always <= set(obj), f"{struct}: missing {always - set(obj)}"


@pytest.fixture(scope="module")
def served(cache_dir):
    cg = Cgroup.create("rest", memory_limit_in_bytes=str(256 * MiB), pids_max="50")
    proc = cg.spawn(HOLD.format(n=32))
    try:
        with serving_agent(cache_dir) as agent:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # two sweeps of the new cgroup: cpu_inst needs them
                status, body, _ = get(url(agent, f"/api/v2.0/stats{cg.name}?count=2"))
                if status == 200 and len(json.loads(body).get(cg.name, [])) >= 2:
                    break
                time.sleep(0.3)
            yield agent, cg
    finally:
        proc.kill()
        proc.wait()
        cg.remove()


def test_v1_endpoints_have_cadvisors_shapes(served):
    agent, cg = served
    machine = get_json(url(agent, "/api/v1.3/machine"))
    conforms(machine, "info/v1/machine.go", "MachineInfo")
    info = get_json(url(agent, f"/api/v1.3/containers{cg.name}"))
    conforms(info, "info/v1/container.go", "ContainerInfo")
    conforms(info["spec"], "info/v1/container.go", "ContainerSpec")
    conforms(info["stats"][-1], "info/v1/container.go", "ContainerStats")
    assert info["name"] == cg.name and info["spec"]["memory"]["limit"] == 256 * MiB
    root = get_json(url(agent, "/api/v1.3/containers/"))
    assert root["name"] == "/" and cg.name in [s["name"] for s in root["subcontainers"]]
    subs = get_json(url(agent, "/api/v1.3/subcontainers/"))
    assert isinstance(subs, list) and cg.name in [s["name"] for s in subs]
    post = get_json(url(agent, f"/api/v1.3/containers{cg.name}"), data=b'{"num_stats": 1}')
    assert len(post["stats"]) == 1
    assert get_json(url(agent, "/api/v1.2/docker/")) == {}  # no dockerd in this test: no Docker containers
    made = Cgroup.create("rest-event")  # the engine reports its mkdir: a containerCreation event
    try:
        deadline = time.monotonic() + 10
        while True:
            events = get_json(url(agent, "/api/v1.3/events/?all_events=true&subcontainers=true&max_events=-1"))
            if made.name in [e["container_name"] for e in events] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        made.remove()
    assert made.name in [e["container_name"] for e in events if e["event_type"] == "containerCreation"]
    for e in events:
        conforms(e, "info/v1/container.go", "Event")


def test_v2_endpoints_have_cadvisors_shapes(served):
    agent, cg = served
    assert get_json(url(agent, "/api/v2.0/version")) == agent.manager.version_info().cadvisor_version
    conforms(get_json(url(agent, "/api/v2.0/attributes")), "info/v2/machine.go", "Attributes")
    conforms(get_json(url(agent, "/api/v2.0/machine")), "info/v1/machine.go", "MachineInfo")
    stats = get_json(url(agent, f"/api/v2.0/stats{cg.name}?count=2"))
    assert list(stats) == [cg.name] and len(stats[cg.name]) == 2
    for s in stats[cg.name]:
        conforms(s, "info/v2/container.go", "DeprecatedContainerStats")
    assert stats[cg.name][-1]["has_memory"] and "cpu_inst" in stats[cg.name][-1]
    v21 = get_json(url(agent, f"/api/v2.1/stats{cg.name}?count=1"))
    conforms(v21[cg.name], "info/v2/container.go", "ContainerInfo")
    conforms(v21[cg.name]["stats"][0], "info/v2/container.go", "ContainerStats")
    spec = get_json(url(agent, f"/api/v2.0/spec{cg.name}"))
    conforms(spec[cg.name], "info/v2/container.go", "ContainerSpec")
    assert spec[cg.name]["memory"]["limit"] == 256 * MiB
    recursive = get_json(url(agent, "/api/v2.0/spec/?recursive=true"))
    assert "/" in recursive and cg.name in recursive
    summary = get_json(url(agent, f"/api/v2.0/summary{cg.name}"))
    conforms(summary[cg.name], "info/v2/container.go", "DerivedStats")
    assert summary[cg.name]["latest_usage"]["memory"] >= 32 * MiB
    minute = summary[cg.name]["minute_usage"]
    assert minute["memory"]["present"] and minute["memory"]["max"] >= 32 * MiB
    assert not summary[cg.name]["hour_usage"]["memory"]["present"]  # two minutes of history: no hour
    storage = get_json(url(agent, "/api/v2.0/storage"))
    assert storage and "root" in storage[0]["labels"]
    for fs in storage:
        conforms(fs, "info/v2/container.go", "FsInfo")
    assert get(url(agent, "/api/v2.0/storage?label=no-such-label"))[0] == 404


def test_stats_equal_the_clis(served):
    """The REST answer and `oomtrace stats NAME --output json` describe the same cgroup alike."""
    agent, cg = served
    cli = subprocess.run([sys.executable, "-m", "tracer", "stats", cg.name, "--output", "json"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    theirs = json.loads(cli.stdout)
    ours = get_json(url(agent, f"/api/v1.3/containers{cg.name}"))
    assert ours["spec"] == theirs["spec"] | {"creation_time": ours["spec"]["creation_time"]}
    a, b = ours["stats"][-1], theirs["stats"][-1]
    assert set(a) == set(b) and set(a["memory"]) == set(b["memory"])
    assert abs(a["memory"]["rss"] - b["memory"]["rss"]) < 4 * MiB  # the same 32 MiB, a sweep apart
    v2 = get_json(url(agent, f"/api/v2.0/stats{cg.name}?count=1"))[cg.name][0]
    assert v2["memory"] == ours["stats"][-1]["memory"] or v2["timestamp"] != ours["stats"][-1]["timestamp"]
    assert set(v2["memory"]) == set(b["memory"]) and set(v2["cpu"]) == set(b["cpu"])
    assert abs(v2["memory"]["rss"] - b["memory"]["rss"]) < 4 * MiB


def test_an_event_stream_delivers_a_real_oom_kill(served):
    agent, _ = served
    cg = Cgroup.memory("rest-oom", limit=32 * MiB)
    hog = spawn_hog(cg)
    try:
        port = agent.http.port
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /api/v1.3/events/?stream=true&oom_kill_events=true&subcontainers=true HTTP/1.1\r\n"
                      b"Host: x\r\n\r\n")
            stream = s.makefile("rb")
            assert stream.readline().startswith(b"HTTP/1.1 200")
            while stream.readline() not in (b"\r\n", b""):
                pass
            time.sleep(0.3)
            go([hog])
            assert hog.wait(30) == -9
            event = None
            deadline = time.monotonic() + 20
            while event is None and time.monotonic() < deadline:
                line = stream.readline().strip()
                if line.startswith(b"{"):
                    event = json.loads(line)
        assert event is not None, "no event streamed"
        assert event["event_type"] == "oomKill" and event["container_name"] == cg.name
        assert event["event_data"]["oom"]["pid"] == hog.pid
    finally:
        hog.kill()
        hog.wait()
        cg.remove()


@pytest.mark.parametrize(("path", "status"), [
    ("/api/v1.3/containers/no/such/container", 404),
    ("/api/v1.3/containers/../../../etc/passwd", 404),  # cleaned to /etc/passwd: an unknown container
    ("/api/v2.0/stats/?type=podman2", 400),
    ("/api/v2.0/stats/?count=abc", 400),
    ("/api/v2.0/stats/?count=-2", 400),
    ("/api/v2.0/stats/?max_age=forever", 400),
    ("/api/v1.3/events/?start_time=yesterday", 400),
    ("/api/v1.3/events/?stream=true&start_time=2026-01-01T00:00:00Z", 400),
    ("/api/v9.9/machine", 404),
    ("/api/v2.0/nothing", 404),
    ("/api/v1.0/events", 404),  # events came with v1.3
    ("/api/", 400),
    ("/api/v2.0/", 400),
    ("/api/v1.2/docker/a/b", 400),
    ("/api/v1.2/docker/nosuchcontainer", 404),
])
def test_errors_are_json_with_the_right_status(served, path, status):
    agent, _ = served
    code, body, headers = get(url(agent, path))
    assert code == status, body
    assert headers["Content-Type"].startswith("application/json")
    assert "error" in json.loads(body) and b"Traceback" not in body


def test_a_bad_body_is_a_400(served):
    agent, cg = served
    for body in (b"{", b"[1]", b'{"num_stats": "x"}', b'{"start": 5}'):
        code, text, _ = get(url(agent, f"/api/v1.3/containers{cg.name}"), data=body)
        assert code == 400, (body, text)


def test_healthz(served):
    agent, _ = served
    assert get(url(agent, "/healthz"))[:2] == (200, b"ok")
