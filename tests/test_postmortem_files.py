"""What the flight recorder reads of a cgroup v2 tree (Debian 13's, captured: tests/fixtures) and of
memory.stat; no root needed."""

from __future__ import annotations

import time
from pathlib import Path

from tracer.postmortem.cgroup_files import FIELDS, NO_LIMIT, MemoryFiles, stat_fields
from tracer.postmortem.recorder import FlightRecorder, RecorderConfig

V2 = Path(__file__).parent / "fixtures" / "cgroup-v2-debian13-6.12" / "sys" / "fs" / "cgroup"
POD = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice"
CONTAINER = POD + "/cri-containerd-32a574834001b70cb986f9512f63f7a915756163f5bce0d64d17122369108c7a.scope"


def test_v2_limits_in_force_and_one_sample():
    files = MemoryFiles(2, str(V2))
    limits = {path: limit for _, path, limit in files.limits(1 << 62)}
    assert limits[CONTAINER] == 200 << 20  # memory.max 209715200
    assert "/kubepods.slice" not in limits and POD not in limits  # "max": no limit in force
    assert all(limit != NO_LIMIT for limit in limits.values())
    sample = dict(zip(FIELDS, files.sample(files.dir(CONTAINER), 1000, limits[CONTAINER])))
    assert sample == {"t_ms": 1000, "usage": 161906688, "anon": 108957696, "file": 52510720, "shmem": 0,
                      "swap": sample["swap"], "limit": 200 << 20, "events_high": 0, "events_max": 0}
    assert files.sample(str(V2 / "nonexistent"), 0, 0) is None
    assert files.limits(100 << 20) and CONTAINER not in {p for _, p, _ in files.limits(100 << 20)}  # ≥ the ceiling


def test_recorder_sweeps_a_v2_tree():
    recorder = FlightRecorder(RecorderConfig(), MemoryFiles(2, str(V2)))
    recorder.sweep()
    recorder.sweep()
    ring = recorder._rings[CONTAINER]
    assert len(ring) == 2 and ring.limit == 200 << 20 and not ring.hot  # 77 % of the limit, not growing
    assert recorder.stats.sweeps == 2 and recorder.stats.samples == 2 * len(recorder._rings)


def test_stat_fields_finds_whole_keys_only():
    data = b"rss_huge 7\nrss 1\ncache 2\ntotal_rss 3\n"
    assert stat_fields(data, (b"rss", b"total_rss", b"cache", b"missing")) == [1, 3, 2, 0]
    assert stat_fields(b"anon 5", (b"anon",)) == [5]  # no newline at the end
    assert stat_fields(b"anon x\n", (b"anon",)) == [0]


class _Garbled(MemoryFiles):
    """Files the kernel worded in a way not foreseen: every sample raises."""

    def sample(self, directory: str, t_ms: int, limit: int) -> tuple[int, ...] | None:
        raise ValueError("garbled memory.stat")


def drained(recorder: FlightRecorder, timeout: float = 5.0) -> list[dict]:
    """The reports the recorder's thread makes, as the engine's loop takes them: the first batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports = list(recorder.drain())
        if reports:
            return reports
        time.sleep(0.01)
    return []


def test_a_failing_read_is_counted_and_the_kill_still_gets_a_report():
    recorder = FlightRecorder(RecorderConfig(step=0.1, fine_step=0.05), _Garbled(2, str(V2)))
    recorder.start()
    try:
        time.sleep(0.3)  # sweeps that fail
        recorder.write({"type": "oom_kill", "id": "k-1", "time": time.time(), "cgroup": CONTAINER, "memcg": CONTAINER})
        reports = drained(recorder)
    finally:
        recorder.close()
    (report,) = reports
    assert report["kill_id"] == "k-1" and report["curves"] == []
    assert report["notes"] == ["the report could not be built: ValueError: garbled memory.stat"]
    assert recorder.stats.errors >= 2 and recorder.stats.last_error == "ValueError: garbled memory.stat"
