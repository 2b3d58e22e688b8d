"""The event engine on this machine's real kernel: real OOM kills, real cgroups."""

from __future__ import annotations

import os

import pytest

from tests.cgroups import Cgroup
from tests.kernel import go, spawn_hog

pytestmark = pytest.mark.root
MiB = 1 << 20


def _kills_in(records: list[dict], paths: set[str]) -> list[dict]:
    return [r for r in records if r["type"] == "oom_kill" and r["cgroup"] in paths]


def test_start_record_lists_probes(engine):
    start = engine.sink.of_type("start")
    assert len(start) == 1 and engine.sink.records[0]["type"] == "start"
    assert "raw tracepoint oom:mark_victim" in start[0]["probes"]
    assert start[0]["kernel"] == os.uname().release
    assert start[0]["headers"] in ("kernel-headers", "kheaders", "btf")


def test_one_oom_kill_in_a_small_memcg(engine):
    cg = Cgroup.memory("one", 24 * MiB)
    try:
        hog = spawn_hog(cg)
        go([hog])
        assert hog.wait(30) == -9
        recs = engine.sink.wait_for(lambda rs: _kills_in(rs, {cg.path}))
        kills = _kills_in(recs, {cg.path})
        assert len(kills) == 1
        k = kills[0]
        assert (k["pid"], k["tid"], k["comm"]) == (hog.pid, hog.pid, hog.comm)
        assert k["cgroup_id"] == cg.id  # a silent 0 or a wrong hierarchy would show here
        assert k["constraint"] == "memcg" and k["memcg"] == cg.path and k["memcg_id"] == cg.id
        assert k["memcg_limit"] == 24 * MiB
        assert 20 * MiB <= k["memcg_usage"] <= 24 * MiB
        # Charged memory is the victim's anon + file pages: they must add up near the limit.
        assert 12 * MiB <= k["anon_rss"] <= 24 * MiB
        assert k["total_vm"] >= k["anon_rss"] + k["file_rss"]
        assert k["uid"] == os.getuid() and k["oom_score_adj"] == 0
        assert k["trigger_pid"] == hog.pid and k["trigger_cgroup"] == cg.path
        assert k["context"] in ("kprobe", "inferred")
    finally:
        cg.remove()


def test_victim_path_is_kept_after_its_cgroup_is_removed(engine):
    cg = Cgroup.memory("gone", 16 * MiB)
    hog = spawn_hog(cg)
    go([hog])
    hog.wait(30)
    cg.remove()
    recs = engine.sink.wait_for(
        lambda rs: any(r["type"] == "cgroup_delete" and r["cgroup"] == cg.path for r in rs))
    kills = _kills_in(recs, {cg.path})
    deletes = [r for r in recs if r["type"] == "cgroup_delete" and r["cgroup"] == cg.path]
    assert len(kills) == 1 and len(deletes) == 1
    assert deletes[0]["cgroup_id"] == kills[0]["cgroup_id"]
    assert engine.probes is not None
    # The cache still resolves the removed cgroup's id.
    assert engine._builder.resolver.path(engine._builder.memory_hierarchy, kills[0]["cgroup_id"]) == cg.path


def test_twenty_memcgs_oom_at_once(engine):
    groups = [Cgroup.memory(f"many{i}", 16 * MiB) for i in range(20)]
    lost_before = engine.stats.lost
    try:
        hogs = [spawn_hog(cg) for cg in groups]
        go(hogs)
        assert [h.wait(60) for h in hogs] == [-9] * 20
        paths = {cg.path for cg in groups}
        recs = engine.sink.wait_for(lambda rs: len(_kills_in(rs, paths)) >= 20, timeout=20)
        kills = _kills_in(recs, paths)
        assert len(kills) == 20
        assert {k["pid"] for k in kills} == {h.pid for h in hogs}
        assert all(k["constraint"] == "memcg" and k["memcg"] == k["cgroup"] for k in kills)
        assert engine.stats.lost == lost_before == 0
    finally:
        for cg in groups:
            cg.remove()


def test_cgroup_storm_every_create_and_delete_seen(engine):
    root = Cgroup.memory("storm", 64 * MiB)
    n = 2000
    try:
        dirs = [root.dir / f"c{i}" for i in range(n)]
        ids = {}
        for d in dirs:
            d.mkdir()
            ids[d.name] = os.stat(d).st_ino
        for d in dirs:
            d.rmdir()
        prefix = root.path + "/"

        def storm(rs, kind):
            return [r for r in rs if r["type"] == kind and r["cgroup"].startswith(prefix)]

        recs = engine.sink.wait_for(lambda rs: len(storm(rs, "cgroup_delete")) >= n, timeout=30)
        creates, deletes = storm(recs, "cgroup_create"), storm(recs, "cgroup_delete")
        assert len(creates) == n and len(deletes) == n
        assert {r["cgroup"]: r["cgroup_id"] for r in creates} == {prefix + k: v for k, v in ids.items()}
        assert {r["cgroup"] for r in deletes} == {prefix + d.name for d in dirs}
        assert all(r["hierarchy"] == "memory" and r["level"] == 2 for r in creates)
        assert engine.stats.lost == 0 and not engine.sink.of_type("lost")
    finally:
        root.remove()


def test_memory_pressure_summaries_name_the_reclaiming_cgroup(engine):
    cg = Cgroup.memory("pressure", 16 * MiB)
    try:
        hog = spawn_hog(cg)
        go([hog])
        hog.wait(30)
        recs = engine.sink.wait_for(
            lambda rs: any(r["type"] == "memory_pressure" and r["cgroup"] == cg.path for r in rs),
            timeout=5)
        summaries = [r for r in recs if r["type"] == "memory_pressure" and r["cgroup"] == cg.path]
        assert summaries, "a memcg driven to OOM reclaims first: its stalls must be summarised"
        s = summaries[0]
        assert s["memcg_reclaims"] > 0 and s["stall_ns"] > 0
        assert 0 < s["max_stall_ns"] <= s["stall_ns"]
        assert s["cgroup_id"] == cg.id
    finally:
        cg.remove()


def test_a_pod_level_limit_names_the_pod_as_memcg_and_the_container_as_cgroup(engine):
    pod = Cgroup.memory("pod", 24 * MiB)
    ctr = pod.child("ctr")  # no limit of its own: the pod's limit is the one that is hit
    try:
        hog = spawn_hog(ctr)
        go([hog])
        assert hog.wait(30) == -9
        recs = engine.sink.wait_for(lambda rs: _kills_in(rs, {ctr.path}))
        [k] = _kills_in(recs, {ctr.path})
        assert k["pid"] == hog.pid and k["cgroup_id"] == ctr.id
        assert (k["constraint"], k["memcg"], k["memcg_id"]) == ("memcg", pod.path, pod.id)
        assert k["memcg_limit"] == 24 * MiB
    finally:
        ctr.remove()
        pod.remove()
