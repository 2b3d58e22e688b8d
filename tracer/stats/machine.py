"""MachineInfo and VersionInfo from /proc, /sys, /etc and netlink (pyroute2), as cAdvisor gives them.

Every root is injectable (proc, sys, etc) so that a host's files mounted elsewhere, or a
fixture tree, can be read. A file that is missing leaves its field at the zero value.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from tracer import __version__
from tracer.stats.filesystems import machine_filesystems
from tracer.stats.model import Cache, Core, DiskInfo, HugePagesInfo, MachineInfo, NetInfo, Node, VersionInfo
from tracer.stats.network import IGNORED_DEVICES


@dataclass(frozen=True)
class Roots:
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    etc: Path = Path("/etc")
    var: Path = Path("/var")


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _int(path: Path, default: int = 0) -> int:
    try:
        return int(_text(path) or default)
    except ValueError:
        return default


def machine_info(roots: Roots = Roots(), network: bool = True) -> MachineInfo:
    cpus = _cpuinfo(roots.proc / "cpuinfo")
    meminfo = _meminfo(roots.proc / "meminfo")
    topology = _topology(roots.sys)
    cores = {(c.socket_id, c.id) for node in topology for c in node.cores}
    info = MachineInfo(
        timestamp=time.time(),
        cpu_vendor_id=cpus.get("vendor_id", ""),
        num_cores=len(cpus["processors"]) or os.cpu_count() or 0,  # cAdvisor: processors in cpuinfo
        num_physical_cores=len(cores) or len({(p, c) for p, c in cpus.get("cores", [])}),
        num_sockets=len({c.socket_id for node in topology for c in node.cores}) or len(
            {p for p, _ in cpus.get("cores", [])}) or 1,
        cpu_frequency_khz=_int(roots.sys / "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        or int(float(cpus.get("cpu MHz", "0") or 0) * 1000),
        memory_capacity=meminfo.get("MemTotal", 0),
        swap_capacity=meminfo.get("SwapTotal", 0),
        hugepages=_hugepages(roots.sys / "kernel/mm/hugepages"),
        machine_id=_text(roots.etc / "machine-id") or _text(roots.var / "lib/dbus/machine-id"),
        system_uuid=_text(roots.sys / "class/dmi/id/product_uuid"),
        boot_id=_text(roots.proc / "sys/kernel/random/boot_id"),
        filesystems=machine_filesystems(roots.proc),
        disk_map=_disks(roots.sys),
        network_devices=_network_devices(roots.sys) if network else [],
        topology=topology,
    )
    return info


def version_info(roots: Roots = Roots()) -> VersionInfo:
    pretty = ""
    for line in _text(roots.etc / "os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip('"')
    kernel = _text(roots.proc / "sys/kernel/osrelease") or platform.release()
    return VersionInfo(kernel_version=kernel, container_os_version=pretty, cadvisor_version=__version__)


def _cpuinfo(path: Path) -> dict:
    out: dict = {"processors": [], "cores": []}
    physical = "0"
    for line in _text(path).splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            out["processors"].append(value)
        elif key == "physical id":
            physical = value
        elif key == "core id":
            out["cores"].append((physical, value))
        elif key in ("vendor_id", "cpu MHz") and key not in out:
            out[key] = value
    return out


def _meminfo(path: Path) -> dict[str, int]:
    out = {}
    for line in _text(path).splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def _hugepages(directory: Path) -> list[HugePagesInfo]:
    out: list[HugePagesInfo] = []
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in entries:  # hugepages-2048kB
        if name.startswith("hugepages-") and name.endswith("kB"):
            out.append(HugePagesInfo(int(name[10:-2]), _int(directory / name / "nr_hugepages")))
    return out


def _topology(sys: Path) -> list[Node]:
    nodes_dir = sys / "devices/system/node"
    node_ids = sorted(int(n[4:]) for n in _listdir(nodes_dir) if n.startswith("node") and n[4:].isdigit()) or [0]
    nodes = []
    for nid in node_ids:
        ndir = nodes_dir / f"node{nid}"
        cpus = _cpu_list(_text(ndir / "cpulist")) if ndir.exists() else _online_cpus(sys)
        memory = _meminfo(ndir / "meminfo") if ndir.exists() else {}
        node = Node(id=nid, memory=next((v for k, v in memory.items() if k.endswith("MemTotal")), 0),
                    hugepages=_hugepages(ndir / "hugepages"),
                    distances=[int(x) for x in _text(ndir / "distance").split()])
        by_core: dict[tuple[int, int], Core] = {}
        for cpu in cpus:
            tdir = sys / f"devices/system/cpu/cpu{cpu}/topology"
            key = (_int(tdir / "physical_package_id"), _int(tdir / "core_id"))
            core = by_core.get(key)
            if core is None:
                core = by_core[key] = Core(id=key[1], socket_id=key[0], caches=_caches(sys, cpu, private=True))
                node.caches.extend(c for c in _caches(sys, cpu, private=False) if c not in node.caches)
            core.threads.append(cpu)
        node.cores = sorted(by_core.values(), key=lambda c: (c.socket_id, c.id))
        nodes.append(node)
    return nodes


def _caches(sys: Path, cpu: int, private: bool) -> list[Cache]:
    """L1/L2 (private to the core) or L3 (shared) caches of one CPU."""
    cdir = sys / f"devices/system/cpu/cpu{cpu}/cache"
    out = []
    for name in sorted(_listdir(cdir)):
        if not name.startswith("index"):
            continue
        d = cdir / name
        level = _int(d / "level")
        shared = len(_cpu_list(_text(d / "shared_cpu_list"))) > 2 or level >= 3
        if shared == private:
            continue
        size = _text(d / "size")
        out.append(Cache(id=_int(d / "id"), size=int(size[:-1]) * 1024 if size.endswith("K") else _int(d / "size"),
                         type=_text(d / "type"), level=level))
    return out


def _online_cpus(sys: Path) -> list[int]:
    return _cpu_list(_text(sys / "devices/system/cpu/online")) or list(range(os.cpu_count() or 1))


def _cpu_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part.strip().isdigit():
            out.append(int(part))
    return out


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _disks(sys: Path) -> dict[str, DiskInfo]:
    out = {}
    for name in sorted(_listdir(sys / "block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        d = sys / "block" / name
        major, _, minor = _text(d / "dev").partition(":")
        if not major.isdigit():
            continue
        scheduler = _text(d / "queue/scheduler")
        chosen = scheduler[scheduler.find("[") + 1:scheduler.find("]")] if "[" in scheduler else scheduler or "none"
        out[f"{major}:{minor}"] = DiskInfo(name, int(major), int(minor), _int(d / "size") * 512, chosen)
    return out


def _network_devices(sys: Path) -> list[NetInfo]:
    """Every link but network.IGNORED_DEVICES, from netlink."""
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ip:
        for link in ip.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name.startswith(IGNORED_DEVICES):
                continue
            out.append(NetInfo(name=name, mac_address=link.get_attr("IFLA_ADDRESS") or "",
                               speed=_int(sys / f"class/net/{name}/speed", -1), mtu=link.get_attr("IFLA_MTU") or 0))
    return out
