"""Who may talk to the agent's HTTP server: TLS, basic auth from an htpasswd file (bcrypt
only), a bearer token file, and the rule that binds them to the address.

Loopback needs none of them. Any other address needs credentials (basic or bearer) and TLS
(a password or a token in clear text on a network is no protection), unless the operator says
--http-insecure: the choice is explicit, never a default.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import OomtraceError


class SecurityError(OomtraceError):
    """A security option that cannot work as given (an unreadable file, a weak hash, ...)."""


@dataclass(frozen=True)
class SecurityConfig:
    tls_cert: Path | None = None
    tls_key: Path | None = None  # None: the key is in the certificate file
    htpasswd: Path | None = None
    bearer_token_file: Path | None = None
    insecure: bool = False  # serve a non-loopback address without credentials or TLS


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check(config: SecurityConfig, host: str) -> None:
    """Refuse a configuration that would expose the agent without the protection it needs."""
    if config.tls_key is not None and config.tls_cert is None:
        raise SecurityError("--http-tls-key needs --http-tls-cert")
    if is_loopback(host) or config.insecure:
        return
    if config.htpasswd is None and config.bearer_token_file is None:
        raise SecurityError(f"--http {host}: an address beyond loopback needs --http-htpasswd or "
                            "--http-bearer-token-file (or --http-insecure to serve it open)")
    if config.tls_cert is None:  # a password or a token in clear text on a network protects nothing
        raise SecurityError(f"--http {host}: credentials beyond loopback need --http-tls-cert "
                            "(or --http-insecure to send them in clear text)")


def tls_context(config: SecurityConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(config.tls_cert), str(config.tls_key) if config.tls_key else None)
    except (OSError, ssl.SSLError) as e:
        raise SecurityError(f"--http-tls-cert {config.tls_cert}: {e}") from e
    return context


def read_htpasswd(path: Path) -> dict[str, bytes]:
    """user → bcrypt hash. Other schemes (MD5-crypt, SHA-1, crypt, plain) are refused by name:
    they are cheap to brute-force, and Apache's own docs call them insecure."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SecurityError(f"--http-htpasswd {path}: {e}") from e
    users: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, digest = line.partition(":")
        if not sep or not user:
            raise SecurityError(f"--http-htpasswd {path}:{number}: not user:hash")
        if not digest.startswith(("$2y$", "$2b$", "$2a$")):
            raise SecurityError(f"--http-htpasswd {path}:{number}: user {user!r} has no bcrypt hash "
                                "(make one with: htpasswd -B FILE USER)")
        users[user] = digest.encode()
    if not users:
        raise SecurityError(f"--http-htpasswd {path}: no users")
    return users


def read_token(path: Path) -> bytes:
    try:
        token = path.read_bytes().strip()
    except OSError as e:
        raise SecurityError(f"--http-bearer-token-file {path}: {e}") from e
    if len(token) < 16:
        raise SecurityError(f"--http-bearer-token-file {path}: a token of 16 bytes or more expected")
    return token


class Authenticator:
    """Checks an Authorization header. bcrypt costs ~50-250 ms a check by design, so a
    password that passed is remembered (by its SHA-256, never in clear) in a small LRU: a
    scrape every second costs one bcrypt per process start, not one per scrape. An unknown
    user costs a bcrypt too (of a dummy hash): the time taken does not tell which users exist."""

    CACHE = 64

    def __init__(self, config: SecurityConfig) -> None:
        self.users = read_htpasswd(config.htpasswd) if config.htpasswd else {}
        self.token = read_token(config.bearer_token_file) if config.bearer_token_file else None
        self._passed: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self._lock = threading.Lock()
        self._dummy = _dummy_hash(self.users) if self.users else b""

    @property
    def required(self) -> bool:
        return bool(self.users) or self.token is not None

    def remembered(self, header: str | None) -> bool | None:
        """Without any bcrypt: True/False when that is known at once (no credentials, a
        token, a password that passed before), None when a bcrypt check is needed."""
        if not self.required:
            return True
        parsed = self._parse(header)
        if parsed is None:
            return False
        scheme, value = parsed
        if scheme == "bearer":
            return self.token is not None and hmac.compare_digest(value, self.token)
        credentials = _basic(value)
        if credentials is None or not self.users:
            return False
        with self._lock:
            if _key(*credentials) in self._passed:
                self._passed.move_to_end(_key(*credentials))
                return True
        return None

    def allows(self, header: str | None) -> bool:
        known = self.remembered(header)
        if known is not None:
            return known
        parsed = self._parse(header)
        assert parsed is not None
        credentials = _basic(parsed[1])
        assert credentials is not None
        user, password = credentials
        import bcrypt  # only where basic auth is configured

        digest = self.users.get(user)
        try:
            ok = bcrypt.checkpw(password, digest or self._dummy) and digest is not None
        except ValueError:  # a password past bcrypt's 72 bytes, or a damaged hash in the file
            return False
        if ok:
            with self._lock:
                self._passed[_key(user, password)] = None
                while len(self._passed) > self.CACHE:
                    self._passed.popitem(last=False)
        return ok

    @staticmethod
    def _parse(header: str | None) -> tuple[str, bytes] | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        # aiohttp hands over undecodable header bytes as surrogates: back to the bytes sent
        return scheme.lower(), value.strip().encode("utf-8", "surrogateescape")


def _dummy_hash(users: dict[str, bytes]) -> bytes:
    """A hash at the file's highest cost, of no password: checking an unknown user against it
    takes as long as checking a known one (htpasswd -B makes cost 5; others 10 or 12)."""
    import bcrypt

    costs = [int(d.split(b"$")[2]) for d in users.values() if d.count(b"$") >= 3 and d.split(b"$")[2].isdigit()]
    return bcrypt.hashpw(b"-", bcrypt.gensalt(rounds=max(costs, default=10)))


def _basic(value: bytes) -> tuple[str, bytes] | None:
    try:
        user, sep, password = base64.b64decode(value, validate=True).partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (ValueError, UnicodeDecodeError):
        return None


def _key(user: str, password: bytes) -> tuple[str, bytes]:
    return user, hashlib.sha256(password).digest()
