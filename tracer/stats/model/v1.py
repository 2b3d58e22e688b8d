"""cAdvisor's info/v1: the machine, and a container's reference, spec, stats and info."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracer.stats.model._json import json_field, json_time


def _inline() -> Any:
    """The first interface's counters, inlined into NetworkStats as Go's embedded struct is."""
    return field(default_factory=lambda: InterfaceStats(), metadata={"inline": True})


# --- machine ---------------------------------------------------------------------------------

@dataclass(slots=True)
class FsInfo:  # info/v1 FsInfo (machine-level)
    device: str = json_field("device", "")
    capacity: int = json_field("capacity")
    type: str = json_field("type", "")
    inodes: int = json_field("inodes")
    has_inodes: bool = json_field("has_inodes", False)


@dataclass(slots=True)
class Cache:
    id: int = json_field("id")
    size: int = json_field("size")
    type: str = json_field("type", "")
    level: int = json_field("level")


@dataclass(slots=True)
class Core:
    id: int = json_field("core_id")
    threads: list[int] = json_field("thread_ids", factory=list)
    caches: list[Cache] = json_field("caches", factory=list)
    uncore_caches: list[Cache] = json_field("uncore_caches", factory=list)
    socket_id: int = json_field("socket_id")
    book_id: str = json_field("book_id", "", omitempty=True)  # s390x only
    drawer_id: str = json_field("drawer_id", "", omitempty=True)


@dataclass(slots=True)
class HugePagesInfo:
    page_size: int = json_field("page_size")  # kB, as cAdvisor
    num_pages: int = json_field("num_pages")


@dataclass(slots=True)
class Node:
    id: int = json_field("node_id")
    memory: int = json_field("memory")
    hugepages: list[HugePagesInfo] = json_field("hugepages", factory=list)
    cores: list[Core] = json_field("cores", factory=list)
    caches: list[Cache] = json_field("caches", factory=list)
    distances: list[int] = json_field("distances", factory=list)


@dataclass(slots=True)
class DiskInfo:
    name: str = json_field("name", "")
    major: int = json_field("major")
    minor: int = json_field("minor")
    size: int = json_field("size")
    scheduler: str = json_field("scheduler", "")


@dataclass(slots=True)
class NetInfo:
    name: str = json_field("name", "")
    mac_address: str = json_field("mac_address", "")
    speed: int = json_field("speed")  # Mb/s; -1 when the link does not say
    mtu: int = json_field("mtu")


@dataclass(slots=True)
class MemoryInfo:  # per memory type (EDAC); empty where the kernel has no EDAC, as here
    capacity: int = json_field("capacity")
    dimm_count: int = json_field("dimm_count")


@dataclass(slots=True)
class NVMInfo:  # Intel NVM through libipmctl; cAdvisor reports zeros without it
    memory_mode_capacity: int = json_field("memory_mode_capacity")
    app_direct_mode_capacity: int = json_field("app direct_mode_capacity")  # sic, a space, as cAdvisor
    avg_power_budget: int = json_field("avg_power_budget")


@dataclass(slots=True)
class MachineInfo:
    timestamp: float = json_time("timestamp")
    cpu_vendor_id: str = json_field("vendor_id", "")
    num_cores: int = json_field("num_cores")
    num_physical_cores: int = json_field("num_physical_cores")
    num_sockets: int = json_field("num_sockets")
    num_books: int = json_field("num_books", omitempty=True)
    num_drawers: int = json_field("num_drawers", omitempty=True)
    cpu_frequency_khz: int = json_field("cpu_frequency_khz")
    memory_capacity: int = json_field("memory_capacity")
    memory_by_type: dict[str, MemoryInfo] = json_field("memory_by_type", factory=dict)
    nvm: NVMInfo = json_field("nvm", factory=NVMInfo)
    swap_capacity: int = json_field("swap_capacity")
    hugepages: list[HugePagesInfo] = json_field("hugepages", factory=list)
    machine_id: str = json_field("machine_id", "")
    system_uuid: str = json_field("system_uuid", "")
    boot_id: str = json_field("boot_id", "")
    filesystems: list[FsInfo] = json_field("filesystems", factory=list)
    disk_map: dict[str, DiskInfo] = json_field("disk_map", factory=dict)
    network_devices: list[NetInfo] = json_field("network_devices", factory=list)
    topology: list[Node] = json_field("topology", factory=list)
    cloud_provider: str = json_field("cloud_provider", "Unknown")
    instance_type: str = json_field("instance_type", "Unknown")
    instance_id: str = json_field("instance_id", "None")


@dataclass(slots=True)
class VersionInfo:
    kernel_version: str = json_field("kernel_version", "")
    container_os_version: str = json_field("container_os_version", "")
    docker_version: str = json_field("docker_version", "")
    docker_api_version: str = json_field("docker_api_version", "")
    cadvisor_version: str = json_field("cadvisor_version", "")  # oomtrace's own version
    cadvisor_revision: str = json_field("cadvisor_revision", "")


# --- container spec ----------------------------------------------------------------------------

@dataclass(slots=True)
class ContainerReference:
    id: str = json_field("id", "", omitempty=True)
    name: str = json_field("name", "")
    aliases: list[str] = json_field("aliases", omitempty=True, factory=list)
    namespace: str = json_field("namespace", "", omitempty=True)


@dataclass(slots=True)
class CpuSpec:
    limit: int = json_field("limit")  # shares (v2: weight converted to shares)
    max_limit: int = json_field("max_limit")
    mask: str = json_field("mask", "", omitempty=True)
    quota: int = json_field("quota", omitempty=True)  # µs per period; 0 = none
    period: int = json_field("period", omitempty=True)


@dataclass(slots=True)
class MemorySpec:
    limit: int = json_field("limit", omitempty=True)  # 2**64-1 style "max" is kept as cAdvisor does
    reservation: int = json_field("reservation", omitempty=True)
    swap_limit: int = json_field("swap_limit", omitempty=True)


@dataclass(slots=True)
class ProcessSpec:
    limit: int = json_field("limit", omitempty=True)


@dataclass(slots=True)
class ContainerSpec:
    creation_time: float = json_time("creation_time", omitempty=True)
    start_time: float = json_time("start_time", omitempty=True)  # cAdvisor master; 0 when the runtime gives none
    labels: dict[str, str] = json_field("labels", omitempty=True, factory=dict)
    envs: dict[str, str] = json_field("envs", omitempty=True, factory=dict)
    has_cpu: bool = json_field("has_cpu", False)
    cpu: CpuSpec = json_field("cpu", omitempty=True, factory=CpuSpec)  # a struct: never omitted
    has_memory: bool = json_field("has_memory", False)
    memory: MemorySpec = json_field("memory", omitempty=True, factory=MemorySpec)
    has_hugetlb: bool = json_field("has_hugetlb", False)
    has_network: bool = json_field("has_network", False)
    has_processes: bool = json_field("has_processes", False)
    processes: ProcessSpec = json_field("processes", omitempty=True, factory=ProcessSpec)
    has_filesystem: bool = json_field("has_filesystem", False)
    has_diskio: bool = json_field("has_diskio", False)
    has_custom_metrics: bool = json_field("has_custom_metrics", False)
    custom_metrics: list[dict[str, Any]] = json_field("custom_metrics", omitempty=True, factory=list)  # never any
    image: str = json_field("image", "", omitempty=True)


# --- container stats -------------------------------------------------------------------------

@dataclass(slots=True)
class PSIData:
    total: int = json_field("total")  # µs stalled, as the kernel counts
    avg10: float = json_field("avg10", 0.0)
    avg60: float = json_field("avg60", 0.0)
    avg300: float = json_field("avg300", 0.0)


@dataclass(slots=True)
class PSIStats:
    full: PSIData = json_field("full", omitempty=True, factory=PSIData)
    some: PSIData = json_field("some", omitempty=True, factory=PSIData)


@dataclass(slots=True)
class CpuUsage:
    total: int = json_field("total")
    per_cpu: list[int] = json_field("per_cpu_usage", omitempty=True, factory=list)
    user: int = json_field("user")
    system: int = json_field("system")


@dataclass(slots=True)
class CpuCFS:
    periods: int = json_field("periods")
    throttled_periods: int = json_field("throttled_periods")
    throttled_time: int = json_field("throttled_time")
    bursts_periods: int = json_field("bursts_periods")  # cpu.stat nr_bursts (5.14+)
    burst_time: int = json_field("burst_time")


@dataclass(slots=True)
class CpuSchedstat:
    run_time: int = json_field("run_time")
    runqueue_time: int = json_field("runqueue_time")
    run_periods: int = json_field("run_periods")


@dataclass(slots=True)
class CpuStats:
    usage: CpuUsage = json_field("usage", factory=CpuUsage)
    cfs: CpuCFS = json_field("cfs", factory=CpuCFS)
    schedstat: CpuSchedstat = json_field("schedstat", factory=CpuSchedstat)
    load_average: int = json_field("load_average")
    load_d_average: int = json_field("load_d_average")
    psi: PSIStats = json_field("psi", factory=PSIStats)


@dataclass(slots=True)
class MemoryNumaStats:  # pages per NUMA node, as memory.numa_stat (v1) counts them
    file: dict[int, int] = json_field("file", omitempty=True, factory=dict)
    anon: dict[int, int] = json_field("anon", omitempty=True, factory=dict)
    unevictable: dict[int, int] = json_field("unevictable", omitempty=True, factory=dict)


@dataclass(slots=True)
class MemoryStatsMemoryData:
    pgfault: int = json_field("pgfault")
    pgmajfault: int = json_field("pgmajfault")
    numa_stats: MemoryNumaStats = json_field("numa_stats", omitempty=True, factory=MemoryNumaStats)


@dataclass(slots=True)
class MemoryEvents:  # v2 memory.events (cAdvisor HEAD: Events{High, Max}); oomtrace adds the rest
    low: int = json_field("low")
    high: int = json_field("high")
    max: int = json_field("max")
    oom: int = json_field("oom")
    oom_kill: int = json_field("oom_kill")


@dataclass(slots=True)
class MemoryStats:
    usage: int = json_field("usage")
    max_usage: int = json_field("max_usage")
    cache: int = json_field("cache")
    rss: int = json_field("rss")
    swap: int = json_field("swap")
    mapped_file: int = json_field("mapped_file")
    working_set: int = json_field("working_set")
    total_active_file: int = json_field("total_active_file")
    total_inactive_file: int = json_field("total_inactive_file")
    # cAdvisor master: memory.stat file_dirty, file_writeback, pgscan, pgsteal (v2 keys; 0 on v1)
    # and workingset_refault_file/_anon (v2, and v1 since 5.9: the cgroup's own, not total_).
    file_dirty: int = json_field("file_dirty")
    file_writeback: int = json_field("file_writeback")
    pgscan: int = json_field("pgscan")
    pgsteal: int = json_field("pgsteal")
    workingset_refault_file: int = json_field("workingset_refault_file")
    workingset_refault_anon: int = json_field("workingset_refault_anon")
    failcnt: int = json_field("failcnt")
    kernel_usage: int = json_field("kernel")
    container_data: MemoryStatsMemoryData = json_field("container_data", omitempty=True,
                                                       factory=MemoryStatsMemoryData)
    hierarchical_data: MemoryStatsMemoryData = json_field("hierarchical_data", omitempty=True,
                                                          factory=MemoryStatsMemoryData)
    psi: PSIStats = json_field("psi", factory=PSIStats)
    events: MemoryEvents = json_field("events", omitempty=True, factory=MemoryEvents)  # a struct: never omitted


@dataclass(slots=True)
class HugetlbStats:
    usage: int = json_field("usage", omitempty=True)
    max_usage: int = json_field("max_usage", omitempty=True)
    failcnt: int = json_field("failcnt")


@dataclass(slots=True)
class PerDiskStats:
    device: str = json_field("device", "")
    major: int = json_field("major")
    minor: int = json_field("minor")
    stats: dict[str, int] = json_field("stats", factory=dict)


@dataclass(slots=True)
class DiskIoStats:
    io_service_bytes: list[PerDiskStats] = json_field("io_service_bytes", omitempty=True, factory=list)
    io_serviced: list[PerDiskStats] = json_field("io_serviced", omitempty=True, factory=list)
    io_queued: list[PerDiskStats] = json_field("io_queued", omitempty=True, factory=list)
    sectors: list[PerDiskStats] = json_field("sectors", omitempty=True, factory=list)
    io_service_time: list[PerDiskStats] = json_field("io_service_time", omitempty=True, factory=list)
    io_wait_time: list[PerDiskStats] = json_field("io_wait_time", omitempty=True, factory=list)
    io_merged: list[PerDiskStats] = json_field("io_merged", omitempty=True, factory=list)
    io_time: list[PerDiskStats] = json_field("io_time", omitempty=True, factory=list)
    # v2 io.cost figures: cAdvisor reads them from io.stat keys this kernel's v1 blkio lacks.
    io_cost_usage: list[PerDiskStats] = json_field("io_cost_usage", omitempty=True, factory=list)
    io_cost_wait: list[PerDiskStats] = json_field("io_cost_wait", omitempty=True, factory=list)
    io_cost_indebt: list[PerDiskStats] = json_field("io_cost_indebt", omitempty=True, factory=list)
    io_cost_indelay: list[PerDiskStats] = json_field("io_cost_indelay", omitempty=True, factory=list)
    psi: PSIStats = json_field("psi", factory=PSIStats)


@dataclass(slots=True)
class InterfaceStats:
    name: str = json_field("name", "")
    rx_bytes: int = json_field("rx_bytes")
    rx_packets: int = json_field("rx_packets")
    rx_errors: int = json_field("rx_errors")
    rx_dropped: int = json_field("rx_dropped")
    tx_bytes: int = json_field("tx_bytes")
    tx_packets: int = json_field("tx_packets")
    tx_errors: int = json_field("tx_errors")
    tx_dropped: int = json_field("tx_dropped")


@dataclass(slots=True)
class TcpStat:  # socket counts by state; Go's untagged names are the JSON names
    established: int = json_field("Established")
    syn_sent: int = json_field("SynSent")
    syn_recv: int = json_field("SynRecv")
    fin_wait1: int = json_field("FinWait1")
    fin_wait2: int = json_field("FinWait2")
    time_wait: int = json_field("TimeWait")
    close: int = json_field("Close")
    close_wait: int = json_field("CloseWait")
    last_ack: int = json_field("LastAck")
    listen: int = json_field("Listen")
    closing: int = json_field("Closing")


@dataclass(slots=True)
class UdpStat:  # UDP socket counts
    listen: int = json_field("Listen")
    dropped: int = json_field("Dropped")
    rx_queued: int = json_field("RxQueued")
    tx_queued: int = json_field("TxQueued")


@dataclass(slots=True)
class TcpAdvancedStat:  # /proc/net/netstat and snmp counters (cAdvisor: opt-in)
    rto_algorithm: int = json_field("RtoAlgorithm")
    rto_min: int = json_field("RtoMin")
    rto_max: int = json_field("RtoMax")
    max_conn: int = json_field("MaxConn")
    active_opens: int = json_field("ActiveOpens")
    passive_opens: int = json_field("PassiveOpens")
    attempt_fails: int = json_field("AttemptFails")
    estab_resets: int = json_field("EstabResets")
    curr_estab: int = json_field("CurrEstab")
    in_segs: int = json_field("InSegs")
    out_segs: int = json_field("OutSegs")
    retrans_segs: int = json_field("RetransSegs")
    in_errs: int = json_field("InErrs")
    out_rsts: int = json_field("OutRsts")
    in_csum_errors: int = json_field("InCsumErrors")
    embryonic_rsts: int = json_field("EmbryonicRsts")
    syncookies_sent: int = json_field("SyncookiesSent")
    syncookies_recv: int = json_field("SyncookiesRecv")
    syncookies_failed: int = json_field("SyncookiesFailed")
    prune_called: int = json_field("PruneCalled")
    rcv_pruned: int = json_field("RcvPruned")
    ofo_pruned: int = json_field("OfoPruned")
    out_of_window_icmps: int = json_field("OutOfWindowIcmps")
    lock_dropped_icmps: int = json_field("LockDroppedIcmps")
    tw: int = json_field("TW")
    twrecycled: int = json_field("TWRecycled")
    twkilled: int = json_field("TWKilled")
    tcptime_wait_overflow: int = json_field("TCPTimeWaitOverflow")
    tcptimeouts: int = json_field("TCPTimeouts")
    tcpspurious_rtos: int = json_field("TCPSpuriousRTOs")
    tcploss_probes: int = json_field("TCPLossProbes")
    tcploss_probe_recovery: int = json_field("TCPLossProbeRecovery")
    tcpreno_recovery_fail: int = json_field("TCPRenoRecoveryFail")
    tcpsack_recovery_fail: int = json_field("TCPSackRecoveryFail")
    tcpreno_failures: int = json_field("TCPRenoFailures")
    tcpsack_failures: int = json_field("TCPSackFailures")
    tcploss_failures: int = json_field("TCPLossFailures")
    delayed_acks: int = json_field("DelayedACKs")
    delayed_acklocked: int = json_field("DelayedACKLocked")
    delayed_acklost: int = json_field("DelayedACKLost")
    listen_overflows: int = json_field("ListenOverflows")
    listen_drops: int = json_field("ListenDrops")
    tcphphits: int = json_field("TCPHPHits")
    tcppure_acks: int = json_field("TCPPureAcks")
    tcphpacks: int = json_field("TCPHPAcks")
    tcpreno_recovery: int = json_field("TCPRenoRecovery")
    tcpsack_recovery: int = json_field("TCPSackRecovery")
    tcpsackreneging: int = json_field("TCPSACKReneging")
    tcpfackreorder: int = json_field("TCPFACKReorder")
    tcpsackreorder: int = json_field("TCPSACKReorder")
    tcpreno_reorder: int = json_field("TCPRenoReorder")
    tcptsreorder: int = json_field("TCPTSReorder")
    tcpfull_undo: int = json_field("TCPFullUndo")
    tcppartial_undo: int = json_field("TCPPartialUndo")
    tcpdsackundo: int = json_field("TCPDSACKUndo")
    tcploss_undo: int = json_field("TCPLossUndo")
    tcpfast_retrans: int = json_field("TCPFastRetrans")
    tcpslow_start_retrans: int = json_field("TCPSlowStartRetrans")
    tcplost_retransmit: int = json_field("TCPLostRetransmit")
    tcpretrans_fail: int = json_field("TCPRetransFail")
    tcprcv_collapsed: int = json_field("TCPRcvCollapsed")
    tcpdsackold_sent: int = json_field("TCPDSACKOldSent")
    tcpdsackofo_sent: int = json_field("TCPDSACKOfoSent")
    tcpdsackrecv: int = json_field("TCPDSACKRecv")
    tcpdsackofo_recv: int = json_field("TCPDSACKOfoRecv")
    tcpabort_on_data: int = json_field("TCPAbortOnData")
    tcpabort_on_close: int = json_field("TCPAbortOnClose")
    tcpabort_on_memory: int = json_field("TCPAbortOnMemory")
    tcpabort_on_timeout: int = json_field("TCPAbortOnTimeout")
    tcpabort_on_linger: int = json_field("TCPAbortOnLinger")
    tcpabort_failed: int = json_field("TCPAbortFailed")
    tcpmemory_pressures: int = json_field("TCPMemoryPressures")
    tcpmemory_pressures_chrono: int = json_field("TCPMemoryPressuresChrono")
    tcpsackdiscard: int = json_field("TCPSACKDiscard")
    tcpdsackignored_old: int = json_field("TCPDSACKIgnoredOld")
    tcpdsackignored_no_undo: int = json_field("TCPDSACKIgnoredNoUndo")
    tcpmd5_not_found: int = json_field("TCPMD5NotFound")
    tcpmd5_unexpected: int = json_field("TCPMD5Unexpected")
    tcpmd5_failure: int = json_field("TCPMD5Failure")
    tcpsack_shifted: int = json_field("TCPSackShifted")
    tcpsack_merged: int = json_field("TCPSackMerged")
    tcpsack_shift_fallback: int = json_field("TCPSackShiftFallback")
    tcpbacklog_drop: int = json_field("TCPBacklogDrop")
    pfmemalloc_drop: int = json_field("PFMemallocDrop")
    tcpmin_ttldrop: int = json_field("TCPMinTTLDrop")
    tcpdefer_accept_drop: int = json_field("TCPDeferAcceptDrop")
    ipreverse_path_filter: int = json_field("IPReversePathFilter")
    tcpreq_qfull_do_cookies: int = json_field("TCPReqQFullDoCookies")
    tcpreq_qfull_drop: int = json_field("TCPReqQFullDrop")
    tcpfast_open_active: int = json_field("TCPFastOpenActive")
    tcpfast_open_active_fail: int = json_field("TCPFastOpenActiveFail")
    tcpfast_open_passive: int = json_field("TCPFastOpenPassive")
    tcpfast_open_passive_fail: int = json_field("TCPFastOpenPassiveFail")
    tcpfast_open_listen_overflow: int = json_field("TCPFastOpenListenOverflow")
    tcpfast_open_cookie_reqd: int = json_field("TCPFastOpenCookieReqd")
    tcpsyn_retrans: int = json_field("TCPSynRetrans")
    tcporig_data_sent: int = json_field("TCPOrigDataSent")
    pawsactive: int = json_field("PAWSActive")
    pawsestab: int = json_field("PAWSEstab")


@dataclass(slots=True)
class NetworkStats:
    first: InterfaceStats = _inline()  # cAdvisor inlines the first interface, for old readers
    interfaces: list[InterfaceStats] = json_field("interfaces", omitempty=True, factory=list)
    # cAdvisor collects these only with its tcp/udp/advtcp metrics on (off by default) and then
    # writes zeros, as oomtrace does: structs, so always in the JSON.
    tcp: TcpStat = json_field("tcp", factory=TcpStat)
    tcp6: TcpStat = json_field("tcp6", factory=TcpStat)
    udp: UdpStat = json_field("udp", factory=UdpStat)
    udp6: UdpStat = json_field("udp6", factory=UdpStat)
    tcp_advanced: TcpAdvancedStat = json_field("tcp_advanced", factory=TcpAdvancedStat)


@dataclass(slots=True)
class UlimitSpec:
    name: str = json_field("name", "")
    soft_limit: int = json_field("soft_limit")
    hard_limit: int = json_field("hard_limit")


@dataclass(slots=True)
class ProcessStats:
    process_count: int = json_field("process_count")
    fd_count: int = json_field("fd_count")
    socket_count: int = json_field("socket_count")
    threads_current: int = json_field("threads_current", omitempty=True)
    threads_max: int = json_field("threads_max", omitempty=True)
    ulimits: list[UlimitSpec] = json_field("ulimits", omitempty=True, factory=list)


@dataclass(slots=True)
class FsStats:
    device: str = json_field("device", "", omitempty=True)
    type: str = json_field("type", "")
    limit: int = json_field("capacity")
    usage: int = json_field("usage")
    base_usage: int = json_field("base_usage")
    available: int = json_field("available")
    has_inodes: bool = json_field("has_inodes", False)
    inodes: int = json_field("inodes")
    inodes_free: int = json_field("inodes_free")
    reads_completed: int = json_field("reads_completed")
    reads_merged: int = json_field("reads_merged")
    sectors_read: int = json_field("sectors_read")
    read_time: int = json_field("read_time")
    writes_completed: int = json_field("writes_completed")
    writes_merged: int = json_field("writes_merged")
    sectors_written: int = json_field("sectors_written")
    write_time: int = json_field("write_time")
    io_in_progress: int = json_field("io_in_progress")
    io_time: int = json_field("io_time")
    weighted_io_time: int = json_field("weighted_io_time")


@dataclass(slots=True)
class LoadStats:  # cAdvisor: from taskstats over netlink, only with its load reader on (off by default)
    nr_sleeping: int = json_field("nr_sleeping")
    nr_running: int = json_field("nr_running")
    nr_stopped: int = json_field("nr_stopped")
    nr_uninterruptible: int = json_field("nr_uninterruptible")
    nr_io_wait: int = json_field("nr_io_wait")


@dataclass(slots=True)
class CPUSetStats:
    memory_migrate: int = json_field("memory_migrate")


@dataclass(slots=True)
class ResctrlStats:  # Intel RDT; never collected here
    memory_bandwidth: list[dict[str, Any]] = json_field("memory_bandwidth", omitempty=True, factory=list)
    cache: list[dict[str, Any]] = json_field("cache", omitempty=True, factory=list)


@dataclass(slots=True)
class Health:
    status: str = json_field("status", "")


@dataclass(slots=True)
class ContainerStats:  # info/v1; a part that was not collected is None (cAdvisor HEAD: nil pointers)
    timestamp: float = json_time("timestamp")
    cpu: CpuStats | None = json_field("cpu", omitempty=True, pointer=True)
    diskio: DiskIoStats | None = json_field("diskio", omitempty=True, pointer=True)
    memory: MemoryStats | None = json_field("memory", omitempty=True, pointer=True)
    hugetlb: dict[str, HugetlbStats] = json_field("hugetlb", omitempty=True, factory=dict)
    network: NetworkStats | None = json_field("network", omitempty=True, pointer=True)
    filesystem: list[FsStats] = json_field("filesystem", omitempty=True, factory=list)
    processes: ProcessStats | None = json_field("processes", omitempty=True, pointer=True)
    oom_events: int = json_field("oom_events", omitempty=True)
    # What cAdvisor has and oomtrace does not collect: empty lists are left out, structs are
    # written (zeros), exactly as cAdvisor writes them when the collector is off.
    task_stats: LoadStats = json_field("task_stats", omitempty=True, factory=LoadStats)
    accelerators: list[dict[str, Any]] = json_field("accelerators", omitempty=True, factory=list)
    custom_metrics: dict[str, list[Any]] = json_field("custom_metrics", omitempty=True, factory=dict)
    perf_stats: list[dict[str, Any]] = json_field("perf_stats", omitempty=True, factory=list)
    perf_uncore_stats: list[dict[str, Any]] = json_field("perf_uncore_stats", omitempty=True, factory=list)
    referenced_memory: int = json_field("referenced_memory", omitempty=True)
    resctrl: ResctrlStats = json_field("resctrl", omitempty=True, factory=ResctrlStats)
    cpuset: CPUSetStats = json_field("cpuset", omitempty=True, factory=CPUSetStats)
    health: Health = json_field("health", omitempty=True, factory=Health)


@dataclass(slots=True)
class ContainerInfo:  # info/v1: the reference is inlined, as Go's embedded struct is
    reference: ContainerReference = field(default_factory=ContainerReference, metadata={"inline": True})
    subcontainers: list[ContainerReference] = json_field("subcontainers", omitempty=True, factory=list)
    spec: ContainerSpec = json_field("spec", omitempty=True, factory=ContainerSpec)
    stats: list[ContainerStats] = json_field("stats", omitempty=True, factory=list)


@dataclass(frozen=True, slots=True)
class ContainerInfoRequest:  # info/v1
    num_stats: int = 60  # -1: all
    start: float | None = None
    end: float | None = None
