from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.kernel import running_engine

IS_ROOT = os.geteuid() == 0
# tests/vm runs inside the test VMs (scripts/vm/run-qemu.sh, vagrant/), which set OOMTRACE_VM;
# scripts/test.sh runs that stage after this suite.
collect_ignore = [] if os.environ.get("OOMTRACE_VM") else ["vm"]
ROOT_REASON = "needs root: loads BPF programs and creates memory cgroups on the real kernel"


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must run the root/BPF tests: run the suite as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=ROOT_REASON))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One header cache for the whole run: the first engine generates, the rest reuse."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def engine(cache_dir):
    """A started engine polling in a thread; its records collect in engine.sink."""
    with running_engine(cache_dir, pressure_interval=1.0) as eng:
        yield eng
