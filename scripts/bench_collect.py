#!/usr/bin/env python3
"""Collector throughput, each figure beside a baseline measured in the same run.

1. Ingest on one core: PackedForward frames → decode → rows → SQLite (WAL, synchronous=FULL,
   1,000-record chunks), in this process. Baselines: msgpack alone unpacking the same bytes,
   and SQLite alone inserting the same rows (prebuilt).
2. End to end over loopback: a ForwardSink (the agent) → `oomtrace collect` (a process) until
   every chunk is acked. Baseline: the same frames over the same loopback to a reader that
   only reads.

    .venv/bin/python scripts/bench_collect.py [--records 200000]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.collect import store  # noqa: E402
from tracer.events.records import RecordStamper  # noqa: E402
from tracer.forward import wire  # noqa: E402
from tracer.forward.forwarder import ForwardConfig, ForwardSink  # noqa: E402


def records(n: int) -> list[dict]:
    """Shaped like real oom_kill and memory_pressure records (about 230 and 600 bytes)."""
    stamper = RecordStamper("node-0001")
    now = time.time()
    out = []
    for i in range(n):
        if i % 10 == 0:
            rec = {"type": "oom_kill", "time": now + i * 1e-6, "ktime_ns": 10**12 + i, "pid": 1000 + i,
                   "tid": 1000 + i, "comm": "java", "uid": 0, "cgroup": f"/kubepods/burstable/pod{i % 97}/c{i % 3}",
                   "cgroup_id": 5000 + i, "memcg": f"/kubepods/burstable/pod{i % 97}", "memcg_id": 4000 + i,
                   "constraint": "memcg", "context": "kprobe", "memcg_usage": 268435456, "memcg_limit": 268435456,
                   "oom_score_adj": 936, "total_vm": 3 << 30, "anon_rss": 250 << 20, "file_rss": 1 << 20,
                   "shmem_rss": 0, "pgtables": 1 << 20, "oom_domain_pages": 65536, "chosen_points": 64000,
                   "order": 0, "gfp_mask": 3264, "trigger_pid": 1000 + i, "trigger_tid": 1001 + i,
                   "trigger_comm": "java", "trigger_cgroup": f"/kubepods/burstable/pod{i % 97}/c{i % 3}"}
        else:
            rec = {"type": "memory_pressure", "time": now + i * 1e-6, "cgroup": f"/kubepods/besteffort/pod{i % 97}",
                   "cgroup_id": 3000 + i % 97, "interval": 10.0, "direct_reclaims": i % 7, "memcg_reclaims": 3,
                   "stall_ns": 1234567, "max_stall_ns": 45678, "reclaimed_pages": 321}
        out.append(stamper.stamp(rec))
    return out


def frames(recs: list[dict], per_chunk: int = 1000) -> list[bytes]:
    enc = wire.FrameEncoder()
    return [enc.frame("oomtrace.bench", [enc.entry(r) for r in recs[i:i + per_chunk]], wire.new_chunk_id(),
                      len(recs[i:i + per_chunk])) for i in range(0, len(recs), per_chunk)]


def ingest(frame_list: list[bytes], db_path: Path) -> float:
    with store.Store(db_path, "full") as db:
        up = wire.unpacker()
        t0 = time.process_time()
        for data in frame_list:
            up.feed(data)
            for frame in wire.frames(up):
                db.add(store.rows(wire.decode(frame), time.time()))
        return time.process_time() - t0


def prebuilt_rows(frame_list: list[bytes]) -> list[list[tuple]]:
    """The same rows, made before the SQLite baseline's clock starts, as the plain tuples that
    Store.add binds."""
    return [list(map(tuple, store.rows(wire.decode(msgpack.unpackb(data, raw=False, ext_hook=wire._ext)),
                                       time.time())))
            for data in frame_list]


def msgpack_floor(frame_list: list[bytes]) -> float:
    t0 = time.process_time()
    for data in frame_list:
        body = msgpack.unpackb(data, raw=False)[1]
        up = msgpack.Unpacker(raw=False)
        up.feed(body)
        for _ in up:
            pass
    return time.process_time() - t0


def sqlite_floor(batches: list[list[tuple]], db_path: Path) -> float:
    with store.Store(db_path, "full") as db:
        t0 = time.process_time()
        for rows in batches:
            db.db.execute("BEGIN")
            db.db.executemany(store._INSERT, rows)
            db.db.execute("COMMIT")
        return time.process_time() - t0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end(recs: list[dict], tmp: Path) -> tuple[float, float]:
    proc = subprocess.Popen([sys.executable, "-m", "tracer", "collect", "--db", str(tmp / "e2e.db"),
                             "--listen", "tcp://127.0.0.1:0"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    addr = wire.Address.parse(re.search(r"listening on (\S+)", proc.stderr.readline()).group(1))
    cpu0 = cpu_seconds(proc.pid)
    sink = ForwardSink(ForwardConfig(addr, node="node-0001", spool_dir=tmp / "spool", queue_chunks=256))
    t0 = time.perf_counter()
    for rec in recs:
        sink.write(rec)
    sink.flush()
    while sink.stats.sent_records < len(recs):
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    collector_cpu = cpu_seconds(proc.pid) - cpu0
    sink.close()
    proc.terminate()
    proc.wait(10)
    return wall, collector_cpu


def loopback_floor(frame_list: list[bytes]) -> float:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def drain() -> None:
        conn, _ = server.accept()
        while conn.recv(1 << 20):
            pass
        conn.close()

    reader = threading.Thread(target=drain)
    reader.start()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        for data in frame_list:
            s.sendall(data)
    reader.join()
    server.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    n = parser.parse_args().records
    recs = records(n)
    frame_list = frames(recs)
    size = sum(map(len, frame_list))
    print(f"{n:,} records, {size / n:.0f} bytes each on the wire, chunks of 1,000")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = []
        for i in range(3):  # interleaved, best of three: this machine's noise hits both sides alike
            cpu = ingest(frame_list, tmp / f"ingest{i}.db")
            batches = prebuilt_rows(frame_list)
            runs.append((cpu, msgpack_floor(frame_list), sqlite_floor(batches, tmp / f"floor{i}.db")))
            del batches
        cpu, floor_mp, floor_sql = (min(r[k] for r in runs) for k in range(3))
        print("\n1. ingest on one core (CPU seconds of this process, best of 3)")
        print(f"   {'':38}{'records/s':>12}{'µs/record':>11}")
        print(f"   {'oomtrace: decode + rows + SQLite':38}{n / cpu:>12,.0f}{cpu / n * 1e6:>11.2f}   target ≥ 100,000/s")
        print(f"   {'baseline: msgpack unpack alone':38}{n / floor_mp:>12,.0f}{floor_mp / n * 1e6:>11.2f}")
        print(f"   {'baseline: SQLite insert alone':38}{n / floor_sql:>12,.0f}{floor_sql / n * 1e6:>11.2f}")
        print(f"   {'baseline: both floors added':38}{n / (floor_mp + floor_sql):>12,.0f}"
              f"{(floor_mp + floor_sql) / n * 1e6:>11.2f}")
        wall, collector_cpu = end_to_end(recs, tmp)
        floor_net = loopback_floor(frame_list)
        print("\n2. agent → collector over loopback, every chunk acked after its commit")
        print(f"   {'oomtrace: ForwardSink → oomtrace collect':42}{n / wall:>12,.0f} records/s"
              f"   collector CPU {collector_cpu / n * 1e6:.2f} µs/record")
        print(f"   {'baseline: same bytes, a reader that only reads':42}{n / floor_net:>12,.0f} records/s")


if __name__ == "__main__":
    main()
