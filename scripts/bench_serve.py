#!/usr/bin/env python3
"""`run --http` at 1,000 real cgroups, each figure beside a baseline from the same run.

1. /metrics: the render of cAdvisor's families (ours, written by hand) beside prometheus_client
   rendering the very same samples (metric families + generate_latest); the scrape's latency
   over HTTP, first after a sweep (renders) and cached (every later scrape), and its size.
   Target: ≤ 100 ms.
2. Cost per request of the server: aiohttp (ours) beside the standard library's
   ThreadingHTTPServer answering the same bytes, keep-alive, one client.
3. With --agent-seconds S: `oomtrace run --http` as a process (OOM engine on, sweeps every
   10 s, scraped every 15 s), with and without the flight recorder, beside `oomtrace run --stats
   10 --no-recorder` (the same sweeps, no HTTP): CPU % of one core and RSS over S seconds.
   Target: ≤ 3 % of a core, RSS ≤ 120 MB. Run it on a quiet machine: cgroups made by anything
   else wake the agent's discovery.

    sudo .venv/bin/python scripts/bench_serve.py [--containers 1000] [--agent-seconds 120]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402

from tests.cgroups import Cgroup  # noqa: E402
from tests.collecting import free_port  # noqa: E402
from tracer.serve.cache import MetricsCache  # noqa: E402
from tracer.serve.config import HttpConfig  # noqa: E402
from tracer.serve.container_metrics import BASE_LABELS, ContainerMetrics  # noqa: E402
from tracer.serve.endpoints import agent_server  # noqa: E402
from tracer.stats.cgroups import Layout  # noqa: E402
from tracer.stats.manager import Manager, ManagerConfig  # noqa: E402
from tracer.stats.model import RequestOptions  # noqa: E402

TAG = "bench-serve"


def best(fn, repeat: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


class _Baseline:
    """The same samples through prometheus_client's families."""

    def __init__(self, metrics: ContainerMetrics, infos) -> None:
        self.metrics, self.infos = metrics, infos

    def collect(self):
        rows = []
        for info in self.infos:
            if not info.stats:
                continue
            ref, spec = info.reference, info.spec
            labels = [spec.labels.get("io.kubernetes.container.name", ""), ref.name, spec.image,
                      ref.aliases[0] if ref.aliases else "", spec.labels.get("io.kubernetes.pod.namespace", ""),
                      spec.labels.get("io.kubernetes.pod.name", "")]
            rows.append((labels, info.stats[-1]))
        for fam in self.metrics.families:
            kind = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            name = fam.name.removesuffix("_total") if fam.kind == "counter" else fam.name
            family = kind(name, fam.help, labels=[*BASE_LABELS, *fam.extra])
            for labels, stats in rows:
                if getattr(stats, fam.part) is None:
                    continue
                for extra, value in fam.values(stats):
                    family.add_metric([*labels, *extra], value, timestamp=stats.timestamp)
            yield family


def render_figures(manager: Manager) -> None:
    metrics = ContainerMetrics()
    listing, infos = best(lambda: list(manager.get_requested_containers_info(
        "/", RequestOptions(count=1, recursive=True)).values()))
    machine, version = manager.machine_info(), manager.version_info()
    ours, rendered = best(lambda: metrics.render(infos, machine, version))
    baseline = _Baseline(metrics, infos)

    class _Registry:
        def collect(self):
            return baseline.collect()

    theirs, body = best(lambda: generate_latest(_Registry()))  # type: ignore[arg-type]
    samples = sum(1 for line in rendered.text.splitlines() if line and not line.startswith("#"))
    print(f"containers: {rendered.containers}, samples: {samples}")
    print(f"list the containers (Interface):     {listing * 1e3:7.1f} ms")
    print(f"render, oomtrace:                    {ours * 1e3:7.1f} ms  {len(rendered.text) / 1e6:.2f} MB")
    print(f"render, prometheus_client (baseline): {theirs * 1e3:6.1f} ms  {len(body) / 1e6:.2f} MB"
          f"   ({theirs / ours:.1f}× ours)")

    cache = MetricsCache(manager, metrics)
    server = agent_server(manager, HttpConfig(port=free_port()), cache)
    server.start()
    try:
        address = f"http://127.0.0.1:{server.port}/metrics"
        first, cached = [], []
        for _ in range(5):
            cache.invalidate()
            t0 = time.perf_counter()
            size = len(urllib.request.urlopen(address).read())
            first.append(time.perf_counter() - t0)
            for _ in range(4):
                t0 = time.perf_counter()
                urllib.request.urlopen(address).read()
                cached.append(time.perf_counter() - t0)
        print(f"scrape after a sweep (renders):      {statistics.median(first) * 1e3:7.1f} ms median, "
              f"{size / 1e6:.2f} MB")
        print(f"scrape, cached until the next sweep: {statistics.median(cached) * 1e3:7.1f} ms median")
    finally:
        server.close()


def per_request(manager: Manager, n: int = 2000) -> None:
    body = b"ok"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits 40 ms for a delayed ACK

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    stdlib = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=stdlib.serve_forever, daemon=True).start()
    ours = agent_server(manager, HttpConfig(port=free_port()), MetricsCache(manager, ContainerMetrics()))
    ours.start()
    try:
        for label, port in (("aiohttp /healthz (oomtrace)", ours.port),
                            ("ThreadingHTTPServer (baseline)", stdlib.server_address[1])):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            t0 = time.perf_counter()
            for _ in range(n):
                conn.request("GET", "/healthz")
                conn.getresponse().read()
            dt = time.perf_counter() - t0
            conn.close()
            print(f"{label:34s} {dt / n * 1e6:7.0f} µs per request (keep-alive, one client)")
    finally:
        ours.close()
        stdlib.shutdown()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def agent_figures(seconds: float) -> None:
    port = free_port()
    http = ["--http", f"127.0.0.1:{port}", "--housekeeping-interval", "10", "-o", "msgpack"]
    runs = {"run --stats 10 --no-recorder (baseline)": ["--stats", "10", "-o", "msgpack", "--no-recorder"],
            "run --http --no-recorder, scraped/15 s": [*http, "--no-recorder"],
            "run --http (recorder on), scraped/15 s": http}
    for label, args in runs.items():
        proc = subprocess.Popen([sys.executable, "-m", "tracer", "run", "--pressure-interval", "10", *args],
                                stdout=subprocess.DEVNULL, cwd=ROOT)
        try:
            time.sleep(25)  # start, the first sweeps, the BPF build (cached after the first run)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            next_scrape = t0
            while time.monotonic() - t0 < seconds:
                if "--http" in args and time.monotonic() >= next_scrape:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
                    next_scrape += 15
                time.sleep(0.5)
            cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
            print(f"{label:42s} CPU {cpu:5.2f} % of a core, RSS {rss_mb(proc.pid):6.1f} MB")
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--agent-seconds", type=float, default=0)
    args = parser.parse_args()
    layout = Layout.detect()
    parent = Cgroup.create(TAG, layout)
    try:
        for i in range(args.containers):
            parent.child(f"c{i:04d}")
        manager = Manager(ManagerConfig(network=False))
        manager.start(background=False)
        time.sleep(1)
        manager.sweep()
        render_figures(manager)
        per_request(manager)
        if args.agent_seconds:
            agent_figures(args.agent_seconds)
    finally:
        parent.remove()


if __name__ == "__main__":
    main()
