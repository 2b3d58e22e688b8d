"""Fluent's own Node.js Forward client and server (@fluent-org/logger) on the other end:
their client → our collector, our forwarder → their server; with the shared key, TLS and acks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from tests.collecting import RunningCollector, config, make_records, stored, wait_until
from tracer.forward import wire
from tracer.forward.forwarder import ForwardConfig, ForwardSink

PEERS = Path(__file__).resolve().parent / "peers"
NODE = shutil.which("node")
_missing = ("node is not installed" if NODE is None else
            "tests/peers/node_modules is missing (scripts/test.sh runs npm ci there)"
            if not (PEERS / "node_modules/@fluent-org/logger").is_dir() else None)
if _missing and os.environ.get("CI"):
    raise RuntimeError(f"the Node.js Forward peers are required in CI: {_missing}")
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


def peer(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([NODE, str(PEERS / "peer.js"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(d / "both.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return d


@pytest.mark.parametrize("mode", ["Message", "Forward", "PackedForward", "CompressedPackedForward"])
def test_their_client_to_our_collector_in_every_mode(tmp_path, mode):
    running = RunningCollector(config(tmp_path))
    try:
        client = peer("client", str(running.address.port), "app", "25", mode)
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0 and out.strip() == "acked 25", err
        rows = stored(running.collector.config.db)
        assert sorted(r[4]["seq"] for r in rows) == list(range(25))
        assert {r[4]["text"] for r in rows} == {"from @fluent-org/logger"}
    finally:
        running.stop()


def test_their_client_with_shared_key_over_tls(tmp_path, tls):
    running = RunningCollector(config(tmp_path, shared_key="k3y", tls_cert=tls / "both.pem"))
    try:
        port = str(running.address.port)
        ok = peer("client", port, "app", "10", "PackedForward", "--key", "k3y", "--ca", str(tls / "ca.pem"))
        out, err = ok.communicate(timeout=60)
        assert ok.returncode == 0 and out.strip() == "acked 10", err
        assert len(stored(running.collector.config.db)) == 10
        assert {r[1] for r in stored(running.collector.config.db)} == {"node-peer"}  # the PING's hostname

        bad = peer("client", port, "app", "1", "PackedForward", "--key", "wrong", "--ca", str(tls / "ca.pem"))
        wait_until(lambda: running.metrics.rejected.labels("auth")._value.get() >= 1, what="the wrong key refused")
        bad.kill()
        bad.communicate()
        assert len(stored(running.collector.config.db)) == 10
    finally:
        running.stop()


def _their_server(*args: str) -> tuple[subprocess.Popen, int]:
    server = peer("server", *args)
    line = server.stdout.readline()
    assert line.startswith("port "), server.stderr.read()
    return server, int(line.split()[1])


def _entries(server: subprocess.Popen, count: int) -> list[dict]:
    return [json.loads(server.stdout.readline()) for _ in range(count)]


def _sink(port: int, tmp_path: Path, **changes) -> ForwardSink:
    base = ForwardConfig(wire.Address("tcp", "localhost", port), node="agent-1", spool_dir=tmp_path / "spool",
                         connect_timeout=2, drain_timeout=20)
    return ForwardSink(replace(base, **changes))


def test_our_forwarder_to_their_server(tmp_path):
    server, port = _their_server()
    try:
        sink = _sink(port, tmp_path)
        records = make_records(30, kind="oom_kill")
        for rec in records:
            sink.write(rec)
        sink.close()
        assert sink.stats.sent_records == 30, "their server acks each chunk"
        got = _entries(server, 30)
        assert [e["record"]["id"] for e in got] == [r["id"] for r in records]
        assert {e["tag"] for e in got} == {"oomtrace.oom_kill"}
        assert abs(got[0]["time"] - records[0]["time"]) < 1e-3  # EventTime read by a foreign decoder
    finally:
        server.kill()


def test_our_forwarder_with_shared_key_over_tls_to_their_server(tmp_path, tls):
    server, port = _their_server("--key", "k3y", "--cert", str(tls / "cert.pem"), "--tls-key", str(tls / "key.pem"))
    try:
        sink = _sink(port, tmp_path, shared_key="k3y", tls=True, tls_ca=tls / "ca.pem")
        for rec in make_records(5):
            sink.write(rec)
        sink.close()
        assert sink.stats.sent_records == 5
        assert [e["record"]["seq"] for e in _entries(server, 5)] == [0, 1, 2, 3, 4]

        wrong = _sink(port, tmp_path / "w", shared_key="nope", tls=True, tls_ca=tls / "ca.pem", drain_timeout=1)
        wrong.write(make_records(1)[0])
        wrong.close()
        assert wrong.stats.sent_records == 0 and wrong.spool.records == 1  # refused, kept in the spool
    finally:
        server.kill()
