"""cAdvisor's metric families as oomtrace writes them, against the table extracted from
cAdvisor v0.56.2's source (scripts/cadvisor_metrics.py → tests/data): names, help texts, types,
label names and groups; and the exposition's details (labels, escaping, cpu series, bounds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.serve.agent_metrics import OTHER, AgentMetrics
from tracer.serve.container_metrics import (
    BASE_LABELS,
    DEFAULT_DISABLED,
    FAMILIES,
    GROUPS,
    MACHINE_HELP,
    NOT_COLLECTED,
    SPEC_HELP,
    ContainerMetrics,
    MetricsOptions,
)
from tracer.serve.exposition import number
from tracer.stats.model import (
    ContainerInfo,
    ContainerReference,
    ContainerSpec,
    ContainerStats,
    CpuStats,
    CpuUsage,
    MachineInfo,
    MemoryStats,
    VersionInfo,
)

TABLE = json.loads((Path(__file__).parent / "data" / "cadvisor-metrics-v0.56.2.json").read_text())
METRICS = TABLE["metrics"]
CADVISOR_BASE = ["id", "image", "name"]
KUBELET_EXTRA = {"container", "pod", "namespace"}


def test_the_table_is_cadvisors_pinned_revision():
    assert TABLE["revision"] == "v0.56.2" and len(TABLE["commit"]) == 40
    assert len(METRICS) > 100


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_family_is_cadvisors(family):
    theirs = METRICS[family.name]
    assert family.help == theirs["help"]
    assert family.kind == theirs["type"]
    assert family.group == theirs["group"]
    assert list(family.extra) == theirs["labels"][len(CADVISOR_BASE):]
    assert theirs["labels"][:3] == CADVISOR_BASE


def test_spec_and_machine_families_are_cadvisors():
    for name, help_text in {**SPEC_HELP, **MACHINE_HELP}.items():
        assert METRICS[name]["help"] == help_text and METRICS[name]["type"] == "gauge", name
    assert set(BASE_LABELS) == set(CADVISOR_BASE) | KUBELET_EXTRA


def test_groups_are_cadvisors_and_the_uncollected_are_named():
    theirs = {m["group"] for m in METRICS.values() if m["group"]}
    assert GROUPS | NOT_COLLECTED >= theirs
    assert DEFAULT_DISABLED <= GROUPS
    ours = {f.name for f in FAMILIES}
    for name, m in METRICS.items():  # every family of a collected group is written
        if m["group"] in GROUPS and m["group"] != "percpu" and name.startswith("container_"):
            assert name in ours, name


def _info(name: str, per_cpu: list[int], **labels: str) -> ContainerInfo:
    stats = ContainerStats(timestamp=1700000000.5, cpu=CpuStats(usage=CpuUsage(total=sum(per_cpu), per_cpu=per_cpu)),
                           memory=MemoryStats(usage=100, working_set=90))
    spec = ContainerSpec(creation_time=1690000000.9, labels=labels, image="img:1", has_cpu=True, has_memory=True)
    spec.memory.limit = 2 ** 63 - 4096  # v1's unlimited: written as 0, as cAdvisor does
    return ContainerInfo(ContainerReference("abc", name, ["web-1", "abc"], "docker"), [], spec, [stats])


def test_render_labels_cpu_series_and_escaping():
    pod = {"io.kubernetes.pod.name": "p", "io.kubernetes.pod.namespace": "ns", "io.kubernetes.container.name": "c",
           "team": 'a"b\\c\nd'}
    infos = [_info("/docker/abc", [1_000_000_000, 2_000_000_000], **pod)]
    text = ContainerMetrics(MetricsOptions(label_allowlist=("team",))).render(infos, None, None, now=1700000001).text
    base = ('container="c",id="/docker/abc",image="img:1",name="web-1",namespace="ns",pod="p",'
            'container_label_team="a\\"b\\\\c\\nd"')
    assert f'container_cpu_usage_seconds_total{{{base},cpu="total"}} 3 1700000000500\n' in text
    assert f"container_memory_working_set_bytes{{{base}}} 90 1700000000500\n" in text
    assert f"container_spec_memory_limit_bytes{{{base}}} 0\n" in text
    assert f"container_start_time_seconds{{{base}}} 1690000000\n" in text
    assert "container_memory_numa_pages" not in text  # memory_numa is off by default
    per_cpu = ContainerMetrics(MetricsOptions(disabled=frozenset())).render(infos, None, None).text
    assert 'cpu="cpu00"} 1 ' in per_cpu and 'cpu="cpu01"} 2 ' in per_cpu and 'cpu="total"' not in per_cpu


def test_render_bounds_and_filters():
    infos = [_info(f"/c{i}", [5]) for i in range(5)]
    infos[0].reference.namespace = "podman"
    out = ContainerMetrics(MetricsOptions(max_containers=3)).render(infos, None, None)
    assert out.containers == 3 and out.dropped == 2
    docker = ContainerMetrics(MetricsOptions(docker_only=True)).render(infos, None, None)
    assert docker.containers == 4 and 'id="/c0"' not in docker.text


def test_machine_and_version_families():
    machine = MachineInfo(num_cores=2, num_physical_cores=1, num_sockets=1, memory_capacity=1 << 30,
                          machine_id="m", system_uuid="u", boot_id="b")
    text = ContainerMetrics().render([], machine, VersionInfo(kernel_version="6.18", cadvisor_version="0.1")).text
    assert 'machine_cpu_cores{boot_id="b",machine_id="m",system_uuid="u"} 2\n' in text
    assert 'machine_memory_bytes{boot_id="b",machine_id="m",system_uuid="u"} 1073741824\n' in text
    assert 'cadvisor_version_info{cadvisorRevision="",cadvisorVersion="0.1",dockerVersion="",' \
           'kernelVersion="6.18",osVersion=""} 1\n' in text


def test_numbers_as_prometheus_parses_them():
    assert [number(v) for v in (0, 3, 2 ** 64 - 1, 0.5, 1e-9, float("nan"), float("inf"), 3.0)] == \
        ["0", "3", "1.8446744073709552e+19", "0.5", "1e-09", "NaN", "+Inf", "3"]


def test_agent_metrics_bound_namespaces():
    metrics = AgentMetrics(max_namespaces=2)
    for ns in ("a", "b", "c", "d", "a"):
        metrics.write({"type": "oom_kill", "constraint": "memcg", "pod": {"namespace": ns}})
    metrics.write({"type": "oom_kill", "constraint": "global", "pod": None})
    metrics.write({"type": "lost", "count": 7})
    metrics.write({"type": "no such type"})
    text = metrics.render().decode()
    assert 'oomtrace_oom_kills_total{constraint="memcg",namespace="a"} 2.0' in text
    assert f'oomtrace_oom_kills_total{{constraint="memcg",namespace="{OTHER}"}} 2.0' in text
    assert 'oomtrace_oom_kills_total{constraint="global",namespace="~other"} 1.0' in text  # "" came third
    assert "oomtrace_metric_labels_overflow_total 3.0" in text
    assert "oomtrace_lost_samples_total 7.0" in text
    assert 'oomtrace_records_total{type="other"} 1.0' in text


def test_fds_and_sockets_only_when_counted():
    from tracer.stats.model import ProcessStats

    info = _info("/c", [5])
    info.stats[-1].processes = ProcessStats(process_count=2, fd_count=7, socket_count=1, threads_current=3)
    off = ContainerMetrics().render([info], None, None).text
    assert "container_processes{" in off and "container_file_descriptors" not in off and "container_sockets" not in off
    on = ContainerMetrics(MetricsOptions(process_counts=True)).render([info], None, None).text
    assert 'container_file_descriptors{' in on and "} 7 " in on and "container_sockets{" in on


def test_start_time_is_the_runtimes_start_when_known():
    info = _info("/c", [5])
    info.spec.start_time = 1695000000.0
    text = ContainerMetrics().render([info], None, None).text
    assert "container_start_time_seconds{" in text and "} 1695000000\n" in text


def test_units_as_cadvisor_writes_them():
    """Nanoseconds, microseconds and milliseconds each become seconds: one value per family
    whose getter scales (a lost /1e9 would show here)."""
    from tracer.stats.model import (
        CpuCFS,
        DiskIoStats,
        FsStats,
        PerDiskStats,
        PSIData,
        PSIStats,
    )

    info = _info("/c", [5])
    s = info.stats[-1]
    s.cpu = CpuStats(usage=CpuUsage(total=3_000_000_000, user=2_000_000_000, system=1_000_000_000),
                     cfs=CpuCFS(periods=10, throttled_periods=4, throttled_time=3_000_000_000, bursts_periods=2,
                                burst_time=500_000_000),
                     psi=PSIStats(full=PSIData(total=2_000_000), some=PSIData(total=4_000_000)))
    s.diskio = DiskIoStats(io_service_time=[PerDiskStats("/dev/vda", 254, 0, {"Read": 4_000_000_000})],
                           io_cost_usage=[PerDiskStats("/dev/vda", 254, 0, {"Count": 3_000_000})])
    s.filesystem = [FsStats(device="/dev/vda", read_time=1500, weighted_io_time=250)]  # /proc/diskstats: ms
    text = ContainerMetrics(MetricsOptions(disabled=frozenset({"percpu"}))).render([info], None, None).text

    def value(name: str, extra: str = "") -> str:
        line = next(x for x in text.splitlines() if x.startswith(name + "{") and extra in x)
        return line.rsplit(" ", 2)[1]

    assert value("container_cpu_user_seconds_total") == "2"
    assert value("container_cpu_system_seconds_total") == "1"
    assert value("container_cpu_usage_seconds_total") == "3"
    assert value("container_cpu_cfs_throttled_seconds_total") == "3"
    assert value("container_cpu_cfs_burst_seconds_total") == "0.5"
    assert value("container_cpu_cfs_throttled_periods_total") == "4"
    assert value("container_pressure_cpu_stalled_seconds_total") == "2"  # µs → s
    assert value("container_pressure_cpu_waiting_seconds_total") == "4"
    assert value("container_fs_read_seconds_total", 'device="/dev/vda"') == "4"  # the cgroup's ns first
    reads = [x.rsplit(" ", 2)[1] for x in text.splitlines() if x.startswith("container_fs_read_seconds_total{")]
    assert reads == ["4", "1.5"]  # then the filesystem's ms
    assert value("container_fs_io_time_weighted_seconds_total") == "0.25"
    assert value("container_fs_io_cost_usage_seconds_total") == "3"  # µs → s
    assert value("container_memory_usage_bytes") == "100"


def test_label_keys_that_collide_are_refused():
    from tracer.serve.container_metrics import label_keys

    assert label_keys(["team", "team", "app"]) == ("team", "app")
    with pytest.raises(ValueError, match="'a.b' and 'a-b' would both be container_label_a_b"):
        label_keys(["a.b", "a-b"])
