"""The event engine on a stock Debian kernel: kernel headers, kprobes, cgroup v2."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.cgroups import Cgroup
from tests.kernel import go, oom_once, spawn_hog
from tracer.kernel import host

MiB = 1 << 20
OOMTRACE = [sys.executable, "-m", "tracer"]
# 6.9+ (and 6.1.y) mark_victim passes the victim task and the figures the kernel computed; older
# kernels (5.10) pass only a tid: the kprobes then name the victim and the rss figures are None.
TASK_ARG = host.gather().mark_victim_task_arg
VICTIM_SOURCE = "tracepoint" if TASK_ARG else "oom_control"


def _kills(engine, paths: set[str], count: int, timeout: float = 30.0) -> list[dict]:
    recs = engine.sink.wait_for(
        lambda rs: len([r for r in rs if r["type"] == "oom_kill" and r["cgroup"] in paths]) >= count, timeout)
    return [r for r in recs if r["type"] == "oom_kill" and r["cgroup"] in paths]


def test_start_uses_kernel_headers_and_the_kprobe(vm_engine):
    (start,) = vm_engine.sink.of_type("start")
    assert start["headers"] == "kernel-headers", start
    assert start["cgroup_version"] == 2 and start["memory_hierarchy"] == "unified"
    assert any("oom_kill_process" in p for p in start["probes"]), start["probes"]
    assert not any("oom_kill_process" in k for k in start["missing"]), start["missing"]
    if not TASK_ARG:  # pid-only mark_victim: oom.group members are named by this kprobe
        assert any("oom_kill_memcg_member" in p for p in start["probes"]), (start["probes"], start["missing"])


def test_memcg_oom_has_the_kprobes_context(vm_engine):
    cg, pid = oom_once("vm-memcg", 32 * MiB)
    (kill,) = _kills(vm_engine, {cg.path}, 1)
    cg.remove()
    assert (kill["pid"], kill["comm"], kill["cgroup"]) == (pid, "python3", cg.path)
    assert kill["cgroup_id"] == kill["memcg_id"]  # the victim's own leaf is the memcg that hit its limit
    assert kill["context"] == "kprobe" and kill["constraint"] == "memcg" and kill["memcg"] == cg.path
    assert kill["memcg_limit"] == 32 * MiB and kill["memcg_usage"] >= 30 * MiB
    assert kill["oom_domain_pages"] == 32 * MiB // os.sysconf("SC_PAGE_SIZE")
    assert kill["chosen_points"] > 0 and kill["order"] >= 0 and kill["gfp_mask"]
    assert kill["trigger_pid"] == pid and kill["trigger_cgroup"] == cg.path
    assert kill["victim_source"] == VICTIM_SOURCE
    if TASK_ARG:
        assert kill["anon_rss"] >= 20 * MiB
    else:  # this kernel's mark_victim carries no figures: the record says so with None, not 0
        assert kill["anon_rss"] is None and kill["total_vm"] is None and kill["oom_score_adj"] is None, kill


def test_oom_group_kills_every_member(vm_engine):
    cg = Cgroup.memory("vm-group", 48 * MiB)
    (cg.dir / "memory.oom.group").write_text("1")
    members = [spawn_hog(cg) for _ in range(3)]
    go(members[:1])  # one allocates; the group goes down together
    for m in members:
        assert m.wait(30) == -9
    kills = _kills(vm_engine, {cg.path}, 3)
    cg.remove()
    assert sorted(k["pid"] for k in kills) == sorted(m.pid for m in members)
    assert {k["memcg"] for k in kills} == {cg.path} and {k["context"] for k in kills} == {"kprobe"}
    assert {k["comm"] for k in kills} == {"python3"}
    sources = sorted(k["victim_source"] for k in kills)
    # pid-only mark_victim: the chosen one from oom_control, the two others from oom_kill_memcg_member
    assert sources == (["tracepoint"] * 3 if TASK_ARG else ["oom_control", "oom_group", "oom_group"]), sources


def test_global_oom_names_the_victims_cgroup(vm_engine):
    cg = Cgroup.memory("vm-global")  # no limit: the VM's memory is what runs out
    hog = spawn_hog(cg)
    Path(f"/proc/{hog.pid}/oom_score_adj").write_text("1000")  # the one to go, not the test runner
    go([hog])
    assert hog.wait(300) == -9
    (kill,) = _kills(vm_engine, {cg.path}, 1, timeout=60)
    cg.remove()
    assert kill["pid"] == hog.pid and kill["constraint"] == "global" and kill["context"] == "kprobe"
    assert kill["comm"] == hog.comm and kill["victim_source"] == VICTIM_SOURCE
    assert kill["memcg"] is None and kill["memcg_limit"] is None
    assert kill["oom_domain_pages"] > 100_000  # the whole machine: about 2 GiB of pages
    # The Interface names a system OOM's events `/`, as cAdvisor does: kubelet's watcher reads
    # that as "System OOM encountered" (a container OOM names the containers instead).
    from tracer.stats.manager import Manager, ManagerConfig
    from tracer.stats.model import EventRequest

    m = Manager(ManagerConfig(network=False))
    m.on_record(kill)
    events = m.get_events(EventRequest(event_types=frozenset({"oom", "oomKill"}), max_events=-1))
    assert sorted((e.event_type, e.container_name) for e in events) == [("oom", "/"), ("oomKill", "/")]
    (data,) = [e.event_data.oom for e in events if e.event_type == "oomKill"]
    assert (data.pid, data.process_name, data.constraint) == (hog.pid, hog.comm, "")


def test_cgroup_creation_and_deletion(vm_engine):
    root = Path("/sys/fs/cgroup")
    names = [f"/oomtrace-vm-cg-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    inodes = {}
    for n in names:
        (root / n.lstrip("/")).mkdir()
        inodes[n] = os.stat(root / n.lstrip("/")).st_ino
    for n in names:
        (root / n.lstrip("/")).rmdir()
    recs = vm_engine.sink.wait_for(
        lambda rs: len([r for r in rs if r["type"] == "cgroup_delete" and r["cgroup"] in inodes]) == 20)
    created = {r["cgroup"]: r["cgroup_id"] for r in recs if r["type"] == "cgroup_create" and r["cgroup"] in inodes}
    deleted = {r["cgroup"] for r in recs if r["type"] == "cgroup_delete" and r["cgroup"] in inodes}
    assert created == inodes and deleted == set(inodes)
    assert {r["hierarchy"] for r in recs if r["type"] == "cgroup_create" and r["cgroup"] in inodes} == {"unified"}


def test_headers_generated_from_btf_give_the_same_records(cache_dir, tmp_path):
    """With the kernel headers hidden, `oomtrace run` falls back to a tree made from BTF."""
    build = Path(f"/lib/modules/{platform.release()}/build")
    hidden = build.with_name("build.hidden-by-oomtrace-test")
    build.rename(hidden)
    try:
        proc = subprocess.Popen([*OOMTRACE, "run", "-o", "json", "--cache-dir", str(tmp_path), "-t", "oom_kill"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        start = json.loads(proc.stdout.readline() or "{}")
        assert start.get("headers") == "btf", proc.stderr.read() if not start else start
        cg, pid = oom_once("vm-btf", 32 * MiB)
        time.sleep(1.0)
        proc.terminate()
        out, err = proc.communicate(timeout=60)
        cg.remove()
    finally:
        hidden.rename(build)
    assert proc.returncode == 0, err
    (kill,) = [json.loads(line) for line in out.splitlines() if json.loads(line).get("cgroup") == cg.path]
    assert kill["pid"] == pid and kill["context"] == "kprobe" and kill["memcg_limit"] == 32 * MiB
    assert kill["comm"] == "python3" and kill["victim_source"] == VICTIM_SOURCE


def test_doctor_reports_this_kernel(cache_dir):
    done = subprocess.run([*OOMTRACE, "doctor", "--cache-dir", str(cache_dir)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert platform.release() in out
    assert "kprobe" in out and "oom_kill_process" in out
    assert ("6.9+ layout" if TASK_ARG else "oom_control.chosen and oom_kill_memcg_member") in out, out
    assert f"yes (/lib/modules/{platform.release()}/build)" in out and "the kernel's own headers" in out, out
