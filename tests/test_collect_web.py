"""The collector's web page (`collect --http`) with a real kill: `oomtrace run -o msgpack |
oomtrace collect --http`, a real dockerd whose container carries a pod's kubelet labels and is
OOM-killed; then a real browser (Debian's chromium, headless) reads the list and the kill's
page, and the JSON API answers the same data."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.collecting import free_port
from tests.runtimes import IMAGE, Docker, cgroups_present, image_archive, need, remove_new_cgroups, unavailable
from tests.serving import get, get_json

pytestmark = pytest.mark.root
# Grows its page cache in /dev/shm, 2 MiB at a time for ~20 s: the recorder sweeps it (every
# 10 s) and samples it every second near the limit, so the chart has a curve to draw.
GROW = ["sh", "-c", "i=0; while [ $i -lt 200 ]; do head -c 2097152 /dev/zero >> /dev/shm/x$i; i=$((i+1)); "
                    "sleep 0.8; done"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args: str, tmp: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    if binary is None:
        unavailable("chromium is not installed (scripts/test.sh installs Debian's chromium)")
    profile = tmp / f"profile-{uuid.uuid4().hex[:6]}"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=timeout, cwd=tmp)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def png_pixels(path: Path) -> tuple[int, int, set[tuple[int, int, int]]]:
    """Width, height and the distinct colours of a PNG (Pillow: matplotlib's own dependency)."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        rgb = image.convert("RGB")
        return rgb.width, rgb.height, {c for _, c in rgb.getcolors(maxcolors=1 << 24)}


@pytest.fixture(scope="module")
def page(cache_dir, tmp_path_factory):
    """The pipeline, one real kill of a pod's container in it, and the page's address."""
    need("dockerd", "docker")
    work = tmp_path_factory.mktemp("web")
    before = cgroups_present()
    docker = Docker(Path(f"/tmp/oomtrace-web-{uuid.uuid4().hex[:6]}"))
    docker.start(image_archive(work / "bb.tar"))
    port = free_port()
    db = work / "oom.db"
    agent = subprocess.Popen([sys.executable, "-m", "tracer", "run", "-o", "msgpack", "--cache-dir", str(cache_dir),
                              "--docker-socket", str(docker.socket), "--node", "node-web"],
                             stdout=subprocess.PIPE, stderr=open(work / "agent.log", "wb"))
    collector = subprocess.Popen([sys.executable, "-m", "tracer", "collect", "--db", str(db), "--http",
                                  f"127.0.0.1:{port}"], stdin=agent.stdout, stderr=open(work / "collect.log", "wb"))
    assert agent.stdout is not None
    agent.stdout.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/healthz", timeout=2)[0] == 200 and db.exists():
                    break
            except OSError:
                pass
            time.sleep(0.5)
        time.sleep(3)  # the agent's probes are attached once its start record is stored
        pod = f"shop-{uuid.uuid4().hex[:4]}"
        ran = docker.cli("run", "--name", pod, "--network", "none", "-m", "48m", "--memory-swap", "48m",
                         "--shm-size", "512m", "--label", f"io.kubernetes.pod.name={pod}",
                         "--label", "io.kubernetes.pod.namespace=shop", "--label", "io.kubernetes.container.name=cart",
                         IMAGE, *GROW, check=False, timeout=180)
        assert ran.returncode == 137, ran
        deadline = time.monotonic() + 60
        kills: list = []
        while time.monotonic() < deadline and not kills:
            listed = get_json(f"{base}/api/kills?namespace=shop")
            kills = [k for k in listed["kills"] if (k.get("pod") or {}).get("name") == pod]
            time.sleep(1)
        assert kills, (work / "agent.log").read_text()[-2000:]
        kill = kills[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and get_json(f"{base}/api/kills/{kill['id']}")["report"] is None:
            time.sleep(1)
        yield base, kill, pod, work
    finally:
        for proc in (agent, collector):  # stopped by pid whatever happens, then the runtime
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        docker.stop()
        remove_new_cgroups(before)
        shutil.rmtree(docker.base, ignore_errors=True)


def test_the_list_shows_the_kill_with_its_pod_and_node(page, tmp_path):
    base, kill, pod, _ = page
    done = chromium("--dump-dom", f"{base}/?namespace=shop", tmp=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    row = next(r for r in dom.split("<tr>") if f'/kills/{kill["id"]}' in r)  # the kill's row
    assert f"<td>{pod}</td>" in row and "<td>node-web</td>" in row and "<td>shop</td>" in row
    assert re.search(r'namespace=shop">shop</a> \d+</li>', dom), "no count for namespace shop"
    assert not console_errors(done.stderr), console_errors(done.stderr)


def test_the_kill_page_draws_the_chart(page, tmp_path):
    base, kill, pod, _ = page
    address = f"{base}/kills/{kill['id']}"
    dom = chromium("--dump-dom", address, tmp=tmp_path)
    assert dom.returncode == 0 and 'id="chart"' in dom.stdout and 'id="verdict"' in dom.stdout, dom.stdout[:2000]
    assert 'id="processes"' in dom.stdout or "No process was left" in dom.stdout
    assert not console_errors(dom.stderr), console_errors(dom.stderr)
    shot = tmp_path / "kill.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,1400", address, tmp=tmp_path)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    width, height, colours = png_pixels(shot)
    assert (width, height) == (1280, 1400)
    assert len(colours) > 20, f"a blank page: {len(colours)} colours"
    # The chart itself was drawn, not only text: its page-cache fill (#1f77b4 at alpha 0.45
    # over white, about (154, 194, 221): this workload is all page cache) is in the screenshot.
    assert any(abs(r - 154) < 16 and abs(g - 194) < 16 and abs(b - 221) < 16 for r, g, b in colours), \
        "no chart fill in the screenshot"
    status, svg, headers = get(f"{base}/api/kills/{kill['id']}/chart.svg")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml") and b"<svg" in svg


def test_the_json_api_answers_the_same_data(page):
    base, kill, pod, _ = page
    detail = get_json(f"{base}/api/kills/{kill['id']}")
    assert detail["kill"]["id"] == kill["id"] and detail["kill"]["pod"]["name"] == pod
    assert detail["kill"]["container"]["runtime"] == "docker"
    report = detail["report"]
    assert report is not None and report["kill_id"] == kill["id"]
    assert detail["analysis"]["verdict"]
    listed = get_json(f"{base}/api/kills?node=node-web")
    assert kill["id"] in [k["id"] for k in listed["kills"]] and listed["namespaces"].get("shop", 0) >= 1


@pytest.mark.parametrize(("path", "status"), [
    ("/kills/no-such-id", 404), ("/api/kills/no-such-id", 404), ("/api/kills/x/chart.gif", 404),
    ("/api/kills?since=forever", 400), ("/api/kills?limit=0", 400), ("/?since=-3h", 400),
])
def test_bad_requests(page, path, status):
    base, *_ = page
    code, body, _ = get(base + path)
    assert code == status and b"Traceback" not in body


def test_a_store_without_kills(tmp_path):
    """An empty database: the page says so, the API gives empty lists."""
    from tracer.collect.store import Store
    from tracer.collect.web import web_server
    from tracer.serve.config import HttpConfig

    db = tmp_path / "empty.db"
    Store(db).close()
    server = web_server(db, HttpConfig(port=free_port()))
    server.start()
    try:
        status, body, _ = get(f"http://127.0.0.1:{server.port}/")
        assert status == 200 and b"No OOM kill matches." in body
        assert get_json(f"http://127.0.0.1:{server.port}/api/kills") == {"kills": [], "namespaces": {}}
    finally:
        server.close()


def test_json_is_plain(page):
    base, *_ = page
    status, body, headers = get(f"{base}/api/kills?limit=1")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert len(json.loads(body)["kills"]) == 1


def test_hostile_names_are_escaped():
    """A pod, a command and a cgroup that carry HTML stay text on the page."""
    from tracer.collect import web

    evil = '<script>alert(1)</script>"&'
    kill = {"id": 'x"><b>', "time": 1.0, "node": evil, "comm": evil, "pid": 1, "cgroup": evil, "constraint": evil,
            "pod": {"name": evil, "namespace": evil, "container": evil}, "container": {"image": evil}}
    html = web._kill_row(kill) + web._facts(kill) + web._filters({"pod": evil}) + web._processes(
        {"processes": [{"pid": 1, "comm": evil, "cgroup": evil}]})
    assert "<script>" not in html and "&lt;script&gt;" in html and '"><b>' not in html
