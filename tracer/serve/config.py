"""What `run --http` serves and how it is guarded: plain settings, importable without the
HTTP library (the agent builds them whether or not it serves)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracer.serve.security import SecurityConfig


@dataclass(frozen=True)
class RestLimits:
    """The REST API's bounds: event streams, and the requests worked on at once."""

    max_streams: int = 32  # event streams open at once; more get 503
    queue_size: int = 1000  # events a slow stream reader may fall behind by; past it they are dropped, counted
    poll: float = 0.25  # how often a stream looks at its queue
    write_timeout: float = 10.0  # a stream whose reader takes longer than this for one line is dropped
    max_busy: int = 4  # requests worked on at once (each in a thread of the pool)
    wait_busy: float = 5.0  # a request that cannot start within this is answered 503


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    security: SecurityConfig = field(default_factory=SecurityConfig)
    max_connections: int = 256
    header_timeout: float = 10.0  # from accept to a request's complete headers
    idle_timeout: float = 15.0  # keep-alive between requests
    request_timeout: float = 30.0  # one request's handling (event streams excepted)
    max_body: int = 64 << 10
    rest: RestLimits = field(default_factory=RestLimits)
