"""The stats commands and `run --stats` as a user runs them, on real cgroups; a cgroup removed
in the middle of being read; directory usage with hard links."""

from __future__ import annotations

import json
import os
import subprocess
import time

import msgpack
import pytest

from tests.cgroups import Cgroup
from tests.collecting import OOMTRACE
from tests.kernel import go, spawn_hog
from tracer.stats import cgroups
from tracer.stats.cgroups import ContainerGone, Layout
from tracer.stats.filesystems import DirUsageWalker, dir_usage

pytestmark = pytest.mark.root
MiB = 1 << 20


def _json(*args: str) -> object:
    done = subprocess.run([*OOMTRACE, *args, "--output", "json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_machine_command():
    doc = _json("machine")
    assert doc["machine"]["num_cores"] == os.cpu_count()
    assert doc["machine"]["boot_id"] == open("/proc/sys/kernel/random/boot_id").read().strip()
    assert doc["version"]["kernel_version"] == os.uname().release


def test_containers_and_stats_commands_on_a_limited_cgroup():
    cg = Cgroup.create("cli", memory_limit_in_bytes=str(128 * MiB))
    proc = cg.spawn("a = bytearray(32 << 20)\nfor i in range(0, len(a), 4096):\n    a[i] = 1\n"
                    "import time\ntime.sleep(60)\n")
    try:
        time.sleep(0.8)
        listing = _json("containers", "--interval", "0.3")
        assert listing[cg.name]["spec"]["memory"]["limit"] == 128 * MiB
        doc = _json("stats", cg.name, "--interval", "0.2")
        assert doc["name"] == cg.name and doc["spec"]["has_memory"] is True
        assert doc["stats"][-1]["memory"]["usage"] >= 32 * MiB  # cAdvisor's field names throughout
        assert doc["stats"][-1]["processes"]["fd_count"] == 0  # not counted unless asked
        counted = _json("stats", cg.name, "--interval", "0.2", "--process-counts")["stats"][-1]["processes"]
        assert counted["fd_count"] == len(os.listdir(f"/proc/{proc.pid}/fd"))  # its one process's
        off = subprocess.run([*OOMTRACE, "stats", cg.name, "--interval", "0.2"], capture_output=True, text=True,
                             timeout=60)
        assert "fd_count and socket_count were not counted" in off.stderr  # said beside a table
        table = subprocess.run([*OOMTRACE, "containers", "--interval", "0.2"], capture_output=True, text=True,
                               timeout=60).stdout
        row = next(line for line in table.splitlines() if line.startswith(cg.name))
        assert "128.0MiB" in row
    finally:
        proc.kill()
        proc.wait()
        cg.remove()
    done = subprocess.run([*OOMTRACE, "stats", cg.name], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "unknown container" in done.stderr


def test_a_cgroup_removed_in_the_middle_of_a_read_is_gone():
    layout = Layout.detect()
    cg = Cgroup.create("midread")
    dirs = layout.dirs(cg.name)
    real = cgroups._v1.read_int
    calls = []

    def remove_after_first(path):
        calls.append(path)
        if len(calls) == 1:
            value = real(path)
            cg.remove()  # the kernel removes the directory between two files of one container
            return value
        return real(path)

    cgroups._v1.read_int = remove_after_first
    try:
        with pytest.raises(ContainerGone):
            cgroups.read_stats(dirs, time.time(), cgroups.DeviceNames())
    finally:
        cgroups._v1.read_int = real
    assert len(calls) > 1 and not any(os.path.isdir(d) for d in cg.dirs.values())


def test_run_stats_adds_container_stats_records(cache_dir):
    cg = Cgroup.create("runstats", memory_limit_in_bytes=str(64 * MiB))
    try:
        done = subprocess.run([*OOMTRACE, "run", "-o", "msgpack", "--stats", "0.5", "--duration", "2.5",
                               "--cache-dir", str(cache_dir), "-t", "container_stats"], capture_output=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        records = list(msgpack.Unpacker(__import__("io").BytesIO(done.stdout)))
        mine = [r for r in records if r.get("cgroup") == cg.name]
        assert len(mine) >= 3
        assert all(r["type"] == "container_stats" and r["memory_limit"] == 64 * MiB for r in mine)
        assert mine[-1]["cpu_nanocores"] is not None and mine[0]["id"] != mine[1]["id"]
    finally:
        cg.remove()


def test_live_events_show_a_real_oom_kill(cache_dir):
    proc = subprocess.Popen([*OOMTRACE, "events", "--output", "json", "--duration", "6", "--cache-dir",
                             str(cache_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # the engine loads
    # The limit on the parent, the victim in a child: cAdvisor names the `oom` event after the
    # victim's memcg (the child) and the `oomKill` event after the memcg that OOMed (the parent).
    cg = Cgroup.memory("live", 16 << 20)
    try:
        child = cg.child("task")
        hog = spawn_hog(child)
        go([hog])
        assert hog.wait(30) == -9
    finally:
        cg.remove()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    mine = [(e["container_name"], e["event_type"], e.get("event_data")) for e in events
            if e["container_name"] in (cg.path, child.path)]
    assert (child.path, "oom", {}) in mine, mine  # as cAdvisor: the oom event carries no data
    assert (cg.path, "oomKill", {"oom": {"pid": hog.pid, "process_name": hog.comm,
                                         "constraint": "CONSTRAINT_MEMCG"}}) in mine, mine
    assert (cg.path, "containerCreation", {}) in mine and (child.path, "containerDeletion", {}) in mine


def test_dir_usage_counts_hard_links_once_and_runs_off_the_caller(tmp_path):
    (tmp_path / "d").mkdir()
    data = tmp_path / "d" / "a"
    data.write_bytes(os.urandom(1 << 20))
    os.link(data, tmp_path / "d" / "b")
    os.link(data, tmp_path / "c")
    usage = dir_usage(str(tmp_path))
    one_file = os.stat(data).st_blocks * 512
    assert one_file <= usage.bytes < one_file + 64 * 1024  # three names, one inode
    walker = DirUsageWalker(interval=0.2)
    try:
        assert walker.request(str(tmp_path)) is None  # the first walk has not ended: no blocking
        result = walker.wait(str(tmp_path), 5)
        assert result is not None and result.bytes == usage.bytes
        (tmp_path / "e").write_bytes(os.urandom(1 << 20))
        time.sleep(0.6)
        assert walker.request(str(tmp_path)).bytes >= usage.bytes + (1 << 20)
    finally:
        walker.stop()


def test_fs_info_of_paths():
    from tracer.stats.manager import Manager, ManagerConfig

    m = Manager(ManagerConfig(network=False))
    root = m.root_fs_info()
    assert root.mountpoint == "/" and root.device
    assert m.get_dir_fs_info("/proc").mountpoint == "/proc"
    st = os.statvfs("/")
    assert root.capacity == st.f_blocks * st.f_frsize
    with pytest.raises(FileNotFoundError):
        m.get_dir_fs_info("/no/such/dir")
