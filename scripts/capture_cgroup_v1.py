#!/usr/bin/env python3
"""Capture this machine's cgroup v1 files, under a known load, as a test fixture.

Run as root from the project's venv, on a host whose cpu, cpuacct, cpuset, memory, pids and
blkio controllers are on cgroup v1:

    sudo .venv/bin/python scripts/capture_cgroup_v1.py [--out tests/fixtures] [--force]

It makes two test cgroups (tests.cgroups.Cgroup) in every one of those hierarchies:

- the workload, /oomtrace-capture-workload-<hex>: memory.limit_in_bytes 200 MiB, cpu.shares 512,
  cpu.cfs_period_us 100000 and cpu.cfs_quota_us 50000, pids.max 100, cpuset.cpus the last CPU,
  and a 1 TiB/s blkio.throttle.read_bps_device rule on the disk of /var/tmp (never reached:
  without a throttle rule on a device this kernel's blkio.throttle.* files only say "Total 0").
  One python process allocates 100 MiB touching every page, writes a 50 MiB file in /var/tmp,
  fsyncs it, drops it from the page cache and reads it back (page cache and disk reads), then
  sleeps; two CPU burners run 3 s beside it under the quota and exit.
- the OOM sibling, /oomtrace-capture-oom-<hex>: memory.limit_in_bytes 32 MiB, in which a python
  allocator is OOM-killed by the memcg OOM killer.

Then it copies every regular readable file of those directories and of each hierarchy's root
(root-level files only, no other cgroup) into OUT/cgroup-v1-<major.minor>/ mirroring the real
paths (sys/fs/cgroup/<controller>/...), with proc/self/{cgroup,mountinfo} of a helper in the root
cgroup, proc/<pid>/cgroup of the workload, proc/version, sys/dev/block/<dev>/uevent of the disks
blkio names, uname-a.txt and capture-info.txt (time, pids, limits, skipped files), and removes
its processes, cgroups and file. Document the new tree in tests/fixtures/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cgroups import Cgroup  # noqa: E402
from tracer.stats.cgroups import Layout  # noqa: E402

V1 = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio")
MiB = 1 << 20
TIB = 1 << 40
# Only these mounts go into proc/self/mountinfo: what the cgroup readers look at.
KEEP_MOUNTS = ("/", "/proc", "/sys", "/dev")

WORKLOAD = """\
import os, time
a = bytearray(100 << 20)
for i in range(0, len(a), 4096):
    a[i] = 1
with open({data!r}, "wb") as f:
    for _ in range(50):
        f.write(os.urandom(1 << 20))
    f.flush()
    os.fsync(f.fileno())
fd = os.open({data!r}, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
while os.read(fd, 1 << 20):
    pass
os.close(fd)
open({data!r} + ".ready", "w").close()
time.sleep(3600)
"""
BURNER = "import time\nt = time.time()\nwhile time.time() - t < 3:\n    pass\n"
HOG = "a = []\nwhile True:\n    a.append(b'x' * (1 << 20))\n"
# Prints what the readers of a host see, from the root cgroup of every hierarchy.
SELF = "import sys\nsys.stdout.write(open('/proc/self/cgroup').read() + '\\0' + open('/proc/self/mountinfo').read())\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    ap.add_argument("--force", action="store_true", help="replace an existing tree of the same name")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("capture_cgroup_v1.py: run as root (it makes cgroups and OOM-kills a process)")
    layout = Layout.detect()
    not_v1 = [c for c in V1 if layout.controllers.get(c, (0, ""))[0] != 1]
    if not_v1:
        sys.exit(f"capture_cgroup_v1.py: not on cgroup v1 here: {', '.join(not_v1)}")
    release = platform.release()
    dest = args.out / f"cgroup-v1-{'.'.join(release.split('.')[:2])}"
    if dest.exists() and not args.force:
        sys.exit(f"capture_cgroup_v1.py: {dest} exists (--force replaces it)")
    for old in Cgroup.leftovers("capture-workload", layout) + Cgroup.leftovers("capture-oom", layout):
        old.remove()

    info: list[str] = []
    procs: list[subprocess.Popen] = []
    cgroups: list[Cgroup] = []
    data = f"/var/tmp/oomtrace-capture-{os.getpid()}.dat"
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=args.out))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the tree from the unprivileged tests
    try:
        disk = whole_disk(os.stat("/var/tmp").st_dev)
        cpus = cpu_list(read_text(layout.controllers["cpuset"][1] + "/cpuset.effective_cpus"))
        files = {"memory.limit_in_bytes": str(200 * MiB), "cpu.shares": "512", "cpu.cfs_period_us": "100000",
                 "cpu.cfs_quota_us": "50000", "pids.max": "100", "cpuset.cpus": str(cpus[-1]),
                 "blkio.throttle.read_bps_device": f"{disk} {TIB}"}
        work = Cgroup.create("capture-workload", layout, controllers=V1, **files)
        cgroups.append(work)
        oom = Cgroup.create("capture-oom", layout, controllers=V1, **{"memory.limit_in_bytes": str(32 * MiB)})
        cgroups.append(oom)

        workload = work.spawn(WORKLOAD.format(data=data))
        procs.append(workload)
        wait_for(lambda: os.path.exists(data + ".ready") or workload.poll() is not None, 120, "the workload")
        assert workload.poll() is None, f"the workload exited with {workload.returncode}"
        burners = [work.spawn(BURNER) for _ in range(2)]
        procs.extend(burners)
        for b in burners:
            assert b.wait(60) == 0
        victim = oom.spawn(HOG)
        procs.append(victim)
        assert victim.wait(60) == -9, f"the OOM victim ended with {victim.returncode}, not SIGKILL"
        time.sleep(1.0)

        started = datetime.datetime.now(datetime.timezone.utc)
        skipped: list[str] = []
        hierarchies = sorted({mount for c, (v, mount) in layout.controllers.items() if v == 1 and c in V1})
        unified = [mount for c, (v, mount) in layout.controllers.items() if v == 2][:1]
        for mount in hierarchies + unified:
            copy_dir(mount, tmp, skipped)
        for cg in (work, oom):
            for d in cg.unique_dirs():
                copy_dir(d, tmp, skipped)
        self_cgroup, mountinfo = in_root_cgroup(layout)
        put(tmp, "/proc/self/cgroup", self_cgroup.encode())
        put(tmp, "/proc/self/mountinfo", keep_mounts(mountinfo).encode())
        put(tmp, f"/proc/{workload.pid}/cgroup", Path(f"/proc/{workload.pid}/cgroup").read_bytes())
        put(tmp, "/proc/version", Path("/proc/version").read_bytes())
        for dev in blkio_devices(tmp):
            uevent = f"/sys/dev/block/{dev}/uevent"
            put(tmp, uevent, Path(uevent).read_bytes())
        uname = subprocess.run(["uname", "-a"], capture_output=True, check=True).stdout
        (tmp / "uname-a.txt").write_bytes(uname)

        uptime = read_text("/proc/uptime").split()[0]
        info += [
            f"captured {started.strftime('%Y-%m-%dT%H:%M:%SZ')} (uptime {uptime} s) by scripts/capture_cgroup_v1.py",
            f"kernel {release}; {os.cpu_count()} CPUs",
            f"workload cgroup {work.name} (every v1 hierarchy below), pid {workload.pid} (python, sleeping)",
            *(f"  {k} = {v}" for k, v in files.items()),
            f"  data file {data} (50 MiB, on {disk}), removed after the capture",
            f"  CPU burners: pids {' '.join(str(b.pid) for b in burners)}, 3 s each, exited before the capture",
            f"OOM cgroup {oom.name}: memory.limit_in_bytes = {32 * MiB}; victim pid {victim.pid} (python),"
            " killed by the memcg OOM killer (SIGKILL) before the capture",
            "proc/self/cgroup and proc/self/mountinfo: of a helper in the root cgroup of every hierarchy;"
            f" mountinfo keeps only {', '.join(KEEP_MOUNTS)} and /sys/fs/cgroup*",
            "skipped:" if skipped else "skipped: none",
            *(f"  {s}" for s in skipped),
        ]
        (tmp / "capture-info.txt").write_text("\n".join(info) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for cg in cgroups:
            cg.remove()
        for path in (data, data + ".ready"):
            if os.path.exists(path):
                os.unlink(path)
        if tmp.exists():
            shutil.rmtree(tmp)
    count = sum(1 for p in dest.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {count} files, {size} bytes of content")
    print("\n".join(info))


def copy_dir(directory: str, out: Path, skipped: list[str]) -> None:
    """Every regular readable file of DIRECTORY (no subdirectories), byte for byte."""
    target = out / directory.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.is_file(follow_symlinks=False):
            continue
        mode = entry.stat(follow_symlinks=False).st_mode
        if not mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH):
            skipped.append(f"{entry.path} (write-only, mode {stat.filemode(mode)})")
            continue
        try:
            content = read_bytes(entry.path)
        except OSError as e:
            skipped.append(f"{entry.path} (mode {stat.filemode(mode)}, read fails: {errno.errorcode.get(e.errno)})")
            continue
        (target / entry.name).write_bytes(content)


def read_bytes(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def put(out: Path, real_path: str, content: bytes) -> None:
    target = out / real_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def in_root_cgroup(layout: Layout) -> tuple[str, str]:
    """/proc/self/cgroup and mountinfo of a child moved into the root cgroup of every hierarchy."""
    roots = sorted({mount for _, mount in layout.controllers.values()})

    def join() -> None:
        for mount in roots:
            with open(os.path.join(mount, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    out = subprocess.run([sys.executable, "-c", SELF], capture_output=True, text=True, check=True, preexec_fn=join)
    self_cgroup, _, mountinfo = out.stdout.partition("\0")
    return self_cgroup, mountinfo


def keep_mounts(mountinfo: str) -> str:
    keep = []
    for line in mountinfo.splitlines(keepends=True):
        point = line.split()[4]
        if point in KEEP_MOUNTS or point == "/sys/fs/cgroup" or point.startswith("/sys/fs/cgroup/"):
            keep.append(line)
    return "".join(keep)


def whole_disk(dev: int) -> str:
    """major:minor of the disk a device number is on (blk-throttle rules take whole disks)."""
    name = f"{os.major(dev)}:{os.minor(dev)}"
    sys_dev = Path("/sys/dev/block", name)
    if (sys_dev / "partition").exists():
        return (sys_dev.resolve().parent / "dev").read_text().strip()
    return name


def blkio_devices(out: Path) -> set[str]:
    devices = set()
    for path in out.glob("sys/fs/cgroup/**/blkio.*"):
        for line in path.read_text().splitlines():
            first = line.split(" ", 1)[0]
            if ":" in first and first.replace(":", "").isdigit():
                devices.add(first)
    return devices


def cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
