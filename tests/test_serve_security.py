"""The HTTP server's guards with real clients and sockets: the address rule, basic auth
(bcrypt htpasswd), a bearer token, TLS verified by a real client, a slowloris, the
connection cap and the body limit."""

from __future__ import annotations

import base64
import socket
import ssl
import time
from contextlib import contextmanager
from urllib.error import URLError

import pytest

from tests.collecting import free_port
from tests.serving import get
from tracer.errors import OomtraceError
from tracer.serve.cache import MetricsCache
from tracer.serve.config import HttpConfig
from tracer.serve.container_metrics import ContainerMetrics
from tracer.serve.endpoints import agent_server
from tracer.serve.security import SecurityConfig, SecurityError, check, read_htpasswd
from tracer.stats.manager import Manager, ManagerConfig


@pytest.fixture(scope="module")
def manager():
    m = Manager(ManagerConfig(network=False))
    m.start(background=False)
    yield m
    m.stop()


@contextmanager
def server(manager, **config):
    s = agent_server(manager, HttpConfig(port=free_port(), **config), MetricsCache(manager, ContainerMetrics()))
    s.start()
    try:
        yield s
    finally:
        s.close()


def test_beyond_loopback_needs_credentials_and_basic_auth_needs_tls(tmp_path):
    check(SecurityConfig(), "127.0.0.1")
    check(SecurityConfig(), "::1")
    for host in ("0.0.0.0", "10.1.2.3", "node.example"):
        with pytest.raises(SecurityError, match="needs --http-htpasswd"):
            check(SecurityConfig(), host)
    token = tmp_path / "token"
    token.write_text("t" * 32)
    for credentials in (SecurityConfig(bearer_token_file=token), SecurityConfig(htpasswd=tmp_path / "x")):
        with pytest.raises(SecurityError, match="need --http-tls-cert"):  # a token in clear text, a password
            check(credentials, "0.0.0.0")
    check(SecurityConfig(bearer_token_file=token, tls_cert=tmp_path / "cert.pem"), "0.0.0.0")
    check(SecurityConfig(insecure=True), "0.0.0.0")


def test_weak_htpasswd_hashes_are_refused_by_name(tmp_path):
    f = tmp_path / "htpasswd"
    f.write_text("alice:$apr1$abc$def\n")
    with pytest.raises(SecurityError, match="alice.*bcrypt"):
        read_htpasswd(f)
    f.write_text("")
    with pytest.raises(SecurityError, match="no users"):
        read_htpasswd(f)


def test_an_address_in_use_fails_the_start(manager):
    with server(manager) as s:
        taken = agent_server(manager, HttpConfig(port=s.port), MetricsCache(manager, ContainerMetrics()))
        with pytest.raises(OomtraceError, match="in use"):
            taken.start()


def test_basic_auth(manager, tmp_path):
    import bcrypt

    f = tmp_path / "htpasswd"
    f.write_text("# scrapers\nprom:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=8)).decode() + "\n")
    with server(manager, security=SecurityConfig(htpasswd=f)) as s:
        address = f"http://127.0.0.1:{s.port}/metrics"
        status, _, headers = get(address)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        bad = base64.b64encode(b"prom:wrong").decode()
        assert get(address, headers={"Authorization": f"Basic {bad}"})[0] == 401
        assert get(address, headers={"Authorization": "Basic !!!"})[0] == 401
        good = base64.b64encode(b"prom:s3cret").decode()
        status, body, _ = get(address, headers={"Authorization": f"Basic {good}"})
        assert status == 200 and b"machine_cpu_cores" in body
        assert get(f"http://127.0.0.1:{s.port}/api/v2.0/version", headers={"Authorization": f"Basic {good}"})[0] \
            == 200
        assert s.unauthorized == 3


def test_bearer_token(manager, tmp_path):
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    with server(manager, security=SecurityConfig(bearer_token_file=token)) as s:
        address = f"http://127.0.0.1:{s.port}/api/v2.0/version"
        assert get(address)[0] == 401
        assert get(address, headers={"Authorization": "Bearer 0123456789abcdef"})[0] == 401
        assert get(address, headers={"Authorization": "bearer 0123456789abcdef0123"})[0] == 200
        # /healthz stays open: a kubelet's probe sends no credentials, and it tells nothing but ok
        assert get(f"http://127.0.0.1:{s.port}/healthz")[:2] == (200, b"ok")


def test_tls_verified_by_a_real_client(manager, tmp_path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    with server(manager, security=SecurityConfig(tls_cert=pem)) as s:
        client = ssl.create_default_context()
        ca.configure_trust(client)
        status, body, _ = get(f"https://127.0.0.1:{s.port}/healthz", context=client)
        assert (status, body) == (200, b"ok")
        with pytest.raises(URLError, match="CERTIFICATE_VERIFY_FAILED"):  # a client without the CA refuses it
            get(f"https://127.0.0.1:{s.port}/healthz", context=ssl.create_default_context())
        with pytest.raises((URLError, ConnectionError)):  # plain HTTP to the TLS port gets no answer
            get(f"http://127.0.0.1:{s.port}/healthz")


def test_a_slowloris_is_closed_and_the_cap_holds(manager):
    with server(manager, header_timeout=1.0, max_connections=2) as s:
        slow = socket.create_connection(("127.0.0.1", s.port))
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
        other = socket.create_connection(("127.0.0.1", s.port))
        time.sleep(0.2)
        third = socket.create_connection(("127.0.0.1", s.port))
        third.settimeout(5)
        assert third.recv(10) == b""  # past the cap: closed at once
        slow.settimeout(5)
        t0 = time.monotonic()
        assert slow.recv(10) == b""
        assert time.monotonic() - t0 < 3
        other.close()
        slow.close()
        third.close()
        assert s.refused == 1 and s.slow >= 1
        assert get(f"http://127.0.0.1:{s.port}/healthz")[0] == 200  # the server still serves


def test_a_large_body_is_refused(manager):
    with server(manager) as s:
        status, body, _ = get(f"http://127.0.0.1:{s.port}/api/v1.3/containers/", data=b"{" + b" " * (200 << 10) + b"}")
        assert status == 413, body


# --- what a hostile-input pass found (each was a hang, a 500 or a limit that did not hold) ---------

def _raw(port: int, data: bytes, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    return s


def _closed_within(s: socket.socket, seconds: float) -> bool:
    """True when the server ends the connection within SECONDS (whatever it sent first)."""
    s.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not s.recv(1 << 16):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def test_stream_in_the_query_does_not_lift_the_time_limit(manager):
    with server(manager, request_timeout=1.0) as s:
        slow = _raw(s.port, b"POST /api/v1.3/containers/?stream=true HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 100\r\n\r\n{")
        slow.settimeout(5)
        assert slow.recv(100).startswith(b"HTTP/1.1 503")
        slow.close()


@pytest.mark.root
def test_a_client_that_does_not_read_is_dropped():
    """An answer bigger than the socket buffers (8 MB of stats: 400 cgroups × 13 samples) to a
    client that reads nothing: the send is timed, the connection closed."""
    from tests.cgroups import Cgroup

    parent = Cgroup.create("serve-lazy")
    try:
        for i in range(400):
            parent.child(f"c{i:03d}")
        many = Manager(ManagerConfig(network=False))
        many.start(background=False)
        for _ in range(12):
            many.sweep()
        with server(many, request_timeout=2.0) as s:
            path = f"/api/v2.0/stats{parent.name}?count=-1&recursive=true"
            status, body, _ = get(f"http://127.0.0.1:{s.port}{path}")
            assert status == 200 and len(body) > 6 << 20, len(body)  # more than the kernel buffers hold
            lazy = _raw(s.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), rcvbuf=4096)
            time.sleep(4)  # reads nothing while the server writes
            t0 = time.monotonic()
            lazy.settimeout(10)
            got = 0
            try:
                while chunk := lazy.recv(1 << 20):
                    got += len(chunk)
            except ConnectionResetError:
                pass
            lazy.close()
            assert got < len(body), "the whole answer came: the server waited for the reader"
            assert time.monotonic() - t0 < 5
            assert get(f"http://127.0.0.1:{s.port}/healthz")[0] == 200
    finally:
        parent.remove()


def test_tls_handshakes_count_against_the_cap(manager, tmp_path):
    import trustme

    pem = tmp_path / "server.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    with server(manager, security=SecurityConfig(tls_cert=pem), max_connections=2, header_timeout=1.0) as s:
        idle = [_raw(s.port, b"\x16\x03\x01\x00") for _ in range(2)]  # a ClientHello that never ends
        time.sleep(0.2)
        third = _raw(s.port, b"")
        assert _closed_within(third, 3)  # past the cap while two handshakes hang
        assert all(_closed_within(c, 4) for c in idle)  # the handshake deadline ends them
        assert s.refused >= 1
        for c in (*idle, third):
            c.close()


def test_odd_credentials_are_401s(manager, tmp_path):
    import bcrypt

    f = tmp_path / "htpasswd"
    f.write_text("alice:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode() + "\n")
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123")
    with server(manager, security=SecurityConfig(htpasswd=f)) as s:
        long = base64.b64encode(b"alice:" + b"x" * 100).decode()  # bcrypt refuses > 72 bytes
        assert get(f"http://127.0.0.1:{s.port}/metrics", headers={"Authorization": f"Basic {long}"})[0] == 401
    with server(manager, security=SecurityConfig(bearer_token_file=token)) as s:
        raw = _raw(s.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n")
        raw.settimeout(5)
        assert raw.recv(100).startswith(b"HTTP/1.1 401")
        raw.close()


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/api/v2.0/stats/?max_age=.h", None, 400),
    ("GET", "/api/v2.0/stats/?max_age=1..2s", None, 400),
    ("POST", "/api/v1.3/containers/", b"[" * 60000, 400),
    ("HEAD", "/api/v1.3/events/?stream=true&all_events=true", None, 405),
    ("DELETE", "/api/v1.3/machine", None, 405),
    ("GET", "/no/such/page", None, 404),
])
def test_odd_requests_get_json_errors(manager, method, path, body, status):
    import urllib.request

    with server(manager) as s:
        request = urllib.request.Request(f"http://127.0.0.1:{s.port}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                code, text, headers = r.status, r.read(), r.headers
        except URLError as e:
            code, text, headers = e.code, e.read(), e.headers  # type: ignore[attr-defined]
        assert code == status, text
        if method != "HEAD":
            assert headers["Content-Type"].startswith("application/json") and b"Traceback" not in text
        if status == 405:
            assert headers["Allow"]
