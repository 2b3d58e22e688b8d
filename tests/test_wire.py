"""The Forward protocol codec: every mode, the handshake, and garbage (fuzzed)."""

from __future__ import annotations

import gzip

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.forward import wire

REC = {"type": "oom_kill", "pid": 42, "comm": "hog", "cgroup": "/a"}


def _roundtrip(obj) -> wire.Message:
    up = wire.unpacker()
    up.feed(msgpack.packb(obj))
    return wire.decode(next(up))


def test_packed_forward_from_our_encoder_keeps_time_record_and_chunk():
    enc = wire.FrameEncoder()
    entries = [enc.entry({**REC, "time": 1700000000.25, "seq": i}) for i in range(3)]
    up = wire.unpacker()
    up.feed(enc.frame("oomtrace.oom_kill", entries, "c1", 3))
    msg = wire.decode(next(up))
    assert msg.tag == "oomtrace.oom_kill" and msg.chunk == "c1"
    assert [e.record["seq"] for e in msg.entries] == [0, 1, 2]
    assert msg.entries[0].time == pytest.approx(1700000000.25)
    # The stored bytes are the entry as sent: [EventTime, record].
    assert msgpack.unpackb(msg.entries[1].raw, raw=False, ext_hook=wire._ext)[1]["seq"] == 1


def test_message_and_forward_modes():
    msg = _roundtrip(["app", 1700000000, REC, {"chunk": "x"}])
    assert msg.entries[0].record == REC and msg.entries[0].time == 1700000000 and msg.chunk == "x"
    msg = _roundtrip(["app", [[1, REC], [2, {**REC, "pid": 7}]]])
    assert [e.record["pid"] for e in msg.entries] == [42, 7] and msg.chunk is None
    assert msgpack.unpackb(msg.entries[1].raw, raw=False) == [2, {**REC, "pid": 7}]


def test_compressed_packed_forward_with_two_gzip_members():
    body = b"".join(msgpack.packb([i, {**REC, "pid": i}]) for i in range(4))
    data = gzip.compress(body[:20]) + gzip.compress(body[20:])  # members may split anywhere
    msg = _roundtrip(["app", data, {"compressed": "gzip", "chunk": "z"}])
    assert [e.record["pid"] for e in msg.entries] == [0, 1, 2, 3]


def test_a_gzip_bomb_is_refused():
    bomb = gzip.compress(b"\x00" * (5 << 20))
    with pytest.raises(wire.WireError, match="exceed"):
        wire.decode(["app", bomb, {"compressed": "gzip"}], max_frame=1 << 20)


def test_event_time_keeps_nanoseconds():
    t = wire.event_time(1700000000.123456789)
    assert wire._ext(t.code, t.data) == pytest.approx(1700000000.123456789, abs=1e-6)


@pytest.mark.parametrize("frame, reason", [
    ({"tag": "x"}, "must be an array"),
    ([1, 2, 3], "tag must be a string"),
    (["t", None], "second element"),
    (["t", 1.5, [1]], "record must be a map"),
    (["t", [[1, 2, 3], "x"]], "record must be a map"),
    (["t", [[True, {}]]], "time must be"),
    (["t", msgpack.packb([1, {}]) + b"\x92", {}], "end inside"),
    (["t", b"\xc1", {}], "not msgpack"),
    (["t", b"", {"compressed": "zstd"}], "unknown compression"),
    (["t", b"", {"chunk": 5}], "chunk option"),
    (["t", b"", "opt"], "option must be a map"),
])
def test_invalid_frames_say_why(frame, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(frame)


def test_handshake_both_ways_and_a_wrong_key():
    nonce, salt = b"n" * 16, b"s" * 16
    up = wire.unpacker()
    up.feed(wire.helo(nonce))
    assert wire.read_helo(next(up)) == nonce
    up.feed(wire.ping("agent", "k3y", nonce, salt))
    ping = next(up)
    assert wire.read_ping(ping, nonce, "k3y") == ("agent", salt)
    with pytest.raises(wire.AuthError, match="shared key mismatch"):
        wire.read_ping(ping, nonce, "other")
    up.feed(wire.pong(True, "", "collector", salt, nonce, "k3y"))
    assert wire.read_pong(next(up), salt, nonce, "k3y") == "collector"
    up.feed(wire.pong(False, "no", "collector", salt, nonce, "k3y"))
    with pytest.raises(wire.AuthError, match="refused"):
        wire.read_pong(next(up), salt, nonce, "k3y")


def test_digest_is_the_specs_sha512_of_salt_host_nonce_key():
    import hashlib

    assert wire.digest(b"S", "h", b"N", "K") == hashlib.sha512(b"ShNK").hexdigest()


@pytest.mark.parametrize("text, expected", [
    ("tcp://127.0.0.1:24224", wire.Address("tcp", "127.0.0.1", 24224)),
    ("localhost", wire.Address("tcp", "localhost", 24224)),
    ("tcp://[::1]:9", wire.Address("tcp", "::1", 9)),
    ("unix:/run/o.sock", wire.Address("unix", path="/run/o.sock")),
    ("unix:///run/o.sock", wire.Address("unix", path="/run/o.sock")),
    ("-", wire.Address("stdin")),
])
def test_addresses(text, expected):
    assert wire.Address.parse(text) == expected


@pytest.mark.parametrize("text", ["http://x:1", "tcp://x:99999", "unix:", "tcp://:5"])
def test_bad_addresses(text):
    with pytest.raises(ValueError):
        wire.Address.parse(text)


# --- fuzz: whatever arrives, decoding fails only with a WireError (or BufferFull for a frame
# too large), which the collector turns into a closed connection ----------------------------

_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_msgpack_values, max_size=4))
def test_fuzz_decode_of_arbitrary_frames(frame):
    try:
        msg = wire.decode(frame)
    except wire.WireError:
        return
    assert isinstance(msg.tag, str)
    assert all(isinstance(e.record, dict) for e in msg.entries)


@settings(max_examples=400)
@given(st.binary(max_size=300), st.text(max_size=8))
def test_fuzz_packed_bodies(body, tag):
    try:
        msg = wire.decode([tag, body, {}])
    except wire.WireError:
        return
    assert b"".join(e.raw for e in msg.entries) == body  # every byte is accounted for


@settings(max_examples=400)
@given(st.binary(max_size=400))
def test_fuzz_byte_streams(data):
    up = wire.unpacker(1 << 8)
    try:
        up.feed(data)
        for frame in wire.frames(up):
            wire.decode(frame)
    except (wire.WireError, msgpack.BufferFull):
        pass
