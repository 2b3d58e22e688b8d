"""`run --http` scraped by a real Prometheus every second: PromQL over cAdvisor's metric names
gives the figures of real workloads in real cgroups, and a real OOM kill."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.cgroups import Cgroup
from tests.kernel import go, spawn_hog
from tests.serving import Prometheus, get, serving_agent, url

pytestmark = pytest.mark.root
MiB = 1 << 20
HOLD = ("a = bytearray({n} << 20)\nfor i in range(0, len(a), 4096):\n    a[i] = 1\n"
        "import time\ntime.sleep(600)\n")
BURN = "while True:\n    pass\n"


@pytest.fixture(scope="module")
def scraped(cache_dir, tmp_path_factory):
    """The agent, three workloads and Prometheus scraping them."""
    holder = Cgroup.create("prom-mem", memory_limit_in_bytes=str(128 * MiB))
    burner = Cgroup.create("prom-cpu", cpu_cfs_period_us="100000", cpu_cfs_quota_us="20000")
    oom = Cgroup.memory("prom-oom", limit=32 * MiB)
    procs: list[subprocess.Popen] = []
    try:
        procs += [holder.spawn(HOLD.format(n=64)), burner.spawn(BURN)]
        hog = spawn_hog(oom)
        procs.append(hog)
        with serving_agent(cache_dir) as agent:
            prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{agent.http.port}")
            try:
                yield agent, prometheus, holder, burner, oom, hog
            finally:
                prometheus.stop()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for cg in (holder, burner, oom):
            cg.remove()


def test_working_set_of_a_64_mib_allocation(scraped):
    _, prometheus, holder, *_ = scraped
    query = f'container_memory_working_set_bytes{{id="{holder.name}"}}'
    prometheus.wait(lambda: (prometheus.value(query) or 0) >= 64 * MiB, 30, "working set of 64 MiB")
    value = prometheus.value(query)
    assert value is not None and 64 * MiB <= value < 64 * MiB + 40 * MiB, value
    limit = prometheus.value(f'container_spec_memory_limit_bytes{{id="{holder.name}"}}')
    assert limit == 128 * MiB


def test_cpu_rate_under_a_fifth_of_a_core(scraped):
    _, prometheus, _, burner, *_ = scraped
    query = f'rate(container_cpu_usage_seconds_total{{id="{burner.name}",cpu="total"}}[10s])'
    samples = f'count_over_time(container_cpu_usage_seconds_total{{id="{burner.name}"}}[15s])'
    prometheus.wait(lambda: (prometheus.value(samples) or 0) >= 10, 40, "10 cpu samples")
    time.sleep(2)
    rate = prometheus.value(query)
    assert rate is not None and 0.14 <= rate <= 0.26, rate
    quota = prometheus.value(f'container_spec_cpu_quota{{id="{burner.name}"}}')
    assert quota == 20000


def test_machine_cpu_cores_is_nproc(scraped):
    _, prometheus, *_ = scraped
    assert prometheus.value("machine_cpu_cores") == os.cpu_count()
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    assert prometheus.value("machine_memory_bytes") == total  # cAdvisor: MemTotal


def test_oom_events_total_counts_a_real_kill(scraped):
    agent, prometheus, _, _, oom, hog = scraped
    series = f'container_oom_events_total{{id="{oom.name}"}}'
    prometheus.wait(lambda: (prometheus.value(f"count_over_time({series}[1m])") or 0) >= 3, 30,
                    "three scrapes of the OOM cgroup before the kill")
    assert prometheus.value(series) == 0
    go([hog])
    assert hog.wait(30) == -9
    prometheus.wait(lambda: prometheus.value(series) == 1, 30, "the kill counted")
    time.sleep(3)  # a few more samples at 1
    increase = prometheus.value(f"increase({series}[2m])")
    assert increase is not None and 0.9 <= increase <= 1.5, increase  # Prometheus extrapolates to the window
    delta = prometheus.value(f"max_over_time({series}[2m]) - min_over_time({series}[2m])")
    assert delta == 1
    kills = prometheus.value('sum(oomtrace_oom_kills_total{constraint="memcg"})')
    assert kills is not None and kills >= 1


def test_promtool_accepts_the_exposition(scraped):
    """promtool parses it all. Its lint (exit 3) may only name cAdvisor's own metric names (a
    drop-in keeps them, camelCase labels and gauges named _total included); oomtrace's are clean."""
    agent, *_ = scraped
    status, body, headers = get(url(agent, "/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    problems = [line for line in (check.stdout + check.stderr).decode().splitlines() if line.strip()]
    assert check.returncode in (0, 3), problems
    import json
    from pathlib import Path

    table = json.loads((Path(__file__).parent / "data" / "cadvisor-metrics-v0.56.2.json").read_text())["metrics"]
    names = set(table) | {"cadvisor_version_info"}
    for line in problems:
        assert line.split()[0] in names, f"a lint problem with a name that is not cAdvisor's: {line}"
