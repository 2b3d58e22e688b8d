"""cAdvisor's Prometheus metrics from the Interface's ContainerInfo: the same names, help
texts, types, label names and metric groups as cAdvisor v0.56.2 (tests/data/cadvisor-metrics-
v0.56.2.json, checked by tests/test_serve_metrics.py), with the labels a kubelet scrape
carries (`container`, `pod`, `namespace` beside cAdvisor's `id`, `name`, `image`).

A family whose part of the stats was not collected (None in the model) is left out for that
container, as cAdvisor HEAD does with its nil pointers, rather than written as zeros.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from tracer.serve.exposition import escape, header, number
from tracer.stats.model import ContainerInfo, ContainerStats, MachineInfo, VersionInfo

Values = Iterable[tuple[tuple[str, ...], float]]

# cAdvisor's metric groups (--disable_metrics names) that oomtrace collects, and the ones it
# does not (accepted when disabled, refused when asked for).
GROUPS = frozenset({"cpu", "percpu", "memory", "memory_numa", "cpuset", "diskIO", "disk", "network", "process",
                    "oom_event", "pressure", "hugetlb"})
NOT_COLLECTED = frozenset({"sched", "cpuLoad", "tcp", "udp", "advtcp", "perf_event", "referenced_memory", "resctrl",
                           "cpu_topology", "app"})
# Off unless enabled: per-CPU series multiply every container by the CPU count (kubelet leaves
# percpu out too: cpu="total"); the rest are off in cAdvisor's own defaults.
DEFAULT_DISABLED = frozenset({"percpu", "memory_numa", "cpuset", "hugetlb"})
BASE_LABELS = ("container", "id", "image", "name", "namespace", "pod")
_KUBE = {"container": "io.kubernetes.container.name", "pod": "io.kubernetes.pod.name",
         "namespace": "io.kubernetes.pod.namespace"}
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNLIMITED = 1 << 62  # cAdvisor's maxMemorySize: a limit above it is written as 0


def label_name(key: str) -> str:
    """A container label as cAdvisor names it: container_label_ + the key, invalid characters → _."""
    return _INVALID.sub("_", "container_label_" + key)


def label_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """KEYS without repeats; ValueError when two become the same label name (a.b and a-b are
    both container_label_a_b): a label named twice makes Prometheus refuse the whole scrape."""
    chosen: dict[str, str] = {}
    for key in keys:
        name = label_name(key)
        if chosen.get(name, key) != key:
            raise ValueError(f"container labels {chosen[name]!r} and {key!r} would both be {name}")
        chosen[name] = key
    return tuple(chosen.values())


@dataclass(frozen=True)
class MetricsOptions:
    disabled: frozenset[str] = DEFAULT_DISABLED
    label_allowlist: tuple[str, ...] = ()  # container labels exported as container_label_<key>
    docker_only: bool = False  # only Docker containers and the root, as cAdvisor's --docker_only
    max_containers: int = 10_000  # series bound: containers past it are left out, and counted
    process_counts: bool = False  # fds and sockets counted (ManagerConfig.process_counts): else not written

    def enabled(self, group: str | None) -> bool:
        return group is None or group not in self.disabled


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    kind: str  # counter | gauge
    group: str | None
    part: str  # the ContainerStats attribute it reads; the family is skipped when that is None
    values: Callable[[ContainerStats], Values]
    extra: tuple[str, ...] = ()


def _one(get: Callable[[ContainerStats], float]) -> Callable[[ContainerStats], Values]:
    return lambda s: (((), get(s)),)


def _per_disk(attr: str, op: str, scale: float = 1.0) -> Callable[[ContainerStats], Values]:
    def values(s: ContainerStats) -> Values:
        return (((d.device,), d.stats.get(op, 0) / scale if scale != 1.0 else d.stats.get(op, 0))
                for d in getattr(s.diskio, attr))
    return values


def _per_fs(attr: str, scale: float = 1.0) -> Callable[[ContainerStats], Values]:
    return lambda s: (((f.device,), getattr(f, attr) / scale if scale != 1.0 else getattr(f, attr))
                      for f in s.filesystem)


def _io(disk_attr: str, op: str, fs_attr: str | None, scale: float = 1.0,
        fs_scale: float = 1.0) -> Callable[[ContainerStats], Values]:
    """cAdvisor's ioValues: the cgroup's per-device figures, then the filesystems' own (their
    times are /proc/diskstats' milliseconds, the cgroup's are nanoseconds)."""
    per_disk = _per_disk(disk_attr, op, scale) if disk_attr else None
    per_fs = _per_fs(fs_attr, fs_scale) if fs_attr else None

    def values(s: ContainerStats) -> Values:
        out: list[tuple[tuple[str, ...], float]] = []
        if per_disk is not None and s.diskio is not None:
            out.extend(per_disk(s))
        if per_fs is not None:
            out.extend(per_fs(s))
        return out
    return values


def _interfaces(attr: str) -> Callable[[ContainerStats], Values]:
    return lambda s: (((i.name,), getattr(i, attr)) for i in s.network.interfaces)  # type: ignore[union-attr]


def _cpu_total(s: ContainerStats) -> Values:
    """cpu="total" only: what cAdvisor writes with its percpu group off (kubelet's setting)."""
    total = s.cpu.usage.total  # type: ignore[union-attr]
    return ((("total",), total / 1e9),) if total > 0 else ()


def _cpu_usage(s: ContainerStats) -> Values:
    usage = s.cpu.usage  # type: ignore[union-attr]
    if not usage.per_cpu:
        return ((("total",), usage.total / 1e9),) if usage.total > 0 else ()
    return (((f"cpu{i:02d}",), v / 1e9) for i, v in enumerate(usage.per_cpu) if v > 0)


def _failures(s: ContainerStats) -> Values:
    m = s.memory
    assert m is not None
    return ((("pgfault", "container"), m.container_data.pgfault),
            (("pgmajfault", "container"), m.container_data.pgmajfault),
            (("pgfault", "hierarchy"), m.hierarchical_data.pgfault),
            (("pgmajfault", "hierarchy"), m.hierarchical_data.pgmajfault))


def _numa(s: ContainerStats) -> Values:
    m = s.memory
    assert m is not None
    for scope, data in (("container", m.container_data), ("hierarchy", m.hierarchical_data)):
        for kind in ("file", "anon", "unevictable"):
            for node, pages in getattr(data.numa_stats, kind).items():
                yield (kind, scope, str(node)), pages


def _blkio(s: ContainerStats) -> Values:
    for d in s.diskio.io_service_bytes:  # type: ignore[union-attr]
        for op, value in sorted(d.stats.items()):
            yield (d.device, str(d.major), str(d.minor), op), value


def _psi(part: str, kind: str) -> Callable[[ContainerStats], Values]:
    def values(s: ContainerStats) -> Values:
        psi = getattr(s, part).psi
        return (((), getattr(psi, kind).total / 1e6),)  # µs → s
    return values


def _hugetlb(attr: str) -> Callable[[ContainerStats], Values]:
    return lambda s: (((size,), getattr(h, attr)) for size, h in sorted(s.hugetlb.items()))


def _f(name: str, help_text: str, kind: str, group: str | None, part: str,
       values: Callable[[ContainerStats], Values], *extra: str) -> Family:
    return Family(name, help_text, kind, group, part, values, extra)


_C, _G = "counter", "gauge"
_IO_TIME = 1e9  # the cgroup's I/O times: ns → s
_FS_TIME = 1e3  # /proc/diskstats' times: ms → s (cAdvisor divides them by 1e9 too: its bug, not kept)
FAMILIES: tuple[Family, ...] = (
    _f("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", _C, "cpu", "cpu",
       _one(lambda s: s.cpu.usage.user / 1e9)),  # type: ignore[union-attr]
    _f("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", _C, "cpu", "cpu",
       _one(lambda s: s.cpu.usage.system / 1e9)),  # type: ignore[union-attr]
    _f("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", _C, "cpu", "cpu",
       _cpu_usage, "cpu"),
    _f("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", _C, "cpu", "cpu",
       _one(lambda s: s.cpu.cfs.periods)),  # type: ignore[union-attr]
    _f("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", _C, "cpu", "cpu",
       _one(lambda s: s.cpu.cfs.throttled_periods)),  # type: ignore[union-attr]
    _f("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", _C,
       "cpu", "cpu", _one(lambda s: s.cpu.cfs.throttled_time / 1e9)),  # type: ignore[union-attr]
    _f("container_cpu_cfs_burst_periods_total", "Number of periods when burst occurs.", _C, "cpu", "cpu",
       _one(lambda s: s.cpu.cfs.bursts_periods)),  # type: ignore[union-attr]
    _f("container_cpu_cfs_burst_seconds_total", "Total time duration the container has been bursted.", _C,
       "cpu", "cpu", _one(lambda s: s.cpu.cfs.burst_time / 1e9)),  # type: ignore[union-attr]
    _f("container_memory_cache", "Number of bytes of page cache memory.", _G, "memory", "memory",
       _one(lambda s: s.memory.cache)),  # type: ignore[union-attr]
    _f("container_memory_rss", "Size of RSS in bytes.", _G, "memory", "memory",
       _one(lambda s: s.memory.rss)),  # type: ignore[union-attr]
    _f("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", _G, "memory", "memory",
       _one(lambda s: s.memory.kernel_usage)),  # type: ignore[union-attr]
    _f("container_memory_mapped_file", "Size of memory mapped files in bytes.", _G, "memory", "memory",
       _one(lambda s: s.memory.mapped_file)),  # type: ignore[union-attr]
    _f("container_memory_swap", "Container swap usage in bytes.", _G, "memory", "memory",
       _one(lambda s: s.memory.swap)),  # type: ignore[union-attr]
    _f("container_memory_failcnt", "Number of memory usage hits limits", _C, "memory", "memory",
       _one(lambda s: s.memory.failcnt)),  # type: ignore[union-attr]
    _f("container_memory_usage_bytes",
       "Current memory usage in bytes, including all memory regardless of when it was accessed", _G, "memory",
       "memory", _one(lambda s: s.memory.usage)),  # type: ignore[union-attr]
    _f("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", _G, "memory", "memory",
       _one(lambda s: s.memory.max_usage)),  # type: ignore[union-attr]
    _f("container_memory_working_set_bytes", "Current working set in bytes.", _G, "memory", "memory",
       _one(lambda s: s.memory.working_set)),  # type: ignore[union-attr]
    _f("container_memory_total_active_file_bytes", "Current total active file in bytes.", _G, "memory", "memory",
       _one(lambda s: s.memory.total_active_file)),  # type: ignore[union-attr]
    _f("container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", _G, "memory",
       "memory", _one(lambda s: s.memory.total_inactive_file)),  # type: ignore[union-attr]
    _f("container_memory_failures_total", "Cumulative count of memory allocation failures.", _C, "memory",
       "memory", _failures, "failure_type", "scope"),
    _f("container_memory_migrate", "Memory migrate status.", _G, "cpuset", "cpuset",
       _one(lambda s: s.cpuset.memory_migrate)),
    _f("container_memory_numa_pages", "Number of used pages per NUMA node", _G, "memory_numa", "memory", _numa,
       "type", "scope", "node"),
    _f("container_fs_inodes_free", "Number of available Inodes", _G, "disk", "filesystem",
       _per_fs("inodes_free"), "device"),
    _f("container_fs_inodes_total", "Number of Inodes", _G, "disk", "filesystem", _per_fs("inodes"), "device"),
    _f("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", _G,
       "disk", "filesystem", _per_fs("limit"), "device"),
    _f("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", _G,
       "disk", "filesystem", _per_fs("usage"), "device"),
    _f("container_fs_reads_bytes_total", "Cumulative count of bytes read", _C, "diskIO", "timestamp",
       _io("io_service_bytes", "Read", None), "device"),
    _f("container_fs_reads_total", "Cumulative count of reads completed", _C, "diskIO", "timestamp",
       _io("io_serviced", "Read", "reads_completed"), "device"),
    _f("container_fs_sector_reads_total", "Cumulative count of sector reads completed", _C, "diskIO", "timestamp",
       _io("sectors", "Read", "sectors_read"), "device"),
    _f("container_fs_reads_merged_total", "Cumulative count of reads merged", _C, "diskIO", "timestamp",
       _io("io_merged", "Read", "reads_merged"), "device"),
    _f("container_fs_read_seconds_total", "Cumulative count of seconds spent reading", _C, "diskIO", "timestamp",
       _io("io_service_time", "Read", "read_time", _IO_TIME, _FS_TIME), "device"),
    _f("container_fs_writes_bytes_total", "Cumulative count of bytes written", _C, "diskIO", "timestamp",
       _io("io_service_bytes", "Write", None), "device"),
    _f("container_fs_writes_total", "Cumulative count of writes completed", _C, "diskIO", "timestamp",
       _io("io_serviced", "Write", "writes_completed"), "device"),
    _f("container_fs_sector_writes_total", "Cumulative count of sector writes completed", _C, "diskIO",
       "timestamp", _io("sectors", "Write", "sectors_written"), "device"),
    _f("container_fs_writes_merged_total", "Cumulative count of writes merged", _C, "diskIO", "timestamp",
       _io("io_merged", "Write", "writes_merged"), "device"),
    _f("container_fs_write_seconds_total", "Cumulative count of seconds spent writing", _C, "diskIO", "timestamp",
       _io("io_service_time", "Write", "write_time", _IO_TIME, _FS_TIME), "device"),
    _f("container_fs_io_current", "Number of I/Os currently in progress", _G, "diskIO", "timestamp",
       _io("io_queued", "Total", "io_in_progress"), "device"),
    _f("container_fs_io_time_seconds_total", "Cumulative count of seconds spent doing I/Os", _C, "diskIO",
       "timestamp", _io("io_service_time", "Total", "io_time", _IO_TIME, _FS_TIME), "device"),
    _f("container_fs_io_time_weighted_seconds_total", "Cumulative weighted I/O time in seconds", _C, "diskIO",
       "timestamp", _io("", "", "weighted_io_time", fs_scale=_FS_TIME), "device"),
    _f("container_fs_io_cost_usage_seconds_total", "Cumulative IOCost usage in seconds", _C, "diskIO", "diskio",
       _per_disk("io_cost_usage", "Count", 1e6), "device"),
    _f("container_fs_io_cost_wait_seconds_total", "Cumulative IOCost wait in seconds", _C, "diskIO", "diskio",
       _per_disk("io_cost_wait", "Count", 1e6), "device"),
    _f("container_fs_io_cost_indebt_seconds_total", "Cumulative IOCost debt in seconds", _C, "diskIO", "diskio",
       _per_disk("io_cost_indebt", "Count", 1e6), "device"),
    _f("container_fs_io_cost_indelay_seconds_total", "Cumulative IOCost delay in seconds", _C, "diskIO", "diskio",
       _per_disk("io_cost_indelay", "Count", 1e6), "device"),
    _f("container_blkio_device_usage_total", "Blkio Device bytes usage", _C, "diskIO", "diskio", _blkio,
       "device", "major", "minor", "operation"),
    _f("container_network_receive_bytes_total", "Cumulative count of bytes received", _C, "network", "network",
       _interfaces("rx_bytes"), "interface"),
    _f("container_network_receive_packets_total", "Cumulative count of packets received", _C, "network",
       "network", _interfaces("rx_packets"), "interface"),
    _f("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving",
       _C, "network", "network", _interfaces("rx_dropped"), "interface"),
    _f("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", _C,
       "network", "network", _interfaces("rx_errors"), "interface"),
    _f("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", _C, "network",
       "network", _interfaces("tx_bytes"), "interface"),
    _f("container_network_transmit_packets_total", "Cumulative count of packets transmitted", _C, "network",
       "network", _interfaces("tx_packets"), "interface"),
    _f("container_network_transmit_packets_dropped_total",
       "Cumulative count of packets dropped while transmitting", _C, "network", "network",
       _interfaces("tx_dropped"), "interface"),
    _f("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", _C,
       "network", "network", _interfaces("tx_errors"), "interface"),
    _f("container_processes", "Number of processes running inside the container.", _G, "process", "processes",
       _one(lambda s: s.processes.process_count)),  # type: ignore[union-attr]
    _f("container_file_descriptors", "Number of open file descriptors for the container.", _G, "process",
       "processes", _one(lambda s: s.processes.fd_count)),  # type: ignore[union-attr]
    _f("container_sockets", "Number of open sockets for the container.", _G, "process", "processes",
       _one(lambda s: s.processes.socket_count)),  # type: ignore[union-attr]
    _f("container_threads_max",
       "Maximum number of threads allowed inside the container, infinity if value is zero", _G, "process",
       "processes", _one(lambda s: s.processes.threads_max)),  # type: ignore[union-attr]
    _f("container_threads", "Number of threads running inside the container", _G, "process", "processes",
       _one(lambda s: s.processes.threads_current)),  # type: ignore[union-attr]
    _f("container_ulimits_soft",
       "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", _G,
       "process", "processes",
       lambda s: (((u.name,), u.soft_limit) for u in s.processes.ulimits), "ulimit"),  # type: ignore[union-attr]
    _f("container_hugetlb_failcnt", "Number of hugepage usage hits limits", _C, "hugetlb", "hugetlb",
       _hugetlb("failcnt"), "pagesize"),
    _f("container_hugetlb_usage_bytes", "Current hugepage usage in bytes", _G, "hugetlb", "hugetlb",
       _hugetlb("usage"), "pagesize"),
    _f("container_hugetlb_max_usage_bytes", "Maximum hugepage usage recorded in bytes", _G, "hugetlb", "hugetlb",
       _hugetlb("max_usage"), "pagesize"),
    _f("container_oom_events_total", "Count of out of memory events observed for the container", _C,
       "oom_event", "timestamp", _one(lambda s: s.oom_events)),
    _f("container_pressure_cpu_stalled_seconds_total",
       "Total time duration no tasks in the container could make progress due to CPU congestion.", _C,
       "pressure", "cpu", _psi("cpu", "full")),
    _f("container_pressure_cpu_waiting_seconds_total",
       "Total time duration tasks in the container have waited due to CPU congestion.", _C, "pressure", "cpu",
       _psi("cpu", "some")),
    _f("container_pressure_memory_stalled_seconds_total",
       "Total time duration no tasks in the container could make progress due to memory congestion.", _C,
       "pressure", "memory", _psi("memory", "full")),
    _f("container_pressure_memory_waiting_seconds_total",
       "Total time duration tasks in the container have waited due to memory congestion.", _C, "pressure",
       "memory", _psi("memory", "some")),
    _f("container_pressure_io_stalled_seconds_total",
       "Total time duration no tasks in the container could make progress due to IO congestion.", _C,
       "pressure", "diskio", _psi("diskio", "full")),
    _f("container_pressure_io_waiting_seconds_total",
       "Total time duration tasks in the container have waited due to IO congestion.", _C, "pressure", "diskio",
       _psi("diskio", "some")),
)

# Written only when counted (--process-counts): a 0 for "not counted" would read as "none open".
_COUNTED = ("container_file_descriptors", "container_sockets")

# From the spec, no timestamp (cAdvisor writes them outside its per-stats table).
SPEC_HELP = {
    "container_start_time_seconds": "Start time of the container since unix epoch in seconds.",
    "container_spec_cpu_period": "CPU period of the container.",
    "container_spec_cpu_quota": "CPU quota of the container.",
    "container_spec_cpu_shares": "CPU share of the container.",
    "container_spec_memory_limit_bytes": "Memory limit for the container.",
    "container_spec_memory_swap_limit_bytes": "Memory swap limit for the container.",
    "container_spec_memory_reservation_limit_bytes": "Memory reservation limit for the container.",
}
LAST_SEEN_HELP = "Last time a container was seen by the exporter"
VERSION_HELP = ("A metric with a constant '1' value labeled by kernel version, OS version, docker version, "
                "cadvisor version & cadvisor revision.")
SCRAPE_ERROR_HELP = "1 if there was an error while getting container metrics, 0 otherwise"
MACHINE_SCRAPE_ERROR_HELP = "1 if there was an error while getting machine metrics, 0 otherwise."


def _memory_value(v: int) -> int:
    return 0 if v > _UNLIMITED else v


@dataclass
class Rendered:
    body: bytes  # the exposition, UTF-8
    containers: int
    dropped: int  # containers past MetricsOptions.max_containers
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return self.body.decode()


class ContainerMetrics:
    """Renders cAdvisor's container and machine families (one call per sweep, see serve.cache)."""

    def __init__(self, options: MetricsOptions | None = None) -> None:
        self.options = options = options or MetricsOptions()
        per_cpu = options.enabled("percpu")
        uncounted = () if options.process_counts else _COUNTED
        self.families = tuple(f if per_cpu or f.values is not _cpu_usage else replace(f, values=_cpu_total)
                              for f in FAMILIES if options.enabled(f.group) and f.name not in uncounted)
        self.options = options = replace(options, label_allowlist=label_keys(options.label_allowlist))
        self._label_names = BASE_LABELS + tuple(label_name(k) for k in options.label_allowlist)

    def select(self, infos: Iterable[ContainerInfo]) -> tuple[list[ContainerInfo], int]:
        chosen = [i for i in infos if not self.options.docker_only or i.reference.name == "/"
                  or i.reference.namespace == "docker"]
        chosen.sort(key=lambda i: i.reference.name)
        cap = self.options.max_containers
        return chosen[:cap], max(0, len(chosen) - cap)

    def base_labels(self, info: ContainerInfo) -> str:
        ref, spec = info.reference, info.spec
        values = {"id": ref.name, "name": ref.aliases[0] if ref.aliases else "", "image": spec.image}
        for label, key in _KUBE.items():
            values[label] = spec.labels.get(key, "")
        extra = [spec.labels.get(k, "") for k in self.options.label_allowlist]
        pairs = [*(values[n] for n in BASE_LABELS), *extra]
        return ",".join(f'{n}="{escape(v)}"' for n, v in zip(self._label_names, pairs, strict=True))

    def render(self, infos: Iterable[ContainerInfo], machine: MachineInfo | None, version: VersionInfo | None,
               now: float | None = None) -> Rendered:
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        chosen, dropped = self.select(infos)
        rows = [(self.base_labels(i), i) for i in chosen]
        out: list[str] = []
        if version is not None:
            out.append(header("cadvisor_version_info", VERSION_HELP, "gauge"))
            out.append('cadvisor_version_info{' + ",".join(
                f'{k}="{escape(v)}"' for k, v in (
                    ("cadvisorRevision", version.cadvisor_revision), ("cadvisorVersion", version.cadvisor_version),
                    ("dockerVersion", version.docker_version), ("kernelVersion", version.kernel_version),
                    ("osVersion", version.container_os_version))) + "} 1\n")
        self._spec(rows, out)
        latest = [(base, i.stats[-1]) for base, i in rows if i.stats]
        self._last_seen(latest, now, out)
        # Encoded family by family: the peak is one family's lines (~1,000), not all ~40,000
        # strings and their join and its encoding at once (MBs the allocator may keep).
        body = bytearray("".join(out).encode())
        for fam in self.families:
            lines: list[str] = []
            self._family(fam, latest, lines)
            body += "".join(lines).encode()
        if machine is not None:
            body += "".join(machine_lines(machine)).encode()
        return Rendered(bytes(body), len(chosen), dropped, time.perf_counter() - t0)

    @staticmethod
    def _spec(rows: Sequence[tuple[str, ContainerInfo]], out: list[str]) -> None:
        series: dict[str, list[str]] = {name: [] for name in SPEC_HELP}
        for base, info in rows:
            spec = info.spec
            start = spec.start_time or spec.creation_time  # master: the runtime's start where it has one
            series["container_start_time_seconds"].append(f"{{{base}}} {int(start)}\n")
            if spec.has_cpu:
                series["container_spec_cpu_period"].append(f"{{{base}}} {spec.cpu.period}\n")
                if spec.cpu.quota:
                    series["container_spec_cpu_quota"].append(f"{{{base}}} {spec.cpu.quota}\n")
                series["container_spec_cpu_shares"].append(f"{{{base}}} {spec.cpu.limit}\n")
            if spec.has_memory:
                m = spec.memory
                series["container_spec_memory_limit_bytes"].append(f"{{{base}}} {_memory_value(m.limit)}\n")
                series["container_spec_memory_swap_limit_bytes"].append(
                    f"{{{base}}} {_memory_value(m.swap_limit)}\n")
                series["container_spec_memory_reservation_limit_bytes"].append(
                    f"{{{base}}} {_memory_value(m.reservation)}\n")
        for name, lines in series.items():
            if lines:
                out.append(header(name, SPEC_HELP[name], "gauge"))
                out.extend(name + line for line in lines)

    @staticmethod
    def _last_seen(latest: Sequence[tuple[str, ContainerStats]], now: float, out: list[str]) -> None:
        if not latest:
            return
        out.append(header("container_last_seen", LAST_SEEN_HELP, "gauge"))
        stamp = f"{int(now)} {int(now * 1000)}\n"
        out.extend(f"container_last_seen{{{base}}} {stamp}" for base, _ in latest)

    @staticmethod
    def _family(fam: Family, latest: Sequence[tuple[str, ContainerStats]], out: list[str]) -> None:
        lines: list[str] = []
        name, extra = fam.name, fam.extra
        for base, stats in latest:
            part = getattr(stats, fam.part)
            if part is None or (fam.part in ("filesystem", "hugetlb") and not part):
                continue
            ts = int(stats.timestamp * 1000)
            for values, value in fam.values(stats):
                if extra:
                    more = ",".join(f'{k}="{escape(v)}"' for k, v in zip(extra, values, strict=True))
                    lines.append(f"{name}{{{base},{more}}} {number(value)} {ts}\n")
                else:
                    lines.append(f"{name}{{{base}}} {number(value)} {ts}\n")
        if lines:
            out.append(header(name, fam.help, fam.kind))
            out.extend(lines)


MACHINE_HELP = {
    "machine_cpu_physical_cores": "Number of physical CPU cores.",
    "machine_cpu_cores": "Number of logical CPU cores.",
    "machine_cpu_sockets": "Number of CPU sockets.",
    "machine_cpu_books": "Number of CPU books.",
    "machine_cpu_drawers": "Number of CPU drawers.",
    "machine_memory_bytes": "Amount of memory installed on the machine.",
    "machine_swap_bytes": "Amount of swap memory available on the machine.",
    "machine_dimm_count": "Number of RAM DIMM (all types memory modules) value labeled by dimm type.",
    "machine_dimm_capacity_bytes": "Total RAM DIMM capacity (all types memory modules) value labeled by dimm type.",
    "machine_nvm_capacity": "NVM capacity value labeled by NVM mode (memory mode or app direct mode).",
    "machine_nvm_avg_power_budget_watts": "NVM power budget.",
}


def machine_lines(m: MachineInfo) -> list[str]:
    """cAdvisor's machine_* families (its machine collector), labelled by boot, machine and system ids."""
    base = f'boot_id="{escape(m.boot_id)}",machine_id="{escape(m.machine_id)}",system_uuid="{escape(m.system_uuid)}"'
    ts = f" {int(m.timestamp * 1000)}" if m.timestamp else ""
    plain = {"machine_cpu_physical_cores": m.num_physical_cores, "machine_cpu_cores": m.num_cores,
             "machine_cpu_sockets": m.num_sockets, "machine_cpu_books": m.num_books,
             "machine_cpu_drawers": m.num_drawers, "machine_memory_bytes": m.memory_capacity,
             "machine_swap_bytes": m.swap_capacity, "machine_nvm_avg_power_budget_watts": m.nvm.avg_power_budget}
    out: list[str] = []
    for name, value in plain.items():
        out.append(header(name, MACHINE_HELP[name], "gauge"))
        out.append(f"{name}{{{base}}} {number(value)}{ts}\n")
    for name, attr in (("machine_dimm_count", "dimm_count"), ("machine_dimm_capacity_bytes", "capacity")):
        if m.memory_by_type:
            out.append(header(name, MACHINE_HELP[name], "gauge"))
            out.extend(f'{name}{{{base},type="{escape(kind)}"}} {number(getattr(info, attr))}{ts}\n'
                       for kind, info in sorted(m.memory_by_type.items()))
    out.append(header("machine_nvm_capacity", MACHINE_HELP["machine_nvm_capacity"], "gauge"))
    out.append(f'machine_nvm_capacity{{{base},mode="memory_mode"}} {number(m.nvm.memory_mode_capacity)}{ts}\n')
    out.append(f'machine_nvm_capacity{{{base},mode="app_direct_mode"}} '
               f'{number(m.nvm.app_direct_mode_capacity)}{ts}\n')
    return out
