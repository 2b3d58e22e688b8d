#!/usr/bin/env python3
"""Soak the collector: good agents beside a hostile client mix, then count.

`oomtrace collect` runs as a process on its own small tmpfs (root), with its connection cap,
timeouts and frame budget set low enough for the mix to reach them. For DURATION seconds:
- good agents (real ForwardSinks, spooling to disk) send records at a steady rate;
- poison senders send records with non-UTF-8 text, NaN and 2^63 times, dates in 9999;
- slowloris clients send a frame a few bytes at a time, and idle ones hold sockets open
  past the connection cap;
- bombers send gzip bombs, 8 MB frames of empty arrays, and garbage;
- half-way through, the disk is filled for FULL seconds, then freed.
Then every good agent drains and closes, and the script prints: good records sent, acked
(left no spool behind) and stored (rows in the database), which must be equal; the
collector's RSS (max, and at start as the same-run baseline); connections refused by the
cap and the budget; frames rejected by reason.

    sudo .venv/bin/python scripts/soak_collect.py [--duration 120] [--agents 8]
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.events.records import RecordStamper  # noqa: E402
from tracer.forward import wire  # noqa: E402
from tracer.forward.forwarder import ForwardConfig, ForwardSink  # noqa: E402

CAP = 64


class Collector:
    def __init__(self, disk: Path, metrics_port: int) -> None:
        self.db = disk / "soak.db"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracer", "collect", "--db", str(self.db), "--listen", "tcp://127.0.0.1:0",
             "--metrics", f"tcp://127.0.0.1:{metrics_port}", "--max-connections", str(CAP), "--idle-timeout", "5",
             "--frame-timeout", "3", "--frame-budget-mb", "48", "--retain", "1h"],
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stderr.readline()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            raise SystemExit(f"collect did not start: {line!r}")
        self.address = wire.Address.parse(match.group(1))
        self.metrics_port = metrics_port
        self.log_lines = 0
        threading.Thread(target=self._drain_log, daemon=True).start()

    def _drain_log(self) -> None:
        for _ in self.proc.stderr:  # type: ignore[union-attr]
            self.log_lines += 1

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read().decode()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- the good ----------------------------------------------------------------------------

def good_agent(i: int, address: wire.Address, spool: Path, stop: threading.Event, rate: float,
               counts: dict) -> None:
    sink = ForwardSink(ForwardConfig(address, node=f"good-{i}", spool_dir=spool / f"agent-{i}", chunk_records=200,
                                     backoff_min=0.05, backoff_max=1.0, connect_timeout=2, drain_timeout=120))
    stamper = RecordStamper(f"good-{i}")
    sent = 0
    while not stop.is_set():
        for _ in range(int(rate / 10)):
            sink.write(stamper.stamp({"type": "soak", "time": time.time(), "cgroup": f"/kubepods/pod{sent % 50}/c",
                                      "seq": sent, "pad": "x" * 200}))
            sent += 1
        time.sleep(0.1)
    sink.close()  # drains: what is left unacked stays in the spool
    counts[i] = (sent, sink.spool.records)


# --- the hostile -------------------------------------------------------------------------

def _send(address: wire.Address, data: bytes, read: bool = True, timeout: float = 10) -> None:
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout) as s:
            s.sendall(data)
            if read:
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
    except OSError:
        pass


def poison(address: wire.Address, stop: threading.Event) -> None:
    bad = "\udcff"
    n = 0
    while not stop.is_set():
        n += 1
        entries = [[time.time(), {"type": "poison", "id": f"p{n}{bad}", "node": f"evil{bad}", "cgroup": f"/{bad}"}],
                   [math.nan, {"type": "poison", "id": f"nan{n}", "node": "evil"}],
                   [2**63, {"type": "poison", "id": f"big{n}", "node": "evil"}],
                   [253402300000.0, {"type": "poison", "id": f"y9999-{n}", "node": "evil"}]]
        _send(address, msgpack.packb([f"t{bad}", entries, {"chunk": f"c{n}{bad}"}], unicode_errors="surrogateescape"))
        time.sleep(0.05)


def slowloris(address: wire.Address, stop: threading.Event) -> None:
    frame = msgpack.packb(["t", [[time.time(), {"pad": "y" * 5000}]], {"chunk": "slow"}])
    while not stop.is_set():
        try:
            with socket.create_connection((address.host, address.port), timeout=10) as s:
                for byte in frame:
                    if stop.is_set():
                        return
                    s.sendall(bytes([byte]))
                    time.sleep(0.5)
        except OSError:
            time.sleep(0.1)


def idle_flood(address: wire.Address, stop: threading.Event, holders: int) -> None:
    held: list[socket.socket] = []
    while not stop.is_set():
        while len(held) < holders:
            try:
                held.append(socket.create_connection((address.host, address.port), timeout=5))
            except OSError:
                break
        time.sleep(1)
        alive = []
        for s in held:  # the collector closes idle ones; open new ones
            s.setblocking(False)
            try:
                gone = s.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                s.close()
            else:
                alive.append(s)
        held = alive
    for s in held:
        s.close()


def bombs(address: wire.Address, stop: threading.Event) -> None:
    gzip_bomb = msgpack.packb(["t", gzip.compress(b"\0" * (200 << 20)), {"compressed": "gzip", "chunk": "bomb"}])
    empty_arrays = msgpack.packb(["t", [[]] * 8_000_000])
    big_partial = msgpack.packb(["t", b"z" * (15 << 20), {"chunk": "partial"}])[: 14 << 20]
    kinds = [gzip_bomb, empty_arrays, os.urandom(4096), b"\xc1" * 100]
    while not stop.is_set():
        _send(address, random.choice(kinds))
        _send(address, big_partial, read=False)  # 14 MB of a frame, then gone
        time.sleep(0.5)


# --- the run -----------------------------------------------------------------------------

def fill(disk: Path, stop: threading.Event) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while not stop.is_set():
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--rate", type=float, default=500.0, help="records per second per good agent")
    ap.add_argument("--full", type=float, default=10.0, help="seconds the disk stays full")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("soak_collect: run as root (it mounts a tmpfs for the collector's disk)")
    work = Path(tempfile.mkdtemp(prefix="oomtrace-soak-"))
    disk = work / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", str(disk)], check=True)
    try:
        return soak(args, work, disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def soak(args: argparse.Namespace, work: Path, disk: Path) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    collector = Collector(disk, port)
    rss_start = rss_max = collector.rss_mb()
    stop_good, stop_bad = threading.Event(), threading.Event()
    counts: dict[int, tuple[int, int]] = {}
    good = [threading.Thread(target=good_agent, args=(i, collector.address, work / "spool", stop_good, args.rate,
                                                      counts)) for i in range(args.agents)]
    hostile = [threading.Thread(target=poison, args=(collector.address, stop_bad)),
               threading.Thread(target=bombs, args=(collector.address, stop_bad)),
               threading.Thread(target=idle_flood, args=(collector.address, stop_bad, CAP + 20))]
    hostile += [threading.Thread(target=slowloris, args=(collector.address, stop_bad)) for _ in range(10)]
    for t in good + hostile:
        t.daemon = True
        t.start()
    start = time.monotonic()
    stop_fill = threading.Event()
    filled = False
    while time.monotonic() - start < args.duration:
        time.sleep(0.5)
        rss_max = max(rss_max, collector.rss_mb())
        elapsed = time.monotonic() - start
        if not filled and elapsed > args.duration / 2:
            filled = True
            filler = threading.Thread(target=fill, args=(disk, stop_fill), daemon=True)
            filler.start()
            print(f"soak: {elapsed:.0f} s: filling the collector's disk for {args.full:.0f} s", flush=True)
            full_until = time.monotonic() + args.full
        if filled and not stop_fill.is_set() and time.monotonic() >= full_until:
            stop_fill.set()
            filler.join()
            (disk / "filler").unlink()
            print(f"soak: {time.monotonic() - start:.0f} s: disk freed", flush=True)
    stop_bad.set()
    stop_good.set()
    for t in good:
        t.join(300)
    for t in hostile:
        t.join(30)
    rss_max = max(rss_max, collector.rss_mb())
    text = collector.metrics()
    collector.stop()
    with sqlite3.connect(f"file:{collector.db}?mode=ro", uri=True) as db:
        (stored,) = db.execute("SELECT count(*) FROM records WHERE type = 'soak'").fetchone()
        (poisoned,) = db.execute("SELECT count(*) FROM records WHERE type = 'poison'").fetchone()
    sent = sum(s for s, _ in counts.values())
    acked = sent - sum(left for _, left in counts.values())
    reasons = {m.group(1): float(m.group(2)) for m in
               re.finditer(r'oomtrace_frames_rejected_total\{reason="(\w+)"\} (\S+)', text)}
    print(f"soak: {args.duration:.0f} s, {args.agents} good agents at {args.rate:.0f} records/s each, "
          f"beside poison, slowloris, idle floods ({CAP + 20} sockets, cap {CAP}), bombs and a full disk")
    print(f"good records    sent {sent}   acked {acked}   stored {stored}   "
          f"{'EQUAL' if sent == acked == stored else 'NOT EQUAL'}")
    print(f"poison records  stored {poisoned} (escaped, clamped times flagged: "
          f"{metric(text, 'oomtrace_records_time_clamped_total'):.0f})")
    print(f"collector RSS   start {rss_start:.0f} MB (baseline)   max {rss_max:.0f} MB")
    print(f"refused         cap {metric(text, 'oomtrace_connections_refused_total', reason='cap'):.0f}   "
          f"memory budget {metric(text, 'oomtrace_connections_refused_total', reason='memory'):.0f}")
    print(f"rejected        {', '.join(f'{k} {v:.0f}' for k, v in sorted(reasons.items()))}")
    print(f"store errors    {metric(text, 'oomtrace_store_errors_total'):.0f} (rounds refused while the disk was "
          f"full)   log lines {collector.log_lines}")
    return 0 if sent == acked == stored else 1


if __name__ == "__main__":
    sys.exit(main())
