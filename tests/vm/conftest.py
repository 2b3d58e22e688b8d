"""The VM suite: real Debian kernels with kprobes, kernel headers and cgroup v2."""

from __future__ import annotations

import pytest

from tests.kernel import running_engine


@pytest.fixture(scope="session")
def vm_engine(cache_dir):
    """One engine per boot: a BCC compile takes about 20 s under software emulation."""
    with running_engine(cache_dir, pressure_interval=1.0) as engine:
        yield engine
