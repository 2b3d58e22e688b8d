"""parse_rfc3339: the one reader of RFC 3339 times (REST parameters, Docker's inspect), the
inverse of rfc3339()."""

from __future__ import annotations

import pytest

from tracer.identity._docker import _time
from tracer.stats.model import parse_rfc3339, rfc3339


def test_round_trip_and_zones():
    assert parse_rfc3339(rfc3339(1795867888.25)) == 1795867888.25
    assert parse_rfc3339("2026-11-28T12:11:28.123456789Z") == pytest.approx(1795867888.123456789)
    assert parse_rfc3339("2026-11-28T13:11:28.5+01:00") == 1795867888.5


@pytest.mark.parametrize("text", ["2026-11-28", "2026-11-28T12:00:00", "2026-02-30T00:00:00Z", "junk"])
def test_refused(text):
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_dockers_times():
    assert _time("0001-01-01T00:00:00Z") is None  # Docker's zero time: never started
    assert _time("2026-13-40T00:00:00Z") is None  # unreadable: no time, not an error out of inspect
    assert _time("2026-11-28T12:11:28Z") == 1795867888.0
