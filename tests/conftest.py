from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests import cgroups
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


def pytest_sessionfinish(session, exitstatus):
    """A test cgroup still there at the end was not removed by its test: remove it (and end the
    test processes left in it), and fail the run that would otherwise pass."""
    left = [cg for cg in list(cgroups.LIVE.values()) if cg.exists()]
    for cg in left:
        for d in (sub for top in cg.unique_dirs() for sub, _, _ in os.walk(top)):
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = f.read().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        cg.remove()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("=", "test cgroups left behind (now removed): " + ", ".join(cg.name for cg in left),
                               red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One header cache for the whole run: the first engine generates, the rest reuse."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def engine(cache_dir):
    """A started engine polling in a thread; its records collect in engine.sink."""
    with running_engine(cache_dir, pressure_interval=1.0) as eng:
        yield eng
