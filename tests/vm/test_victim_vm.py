"""The victim's identity comes from the kernel, even when nothing of the victim is left in /proc
by the time its record is decoded (issue 16: on 5.10 mark_victim gives only a tid)."""

from __future__ import annotations

import os
import sys
import threading

from tests.cgroups import Cgroup
from tests.kernel import go, spawn_hog
from tracer.kernel import bpf_source, host

MiB = 1 << 20
TASK_ARG = host.gather().mark_victim_task_arg


def test_a_victim_gone_before_its_record_is_decoded_is_named_by_the_kernel(vm_engine):
    """The engine decodes the sample only once the victim is reaped: /proc has nothing of it
    then (checked at that moment), so pid, comm and cgroup can only have come from the kernel."""
    layout = bpf_source.layout()
    oom_kill, event = layout.constants["OT_EVENT_OOM_KILL"], layout.structs["oom_kill_event"]
    builder = vm_engine._builder
    decode = builder.decode
    reaped = threading.Event()
    in_proc_at_decode: dict[int, bool] = {}

    def decode_after_the_reap(raw: bytes) -> dict:
        if len(raw) >= 4 and int.from_bytes(raw[:4], sys.byteorder) == oom_kill:
            reaped.wait(60)
            tid = event.from_buffer_copy(raw).tid
            in_proc_at_decode[tid] = os.path.exists(f"/proc/{tid}")
        return decode(raw)

    cg = Cgroup.memory("vm-gone", 32 * MiB)
    builder.decode = decode_after_the_reap
    try:
        hog = spawn_hog(cg)  # the allocating process is the victim: it dies at once
        cgroup_id = cg.id
        go([hog])
        assert hog.wait(30) == -9  # reaped: its pid leaves /proc now
        assert not os.path.exists(f"/proc/{hog.pid}")
        reaped.set()
        recs = vm_engine.sink.wait_for(lambda rs: any(r["type"] == "oom_kill" and r["tid"] == hog.pid for r in rs), 30)
    finally:
        reaped.set()
        builder.decode = decode
    (kill,) = [r for r in recs if r["type"] == "oom_kill" and r["tid"] == hog.pid]
    cg.remove()
    assert in_proc_at_decode.get(hog.pid) is False, in_proc_at_decode  # decoded with the victim gone
    assert (kill["pid"], kill["comm"], kill["cgroup"], kill["cgroup_id"]) == (hog.pid, hog.comm, cg.path, cgroup_id)
    # Named by the kernel: the tracepoint's task (6.9+ form), else the kprobe's oom_control.chosen.
    assert kill["victim_source"] == ("tracepoint" if TASK_ARG else "oom_control"), kill
    assert "cgroup_unknown" not in kill, kill
