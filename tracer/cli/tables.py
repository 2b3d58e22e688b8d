"""Readable tables: stored records (oomtrace events) and the container Interface's views.

Every cell goes through printable(): a cgroup name, a comm or a stored record's key is
untrusted text, and a terminal must show it, not act on it."""

from __future__ import annotations

import time

from tracer.events.sinks import printable, text_value

_OOM_FIELDS = ("pid", "comm", "constraint", "memcg", "anon_rss", "memcg_limit", "trigger_comm")
_HIDDEN = {"type", "time", "ktime_ns", "id", "node", "cgroup", "tag",
           "pod", "container", "memcg_pod", "memcg_container"}  # the WORKLOAD column says them
_SIZES = {"anon_rss", "file_rss", "shmem_rss", "total_vm", "memcg_usage", "memcg_limit"}


def events_table(records: list[dict]) -> str:
    rows = [("TIME", "NODE", "TYPE", "WORKLOAD", "CGROUP", "DETAILS")]
    rows += [(_when(r.get("time")), str(r.get("node") or "-"), str(r.get("type") or r.get("tag") or "-"),
              workload(r), str(r.get("cgroup") or "-"), _details(r)) for r in records]
    return _columns(rows)


def workload(record: dict) -> str:
    """NAMESPACE/POD/CONTAINER for a pod's record, the container's name for a plain one, else -:
    the store's workload columns, read from the record the same way."""
    from tracer.collect.store import workload as columns

    namespace, pod, container, _ = columns(record)
    if pod:
        return "/".join(p for p in (namespace, pod, container) if p)
    return container or "-"


def _details(record: dict) -> str:
    if record.get("type") == "oom_report":  # its verdict, not its samples: oomtrace report shows them
        from tracer.postmortem.analysis import analyse

        return f"kill_id={text_value(record.get('kill_id'))} {printable(analyse(record).verdict)}"
    keys = _OOM_FIELDS if record.get("type") == "oom_kill" else [k for k in record if k not in _HIDDEN]
    return " ".join(f"{printable(str(k))}={_size(record[k]) if k in _SIZES else text_value(record[k])}"
                    for k in keys if record.get(k) is not None)


def _size(value: object) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(value)


def _when(stamp: object) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


# --- the container Interface's views ------------------------------------------------------------

def _columns(rows: list[tuple[str, ...]]) -> str:
    rows = [tuple(printable(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _limit(value: int) -> str:
    return "-" if not value or value >= 2**62 else _size(value)


def machine_table(info, version) -> str:
    rows = [
        ("kernel", version.kernel_version), ("os", version.container_os_version),
        ("cpus", f"{info.num_cores} logical, {info.num_physical_cores} physical, {info.num_sockets} socket(s), "
                 f"{info.cpu_vendor_id} {info.cpu_frequency_khz / 1e6:.2f} GHz"),
        ("memory", f"{_size(info.memory_capacity)}, swap {_size(info.swap_capacity)}"),
        ("numa nodes", ", ".join(f"node{n.id}: {len(n.cores)} cores {_size(n.memory)}" for n in info.topology)),
        ("hugepages", ", ".join(f"{h.page_size}kB×{h.num_pages}" for h in info.hugepages) or "-"),
        ("machine id", info.machine_id or "-"), ("boot id", info.boot_id or "-"),
        ("system uuid", info.system_uuid or "-"),
        ("disks", ", ".join(f"{d.name} {_size(d.size)} ({d.scheduler})" for d in info.disk_map.values()) or "-"),
        ("network", ", ".join(f"{n.name} {n.mac_address} mtu {n.mtu}" + (f" {n.speed}Mb/s" if n.speed > 0 else "")
                              for n in info.network_devices) or "-"),
        ("filesystems", ", ".join(f"{f.device} {f.type} {_size(f.capacity)}" for f in info.filesystems) or "-"),
    ]
    return "\n".join(printable(f"{k:<12} {v}") for k, v in rows)


def spec_workload(labels: dict, aliases: list) -> str:
    """NAMESPACE/POD/CONTAINER from a spec's kubelet labels, else the runtime's container name."""
    pod = labels.get("io.kubernetes.pod.name")
    if pod:
        parts = (labels.get("io.kubernetes.pod.namespace"), pod, labels.get("io.kubernetes.container.name"))
        return "/".join(p for p in parts if p)
    if len(aliases) > 1 and not (aliases[0].startswith(aliases[1]) or aliases[1].startswith(aliases[0])):
        return aliases[0]  # [name, id] once a runtime named it; [id, short id] from the path alone
    return "-"


def containers_table(info: dict) -> str:
    rows = [("NAME", "RUNTIME", "ID", "WORKLOAD", "IMAGE", "CPU", "MEMORY", "WORKING SET", "LIMIT", "PIDS",
             "OOM KILLS")]
    for name in sorted(info):
        spec, stats = info[name].spec, info[name].stats
        latest = stats[-1] if stats else None
        cpu = latest.cpu_inst.usage.total / 1e9 if latest is not None and latest.cpu_inst else None
        mem = latest.memory if latest is not None else None
        procs = latest.processes if latest is not None else None
        rows.append((name, spec.namespace or "-", (spec.aliases[-1][:12] if spec.aliases else "-"),
                     spec_workload(spec.labels, spec.aliases), spec.image or "-",
                     f"{cpu:.3f}" if cpu is not None else "-", _size(mem.usage) if mem else "-",
                     _size(mem.working_set) if mem else "-", _limit(spec.memory.limit),
                     str(procs.threads_current) if procs else "-", str(mem.events.oom_kill) if mem else "-"))
    return _columns(rows)


def stats_table(info, v2) -> str:
    spec, latest = info.spec, info.stats[-1]
    inst = v2.stats[-1].cpu_inst if v2.stats else None
    lines = [f"name         {info.reference.name}"]
    if info.reference.namespace:
        lines.append(f"runtime      {info.reference.namespace} {info.reference.id}")
    workload = spec_workload(spec.labels, info.reference.aliases)
    if workload != "-":
        lines.append(f"workload     {workload}")
    if spec.image:
        lines.append(f"image        {spec.image}")
    lines += [f"label        {k}={v}" for k, v in spec.labels.items()]
    if latest.cpu is not None:
        c = latest.cpu
        quota = f"{spec.cpu.quota / spec.cpu.period:.2f} cores" if spec.cpu.quota and spec.cpu.period else "none"
        lines.append(f"cpu          {inst.usage.total / 1e9:.3f} cores now; " if inst else "cpu          ")
        lines[-1] += (f"{c.usage.total / 1e9:.2f} s total (user {c.usage.user / 1e9:.2f}, system "
                      f"{c.usage.system / 1e9:.2f}); quota {quota}; throttled {c.cfs.throttled_periods}/"
                      f"{c.cfs.periods} periods, {c.cfs.throttled_time / 1e9:.2f} s")
    if latest.memory is not None:
        m = latest.memory
        lines.append(f"memory       {_size(m.usage)} (working set {_size(m.working_set)}, rss {_size(m.rss)}, "
                     f"cache {_size(m.cache)}, swap {_size(m.swap)}); limit {_limit(spec.memory.limit)}; "
                     f"peak {_size(m.max_usage)}")
        lines.append(f"memory events failcnt {m.failcnt}, high {m.events.high}, max {m.events.max}, "
                     f"oom {m.events.oom}, oom_kill {m.events.oom_kill}; major faults {m.container_data.pgmajfault}")
    if latest.processes is not None:
        p = latest.processes
        lines.append(f"processes    {p.process_count} processes, {p.threads_current} tasks "
                     f"(max {_limit(p.threads_max)})")
    if latest.diskio is not None:
        for d in latest.diskio.io_service_bytes:
            lines.append(f"disk         {d.device or f'{d.major}:{d.minor}'} read {_size(d.stats.get('Read', 0))}, "
                         f"write {_size(d.stats.get('Write', 0))}")
    if latest.network is not None:
        for i in latest.network.interfaces:
            lines.append(f"network      {i.name} rx {_size(i.rx_bytes)} tx {_size(i.tx_bytes)}")
    return "\n".join(map(printable, lines))


def fs_table(info, walked) -> str:
    lines = [f"filesystem   {info.device} on {info.mountpoint}",
             f"capacity     {_size(info.capacity)}, used {_size(info.usage)}, available {_size(info.available)}"]
    if info.inodes:
        lines.append(f"inodes       {info.inodes - (info.inodes_free or 0)} used of {info.inodes}")
    if walked is not None:
        lines.append(f"{walked.path:<12} {_size(walked.bytes)} in {walked.inodes} inodes "
                     f"(walked in {walked.seconds:.2f} s)")
    return "\n".join(map(printable, lines))


def event_line(event) -> str:
    oom = event.event_data.oom
    detail = f" pid={oom.pid} process={printable(str(oom.process_name))}" if oom is not None else ""
    return f"{_when(event.timestamp)}  {printable(event.event_type):<17} {printable(event.container_name)}{detail}"
