"""The systemd units (deploy/systemd/), as an operator runs them: installed by
scripts/install-systemd.sh, `systemctl enable --now` both, a real OOM kill reaches the
collector's database through the hardened agent, `systemctl stop` ends both cleanly, and the
units' `systemd-analyze security` exposure is recorded. Needs systemd as PID 1: the Vagrant
bookworm VM (scripts/vm/run-vagrant.sh) boots the image with it; the qemu suites do not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.cgroups import Cgroup
from tests.kernel import go, spawn_hog

REPO = Path(__file__).resolve().parents[2]
UNITS = ("oomtrace-collector.service", "oomtrace-agent.service")
DB = "/var/lib/oomtrace-collector/oomtrace.db"
MiB = 1 << 20
# Exposure above these fails: the scores measured when the units were written (docs/deploy.md)
# plus a margin, so that a loosened unit is noticed.
MAX_EXPOSURE = {"oomtrace-agent.service": 5.0, "oomtrace-collector.service": 2.0}


def _systemd_is_init() -> bool:
    """sd_booted(): systemd made /run/systemd/system, and it is PID 1."""
    try:
        return os.path.isdir("/run/systemd/system") and Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not _systemd_is_init(),
                       reason="the qemu suites boot without systemd; the Vagrant bookworm VM runs this"),
]


def sh(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def journal(unit: str) -> str:
    return sh("journalctl", "--no-pager", "-o", "cat", "-n", "60", "-u", unit, check=False).stdout


def show(unit: str) -> dict[str, str]:
    props = "ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,NRestarts,MainPID"
    out = sh("systemctl", "show", unit, "-p", props).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def stored(kind: str, *, as_collector: bool = False) -> list[dict]:
    """`oomtrace events --db` of KIND records: as root, or as the running collector's own
    (dynamic) user in its mount namespace, where its state directory is. (docs/deploy.md reads
    it that way with systemd-run, which needs D-Bus: the test image has none.)"""
    cmd = ["/usr/local/bin/oomtrace", "events", "--db", DB, "-t", kind, "--output", "json"]
    if as_collector:
        pid = show("oomtrace-collector.service")["MainPID"]
        ids = {k: v.split()[0] for k, v in (line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                                            .splitlines() if line.startswith(("Uid:", "Gid:")))}
        assert ids["Uid"] != "0", ids  # DynamicUser=yes
        # --cache-dir: `events` checks that it is readable even with --db, and the agent's
        # /var/cache/oomtrace (0700, root) is not, for this user.
        cmd = ["nsenter", "-t", pid, "-m", "-S", ids["Uid"], "-G", ids["Gid"], "--", *cmd, "--cache-dir", "/tmp"]
    elif not os.path.exists(DB):
        return []
    out = sh(*cmd, check=False)
    assert out.returncode == 0, out
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def wait_for(kind: str, predicate, timeout: float, what: str) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in stored(kind) if predicate(r)]
        if recs:
            return recs
        for unit in UNITS:
            assert show(unit)["ActiveState"] in ("active", "activating"), f"{unit} died waiting for {what}:\n" \
                + journal(unit)
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {DB} after {timeout:.0f} s\n" + "\n".join(
                f"--- {u}\n{journal(u)}" for u in UNITS))
        time.sleep(1)


def exposure(unit: str) -> float:
    out = sh("systemd-analyze", "security", "--no-pager", unit).stdout
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", out)
    assert m, out
    return float(m.group(1))


@pytest.fixture
def installed():
    out = sh(str(REPO / "scripts/install-systemd.sh"))
    assert "installed:" in out.stdout, out
    try:
        yield
    finally:
        sh("systemctl", "disable", "--now", *UNITS, check=False)
        sh("systemctl", "reset-failed", *UNITS, check=False)


def test_units_catch_a_real_oom_kill_and_stop_cleanly(installed, capsys):
    node = "systemd-vm-node"
    Path("/etc/default/oomtrace-agent").write_text(
        Path("/etc/default/oomtrace-agent").read_text() + f"NODE_NAME={node}\n")
    t0 = time.time()
    sh("systemctl", "enable", "--now", *UNITS)
    for unit in UNITS:
        assert sh("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
    # The start record arrives once the probes are attached (a BCC compile, ~25 s under TCG).
    (start,) = wait_for("start", lambda r: r.get("node") == node and r["time"] >= t0 - 1, 300, "start record")[-1:]
    assert start["cgroup_version"] == 2, start

    cg = Cgroup.memory("systemd", 32 * MiB)
    try:
        hog = spawn_hog(cg)
        go([hog])
        assert hog.wait(60) == -9
        wait_for("oom_kill", lambda r: r.get("pid") == hog.pid, 90, f"oom_kill of {hog.pid}")
    finally:
        cg.remove()
    # Read as the collector's own user, from its state directory.
    (kill,) = [r for r in stored("oom_kill", as_collector=True) if r.get("pid") == hog.pid]
    assert (kill["node"], kill["comm"], kill["cgroup"]) == (node, hog.comm, cg.path), kill
    # The kprobe on oom_kill_process attaches under the hardening (ProtectKernelTunables= would
    # hide /proc/kallsyms, and the context would only be inferred).
    assert (kill.get("memcg"), kill.get("context")) == (cg.path, "kprobe"), kill

    scores = {unit: exposure(unit) for unit in UNITS}
    sh("systemctl", "stop", "oomtrace-agent.service")
    sh("systemctl", "stop", "oomtrace-collector.service")
    states = {unit: show(unit) for unit in UNITS}
    with capsys.disabled():
        print(f"\nsystemd units: start record after {start['startup_seconds']} s, probes {start['probes']}, "
              f"missing {sorted(start['missing'])}; oom_kill {kill['pid']} {kill['comm']} in {kill['cgroup']}")
        for unit in UNITS:
            print(f"systemd-analyze security {unit}: {scores[unit]}; after stop: {states[unit]}")
    for unit, state in states.items():
        # inactive, not failed: the process exited 0 on SIGTERM (ExecMainCode 1 = CLD_EXITED)
        assert (state["ActiveState"], state["Result"], state["ExecMainCode"], state["ExecMainStatus"]) == \
            ("inactive", "success", "1", "0"), f"{unit}: {state}\n{journal(unit)}"
        assert state["NRestarts"] == "0", f"{unit} restarted: {state}\n{journal(unit)}"
        assert "Traceback" not in journal(unit), journal(unit)
        assert scores[unit] <= MAX_EXPOSURE[unit], (unit, scores[unit])
